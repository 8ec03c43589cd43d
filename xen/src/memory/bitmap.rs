//! A first-fit allocator of contiguous page runs, used for RAM pages in the
//! simulator and for hole frames (foreign mappings) in both backends.

use alloc::vec;
use alloc::vec::Vec;

/// Tracks which of `n` pages are in use; hands out contiguous runs,
/// searching from a rotating cursor so freed runs are not reused at once.
#[derive(Debug)]
pub struct PageBitmap {
    used: Vec<u64>,
    len: usize,
    cursor: usize,
}

impl PageBitmap {
    /// `n` free pages.
    pub fn new(n: usize) -> PageBitmap {
        PageBitmap {
            used: vec![0; n.div_ceil(64)],
            len: n,
            cursor: 0,
        }
    }

    fn get(&self, i: usize) -> bool {
        self.used[i / 64] & (1 << (i % 64)) != 0
    }

    fn set(&mut self, first: usize, n: usize, v: bool) {
        for i in first..first + n {
            if v {
                self.used[i / 64] |= 1 << (i % 64);
            } else {
                self.used[i / 64] &= !(1 << (i % 64));
            }
        }
    }

    /// Allocate `n` contiguous pages; the index of the first.
    pub fn alloc(&mut self, n: usize) -> Option<usize> {
        if n == 0 || n > self.len {
            return None;
        }
        for start in [self.cursor, 0] {
            let mut i = start;
            'search: while i + n <= self.len {
                for j in (i..i + n).rev() {
                    if self.get(j) {
                        i = j + 1;
                        continue 'search;
                    }
                }
                self.set(i, n, true);
                self.cursor = i + n;
                return Some(i);
            }
        }
        None
    }

    /// Mark `n` pages at `first` used (pages the allocator must not hand out).
    pub fn reserve(&mut self, first: usize, n: usize) {
        if first.checked_add(n).is_some_and(|e| e <= self.len) {
            self.set(first, n, true);
        }
    }

    /// Free `n` pages at `first`; out-of-range requests are ignored.
    pub fn free(&mut self, first: usize, n: usize) {
        if first.checked_add(n).is_some_and(|e| e <= self.len) {
            self.set(first, n, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_fit_rotation_and_reuse() {
        let mut b = PageBitmap::new(8);
        assert_eq!(b.alloc(3), Some(0));
        assert_eq!(b.alloc(3), Some(3));
        assert_eq!(b.alloc(3), None);
        b.free(0, 3);
        // The cursor rotates: the tail is used before the freed head.
        assert_eq!(b.alloc(2), Some(6));
        assert_eq!(b.alloc(2), Some(0));
        assert_eq!(b.alloc(0), None);
        b.reserve(2, 1);
        assert_eq!(b.alloc(1), None);
        b.free(7, 5);
        b.reserve(100, 1);
    }

    #[test]
    fn spans_words() {
        let mut b = PageBitmap::new(200);
        assert_eq!(b.alloc(100), Some(0));
        assert_eq!(b.alloc(100), Some(100));
        b.free(50, 100);
        assert_eq!(b.alloc(100), Some(50));
    }
}
