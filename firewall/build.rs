//! Link settings for the `vmlinuz` kernel binary: a static, non-PIE ELF
//! laid out by `vmlinuz.ld` (loaded at 1 MiB, PVH note in a PT_NOTE
//! segment), with no C runtime. Only that binary gets them, so the lab and
//! the host tools link normally.

fn main() {
    println!("cargo:rerun-if-changed=vmlinuz.ld");
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_PVH").is_none() {
        return;
    }
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR");
    for arg in [
        "-nostartfiles",
        "-nostdlib",
        "-static",
        "-no-pie",
        "-Wl,--build-id=none",
        "-Wl,-z,noexecstack",
        "-Wl,-z,max-page-size=4096",
        &format!("-Wl,-T,{dir}/vmlinuz.ld"),
    ] {
        println!("cargo:rustc-link-arg-bin=vmlinuz={arg}");
    }
}
