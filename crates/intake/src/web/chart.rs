//! Messages per hour over the last 7 days as a small inline SVG bar chart, rendered by the
//! server (no script, no image request). The numbers are also in the SVG's title and in a
//! text summary next to it, for screen readers.

/// Hours in the chart.
pub const HOURS: usize = 7 * 24;

/// An SVG of `counts` (oldest hour first, [`HOURS`] values). `label` names the channel.
pub fn hourly_svg(label: &str, counts: &[i64]) -> String {
    let max = counts.iter().copied().max().unwrap_or(0).max(1);
    let total: i64 = counts.iter().sum();
    let (w, h) = (2 * HOURS, 40usize);
    let mut s = format!(
        r#"<svg class="chart" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="{}"><title>{}</title>"#,
        esc(&format!(
            "{label}: {total} messages in 7 days, at most {max} in one hour"
        )),
        esc(&format!("{label}: messages per hour, last 7 days")),
    );
    s.push_str(&format!(
        r#"<line x1="0" y1="{y}" x2="{w}" y2="{y}" class="axis"/>"#,
        y = h - 1
    ));
    for (i, c) in counts.iter().enumerate() {
        if *c <= 0 {
            continue;
        }
        let bh = ((*c as f64 / max as f64) * (h as f64 - 2.0))
            .ceil()
            .max(1.0) as usize;
        s.push_str(&format!(
            r#"<rect x="{}" y="{}" width="2" height="{bh}" class="bar"/>"#,
            i * 2,
            h - 1 - bh
        ));
    }
    s.push_str("</svg>");
    s
}

/// Counts per hour for the [`HOURS`] hours ending with the one holding `now`, from
/// `(hour number since the epoch, count)` pairs.
pub fn per_hour(now: i64, rows: &[(i64, i64)]) -> Vec<i64> {
    let last = now.div_euclid(3600);
    let first = last - HOURS as i64 + 1;
    let mut v = vec![0; HOURS];
    for (hour, n) in rows {
        if (first..=last).contains(hour) {
            v[(hour - first) as usize] += n;
        }
    }
    v
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_outside_the_week_are_left_out_and_bars_scale_to_the_busiest_hour() {
        let now = 1_000 * 3600 + 59;
        let v = per_hour(now, &[(1_000, 4), (999, 2), (1_000 - 168, 9), (1_001, 7)]);
        assert_eq!(v.len(), HOURS);
        assert_eq!(v[HOURS - 1], 4);
        assert_eq!(v[HOURS - 2], 2);
        assert_eq!(v.iter().sum::<i64>(), 6);
        let svg = hourly_svg("a<b", &v);
        assert_eq!(svg.matches("<rect").count(), 2);
        assert!(svg.contains("height=\"38\""), "{svg}");
        assert!(svg.contains("a&lt;b: 6 messages in 7 days"), "{svg}");
        assert!(!svg.contains("a<b"));
    }
}
