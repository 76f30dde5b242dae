//! Client-secret expiry: `YYYY-MM-DD` dates and the warnings ahead of them (RC14).
//!
//! Microsoft client secrets live at most 24 months and fail with AADSTS7000222 once expired
//! (docs/troubleshooting.md, "Credentials and token lifetimes"). The configuration records the expiry date (`client_secret_expires`); Intake warns
//! 30, 14 and 3 days ahead and reports the expired state. Dates are civil UTC dates; a secret is
//! treated as expiring at 00:00 UTC of its date, the conservative reading of a date-only value.
//! No date crate is needed for this: [`days_from_civil`] is the classic proleptic-Gregorian
//! day count.

use std::fmt;

use serde::Serialize;

use crate::diagnosis::{Finding, RootCause};

const SECONDS_PER_DAY: i64 = 86_400;

/// Days since 1970-01-01 of a proleptic Gregorian date (negative before 1970). `month` is 1–12.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    // Howard Hinnant's algorithm: years start in March so the leap day is the year's last day.
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let month = i64::from(month);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Parses a strict `YYYY-MM-DD` date into days since the Unix epoch. `None` for anything else
/// (other separators, missing zero padding, impossible dates such as `2026-02-30`).
pub fn parse_date_to_unix_days(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = &text[range];
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())
            .flatten()
    };
    let year = i64::from(digits(0..4)?);
    let month = digits(5..7)?;
    let day = digits(8..10)?;
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    Some(days_from_civil(year, month, day))
}

/// Parses `YYYY-MM-DD` into Unix seconds at 00:00 UTC of that date.
pub fn parse_date_to_unix_seconds(text: &str) -> Option<i64> {
    parse_date_to_unix_days(text).map(|d| d * SECONDS_PER_DAY)
}

/// How close a credential is to its expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpiryStage {
    /// Expires within 30 days.
    Within30Days,
    /// Expires within 14 days.
    Within14Days,
    /// Expires within 3 days.
    Within3Days,
    /// Already expired: token requests fail with AADSTS7000222.
    Expired,
}

/// A warning that a credential expires soon or has expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ExpiryWarning {
    pub stage: ExpiryStage,
    /// Whole days left (rounded down); negative once expired.
    pub days_left: i64,
}

impl ExpiryWarning {
    /// The warning as a finding on `path` (a warning while it is still valid, an error once
    /// expired), with RC14.
    pub fn to_finding(&self, path: &str) -> Finding {
        let message = self.to_string();
        match self.stage {
            ExpiryStage::Expired => Finding::error(Some(RootCause::Rc14), path, message),
            _ => Finding::warning(Some(RootCause::Rc14), path, message),
        }
    }
}

impl fmt::Display for ExpiryWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.stage {
            ExpiryStage::Expired => write!(
                f,
                "the client secret expired {} day(s) ago; token requests fail with AADSTS7000222",
                -self.days_left
            ),
            _ if self.days_left == 0 => f.write_str("the client secret expires within a day"),
            _ => write!(f, "the client secret expires in {} day(s)", self.days_left),
        }
    }
}

/// The warning due at `now_unix` for a credential expiring at `expires_unix` (both Unix
/// seconds): `None` more than 30 days ahead, then the 30-, 14- and 3-day stages, then expired.
pub fn expiry_warning(expires_unix: i64, now_unix: i64) -> Option<ExpiryWarning> {
    let remaining = expires_unix.saturating_sub(now_unix);
    let days_left = remaining.div_euclid(SECONDS_PER_DAY);
    let stage = if remaining <= 0 {
        ExpiryStage::Expired
    } else if remaining <= 3 * SECONDS_PER_DAY {
        ExpiryStage::Within3Days
    } else if remaining <= 14 * SECONDS_PER_DAY {
        ExpiryStage::Within14Days
    } else if remaining <= 30 * SECONDS_PER_DAY {
        ExpiryStage::Within30Days
    } else {
        return None;
    };
    Some(ExpiryWarning { stage, days_left })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_days_match_known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        // 2026-05-01T00:00:00Z = 1777593600
        assert_eq!(days_from_civil(2026, 5, 1) * 86_400, 1_777_593_600);
        assert_eq!(
            days_from_civil(2024, 2, 29) + 1,
            days_from_civil(2024, 3, 1)
        );
    }

    #[test]
    fn parse_is_strict() {
        assert_eq!(parse_date_to_unix_days("1970-01-02"), Some(1));
        assert_eq!(
            parse_date_to_unix_seconds("2026-05-01"),
            Some(1_777_593_600)
        );
        assert_eq!(parse_date_to_unix_days("2024-02-29"), Some(19_782));
        for bad in [
            "2025-02-29",
            "2026-13-01",
            "2026-00-10",
            "2026-04-31",
            "2026-4-01",
            "2026/04/01",
            "26-04-01",
            "2026-04-01T00:00:00Z",
            "+026-04-01",
            "",
        ] {
            assert_eq!(parse_date_to_unix_days(bad), None, "{bad}");
        }
    }

    #[test]
    fn stages_ahead_of_expiry() {
        let day = 86_400;
        let exp = 1_000 * day;
        assert_eq!(expiry_warning(exp, exp - 31 * day), None);
        assert_eq!(expiry_warning(exp, exp - 30 * day - 1), None);
        let w = |now| expiry_warning(exp, now).unwrap();
        assert_eq!(w(exp - 30 * day).stage, ExpiryStage::Within30Days);
        assert_eq!(w(exp - 30 * day).days_left, 30);
        assert_eq!(w(exp - 15 * day).stage, ExpiryStage::Within30Days);
        assert_eq!(w(exp - 14 * day).stage, ExpiryStage::Within14Days);
        assert_eq!(w(exp - 4 * day).stage, ExpiryStage::Within14Days);
        assert_eq!(w(exp - 3 * day).stage, ExpiryStage::Within3Days);
        assert_eq!(w(exp - 1).stage, ExpiryStage::Within3Days);
        assert_eq!(w(exp - 1).days_left, 0);
        assert_eq!(w(exp).stage, ExpiryStage::Expired);
        assert_eq!(w(exp + 2 * day).days_left, -2);
    }

    #[test]
    fn findings_carry_rc14() {
        let f = expiry_warning(10 * 86_400, 0)
            .unwrap()
            .to_finding("integration.client_secret");
        assert_eq!(f.cause, Some(RootCause::Rc14));
        assert!(!f.is_error());
        assert!(f.message.contains("10 day"), "{}", f.message);
        let e = expiry_warning(0, 86_400)
            .unwrap()
            .to_finding("integration.client_secret");
        assert!(e.is_error());
        assert!(e.message.contains("AADSTS7000222"));
    }
}
