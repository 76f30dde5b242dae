//! A receiving mail server for the sending tests: a minimal SMTP server on a free 127.0.0.1
//! port that accepts every message and keeps it (the "mailbox" the tests read). Dovecot's
//! submission service relays into it ([`crate::dovecot::DovecotOptions::submission`]), so what
//! it holds is exactly what a real submission server passed on, once per SMTP transaction.
//!
//! It speaks just enough of RFC 5321 for a relay client: EHLO/HELO, MAIL, RCPT, DATA
//! (dot-unstuffing), RSET, NOOP, QUIT. One thread per connection.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// One accepted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub data: Vec<u8>,
}

impl Received {
    /// The `Message-ID` header's value without angle brackets, if any.
    pub fn message_id(&self) -> Option<String> {
        self.header("Message-ID").map(|v| {
            v.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
    }

    /// The first header `name` (unfolded), if any.
    pub fn header(&self, name: &str) -> Option<String> {
        let text = String::from_utf8_lossy(&self.data);
        let head = text.split("\r\n\r\n").next().unwrap_or_default();
        let mut value: Option<String> = None;
        for line in head.split("\r\n") {
            if let Some(v) = value.as_mut()
                && (line.starts_with(' ') || line.starts_with('\t'))
            {
                v.push(' ');
                v.push_str(line.trim());
                continue;
            }
            if value.is_some() {
                break;
            }
            if let Some((n, v)) = line.split_once(':')
                && n.eq_ignore_ascii_case(name)
            {
                value = Some(v.trim().to_string());
            }
        }
        value
    }
}

/// Answers a sink gives instead of accepting, to stand in for a server whose refusals no
/// local server can produce (Exchange Online's texts, for the doctor's decoding).
#[derive(Debug, Clone, Default)]
pub struct Script {
    /// The reply to `AUTH` (default `235 2.7.0 Authentication successful`).
    pub auth: Option<String>,
    /// The reply to `MAIL FROM` (default `250 2.1.0 Ok`).
    pub mail_from: Option<String>,
}

/// A running sink; stops accepting when dropped (open sessions finish).
#[derive(Debug)]
pub struct SmtpSink {
    pub port: u16,
    received: Arc<Mutex<Vec<Received>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl SmtpSink {
    pub fn start() -> std::io::Result<Self> {
        Self::start_with(Script::default())
    }

    /// A sink that answers `AUTH` / `MAIL FROM` as `script` says (plain SMTP, `AUTH` offered).
    pub fn start_with(script: Script) -> std::io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = listener.local_addr()?.port();
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let stop: Arc<std::sync::atomic::AtomicBool> = Arc::default();
        let (r, s) = (received.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (r, script) = (r.clone(), script.clone());
                std::thread::spawn(move || {
                    let _ = session(conn, &r, &script);
                });
            }
        });
        Ok(Self {
            port,
            received,
            stop,
        })
    }

    /// Everything accepted so far, in order.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        // Wake the accept loop.
        let _ = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port));
    }
}

fn session(conn: TcpStream, out: &Mutex<Vec<Received>>, script: &Script) -> std::io::Result<()> {
    let mut w = conn.try_clone()?;
    let mut r = BufReader::new(conn);
    w.write_all(b"220 localhost test sink ESMTP\r\n")?;
    let (mut from, mut rcpt) = (String::new(), Vec::new());
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end().to_string();
        let upper = cmd.to_ascii_uppercase();
        if upper.starts_with("EHLO") || upper.starts_with("LHLO") {
            w.write_all(b"250-localhost\r\n250-8BITMIME\r\n250-AUTH PLAIN LOGIN XOAUTH2\r\n250-SIZE 104857600\r\n250 PIPELINING\r\n")?;
        } else if upper.starts_with("AUTH") {
            let reply = script
                .auth
                .clone()
                .unwrap_or_else(|| "235 2.7.0 Authentication successful".into());
            w.write_all(format!("{reply}\r\n").as_bytes())?;
        } else if upper.starts_with("HELO") {
            w.write_all(b"250 localhost\r\n")?;
        } else if upper.starts_with("MAIL FROM:") {
            from = addr(&cmd[10..]);
            rcpt.clear();
            let reply = script
                .mail_from
                .clone()
                .unwrap_or_else(|| "250 2.1.0 Ok".into());
            w.write_all(format!("{reply}\r\n").as_bytes())?;
        } else if upper.starts_with("RCPT TO:") {
            rcpt.push(addr(&cmd[8..]));
            w.write_all(b"250 2.1.5 Ok\r\n")?;
        } else if upper == "DATA" {
            w.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")?;
            let mut data = Vec::new();
            loop {
                let mut l = Vec::new();
                if r.read_until(b'\n', &mut l)? == 0 {
                    return Ok(());
                }
                if l == b".\r\n" || l == b".\n" {
                    break;
                }
                let l = if l.starts_with(b"..") {
                    &l[1..]
                } else {
                    &l[..]
                };
                data.extend_from_slice(l);
            }
            if let Ok(mut v) = out.lock() {
                v.push(Received {
                    mail_from: from.clone(),
                    rcpt_to: rcpt.clone(),
                    data,
                });
            }
            w.write_all(b"250 2.0.0 Ok: queued\r\n")?;
        } else if upper == "RSET" || upper == "NOOP" {
            w.write_all(b"250 2.0.0 Ok\r\n")?;
        } else if upper == "QUIT" {
            w.write_all(b"221 2.0.0 Bye\r\n")?;
            return Ok(());
        } else {
            w.write_all(b"502 5.5.2 Error: command not recognized\r\n")?;
        }
    }
}

/// `<a@b> SIZE=…` → `a@b`.
fn addr(s: &str) -> String {
    let s = s.trim();
    let s = s.split_whitespace().next().unwrap_or_default();
    s.trim_start_matches('<').trim_end_matches('>').to_string()
}
