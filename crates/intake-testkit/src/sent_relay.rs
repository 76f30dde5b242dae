//! A stand-in for a provider's "save to Sent" on submission, for the exactly-once sending
//! tests. Exchange Online keeps a copy of mail submitted over SMTP AUTH in the sender's Sent
//! Items, Gmail in Sent Mail; Dovecot's submission service does not. This relay sits behind
//! Dovecot submission ([`crate::dovecot::DovecotOptions::submission`] relays to
//! [`SentRelay::port`]): a minimal SMTP server that hands each accepted message to Dovecot's
//! LMTP ([`crate::dovecot::Dovecot::lmtp_socket`]) for its recipients **and** for
//! `sender+Sent@domain`, which Dovecot files into the sender's folder `Sent` (marked `\Sent`;
//! [`crate::dovecot::DovecotOptions::sent_folder`] turns on `recipient_delimiter = +` and
//! `lmtp_save_to_detail_mailbox = yes`). Only when LMTP has taken every copy does the relay
//! answer 250, so, as at the provider, a message the submission server accepted is in the Sent
//! folder.
//!
//! [`SentRelay::reply_delay`] holds the 250 back after delivery (a slow provider): the window
//! in which the mail is out but the sender has not heard so, where a crash test kills it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A running relay; stops accepting when dropped.
#[derive(Debug)]
pub struct SentRelay {
    pub port: u16,
    lmtp: Arc<Mutex<Option<PathBuf>>>,
    delay_ms: Arc<AtomicU64>,
    delivered: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl SentRelay {
    /// Listen on a free 127.0.0.1 port. Messages are refused with a 451 until
    /// [`SentRelay::deliver_to`] names the LMTP socket (Dovecot starts after the relay, since
    /// its configuration names the relay's port).
    pub fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = listener.local_addr()?.port();
        let relay = Self {
            port,
            lmtp: Arc::default(),
            delay_ms: Arc::default(),
            delivered: Arc::default(),
            stop: Arc::default(),
        };
        let (lmtp, delay, delivered, stop) = (
            relay.lmtp.clone(),
            relay.delay_ms.clone(),
            relay.delivered.clone(),
            relay.stop.clone(),
        );
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (lmtp, delay, delivered) = (lmtp.clone(), delay.clone(), delivered.clone());
                std::thread::spawn(move || {
                    let _ = session(conn, &lmtp, &delay, &delivered);
                });
            }
        });
        Ok(relay)
    }

    /// Deliver through the LMTP service on this unix socket.
    pub fn deliver_to(&self, lmtp_socket: PathBuf) {
        if let Ok(mut l) = self.lmtp.lock() {
            *l = Some(lmtp_socket);
        }
    }

    /// Hold each 250 back this long after LMTP took the message.
    pub fn reply_delay(&self, d: Duration) {
        self.delay_ms.store(
            u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Messages handed to LMTP so far.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }
}

impl Drop for SentRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port));
    }
}

/// `local@domain` → `local+Sent@domain`.
pub fn sent_address(sender: &str) -> String {
    match sender.rsplit_once('@') {
        Some((local, domain)) => format!("{local}+Sent@{domain}"),
        None => format!("{sender}+Sent"),
    }
}

