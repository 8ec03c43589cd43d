//! Host memory for the simulated hypervisor: page backing with real
//! aliasing.
//!
//! Each simulated domain owns a reserved range of host address space that
//! stands for its guest-physical address space. Its RAM is a `memfd`, mapped
//! shared into that range; Xen-owned pages (shared info, grant table frames)
//! live in a second `memfd` per domain. Placing a page at a GFN
//! (`XENMEM_add_to_physmap`, `GNTTABOP_map_grant_ref`) maps the backing
//! file's page over the GFN with `MAP_FIXED | MAP_SHARED`, so the mapping
//! *aliases* the original page: a write on one side is seen on the other,
//! exactly as with Xen. Unmapping puts an inaccessible reservation back,
//! so a stale access faults instead of reading stale data.

use core::ptr::NonNull;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::SharedMem;
use crate::abi::PAGE_SIZE;

/// A shareable, page-granular memory object (`memfd_create`).
#[derive(Debug)]
pub struct Backing {
    fd: OwnedFd,
    pages: usize,
    /// The whole object mapped once, for Xen's (the simulator's) own access.
    view: Mapping,
}

impl Backing {
    /// A zero-filled object of `pages` pages.
    pub fn new(name: &str, pages: usize) -> io::Result<Backing> {
        let cname = std::ffi::CString::new(name).map_err(|_| io::ErrorKind::InvalidInput)?;
        // SAFETY: plain syscall with a valid NUL-terminated name.
        let fd = unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let len = pages * PAGE_SIZE;
        // SAFETY: plain syscall on our own descriptor.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let view = Mapping::map_file(&fd, 0, len)?;
        Ok(Backing { fd, pages, view })
    }

    /// Number of pages.
    pub fn pages(&self) -> usize {
        self.pages
    }

    /// The simulator's view of page `i`.
    pub fn page(&self, i: usize) -> SharedMem {
        self.view.mem().page(i)
    }

    /// The simulator's view of the whole object.
    pub fn mem(&self) -> SharedMem {
        self.view.mem()
    }
}

/// A private mapping of a whole backing file, unmapped on drop.
#[derive(Debug)]
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory; all access goes through
// `SharedMem` (volatile/atomic), and unmapping happens only on drop, when
// no other owner exists.
unsafe impl Send for Mapping {}
// SAFETY: as for `Send`.
unsafe impl Sync for Mapping {}

impl Mapping {
    fn map_file(fd: &OwnedFd, offset: usize, len: usize) -> io::Result<Mapping> {
        // SAFETY: a fresh shared mapping of our own file descriptor at an
        // address the kernel chooses; no existing memory is affected.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                offset as libc::off_t,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping {
            ptr: NonNull::new(p as *mut u8).expect("mmap returned null"),
            len,
        })
    }

    fn mem(&self) -> SharedMem {
        // SAFETY: the mapping lives as long as `self`; users hold the owner
        // (`Backing`) alive while they use the view, and all access is
        // volatile/atomic through `SharedMem`.
        unsafe { SharedMem::from_raw(self.ptr, self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the range this object mapped.
        unsafe { libc::munmap(self.ptr.as_ptr() as *mut libc::c_void, self.len) };
    }
}

/// A reserved range of host address space standing for one domain's
/// guest-physical address space. Nothing is accessible until a backing page
/// is placed with [`AddressSpace::place`].
#[derive(Debug)]
pub struct AddressSpace {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: see `Mapping`: the range is only accessed through `SharedMem`.
unsafe impl Send for AddressSpace {}
// SAFETY: as for `Send`.
unsafe impl Sync for AddressSpace {}

impl AddressSpace {
    /// Reserve `len` bytes (a multiple of the page size) of address space.
    pub fn reserve(len: usize) -> io::Result<AddressSpace> {
        // SAFETY: a fresh inaccessible anonymous reservation at an address
        // the kernel chooses.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(AddressSpace {
            base: NonNull::new(p as *mut u8).expect("mmap returned null"),
            len,
        })
    }

    /// Size of the space in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if the space is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn check(&self, gpa: usize, len: usize) -> io::Result<*mut libc::c_void> {
        if gpa % PAGE_SIZE != 0
            || len % PAGE_SIZE != 0
            || gpa.checked_add(len).is_none_or(|e| e > self.len)
        {
            return Err(io::ErrorKind::InvalidInput.into());
        }
        // SAFETY: in bounds of the reservation (checked above).
        Ok(unsafe { self.base.as_ptr().add(gpa) } as *mut libc::c_void)
    }

    /// Map `pages` pages of `backing`, starting at backing page `first`, at
    /// guest-physical address `gpa`, replacing whatever was there.
    pub fn place(
        &self,
        gpa: usize,
        backing: &Backing,
        first: usize,
        pages: usize,
    ) -> io::Result<()> {
        if first + pages > backing.pages {
            return Err(io::ErrorKind::InvalidInput.into());
        }
        let len = pages * PAGE_SIZE;
        let at = self.check(gpa, len)?;
        // SAFETY: `at..at+len` lies inside our own reservation (checked), so
        // MAP_FIXED replaces only memory this object owns; the file range is
        // inside the backing object (checked).
        let p = unsafe {
            libc::mmap(
                at,
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_FIXED,
                backing.fd.as_raw_fd(),
                (first * PAGE_SIZE) as libc::off_t,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Make `pages` pages at `gpa` inaccessible again.
    pub fn clear(&self, gpa: usize, pages: usize) -> io::Result<()> {
        let len = pages * PAGE_SIZE;
        let at = self.check(gpa, len)?;
        // SAFETY: replaces only a range of our own reservation (checked)
        // with a fresh inaccessible anonymous mapping.
        let p = unsafe {
            libc::mmap(
                at,
                len,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// A view of `len` bytes at `gpa`. The caller keeps the placed pages
    /// mapped while it uses the view.
    pub fn mem(&self, gpa: usize, len: usize) -> Option<SharedMem> {
        if gpa.checked_add(len).is_none_or(|e| e > self.len) {
            return None;
        }
        // SAFETY: in bounds of the reservation, which lives as long as the
        // domain; accessing a range with nothing placed faults (PROT_NONE)
        // rather than touching foreign memory.
        let p = unsafe { NonNull::new_unchecked(self.base.as_ptr().add(gpa)) };
        // SAFETY: see above; every access is through `SharedMem`.
        Some(unsafe { SharedMem::from_raw(p, len) })
    }
}

impl Drop for AddressSpace {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly our own reservation.
        unsafe { libc::munmap(self.base.as_ptr() as *mut libc::c_void, self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placed_pages_alias_the_backing() {
        let b = Backing::new("t", 4).unwrap();
        let a1 = AddressSpace::reserve(16 * PAGE_SIZE).unwrap();
        let a2 = AddressSpace::reserve(16 * PAGE_SIZE).unwrap();
        a1.place(0, &b, 0, 4).unwrap();
        a2.place(8 * PAGE_SIZE, &b, 2, 1).unwrap();
        let m1 = a1.mem(2 * PAGE_SIZE, PAGE_SIZE).unwrap();
        let m2 = a2.mem(8 * PAGE_SIZE, PAGE_SIZE).unwrap();
        m1.write_u64(16, 0x1234);
        assert_eq!(m2.read_u64(16), 0x1234);
        m2.write_u8(0, 9);
        assert_eq!(b.page(2).read_u8(0), 9);
        a2.clear(8 * PAGE_SIZE, 1).unwrap();
        assert!(a2.place(15 * PAGE_SIZE, &b, 0, 2).is_err());
        assert!(a2.place(0, &b, 3, 2).is_err());
    }
}
