//! [`Shown`]: a bounded copy of untrusted text, kept inside errors.
//!
//! Errors name the value that was wrong, but a value comes from QubesDB and
//! can be long (dom0 allows 3072 bytes per entry) or contain control
//! characters. An error therefore keeps at most [`Shown::MAX`] bytes (cut on
//! a character boundary) and always displays the text quoted and escaped,
//! so a log line can never be forged or flooded through an error message.

use alloc::string::String;
use core::fmt;

/// At most [`Shown::MAX`] bytes of an untrusted string, for error messages.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Shown {
    text: String,
    truncated: bool,
}

impl Shown {
    /// How many bytes of the original text are kept.
    pub const MAX: usize = 64;

    /// Copies at most [`Shown::MAX`] bytes of `text`, on a char boundary.
    pub fn new(text: &str) -> Shown {
        let mut end = text.len().min(Self::MAX);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        Shown {
            text: String::from(&text[..end]),
            truncated: end < text.len(),
        }
    }

    /// The kept text (a prefix of the original).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the original was longer than what is kept.
    pub fn is_truncated(&self) -> bool {
        self.truncated
    }
}

/// Quoted and escaped (Rust string literal syntax), with `...` after the
/// closing quote when the original was cut.
impl fmt::Display for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.text)?;
        if self.truncated {
            f.write_str("...")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::string::ToString;

    #[test]
    fn short_text_is_kept_whole() {
        let s = Shown::new("dstports");
        assert_eq!(s.as_str(), "dstports");
        assert!(!s.is_truncated());
        assert_eq!(s.to_string(), "\"dstports\"");
    }

    #[test]
    fn long_text_is_cut_on_a_char_boundary() {
        let long = "é".repeat(100);
        let s = Shown::new(&long);
        assert!(s.as_str().len() <= Shown::MAX);
        assert!(long.starts_with(s.as_str()));
        assert!(s.is_truncated());
        assert!(s.to_string().ends_with("\"..."));
    }

    #[test]
    fn control_characters_are_escaped() {
        let s = Shown::new("a\nb\u{1b}[0m");
        let shown = s.to_string();
        assert!(!shown.contains('\n'));
        assert!(!shown.contains('\u{1b}'));
    }
}