fn session(
    conn: TcpStream,
    lmtp: &Mutex<Option<PathBuf>>,
    delay: &AtomicU64,
    delivered: &AtomicU64,
) -> std::io::Result<()> {
    let mut w = conn.try_clone()?;
    let mut r = BufReader::new(conn);
    w.write_all(b"220 localhost sent-relay ESMTP\r\n")?;
    let (mut from, mut rcpt) = (String::new(), Vec::new());
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end().to_string();
        let upper = cmd.to_ascii_uppercase();
        if upper.starts_with("EHLO") {
            w.write_all(b"250-localhost\r\n250-8BITMIME\r\n250 PIPELINING\r\n")?;
        } else if upper.starts_with("HELO") {
            w.write_all(b"250 localhost\r\n")?;
        } else if upper.starts_with("MAIL FROM:") {
            from = addr(&cmd[10..]);
            rcpt.clear();
            w.write_all(b"250 2.1.0 Ok\r\n")?;
        } else if upper.starts_with("RCPT TO:") {
            rcpt.push(addr(&cmd[8..]));
            w.write_all(b"250 2.1.5 Ok\r\n")?;
        } else if upper == "DATA" {
            w.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")?;
            // Kept dot-stuffed: LMTP takes the same encoding.
            let mut data = Vec::new();
            loop {
                let mut l = Vec::new();
                if r.read_until(b'\n', &mut l)? == 0 {
                    return Ok(());
                }
                data.extend_from_slice(&l);
                if l == b".\r\n" || l == b".\n" {
                    break;
                }
            }
            let socket = lmtp.lock().ok().and_then(|l| l.clone());
            let reply = match socket {
                None => "451 4.3.0 relay not connected to LMTP yet".to_string(),
                Some(socket) => {
                    let mut all = rcpt.clone();
                    all.push(sent_address(&from));
                    match lmtp_deliver(&socket, &from, &all, &data) {
                        Ok(()) => {
                            delivered.fetch_add(1, Ordering::Relaxed);
                            std::thread::sleep(Duration::from_millis(
                                delay.load(Ordering::Relaxed),
                            ));
                            "250 2.0.0 Ok: delivered with a copy in Sent".to_string()
                        }
                        Err(e) => format!(
                            "451 4.3.0 LMTP: {}",
                            e.to_string().replace(['\r', '\n'], " ")
                        ),
                    }
                }
            };
            w.write_all(format!("{reply}\r\n").as_bytes())?;
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

/// One LMTP transaction; `data` is dot-stuffed and ends with `.\r\n`. Every recipient must be
/// accepted and delivered.
fn lmtp_deliver(
    socket: &std::path::Path,
    from: &str,
    to: &[String],
    data: &[u8],
) -> std::io::Result<()> {
    let s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut w = s.try_clone()?;
    let mut r = BufReader::new(s);
    let fail =
        |what: &str, reply: &str| std::io::Error::other(format!("{what}: {}", reply.trim_end()));
    fn reply(r: &mut BufReader<UnixStream>) -> std::io::Result<String> {
        let mut all = String::new();
        loop {
            let mut l = String::new();
            if r.read_line(&mut l)? == 0 {
                return Err(std::io::Error::other("LMTP closed the connection"));
            }
            all.push_str(&l);
            if l.as_bytes().get(3) != Some(&b'-') {
                return Ok(all);
            }
        }
    }
    let g = reply(&mut r)?;
    if !g.starts_with("220") {
        return Err(fail("greeting", &g));
    }
    w.write_all(b"LHLO localhost\r\n")?;
    let l = reply(&mut r)?;
    if !l.starts_with("250") {
        return Err(fail("LHLO", &l));
    }
    w.write_all(format!("MAIL FROM:<{from}>\r\n").as_bytes())?;
    let m = reply(&mut r)?;
    if !m.starts_with("250") {
        return Err(fail("MAIL FROM", &m));
    }
    for t in to {
        w.write_all(format!("RCPT TO:<{t}>\r\n").as_bytes())?;
        let x = reply(&mut r)?;
        if !x.starts_with("250") {
            return Err(fail(&format!("RCPT TO {t}"), &x));
        }
    }
    w.write_all(b"DATA\r\n")?;
    let d = reply(&mut r)?;
    if !d.starts_with("354") {
        return Err(fail("DATA", &d));
    }
    w.write_all(data)?;
    // LMTP answers once per recipient.
    for t in to {
        let x = reply(&mut r)?;
        if !x.starts_with("250") {
            return Err(fail(&format!("delivery to {t}"), &x));
        }
    }
    w.write_all(b"QUIT\r\n")?;
    let mut rest = Vec::new();
    let _ = r.read_to_end(&mut rest);
    Ok(())
}

/// `<a@b> SIZE=…` → `a@b`.
fn addr(s: &str) -> String {
    let s = s.trim();
    let s = s.split_whitespace().next().unwrap_or_default();
    s.trim_start_matches('<').trim_end_matches('>').to_string()
}
