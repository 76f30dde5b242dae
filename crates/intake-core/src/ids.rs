//! Project and ticket keys: `HELP` and `HELP-12`.
//!
//! A project key is 2–10 ASCII letters/digits starting with a letter, upper case (Jira's rule);
//! a ticket key is a project key, a dash and a positive number. Parsing upper-cases, so
//! `intake tickets show help-12` finds `HELP-12`; keys *in subjects* are matched in upper case
//! only (see `intake-mime`'s `thread` module), so ordinary words like `re-2` never thread.

use std::fmt;
use std::str::FromStr;

/// Why a key did not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("project key {0:?} must be 2-10 letters or digits starting with a letter")]
    Project(String),
    #[error("ticket key {0:?} must look like KEY-123")]
    Ticket(String),
}

/// A project key such as `HELP`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProjectKey(String);

impl ProjectKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ProjectKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        let up = s.trim().to_ascii_uppercase();
        let ok = (2..=10).contains(&up.len())
            && up.starts_with(|c: char| c.is_ascii_alphabetic())
            && up.chars().all(|c| c.is_ascii_alphanumeric());
        if ok {
            Ok(Self(up))
        } else {
            Err(KeyError::Project(s.to_string()))
        }
    }
}

impl fmt::Display for ProjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A ticket key such as `HELP-12`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TicketKey {
    pub project: ProjectKey,
    pub number: i64,
}

impl TicketKey {
    pub fn new(project: ProjectKey, number: i64) -> Self {
        Self { project, number }
    }
}

impl FromStr for TicketKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        let err = || KeyError::Ticket(s.to_string());
        let (p, n) = s.trim().rsplit_once('-').ok_or_else(err)?;
        let project = p.parse::<ProjectKey>().map_err(|_| err())?;
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) || n.starts_with('0') {
            return Err(err());
        }
        let number = n.parse::<i64>().map_err(|_| err())?;
        Ok(Self { project, number })
    }
}

impl fmt::Display for TicketKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.project, self.number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticket_keys_round_trip_and_reject_junk() {
        let k: TicketKey = "help-12".parse().unwrap();
        assert_eq!(k.to_string(), "HELP-12");
        assert_eq!(k.number, 12);
        for bad in [
            "HELP", "HELP-", "HELP-0", "HELP-01", "1HELP-2", "H-2", "HELP-x", "-3",
        ] {
            assert!(bad.parse::<TicketKey>().is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn project_keys_are_upper_cased_and_bounded() {
        assert_eq!("ops2".parse::<ProjectKey>().unwrap().as_str(), "OPS2");
        assert!("averyveryverylongkey".parse::<ProjectKey>().is_err());
        assert!("A".parse::<ProjectKey>().is_err());
        assert!("HE LP".parse::<ProjectKey>().is_err());
    }
}
