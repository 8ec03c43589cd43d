//! The toolstack's part of a vif, as libxl does it (`libxl_device.c`,
//! `libxl_nic.c`): create both xenstore directories with their keys and
//! permissions in one step, and remove a device the way `xl
//! network-detach` does against a driver domain.
//!
//! These are dom0 actions (direct xenstored access), for tests, the lab and
//! benchmarks; the drivers under test only ever see the resulting keys.

use std::time::{Duration, Instant};

use super::host::SimHost;
use super::xenstored::Perm;
use crate::abi::DomId;
use crate::xenbus::XenbusState;

/// How long libxl waits for a backend to reach InitWait, for Closed, and
/// for a driver domain to remove its backend directory (`LIBXL_INIT_TIMEOUT`
/// and `LIBXL_DESTROY_TIMEOUT`: 10 s each).
pub const LIBXL_TIMEOUT: Duration = Duration::from_secs(10);

/// One vif as the toolstack describes it.
#[derive(Clone, Debug)]
pub struct VifSpec {
    /// The guest that gets the interface (netfront side).
    pub frontend: DomId,
    /// The domain that serves it (netback side).
    pub backend: DomId,
    /// Device id (`<n>` in `device/vif/<n>`).
    pub devid: u32,
    /// The frontend's MAC (Qubes: `00:16:3e:5e:6c:00` for every VM).
    pub mac: String,
    /// The frontend's address(es) as libvirt writes them (space separated);
    /// empty for none.
    pub ip: String,
    /// MTU written to the frontend dir.
    pub mtu: u32,
    /// `trusted` for the frontend (Qubes writes `1` only for trusted
    /// backends).
    pub trusted: bool,
}

impl VifSpec {
    /// A vif `devid` from `backend` to `frontend` with Qubes' defaults.
    pub fn new(frontend: DomId, backend: DomId, devid: u32) -> VifSpec {
        VifSpec {
            frontend,
            backend,
            devid,
            mac: "00:16:3e:5e:6c:00".into(),
            ip: String::new(),
            mtu: 1500,
            trusted: true,
        }
    }

    /// `/local/domain/<frontend>/device/vif/<devid>`.
    pub fn frontend_dir(&self) -> String {
        format!("/local/domain/{}/device/vif/{}", self.frontend, self.devid)
    }

    /// `/local/domain/<backend>/backend/vif/<frontend>/<devid>`.
    pub fn backend_dir(&self) -> String {
        format!(
            "/local/domain/{}/backend/vif/{}/{}",
            self.backend, self.frontend, self.devid
        )
    }
}

/// Why a toolstack operation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VifError {
    /// A xenstore operation failed (message names it).
    Store(String),
    /// The backend did not reach `state` within [`LIBXL_TIMEOUT`].
    Timeout {
        /// What was awaited.
        waiting_for: &'static str,
        /// The backend state seen last.
        last_state: XenbusState,
    },
}

impl core::fmt::Display for VifError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            VifError::Store(m) => write!(f, "xenstore: {m}"),
            VifError::Timeout {
                waiting_for,
                last_state,
            } => write!(
                f,
                "timed out waiting for {waiting_for} (backend state {})",
                last_state.name()
            ),
        }
    }
}

/// Read a state node as dom0 sees it (missing or garbage = Unknown).
pub fn read_state(host: &SimHost, path: &str) -> XenbusState {
    host.with_xenstore(|xs| xs.read(path))
        .ok()
        .and_then(|v| XenbusState::parse(&v))
        .unwrap_or(XenbusState::Unknown)
}

