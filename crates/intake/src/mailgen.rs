//! Synthetic, realistic mail for benchmarks and crash tests: deterministic for a seed.
//!
//! Messages are 2–50 KB (most small, a long tail of big ones), from a pool of customers; about a
//! fifth are replies (`Re:` subject, In-Reply-To/References to an earlier message, quoted text),
//! a third carry an HTML alternative and about one in ten an attachment. Every new-ticket subject
//! is unique, so tests can check that no ticket was created twice.

use std::io::{self, Write};
use std::path::Path;

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenOptions {
    pub messages: usize,
    pub seed: u64,
    pub reply_percent: u64,
    pub attachment_percent: u64,
}

impl Default for GenOptions {
    fn default() -> Self {
        Self {
            messages: 10_000,
            seed: 42,
            reply_percent: 20,
            attachment_percent: 10,
        }
    }
}

/// What was generated: the expected outcome of a clean ingest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GenStats {
    pub messages: u64,
    pub bytes: u64,
    pub new_tickets: u64,
    pub replies: u64,
    pub attachments: u64,
}

/// xorshift64*: small, fast, deterministic; not for anything secret.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

const WORDS: &[&str] = &[
    "printer",
    "invoice",
    "password",
    "reset",
    "laptop",
    "access",
    "VPN",
    "account",
    "error",
    "order",
    "delivery",
    "refund",
    "cannot",
    "login",
    "since",
    "yesterday",
    "please",
    "urgent",
    "update",
    "server",
    "screen",
    "meeting",
    "room",
    "license",
    "install",
    "email",
    "phone",
    "broken",
    "again",
    "thanks",
    "the",
    "a",
    "is",
    "not",
    "working",
    "when",
    "I",
    "try",
    "to",
    "open",
    "our",
    "team",
    "and",
    "it",
    "shows",
];

const BASE_DATE: i64 = 1_790_000_000; // 2026-09-21

