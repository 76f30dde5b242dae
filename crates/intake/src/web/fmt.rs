//! Small formatting helpers for the pages: times in UTC, byte sizes, relative ages.

/// `2026-12-06 04:31 UTC` for Unix seconds.
pub fn time(t: i64) -> String {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let (y, m, d) = civil(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        secs / 3600,
        secs % 3600 / 60
    )
}

/// `3 min ago`, `5 h ago`, `2 d ago` (or `in …` for the future).
pub fn ago(t: i64, now: i64) -> String {
    let d = now - t;
    let (n, future) = if d < 0 { (-d, true) } else { (d, false) };
    let s = match n {
        0..60 => format!("{n} s"),
        60..3600 => format!("{} min", n / 60),
        3600..172_800 => format!("{} h", n / 3600),
        _ => format!("{} d", n / 86_400),
    };
    if future {
        format!("in {s}")
    } else {
        format!("{s} ago")
    }
}

/// `1.2 MB`, `340 KB`, `12 B`.
pub fn bytes(n: i64) -> String {
    match n {
        ..1_000 => format!("{n} B"),
        1_000..1_000_000 => format!("{} KB", n / 1_000),
        _ => format!("{:.1} MB", n as f64 / 1e6),
    }
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_sizes_and_ages_read_right() {
        assert_eq!(time(0), "1970-01-01 00:00 UTC");
        assert_eq!(time(1_796_444_700), "2026-12-05 04:25 UTC");
        assert_eq!(time(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(bytes(999), "999 B");
        assert_eq!(bytes(34_000), "34 KB");
        assert_eq!(bytes(1_250_000), "1.2 MB");
        assert_eq!(ago(100, 100), "0 s ago");
        assert_eq!(ago(0, 7200), "2 h ago");
        assert_eq!(ago(0, 3 * 86_400), "3 d ago");
        assert_eq!(ago(600, 0), "in 10 min");
    }
}