/// Write both directories of `spec` at once, as libxl's device-add
/// transaction does. Does not wait for the backend.
pub fn create_vif(host: &SimHost, spec: &VifSpec) -> Result<(), VifError> {
    let (f, b) = (spec.frontend, spec.backend);
    let (fdir, bdir) = (spec.frontend_dir(), spec.backend_dir());
    host.with_xenstore(|xs| {
        let fperms = [Perm::none(f), Perm::read(b)];
        let bperms = [Perm::none(b), Perm::read(f)];
        xs.write(&fdir, b"")?;
        xs.set_perms(&fdir, &fperms)?;
        xs.write(&bdir, b"")?;
        xs.set_perms(&bdir, &bperms)?;
        let devid = spec.devid.to_string();
        let fkeys: [(&str, String); 7] = [
            ("backend", bdir.clone()),
            ("backend-id", b.to_string()),
            ("state", "1".into()),
            ("handle", devid.clone()),
            ("mac", spec.mac.clone()),
            ("mtu", spec.mtu.to_string()),
            ("trusted", if spec.trusted { "1" } else { "0" }.into()),
        ];
        for (k, v) in fkeys {
            let p = format!("{fdir}/{k}");
            xs.write(&p, v.as_bytes())?;
            xs.set_perms(&p, &fperms)?;
        }
        let bkeys: [(&str, String); 10] = [
            ("frontend", fdir.clone()),
            ("frontend-id", f.to_string()),
            ("online", "1".into()),
            ("state", "1".into()),
            ("script", "/etc/xen/scripts/vif-route-qubes".into()),
            ("mac", spec.mac.clone()),
            ("ip", spec.ip.clone()),
            ("handle", devid.clone()),
            ("type", "vif".into()),
            ("hotplug-status", String::new()),
        ];
        for (k, v) in bkeys {
            let p = format!("{bdir}/{k}");
            xs.write(&p, v.as_bytes())?;
            xs.set_perms(&p, &bperms)?;
        }
        Ok(())
    })
    .map_err(|e: crate::store::wire::XsError| VifError::Store(format!("create {fdir}: {e:?}")))
}

/// Wait until the backend state satisfies `ok`, polling as libxl's watch
/// would fire, for at most `timeout`.
pub fn wait_backend(
    host: &SimHost,
    spec: &VifSpec,
    waiting_for: &'static str,
    timeout: Duration,
    ok: impl Fn(XenbusState) -> bool,
) -> Result<XenbusState, VifError> {
    let path = format!("{}/state", spec.backend_dir());
    let end = Instant::now() + timeout;
    loop {
        let s = read_state(host, &path);
        if ok(s) {
            return Ok(s);
        }
        if Instant::now() >= end {
            return Err(VifError::Timeout {
                waiting_for,
                last_state: s,
            });
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// `xl network-attach`: create the vif and wait (up to 10 s) for the
/// backend to publish its features and reach InitWait, as libxl requires.
/// Returns how long the backend took.
pub fn attach_vif(host: &SimHost, spec: &VifSpec) -> Result<Duration, VifError> {
    create_vif(host, spec)?;
    let t = Instant::now();
    wait_backend(host, spec, "backend InitWait", LIBXL_TIMEOUT, |s| {
        s >= XenbusState::InitWait && s <= XenbusState::Connected
    })?;
    Ok(t.elapsed())
}

/// `xl network-detach` against a driver-domain backend: write backend
/// `online = 0` and `state = 5`, wait for Closed, wait for the backend to
/// remove its own directory, then remove the frontend directory. With
/// `force`, time-outs are ignored and both directories removed anyway
/// (what libxl does when the backend domain is gone).
pub fn detach_vif(host: &SimHost, spec: &VifSpec, force: bool) -> Result<(), VifError> {
    let bdir = spec.backend_dir();
    let fdir = spec.frontend_dir();
    let res = (|| {
        host.with_xenstore(|xs| {
            if xs.exists(&bdir) {
                xs.write(&format!("{bdir}/online"), b"0")?;
                xs.write(&format!("{bdir}/state"), b"5")?;
            }
            Ok(())
        })
        .map_err(|e: crate::store::wire::XsError| VifError::Store(format!("{e:?}")))?;
        wait_backend(host, spec, "backend Closed", LIBXL_TIMEOUT, |s| {
            s == XenbusState::Closed || s == XenbusState::Unknown
        })?;
        let end = Instant::now() + LIBXL_TIMEOUT;
        while host.with_xenstore(|xs| xs.exists(&bdir)) {
            if Instant::now() >= end {
                return Err(VifError::Timeout {
                    waiting_for: "backend to remove its directory",
                    last_state: read_state(host, &format!("{bdir}/state")),
                });
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    })();
    if res.is_ok() || force {
        host.with_xenstore(|xs| {
            let _ = xs.rm(&fdir);
            if force {
                let _ = xs.rm(&bdir);
            }
        });
    }
    if force {
        Ok(())
    } else {
        res
    }
}

/// Remove both directories at once, as libxl does for a device whose
/// domains are already gone (no waiting for a backend).
pub fn remove_vif(host: &SimHost, spec: &VifSpec) {
    let (fdir, bdir) = (spec.frontend_dir(), spec.backend_dir());
    host.with_xenstore(|xs| {
        let _ = xs.rm(&fdir);
        let _ = xs.rm(&bdir);
    });
}
