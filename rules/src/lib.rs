//! Qubes firewall rules: rule lines as dom0 writes them to QubesDB
//! (`/qubes-firewall/<ip>/NNNN`) parsed into typed rules, grouped into a
//! per-client rule set that decides on a flow.
//!
//! This crate is pure: it knows nothing of Xen, rings or packets in memory.
//! Unknown or malformed input is an error that says what was wrong, and the
//! caller fails closed (the client's traffic is blocked).
//!
//! Status: placeholder for the rules milestone. Only the rule action is here
//! so far: [`Action`], the value of the `action=` key that every rule line
//! starts with.
#![no_std]
#![deny(unsafe_code)]

extern crate alloc;

use alloc::string::String;
use core::fmt;
use core::str::FromStr;

/// What a matching rule (or the client's `policy`) does with a new flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// `accept`: let the flow through.
    Accept,
    /// `drop`: block the flow (the Linux agent rejects with ICMP
    /// administratively prohibited; plain dropping is acceptable).
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
            other => Err(ParseActionError::new(other)),
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
    found: String,
}

impl ParseActionError {
    /// How many bytes of the rejected value an error keeps for display.
    pub const MAX_SHOWN: usize = 32;

    fn new(value: &str) -> ParseActionError {
        let mut end = value.len().min(Self::MAX_SHOWN);
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        ParseActionError {
            found: String::from(&value[..end]),
        }
    }

    /// The rejected value (possibly shortened).
    pub fn found(&self) -> &str {
        &self.found
    }
}

impl fmt::Display for ParseActionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid action {:?}: expected \"accept\" or \"drop\"",
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