fn rfc2822(t: i64) -> String {
    // Civil-from-days (Howard Hinnant), enough for a Date header.
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let wd = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][days.rem_euclid(7) as usize];
    let mon = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(m - 1) as usize];
    format!(
        "{wd}, {d:02} {mon} {y} {:02}:{:02}:{:02} +0000",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

fn paragraph(rng: &mut Rng, bytes: usize) -> String {
    let mut s = String::with_capacity(bytes + 80);
    let mut col = 0;
    while s.len() < bytes {
        let w = WORDS[rng.below(WORDS.len() as u64) as usize];
        s.push_str(w);
        col += w.len() + 1;
        if col > 72 {
            s.push_str("\r\n");
            col = 0;
        } else {
            s.push(' ');
        }
    }
    s.push_str("\r\n");
    s
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len() * 4 / 3 + data.len() / 57 * 2 + 4);
    for (i, c) in data.chunks(3).enumerate() {
        if i > 0 && i % 19 == 0 {
            out.push_str("\r\n");
        }
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for k in 0..4 {
            if k <= c.len() {
                out.push(char::from(T[((n >> (18 - 6 * k)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

struct Sent {
    id: String,
    subject: String,
    cust: u64,
}

/// Generate messages one by one, calling `f(index, bytes)` for each.
pub fn generate(
    opts: &GenOptions,
    mut f: impl FnMut(usize, Vec<u8>) -> io::Result<()>,
) -> io::Result<GenStats> {
    let mut rng = Rng(opts.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut sent: Vec<Sent> = Vec::new();
    let mut st = GenStats::default();
    for i in 0..opts.messages {
        let t = BASE_DATE + i as i64 * 30;
        let cust = rng.below(500);
        let reply_to = (!sent.is_empty() && rng.below(100) < opts.reply_percent)
            .then(|| &sent[sent.len() - 1 - rng.below(sent.len().min(200) as u64) as usize]);
        // A reply comes from the customer who opened the ticket (the default `reply_policy`
        // makes anyone else's reply a new ticket).
        let cust = reply_to.map_or(cust, |o| o.cust);
        let from = format!("Customer {cust} <user{cust}@customer{}.example>", cust % 37);
        let id = format!("gen{}.{i}@customer{}.example", opts.seed, cust % 37);
        // Size: mostly 2-8 KB, a tail up to 50 KB.
        let size = if rng.below(10) < 8 {
            2_000 + rng.below(6_000)
        } else {
            8_000 + rng.below(42_000)
        } as usize;
        let attach = rng.below(100) < opts.attachment_percent;
        let html = !attach && rng.below(3) == 0;
        // Aim the whole message at `size`: headers take about 800 bytes, an HTML alternative
        // repeats the text, a base64 attachment of size/4 bytes takes about size/3.
        let text_len = match (attach, html) {
            (true, _) => size - 800 - size / 3,
            (false, true) => (size - 1000) / 2,
            (false, false) => size - 800,
        };
        let mut text = paragraph(&mut rng, text_len);
        let (subject, threading) = match reply_to {
            Some(orig) => {
                st.replies += 1;
                text.push_str(&format!("\r\nOn {}, Help Desk <help@example.com> wrote:\r\n> We are looking into it.\r\n> Regards\r\n", rfc2822(t - 600)));
                (
                    format!("Re: {}", orig.subject),
                    format!(
                        "In-Reply-To: <{}>\r\nReferences: <{}>\r\n",
                        orig.id, orig.id
                    ),
                )
            }
            None => {
                st.new_tickets += 1;
                let w1 = WORDS[rng.below(20) as usize];
                let w2 = WORDS[rng.below(20) as usize];
                (format!("Ticket {i}: {w1} {w2} problem"), String::new())
            }
        };
        let mut msg = format!(
            "Return-Path: <user{cust}@customer{}.example>\r\nReceived: from mx.customer{}.example (mx.customer{}.example [192.0.2.{}])\r\n\tby mail.example.com with ESMTPS id {i:08x}; {}\r\n\
             From: {from}\r\nTo: Help Desk <help@example.com>\r\nSubject: {subject}\r\nDate: {}\r\nMessage-ID: <{id}>\r\n{threading}\
             MIME-Version: 1.0\r\nX-Mailer: Microsoft Outlook 16.0\r\n",
            cust % 37,
            cust % 37,
            cust % 37,
            cust % 250 + 1,
            rfc2822(t),
            rfc2822(t)
        );
        let b = format!("=_gen_{i}_b");
        if attach {
            st.attachments += 1;
            msg.push_str(&format!("Content-Type: multipart/mixed; boundary=\"{b}\"\r\n\r\n--{b}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n--{b}\r\n"));
            let data: Vec<u8> = (0..(size / 3).max(1000))
                .map(|_| rng.next() as u8)
                .collect();
            msg.push_str(&format!("Content-Type: application/pdf; name=\"report-{i}.pdf\"\r\nContent-Disposition: attachment; filename=\"report-{i}.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--{b}--\r\n", base64(&data)));
        } else if html {
            let h = text.replace("\r\n", "<br>\r\n");
            msg.push_str(&format!("Content-Type: multipart/alternative; boundary=\"{b}\"\r\n\r\n--{b}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n--{b}\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body><p>{h}</p></body></html>\r\n--{b}--\r\n"));
        } else {
            msg.push_str(&format!("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{text}"));
        }
        if reply_to.is_none() {
            sent.push(Sent {
                id: id.clone(),
                subject,
                cust,
            });
        }
        st.messages += 1;
        st.bytes += msg.len() as u64;
        f(i, msg.into_bytes())?;
    }
    Ok(st)
}

/// Generate into a Maildir at `dir` (creating `cur/`, `new/`, `tmp/`); messages land in `new/`.
pub fn write_maildir(dir: &Path, opts: &GenOptions) -> io::Result<GenStats> {
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    generate(opts, |i, bytes| {
        let name = format!("{}.M{i:07}P1.gen", BASE_DATE + i as i64 * 30);
        let mut f = std::fs::File::create(dir.join("new").join(name))?;
        f.write_all(&bytes)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_deterministic_and_sized() {
        let opts = GenOptions {
            messages: 300,
            ..Default::default()
        };
        let mut a = Vec::new();
        let st = generate(&opts, |_, m| {
            a.push(m);
            Ok(())
        })
        .unwrap();
        let mut b = Vec::new();
        generate(&opts, |_, m| {
            b.push(m);
            Ok(())
        })
        .unwrap();
        assert_eq!(a, b);
        assert_eq!(st.messages, 300);
        assert_eq!(st.new_tickets + st.replies, 300);
        assert!(st.replies > 20 && st.attachments > 10, "{st:?}");
        assert!(
            a.iter().all(|m| (1_500..60_000).contains(&m.len())),
            "sizes"
        );
        assert_eq!(rfc2822(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc2822(1_790_000_000), "Mon, 21 Sep 2026 14:13:20 +0000");
    }
}
