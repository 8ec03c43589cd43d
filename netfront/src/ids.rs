//! A table of request ids: each outstanding id carries a value, a free id
//! is handed out only after its response took it back, so an id is never
//! outstanding twice. Sized once; never allocates afterwards.

use alloc::vec::Vec;
use core::fmt;

/// Why an id named by a peer was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdError {
    /// The id is beyond the table (`id >= capacity`).
    OutOfRange {
        /// The id.
        id: u16,
        /// Ids in the table.
        capacity: usize,
    },
    /// The id is in range but not outstanding (never issued, or already
    /// answered: a duplicate response).
    NotOutstanding {
        /// The id.
        id: u16,
    },
}

impl fmt::Display for IdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdError::OutOfRange { id, capacity } => {
                write!(f, "id {id} beyond the {capacity} ids in use")
            }
            IdError::NotOutstanding { id } => write!(f, "id {id} is not outstanding"),
        }
    }
}

/// Outstanding ids `0..capacity` with a value each.
#[derive(Debug)]
pub struct IdTable<T> {
    entries: Vec<Option<T>>,
    /// Free ids, used as a stack.
    free: Vec<u16>,
}

impl<T> IdTable<T> {
    /// A table of ids `0..capacity` (at most 65536), all free.
    ///
    /// # Panics
    /// If `capacity` exceeds 65536 (a caller bug).
    pub fn new(capacity: usize) -> IdTable<T> {
        assert!(capacity <= 1 << 16, "ids are 16-bit");
        let mut entries = Vec::with_capacity(capacity);
        entries.resize_with(capacity, || None);
        IdTable {
            entries,
            // Pop from the end: hand out low ids first.
            free: (0..capacity).rev().map(|i| i as u16).collect(),
        }
    }

    /// Ids in the table.
    pub fn capacity(&self) -> usize {
        self.entries.len()
    }

    /// Ids free now.
    pub fn available(&self) -> usize {
        self.free.len()
    }

    /// Ids outstanding now.
    pub fn outstanding(&self) -> usize {
        self.capacity() - self.available()
    }

    /// Issue a free id carrying `value`; `Err(value)` when
    /// every id is outstanding.
    pub fn alloc(&mut self, value: T) -> Result<u16, T> {
        match self.free.pop() {
            Some(id) => {
                self.entries[usize::from(id)] = Some(value);
                Ok(id)
            }
            None => Err(value),
        }
    }

    /// Whether `id` is outstanding.
    pub fn is_outstanding(&self, id: u16) -> bool {
        matches!(self.entries.get(usize::from(id)), Some(Some(_)))
    }

    /// The value of an outstanding id.
    pub fn get(&self, id: u16) -> Option<&T> {
        self.entries.get(usize::from(id))?.as_ref()
    }

    /// The value of an outstanding id, mutable.
    pub fn get_mut(&mut self, id: u16) -> Option<&mut T> {
        self.entries.get_mut(usize::from(id))?.as_mut()
    }

    /// Take an outstanding id back (its response arrived): the id is free
    /// again and its value returned.
    pub fn take(&mut self, id: u16) -> Result<T, IdError> {
        let capacity = self.capacity();
        let slot = self
            .entries
            .get_mut(usize::from(id))
            .ok_or(IdError::OutOfRange { id, capacity })?;
        let v = slot.take().ok_or(IdError::NotOutstanding { id })?;
        self.free.push(id);
        Ok(v)
    }

    /// Free every outstanding id, handing each value to `f` (teardown).
    pub fn drain(&mut self, mut f: impl FnMut(u16, T)) {
        for (i, e) in self.entries.iter_mut().enumerate() {
            if let Some(v) = e.take() {
                self.free.push(i as u16);
                f(i as u16, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_until_taken_back() {
        let mut t = IdTable::new(4);
        let a = t.alloc('a').unwrap();
        let b = t.alloc('b').unwrap();
        let c = t.alloc('c').unwrap();
        let d = t.alloc('d').unwrap();
        let mut all = [a, b, c, d];
        all.sort_unstable();
        assert_eq!(all, [0, 1, 2, 3]);
        assert_eq!(t.alloc('e'), Err('e'));
        assert_eq!(t.outstanding(), 4);
        assert_eq!(t.take(b), Ok('b'));
        assert!(!t.is_outstanding(b));
        // The freed id is the only one available: never an outstanding one.
        assert_eq!(t.alloc('f'), Ok(b));
        assert_eq!(t.get(b), Some(&'f'));
        *t.get_mut(a).unwrap() = 'A';
        assert_eq!(t.take(a), Ok('A'));
    }

    #[test]
    fn bad_ids_are_refused() {
        let mut t: IdTable<u8> = IdTable::new(256);
        assert_eq!(
            t.take(256),
            Err(IdError::OutOfRange {
                id: 256,
                capacity: 256
            })
        );
        assert_eq!(
            t.take(u16::MAX),
            Err(IdError::OutOfRange {
                id: u16::MAX,
                capacity: 256
            })
        );
        // Never issued.
        assert_eq!(t.take(5), Err(IdError::NotOutstanding { id: 5 }));
        let id = t.alloc(1).unwrap();
        assert_eq!(t.take(id), Ok(1));
        // Duplicate response.
        assert_eq!(t.take(id), Err(IdError::NotOutstanding { id }));
        assert_eq!(t.available(), 256);
        assert_eq!(t.get(300), None);
    }

    #[test]
    fn drain_frees_everything() {
        let mut t = IdTable::new(8);
        for v in 0..5 {
            t.alloc(v).unwrap();
        }
        t.take(2).unwrap();
        let mut seen = alloc::vec::Vec::new();
        t.drain(|id, v| seen.push((id, v)));
        seen.sort_unstable();
        assert_eq!(seen, [(0, 0), (1, 1), (3, 3), (4, 4)]);
        assert_eq!(t.available(), 8);
        assert_eq!(t.outstanding(), 0);
    }
}
