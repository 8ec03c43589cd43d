//! [`Action`]: the value of a rule's `action=` and of the `policy` key.

use core::fmt;
use core::str::FromStr;

use crate::shown::Shown;

/// What a matching rule (or the client's `policy`) does with a new flow.
///
/// `drop` does not mean "drop silently": the Linux qubes-firewall turns it
/// into `reject with icmp(v6) type admin-prohibited`, and so does this crate
/// ([`crate::Verdict::Reject`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// `accept`: let the flow through.
    Accept,
    /// `drop`: block the flow, answering with ICMP administratively
    /// prohibited (Linux parity).
    Drop,
}

impl Action {
    /// Parses the value of an `action=` key or of the `policy` key.
    ///
    /// Only the exact lower-case words dom0 writes are accepted
    /// (`accept`, `drop`); anything else is an error naming the value.
    pub fn parse(value: &str) -> Result<Action, ParseActionError> {
        match value {
            "accept" => Ok(Action::Accept),
            "drop" => Ok(Action::Drop),
            other => Err(ParseActionError {
                found: Shown::new(other),
            }),
        }
    }

    /// The word dom0 writes for this action.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Accept => "accept",
            Action::Drop => "drop",
        }
    }
}

impl FromStr for Action {
    type Err = ParseActionError;

    fn from_str(value: &str) -> Result<Action, ParseActionError> {
        Action::parse(value)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An action value that is neither `accept` nor `drop`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseActionError {
    /// The rejected value, cut to at most [`ParseActionError::MAX_SHOWN`]
    /// bytes (on a character boundary) so an error never holds a huge input.
    found: Shown,
}

impl ParseActionError {
    /// How many bytes of the rejected value an error keeps for display.
    pub const MAX_SHOWN: usize = Shown::MAX;

    /// The rejected value (possibly shortened).
    pub fn found(&self) -> &str {
        self.found.as_str()
    }
}

impl fmt::Display for ParseActionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid action {}: expected \"accept\" or \"drop\"",
            self.found
        )
    }
}

impl core::error::Error for ParseActionError {}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::string::ToString;

    #[test]
    fn parses_the_two_actions() {
        assert_eq!(Action::parse("accept"), Ok(Action::Accept));
        assert_eq!(Action::parse("drop"), Ok(Action::Drop));
        assert_eq!("drop".parse::<Action>(), Ok(Action::Drop));
    }

    #[test]
    fn display_round_trips() {
        for action in [Action::Accept, Action::Drop] {
            assert_eq!(Action::parse(&action.to_string()), Ok(action));
        }
    }

    #[test]
    fn rejects_other_spellings_and_names_the_value() {
        for bad in ["", "Accept", "DROP", "reject", " accept", "accept "] {
            let err = Action::parse(bad).unwrap_err();
            assert_eq!(err.found(), bad);
            assert!(err.to_string().contains(&std::format!("{bad:?}")));
        }
    }

    #[test]
    fn error_keeps_a_bounded_prefix_on_a_char_boundary() {
        let long = "é".repeat(100); // 2 bytes per char
        let err = Action::parse(&long).unwrap_err();
        assert!(err.found().len() <= ParseActionError::MAX_SHOWN);
        assert!(long.starts_with(err.found()));
        assert_eq!(err.found().len(), ParseActionError::MAX_SHOWN);
    }
}
