//! `#[repr(C)]` mirrors of the Xen public ABI used by this project.
//!
//! Every struct here has the field names of its C original (public headers of
//! Xen 4.17, as shipped by Debian's `libxen-dev` under `/usr/include/xen/`),
//! so that the layout test (`xen/tests/abi_layout.rs`) can compare `size_of`
//! and every `offset_of!` with what the C compiler reports for the real
//! headers. Nothing in this module performs I/O: it is data only.
//!
//! Structs that describe *shared pages* (shared info, rings, the xenstore and
//! console interfaces) are mirrored for their layout only. Code never forms a
//! Rust reference to such a page; it reads and writes fields at the offsets
//! given by `core::mem::offset_of!` through [`crate::memory::SharedMem`].

#![allow(non_camel_case_types)]

pub mod console;
pub mod event_channel;
pub mod grant_table;
pub mod hvm;
pub mod memory;
pub mod netif;
pub mod ring;
pub mod sched;
pub mod shared_info;
pub mod vchan;
pub mod vcpu;
pub mod xs_wire;

/// A Xen domain id (`domid_t`).
pub type DomId = u16;
/// An event channel port (`evtchn_port_t`).
pub type EvtchnPort = u32;
/// A grant reference (`grant_ref_t`).
pub type GrantRef = u32;
/// A grant handle returned by a map (`grant_handle_t`).
pub type GrantHandle = u32;

/// Size of a page on x86.
pub const PAGE_SIZE: usize = 4096;
/// log2 of [`PAGE_SIZE`].
pub const PAGE_SHIFT: u32 = 12;

/// Domain-id constants from `public/xen.h`.
pub mod domid {
    use super::DomId;
    /// The first reserved domain id; also `DOMID_SELF`.
    pub const DOMID_FIRST_RESERVED: DomId = 0x7FF0;
    /// "The calling domain".
    pub const DOMID_SELF: DomId = 0x7FF0;
    /// I/O pseudo-domain.
    pub const DOMID_IO: DomId = 0x7FF1;
    /// Xen itself.
    pub const DOMID_XEN: DomId = 0x7FF2;
    /// Copy-on-write pseudo-domain.
    pub const DOMID_COW: DomId = 0x7FF3;
    /// No domain.
    pub const DOMID_INVALID: DomId = 0x7FF4;
    /// Not defined by Xen 4.17's public headers (a later Xen proposal for
    /// "no specific domain"); do not pass it to a 4.17 hypervisor.
    pub const DOMID_ANY: DomId = 0x7FF5;
    /// The idle domain.
    pub const DOMID_IDLE: DomId = 0x7FFF;
}

/// Hypercall numbers (`__HYPERVISOR_*` in `public/xen.h`).
pub mod hypercall {
    /// `memory_op(cmd, arg)`.
    pub const MEMORY_OP: u32 = 12;
    /// `set_timer_op(absolute_ns)`.
    pub const SET_TIMER_OP: u32 = 15;
    /// `xen_version(cmd, arg)`.
    pub const XEN_VERSION: u32 = 17;
    /// `console_io(cmd, count, buf)`.
    pub const CONSOLE_IO: u32 = 18;
    /// `grant_table_op(cmd, args, count)`.
    pub const GRANT_TABLE_OP: u32 = 20;
    /// `vcpu_op(cmd, vcpuid, arg)`.
    pub const VCPU_OP: u32 = 24;
    /// `sched_op(cmd, arg)`.
    pub const SCHED_OP: u32 = 29;
    /// `event_channel_op(cmd, arg)`.
    pub const EVENT_CHANNEL_OP: u32 = 32;
    /// `hvm_op(op, arg)`.
    pub const HVM_OP: u32 = 34;
}

/// `console_io` commands.
pub mod console_io {
    /// Write bytes to the hypervisor console.
    pub const CONSOLEIO_WRITE: u32 = 0;
    /// Read bytes from the hypervisor console (dom0 only).
    pub const CONSOLEIO_READ: u32 = 1;
}

/// `xen_version` commands and feature bits (`public/version.h`, `public/features.h`).
pub mod version {
    /// Returns `major << 16 | minor`.
    pub const XENVER_VERSION: u32 = 0;
    /// Fills a `char[16]` with the extra version.
    pub const XENVER_EXTRAVERSION: u32 = 1;
    /// Fills a [`XenFeatureInfo`].
    pub const XENVER_GET_FEATURES: u32 = 6;
    /// Feature bit: the guest is auto-translated (PVH/HVM).
    pub const XENFEAT_AUTO_TRANSLATED_PHYSMAP: u32 = 2;
    /// Feature bit: `HVM_PARAM_CALLBACK_IRQ` accepts a vector.
    pub const XENFEAT_HVM_CALLBACK_VECTOR: u32 = 8;
    /// Feature bit: pvclock is safe to use in HVM guests.
    pub const XENFEAT_HVM_SAFE_PVCLOCK: u32 = 9;

    /// `struct xen_feature_info`.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct XenFeatureInfo {
        /// Which 32-bit submap to return.
        pub submap_idx: u32,
        /// The submap (out).
        pub submap: u32,
    }
}

/// ELF note types (`public/elfnote.h`).
pub mod elfnote {
    /// `XEN_ELFNOTE_PHYS32_ENTRY`: the 32-bit physical PVH entry point.
    pub const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
}

/// Xen error numbers (`public/errno.h`): hypercalls return `-errno`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(pub i32);

macro_rules! errnos {
    ($($name:ident = $val:expr),* $(,)?) => {
        impl Errno {
            $(
                #[doc = concat!("`", stringify!($name), "` (", stringify!($val), ").")]
                pub const $name: Errno = Errno($val);
            )*
            /// The symbolic name (`"EINVAL"`), or `None` for an unknown number.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($val => Some(stringify!($name)),)*
                    _ => None,
                }
            }
        }
    };
}

errnos! {
    EPERM = 1, ENOENT = 2, ESRCH = 3, EINTR = 4, EIO = 5, ENXIO = 6, E2BIG = 7,
    ENOEXEC = 8, EBADF = 9, ECHILD = 10, EAGAIN = 11, ENOMEM = 12, EACCES = 13,
    EFAULT = 14, EBUSY = 16, EEXIST = 17, EXDEV = 18, ENODEV = 19, ENOTDIR = 20,
    EISDIR = 21, EINVAL = 22, ENFILE = 23, EMFILE = 24, ENOSPC = 28, EROFS = 30,
    EMLINK = 31, EDOM = 33, ERANGE = 34, EDEADLK = 35, ENAMETOOLONG = 36,
    ENOLCK = 37, ENOSYS = 38, ENOTEMPTY = 39, ENODATA = 61, ETIME = 62,
    EBADMSG = 74, EOVERFLOW = 75, EILSEQ = 84, ERESTART = 85, ENOTSOCK = 88,
    EMSGSIZE = 90, EOPNOTSUPP = 95, EADDRINUSE = 98, EADDRNOTAVAIL = 99,
    ENOBUFS = 105, EISCONN = 106, ENOTCONN = 107, ETIMEDOUT = 110,
    ECONNREFUSED = 111,
}

impl Errno {
    /// Interpret a raw hypercall return value: negative is `-errno`.
    pub fn from_ret(ret: i64) -> Result<i64, Errno> {
        if ret < 0 {
            Err(Errno((-ret) as i32))
        } else {
            Ok(ret)
        }
    }
}

impl core::fmt::Debug for Errno {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{n}"),
            None => write!(f, "Errno({})", self.0),
        }
    }
}

impl core::fmt::Display for Errno {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Debug::fmt(self, f)
    }
}
