//! Local mail sources: `.eml` files, Maildir folders (`cur/` and `new/`) and mbox files.
//!
//! The mbox reader is our own (about 60 lines) rather than mail-parser's: a `From ` line only
//! starts a new message at the start of the file or after a blank line (so an unescaped `From `
//! inside a body of an mboxo file does not split the message), and `>From `-escaped lines
//! (mboxrd, and mboxo's one level) lose one `>`. Messages are streamed, never the whole file in
//! memory.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// One thing to read: a file holding one message, or an mbox file holding many.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Message(PathBuf),
    Mbox(PathBuf),
}

/// A raw message and where it came from (for logs and the quarantine view).
#[derive(Debug, Clone)]
pub struct RawMessage {
    pub origin: String,
    pub bytes: Vec<u8>,
}

fn is_maildir(dir: &Path) -> bool {
    dir.join("cur").is_dir() || dir.join("new").is_dir()
}

fn sorted_entries(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    v.sort();
    Ok(v)
}

/// A Maildir file name's delivery order: `SECONDS.M<usec>P<pid>.host…` (and the `V…I…M…`
/// forms) sort by the seconds and microseconds as **numbers** — as text, `…M99P…` would come
/// after `…M100P…` — then by the whole name. Names without these parts sort by name after
/// the time-stamped ones of the same second.
pub fn delivery_key(name: &str) -> (u64, u64, String) {
    let (secs, rest) = name.split_once('.').unwrap_or((name, ""));
    let secs = secs.parse().unwrap_or(u64::MAX);
    let usec = rest
        .split_once('.')
        .map_or(rest, |(first, _)| first)
        .split_once('M')
        .and_then(|(_, m)| {
            let digits: String = m.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .unwrap_or(u64::MAX);
    (secs, usec, name.to_string())
}

fn looks_like_mbox(path: &Path) -> io::Result<bool> {
    let mut head = [0u8; 5];
    let mut f = File::open(path)?;
    let n = f.read(&mut head)?;
    Ok(n == 5 && &head == b"From ")
}

/// Expand the paths given on the command line into origins, in a stable order: Maildir folders
/// give `new/` then `cur/` files sorted by name (Maildir names start with the delivery time);
/// other folders are walked recursively; a file starting with `From ` is an mbox.
pub fn walk(paths: &[PathBuf]) -> io::Result<Vec<Origin>> {
    let mut out = Vec::new();
    for p in paths {
        walk_one(p, &mut out)?;
    }
    Ok(out)
}

fn walk_one(p: &Path, out: &mut Vec<Origin>) -> io::Result<()> {
    let meta = std::fs::metadata(p)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", p.display())))?;
    if meta.is_dir() {
        if is_maildir(p) {
            let mut files = Vec::new();
            for sub in ["new", "cur"] {
                let d = p.join(sub);
                if d.is_dir() {
                    files.extend(sorted_entries(&d)?.into_iter().filter(|f| f.is_file()));
                }
            }
            // Delivery order across new/ and cur/ (see `delivery_key`).
            files.sort_by_cached_key(|f| {
                delivery_key(f.file_name().and_then(|n| n.to_str()).unwrap_or(""))
            });
            out.extend(files.into_iter().map(Origin::Message));
            return Ok(());
        }
        for e in sorted_entries(p)? {
            let name = e.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if name.starts_with('.') || name == "tmp" {
                continue;
            }
            walk_one(&e, out)?;
        }
    } else if looks_like_mbox(p)? {
        out.push(Origin::Mbox(p.to_path_buf()));
    } else {
        out.push(Origin::Message(p.to_path_buf()));
    }
    Ok(())
}

/// Read every message of `origins` in order, handing each to `f`; stops early if `f` returns
/// false.
pub fn read_all(origins: &[Origin], mut f: impl FnMut(RawMessage) -> bool) -> io::Result<()> {
    for o in origins {
        match o {
            Origin::Message(p) => {
                let bytes = std::fs::read(p)
                    .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", p.display())))?;
                if !f(RawMessage {
                    origin: p.display().to_string(),
                    bytes,
                }) {
                    return Ok(());
                }
            }
            Origin::Mbox(p) => {
                let file = File::open(p)?;
                let mut n = 0usize;
                let mut stop = false;
                read_mbox(BufReader::with_capacity(256 * 1024, file), |bytes| {
                    n += 1;
                    stop = !f(RawMessage {
                        origin: format!("{}#{n}", p.display()),
                        bytes,
                    });
                    !stop
                })?;
                if stop {
                    return Ok(());
                }
            }
        }
    }
    Ok(())
}

/// Split an mbox stream into messages (see the module doc for the rules).
pub fn read_mbox(mut r: impl BufRead, mut f: impl FnMut(Vec<u8>) -> bool) -> io::Result<()> {
    let mut line = Vec::with_capacity(256);
    let mut cur: Option<Vec<u8>> = None;
    let mut prev_blank = true;
    let finish = |mut m: Vec<u8>| {
        // The blank line before the next `From ` separator belongs to the separator.
        if m.ends_with(b"\r\n\r\n") {
            m.truncate(m.len() - 2);
        } else if m.ends_with(b"\n\n") {
            m.truncate(m.len() - 1);
        }
        m
    };
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        if prev_blank && line.starts_with(b"From ") {
            if let Some(m) = cur.take()
                && !f(finish(m))
            {
                return Ok(());
            }
            cur = Some(Vec::new());
            prev_blank = false;
            continue;
        }
        prev_blank = line == b"\n" || line == b"\r\n";
        let Some(m) = cur.as_mut() else { continue };
        let gt = line.iter().take_while(|b| **b == b'>').count();
        if gt > 0 && line[gt..].starts_with(b"From ") {
            m.extend_from_slice(&line[1..]);
        } else {
            m.extend_from_slice(&line);
        }
    }
    if let Some(m) = cur {
        f(finish(m));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn maildir_names_sort_by_delivery_time() {
        let mut v = vec![
            "1763900001.M5P1.h",
            "1763900000.M100P1.h:2,S",
            "1763900000.M99P1.h",
            "1763900000.V801I2M7.h",
        ];
        v.sort_by_key(|n| super::delivery_key(n));
        assert_eq!(
            v,
            [
                "1763900000.V801I2M7.h",
                "1763900000.M99P1.h",
                "1763900000.M100P1.h:2,S",
                "1763900001.M5P1.h"
            ]
        );
    }

    use super::*;

    fn split(s: &str) -> Vec<String> {
        let mut v = Vec::new();
        read_mbox(s.as_bytes(), |m| {
            v.push(String::from_utf8(m).unwrap());
            true
        })
        .unwrap();
        v
    }

    #[test]
    fn mbox_splits_only_at_separators_and_unescapes() {
        let mbox = "From a@x Mon Nov  2 10:00:00 2026\nSubject: one\n\nbody\n>From here\n>>From there\nFrom inside a paragraph\n\nFrom b@x Mon Nov  2 10:01:00 2026\nSubject: two\n\nx\n";
        let v = split(mbox);
        assert_eq!(v.len(), 2);
        assert_eq!(
            v[0],
            "Subject: one\n\nbody\nFrom here\n>From there\nFrom inside a paragraph\n"
        );
        assert_eq!(v[1], "Subject: two\n\nx\n");
    }

    #[test]
    fn walk_orders_maildir_by_name_and_detects_mbox() {
        let d = tempfile::tempdir().unwrap();
        let md = d.path().join("box");
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(md.join(sub)).unwrap();
        }
        std::fs::write(md.join("new/2.b"), "Subject: 2\n\n").unwrap();
        std::fs::write(md.join("cur/1.a:2,S"), "Subject: 1\n\n").unwrap();
        std::fs::write(md.join("tmp/0.partial"), "x").unwrap();
        std::fs::write(d.path().join("m.mbox"), "From x\nSubject: m\n\n").unwrap();
        let o = walk(&[d.path().to_path_buf()]).unwrap();
        assert_eq!(
            o,
            vec![
                Origin::Message(md.join("cur/1.a:2,S")),
                Origin::Message(md.join("new/2.b")),
                Origin::Mbox(d.path().join("m.mbox")),
            ]
        );
    }
}
