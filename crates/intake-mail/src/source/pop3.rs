//! POP3 source (RFC 1939, CAPA/STLS RFC 2449/2595, AUTH RFC 5034), written here rather than on
//! `async-pop`: that crate sends an XOAUTH2 initial response only on the `AUTH` line, which
//! Exchange Online refuses for long tokens (RC10, "two line authentication format"), and it does
//! not answer the server's `+ <base64 JSON>` error challenge.
//!
//! - Transport: implicit TLS (POP3S), `STLS` on the plain port, or plain; TLS trusts the web PKI
//!   roots plus [`Pop3Settings::ca_pem`] ([`crate::tls::connector`]).
//! - Login: `USER`/`PASS`, or SASL `XOAUTH2` / `OAUTHBEARER` with the response on the `AUTH`
//!   line ([`SaslForm::InitialResponse`]) or after the server's `+ ` ([`SaslForm::TwoLine`]).
//!   [`SaslForm::Auto`] takes the two-line form when the one-line command would exceed RFC
//!   5034's 255 octets or the server looks like Exchange, else the one-line form; when the
//!   one-line form gets a `-ERR` without a challenge (Exchange: `-ERR Protocol error.
//!   Connection is closed. 10`) it retries once with the two-line form, on a new connection
//!   when the server closed the old one.
//! - A rejected token: the server's `+ <base64 JSON>` challenge is decoded and kept, answered
//!   (an empty line for XOAUTH2, `AQ==` for OAUTHBEARER), and the final `-ERR` line is returned
//!   verbatim in [`SourceError::Auth`]. Errors never contain passwords or tokens.
//! - Messages: [`Pop3Source::uidl`] lists `(msgno, uid)`, [`Pop3Source::retr`] returns the raw
//!   bytes (dot-unstuffed, CRLF or bare LF as the server sent them), identity
//!   [`identity`] = `pop3:<uidl>`.
//! - Deleting: `DELE` only marks a message; the server removes it at `QUIT` (the UPDATE state).
//!   The delete post-action ([`Pop3Mailbox`]) is therefore `DELE` for each message, then `QUIT`
//!   when the round ends ([`MailSource::finish`]). If the
//!   process dies (or the connection drops) before `QUIT`, the server undeletes everything, and
//!   the next run sees those messages again; the ledger already holds their identities, so they
//!   are skipped as duplicates and deleted again. Dropping a [`Pop3Source`] without
//!   [`Pop3Source::quit`] is the same as such a crash.
//! - [`Pop3Source::stat`] only counts (`STAT`): the connection check, which must not fetch or
//!   change anything (RC15).
//! - Bounds: the connection is a [`crate::transport`] one (connect and TLS deadlines, every
//!   read and write bounded by [`Timeouts::command`]; a stall is [`SourceError::Timeout`] naming
//!   the command). A line is at most [`MAX_LINE`] bytes, except inside a message, which is
//!   bounded as a whole by its declared size or the size limit plus [`SIZE_SLACK`]. The listing
//!   carries each message's `LIST` size; a message over [`Pop3Settings::max_message_bytes`] is
//!   fetched with `TOP n 0` (its header section only) and marked [`Oversized`].

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretString};
use std::fmt::Debug;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

pub use super::imap::Tls;
use super::{Fetched, Listed, Listing, MailSource, Oversized, PostAction, SourceError, Start};
use crate::sasl::{self, Mechanism};
use crate::transport::{self, Endpoint, Timeouts, stalled, timeout_error};

/// The longest reply or listing line accepted (a message's own lines are bounded by the
/// message's size budget instead).
pub const MAX_LINE: usize = 64 * 1024;
/// What a message may exceed its declared size or the limit by (dot-stuffing, line-ending
/// differences) before the download is refused.
pub const SIZE_SLACK: u64 = 1024 * 1024;
/// RFC 5034 §4 / RFC 2449: a POP3 command line is at most 255 octets including CRLF.
pub const MAX_COMMAND_OCTETS: usize = 255;
/// Server replies quoted in errors are cut to this many characters.
const MAX_QUOTED: usize = 512;

/// How to log in (shared with the other sources).
pub type Pop3Auth = super::MailAuth;

/// Where the SASL initial response goes (RFC 5034 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SaslForm {
    /// Two-line when the one-line command would exceed 255 octets or the server looks like
    /// Exchange; one-line otherwise, falling back to two-line once on a `-ERR` (RC10).
    #[default]
    Auto,
    /// `AUTH XOAUTH2 <b64>` (Gmail's documented form).
    InitialResponse,
    /// `AUTH XOAUTH2`, the server's `+ `, then `<b64>` alone (Exchange Online requires it:
    /// Jakarta Mail's `mail.pop3.auth.xoauth2.two.line.authentication.format`).
    TwoLine,
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct Pop3Settings {
    pub host: String,
    pub port: u16,
    pub tls: Tls,
    /// Extra CA certificates (PEM) to trust besides the web PKI roots.
    pub ca_pem: Option<Vec<u8>>,
    pub auth: Pop3Auth,
    pub sasl_form: SaslForm,
    /// HTTP CONNECT proxy for this connection (RC16); environment variables are never used.
    pub proxy: Option<crate::net::ProxySettings>,
    /// Deadlines for connect, TLS and every command's answer.
    pub timeouts: Timeouts,
    /// A message whose `LIST` size is over this is fetched with `TOP n 0` and marked
    /// [`Oversized`] (the channel's `max_message_bytes`); `None`: no check before download.
    pub max_message_bytes: Option<u64>,
}

/// What the server's `CAPA` said (empty when it does not know `CAPA`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// The `SASL` mechanisms, upper-cased.
    pub sasl: Vec<String>,
    pub stls: bool,
    pub uidl: bool,
    pub user: bool,
    /// `IMPLEMENTATION …`, if given.
    pub implementation: Option<String>,
    /// Every capability line as sent (for hints such as a `SASL-IR`-like tag).
    pub lines: Vec<String>,
}

impl Capabilities {
    pub fn has(&self, tag: &str) -> bool {
        self.lines.iter().any(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|t| t.eq_ignore_ascii_case(tag))
        })
    }

    pub fn has_sasl(&self, mechanism: &str) -> bool {
        self.sasl.iter().any(|m| m.eq_ignore_ascii_case(mechanism))
    }

    fn parse(lines: &[String]) -> Self {
        let mut c = Self {
            lines: lines.to_vec(),
            ..Self::default()
        };
        for l in lines {
            let mut words = l.split_whitespace();
            let Some(tag) = words.next() else { continue };
            match tag.to_ascii_uppercase().as_str() {
                "SASL" => c.sasl = words.map(str::to_ascii_uppercase).collect(),
                "STLS" => c.stls = true,
                "UIDL" => c.uidl = true,
                "USER" => c.user = true,
                "IMPLEMENTATION" => {
                    c.implementation = Some(l[tag.len()..].trim().to_string());
                }
                _ => {}
            }
        }
        c
    }
}

/// The ledger identity of a message with this UIDL: `pop3:<uidl>`.
pub fn identity(uid: &str) -> String {
    format!("pop3:{uid}")
}

/// True when the initial response must go on its own line: the one-line command
/// `AUTH <mech> <b64>\r\n` would exceed [`MAX_COMMAND_OCTETS`] (curl's rule), or the server is
/// Exchange-like (it requires the two-line form whatever the length).
pub fn needs_two_line(mechanism: Mechanism, b64_len: usize, exchange_like: bool) -> bool {
    exchange_like || "AUTH ".len() + mechanism.name().len() + 1 + b64_len + 2 > MAX_COMMAND_OCTETS
}

/// Exchange / Microsoft 365 by host name, greeting or `IMPLEMENTATION`.
pub fn is_exchange_like(host: &str, greeting: &str, caps: &Capabilities) -> bool {
    let host = host.to_ascii_lowercase();
    let host = host.trim_end_matches('.');
    let ms_host = [
        "office365.com",
        "outlook.com",
        "office.com",
        "partner.outlook.cn",
    ]
    .iter()
    .any(|d| host == *d || host.ends_with(&format!(".{d}")));
    let says = |s: &str| s.to_ascii_lowercase().contains("microsoft exchange");
    ms_host || says(greeting) || caps.implementation.as_deref().is_some_and(says)
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send + Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Debug> Io for T {}
type Stream = Box<dyn Io>;

/// A line-oriented POP3 connection.
#[derive(Debug)]
struct Conn<S> {
    io: BufReader<S>,
    /// `host:port`, and the command whose answer is awaited, for timeout errors.
    addr: String,
    op: String,
}

fn quoted(line: &str) -> String {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.chars().count() > MAX_QUOTED {
        let cut: String = line.chars().take(MAX_QUOTED).collect();
        format!("{cut}…")
    } else {
        line.to_string()
    }
}

fn closed() -> SourceError {
    SourceError::Protocol("the POP3 server closed the connection".into())
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    fn new(s: S, addr: &str) -> Self {
        Self {
            io: BufReader::new(s),
            addr: addr.to_string(),
            op: "greeting".into(),
        }
    }

    /// An I/O error while waiting for the answer to the current command.
    fn io_error(&self, e: std::io::Error) -> SourceError {
        match stalled(&e) {
            Some(after) => timeout_error(&self.op, &self.addr, after),
            None => SourceError::Protocol(format!("POP3 connection ({}): {e}", self.op)),
        }
    }

    /// One raw line with its terminator (`\r\n` or a bare `\n`), at most [`MAX_LINE`] bytes;
    /// EOF is an error.
    async fn read_line(&mut self) -> Result<Vec<u8>, SourceError> {
        self.read_line_within(MAX_LINE as u64).await
    }

    /// One raw line of at most `cap` bytes (the [`transport`] stream bounds the wait).
    async fn read_line_within(&mut self, cap: u64) -> Result<Vec<u8>, SourceError> {
        let mut buf = Vec::new();
        let n = (&mut self.io)
            .take(cap)
            .read_until(b'\n', &mut buf)
            .await
            .map_err(|e| self.io_error(e))?;
        if n == 0 {
            return Err(closed());
        }
        if !buf.ends_with(b"\n") {
            return Err(SourceError::TooLarge(format!(
                "the POP3 server sent a line of more than {cap} bytes in answer to {}",
                self.op
            )));
        }
        Ok(buf)
    }

    /// One reply line as text, without its terminator.
    async fn read_reply(&mut self) -> Result<String, SourceError> {
        let raw = self.read_line().await?;
        Ok(String::from_utf8_lossy(&raw)
            .trim_end_matches(['\r', '\n'])
            .to_string())
    }

    /// Sends `line` + CRLF. Callers never put secrets into error texts: a write error names
    /// no content.
    async fn send(&mut self, line: &str) -> Result<(), SourceError> {
        let mut bytes = Vec::with_capacity(line.len() + 2);
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        // The command's name (never its arguments: PASS and AUTH carry secrets).
        let name = line.split(' ').next().unwrap_or_default();
        if !name.is_empty() && name.len() < 16 && name.bytes().all(|b| b.is_ascii_alphabetic()) {
            self.op = name.to_ascii_uppercase();
        } else {
            self.op = "AUTH continuation".into();
        }
        let w = self.io.get_mut();
        let r = async {
            w.write_all(&bytes).await?;
            w.flush().await
        }
        .await;
        r.map_err(|e| self.io_error(e))
    }

    /// Reads a status reply: `+OK …` is the text after `+OK`, `-ERR …` is
    /// [`SourceError::Refused`] with the whole line.
    async fn expect_ok(&mut self, command: &str) -> Result<String, SourceError> {
        let line = self.read_reply().await?;
        status(command, line)
    }

    /// Sends a command and reads its status.
    async fn command(&mut self, line: &str, name: &str) -> Result<String, SourceError> {
        // `name` is the secret-free label (`PASS`, never its argument).
        tracing::trace!(command = name, "POP3 command");
        self.send(line).await?;
        self.expect_ok(name).await
    }

    /// The body of a multi-line reply up to the terminating `.` line, dot-unstuffed (a line
    /// starting with `.` loses that dot), line endings as sent.
    async fn read_multiline(&mut self) -> Result<Vec<u8>, SourceError> {
        self.read_multiline_within(None).await
    }

    /// [`Conn::read_multiline`]; with a `budget`, the whole body (a message) may have that many
    /// bytes and its lines any length within it; without, each line is at most [`MAX_LINE`].
    async fn read_multiline_within(&mut self, budget: Option<u64>) -> Result<Vec<u8>, SourceError> {
        let mut out = Vec::new();
        let mut left = budget;
        loop {
            let line = match left {
                None => self.read_line().await?,
                // At least room for the final `.` line.
                Some(l) => self.read_line_within(l.max(3)).await.map_err(|e| match e {
                    SourceError::TooLarge(_) => SourceError::TooLarge(format!(
                        "the POP3 server sent more than {} bytes in answer to {}",
                        budget.unwrap_or_default(),
                        self.op
                    )),
                    e => e,
                })?,
            };
            let end = line == b".\r\n" || line == b".\n";
            if let Some(l) = left.as_mut() {
                if !end && line.len() as u64 > *l {
                    return Err(SourceError::TooLarge(format!(
                        "the POP3 server sent more than {} bytes in answer to {}",
                        budget.unwrap_or_default(),
                        self.op
                    )));
                }
                *l = l.saturating_sub(line.len() as u64);
            }
            if line == b".\r\n" || line == b".\n" {
                return Ok(out);
            }
            match line.strip_prefix(b".") {
                Some(rest) => out.extend_from_slice(rest),
                None => out.extend_from_slice(&line),
            }
        }
    }

    /// Multi-line reply as text lines (CAPA, UIDL).
    async fn read_multiline_lines(&mut self) -> Result<Vec<String>, SourceError> {
        let body = self.read_multiline().await?;
        Ok(String::from_utf8_lossy(&body)
            .lines()
            .map(|l| l.trim_end_matches('\r').to_string())
            .filter(|l| !l.is_empty())
            .collect())
    }

    async fn capa(&mut self) -> Result<Capabilities, SourceError> {
        self.send("CAPA").await?;
        let line = self.read_reply().await?;
        if line.starts_with("-ERR") {
            // An RFC 1939-only server: no capabilities known.
            return Ok(Capabilities::default());
        }
        status("CAPA", line)?;
        Ok(Capabilities::parse(&self.read_multiline_lines().await?))
    }
}

fn status(command: &str, line: String) -> Result<String, SourceError> {
    if let Some(rest) = line.strip_prefix("+OK") {
        Ok(rest.trim().to_string())
    } else if line.starts_with("-ERR") {
        Err(SourceError::Refused {
            command: command.to_string(),
            server: quoted(&line),
        })
    } else {
        Err(SourceError::Protocol(format!(
            "unexpected reply to {command}: {}",
            quoted(&line)
        )))
    }
}

/// A logged-in POP3 session (the TRANSACTION state).
pub struct Pop3Source {
    conn: Conn<Stream>,
    greeting: String,
    caps: Capabilities,
    form: Option<SaslForm>,
    /// The server's refusal of the one-line form when the two-line fallback logged in (RC10).
    one_line_refused: Option<String>,
}

impl Debug for Pop3Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pop3Source")
            .field("greeting", &self.greeting)
            .field("caps", &self.caps)
            .field("form", &self.form)
            .finish_non_exhaustive()
    }
}

/// What a SASL attempt came to, before it becomes a [`SourceError`].
enum AuthOutcome {
    Ok,
    /// `-ERR` (the line) and the decoded challenge, if the server sent one.
    Rejected {
        server: String,
        challenge: Option<String>,
    },
}

impl Pop3Source {
    /// Connect, read the greeting and `CAPA`, upgrade with `STLS` if asked, and log in.
    pub async fn connect(s: &Pop3Settings) -> Result<Self, SourceError> {
        let mut src = Self::open(s).await?;
        match &s.auth {
            Pop3Auth::Password { user, password } => {
                src.login_password(user, password).await?;
            }
            Pop3Auth::OAuth {
                mechanism,
                user,
                token,
            } => {
                let raw = match mechanism {
                    Mechanism::XOAuth2 => sasl::xoauth2(user, token.expose_secret()),
                    Mechanism::OAuthBearer => {
                        sasl::oauthbearer(user, &s.host, s.port, token.expose_secret())
                    }
                };
                let b64 = SecretString::from(STANDARD.encode(raw));
                let exchange = is_exchange_like(&s.host, &src.greeting, &src.caps);
                let form = match s.sasl_form {
                    SaslForm::Auto
                        if needs_two_line(*mechanism, b64.expose_secret().len(), exchange) =>
                    {
                        SaslForm::TwoLine
                    }
                    SaslForm::Auto => SaslForm::InitialResponse,
                    f => f,
                };
                let first = src.sasl(*mechanism, &b64, form).await?;
                match first {
                    AuthOutcome::Ok => src.form = Some(form),
                    AuthOutcome::Rejected {
                        server,
                        challenge: None,
                    } if s.sasl_form == SaslForm::Auto && form == SaslForm::InitialResponse => {
                        // RC10: Exchange refuses the one-line form ("-ERR Protocol error.
                        // Connection is closed. 10"). Retry once with the two-line form.
                        tracing::info!(
                            server = %server,
                            "POP3 {} one-line form refused, retrying with the two-line form",
                            mechanism.name()
                        );
                        let same = if server.to_ascii_lowercase().contains("closed") {
                            None
                        } else {
                            match src.sasl(*mechanism, &b64, SaslForm::TwoLine).await {
                                Ok(o) => Some(o),
                                Err(SourceError::Protocol(e)) => {
                                    tracing::debug!("POP3 connection lost after -ERR: {e}");
                                    None
                                }
                                Err(e) => return Err(e),
                            }
                        };
                        let second = match same {
                            Some(o) => o,
                            None => {
                                src = Self::open(s).await?;
                                src.sasl(*mechanism, &b64, SaslForm::TwoLine).await?
                            }
                        };
                        match second {
                            AuthOutcome::Ok => {
                                src.form = Some(SaslForm::TwoLine);
                                src.one_line_refused = Some(server);
                            }
                            AuthOutcome::Rejected { server, challenge } => {
                                return Err(SourceError::Auth {
                                    mechanism: mechanism.name().into(),
                                    server,
                                    challenge,
                                });
                            }
                        }
                    }
                    AuthOutcome::Rejected { server, challenge } => {
                        return Err(SourceError::Auth {
                            mechanism: mechanism.name().into(),
                            server,
                            challenge,
                        });
                    }
                }
            }
        }
        Ok(src)
    }

    /// TCP (+ TLS), greeting, `CAPA`, `STLS` + `CAPA` again: the AUTHORIZATION state.
    async fn open(s: &Pop3Settings) -> Result<Self, SourceError> {
        let ep = Endpoint {
            host: &s.host,
            port: s.port,
            proxy: s.proxy.as_ref(),
            ca_pem: s.ca_pem.as_deref(),
            timeouts: s.timeouts,
        };
        let addr = ep.addr();
        let tcp = transport::connect(&ep).await?;
        let mut conn: Conn<Stream> = match s.tls {
            Tls::Implicit => Conn::new(Box::new(transport::tls(&ep, tcp).await?), &addr),
            Tls::None => Conn::new(Box::new(tcp), &addr),
            Tls::StartTls => {
                let mut plain = Conn::new(tcp, &addr);
                let greeting = plain.expect_ok("connect").await?;
                plain.capa().await?;
                plain.command("STLS", "STLS").await?;
                if !plain.io.buffer().is_empty() {
                    // Anything sent before the handshake would be unprotected (CVE-2011-0411
                    // style injection): refuse.
                    return Err(SourceError::Protocol(
                        "the server sent data after +OK to STLS".into(),
                    ));
                }
                let tls = transport::tls(&ep, plain.io.into_inner()).await?;
                let mut conn = Conn::new(Box::new(tls) as Stream, &addr);
                let caps = conn.capa().await?;
                return Ok(Self {
                    conn,
                    greeting,
                    caps,
                    form: None,
                    one_line_refused: None,
                });
            }
        };
        let greeting = conn.expect_ok("connect").await?;
        let caps = conn.capa().await?;
        Ok(Self {
            conn,
            greeting,
            caps,
            form: None,
            one_line_refused: None,
        })
    }

    async fn login_password(
        &mut self,
        user: &str,
        password: &SecretString,
    ) -> Result<(), SourceError> {
        let auth_err = |e: SourceError| match e {
            SourceError::Refused { server, .. } => SourceError::Auth {
                mechanism: "USER/PASS".into(),
                server,
                challenge: None,
            },
            other => other,
        };
        if user.contains(['\r', '\n']) || password.expose_secret().contains(['\r', '\n']) {
            return Err(SourceError::Protocol(
                "the user name or password contains a line break".into(),
            ));
        }
        self.conn
            .command(&format!("USER {user}"), "USER")
            .await
            .map_err(auth_err)?;
        self.conn
            .command(&format!("PASS {}", password.expose_secret()), "PASS")
            .await
            .map_err(auth_err)?;
        Ok(())
    }

    /// One `AUTH` exchange in the given form (not [`SaslForm::Auto`]).
    async fn sasl(
        &mut self,
        mechanism: Mechanism,
        b64: &SecretString,
        form: SaslForm,
    ) -> Result<AuthOutcome, SourceError> {
        let name = mechanism.name();
        if form == SaslForm::TwoLine {
            self.conn.send(&format!("AUTH {name}")).await?;
            let line = self.conn.read_reply().await?;
            if line.starts_with("-ERR") {
                return Ok(AuthOutcome::Rejected {
                    server: quoted(&line),
                    challenge: None,
                });
            }
            if !line.starts_with('+') || line.starts_with("+OK") {
                return Err(SourceError::Protocol(format!(
                    "unexpected reply to AUTH {name}: {}",
                    quoted(&line)
                )));
            }
            self.conn.send(b64.expose_secret()).await?;
        } else {
            self.conn
                .send(&format!("AUTH {name} {}", b64.expose_secret()))
                .await?;
        }
        let line = self.conn.read_reply().await?;
        if line.starts_with("+OK") {
            return Ok(AuthOutcome::Ok);
        }
        if line.starts_with("-ERR") {
            return Ok(AuthOutcome::Rejected {
                server: quoted(&line),
                challenge: None,
            });
        }
        let Some(challenge) = line.strip_prefix('+') else {
            return Err(SourceError::Protocol(format!(
                "unexpected reply to AUTH {name}: {}",
                quoted(&line)
            )));
        };
        // The error challenge: keep it, answer it, read the final -ERR.
        let challenge = challenge.trim();
        let decoded = STANDARD
            .decode(challenge)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_else(|| quoted(challenge));
        self.conn
            .send(match mechanism {
                Mechanism::XOAuth2 => "",
                Mechanism::OAuthBearer => "AQ==",
            })
            .await?;
        let last = self.conn.read_reply().await?;
        if last.starts_with("+OK") {
            // A server that accepts after its own challenge: logged in.
            return Ok(AuthOutcome::Ok);
        }
        if !last.starts_with("-ERR") {
            return Err(SourceError::Protocol(format!(
                "unexpected reply after the SASL error challenge ({decoded}): {}",
                quoted(&last)
            )));
        }
        Ok(AuthOutcome::Rejected {
            server: quoted(&last),
            challenge: Some(decoded),
        })
    }

    /// The server's greeting text after `+OK` (with `STLS`, the one sent before TLS).
    pub fn greeting(&self) -> &str {
        &self.greeting
    }

    /// What `CAPA` said (after `STLS`, the protected answer).
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// The SASL form that logged in (`None` for `USER`/`PASS`); after an RC10 fallback
    /// [`SaslForm::TwoLine`].
    pub fn login_form(&self) -> Option<SaslForm> {
        self.form
    }

    /// The server's `-ERR` to the one-line SASL form when Intake fell back to the two-line
    /// form and that logged in (RC10: Exchange's `Protocol error. Connection is closed. 10`).
    pub fn one_line_refused(&self) -> Option<&str> {
        self.one_line_refused.as_deref()
    }

    /// `STAT`: (message count, total octets). Changes nothing (RC15's connection check).
    pub async fn stat(&mut self) -> Result<(u32, u64), SourceError> {
        let text = self.conn.command("STAT", "STAT").await?;
        let mut w = text.split_whitespace();
        match (
            w.next().and_then(|n| n.parse().ok()),
            w.next().and_then(|n| n.parse().ok()),
        ) {
            (Some(n), Some(o)) => Ok((n, o)),
            _ => Err(SourceError::Protocol(format!(
                "unexpected STAT reply: +OK {}",
                quoted(&text)
            ))),
        }
    }

    /// `UIDL`: `(message number, unique id)` for every message, in the server's order.
    pub async fn uidl(&mut self) -> Result<Vec<(u32, String)>, SourceError> {
        self.conn.command("UIDL", "UIDL").await?;
        let lines = self.conn.read_multiline_lines().await?;
        lines
            .iter()
            .map(|l| {
                let mut w = l.split_whitespace();
                match (w.next().and_then(|n| n.parse().ok()), w.next()) {
                    (Some(n), Some(uid)) => Ok((n, uid.to_string())),
                    _ => Err(SourceError::Protocol(format!(
                        "unexpected UIDL line: {}",
                        quoted(l)
                    ))),
                }
            })
            .collect()
    }

    /// `RETR`: the raw message, dot-unstuffed, line endings as the server sent them.
    pub async fn retr(&mut self, msgno: u32) -> Result<Vec<u8>, SourceError> {
        self.conn
            .command(&format!("RETR {msgno}"), &format!("RETR {msgno}"))
            .await?;
        self.conn.read_multiline().await
    }

    /// `RETR` with the message bounded to `budget` bytes (refused as
    /// [`SourceError::TooLarge`] past it).
    pub async fn retr_within(
        &mut self,
        msgno: u32,
        budget: Option<u64>,
    ) -> Result<Vec<u8>, SourceError> {
        self.conn
            .command(&format!("RETR {msgno}"), &format!("RETR {msgno}"))
            .await?;
        self.conn.op = format!("RETR {msgno}");
        self.conn.read_multiline_within(budget).await
    }

    /// The header section of a message (`TOP n 0`: the headers and the empty line after them).
    pub async fn top_headers(&mut self, msgno: u32) -> Result<Vec<u8>, SourceError> {
        self.conn
            .command(&format!("TOP {msgno} 0"), &format!("TOP {msgno} 0"))
            .await?;
        self.conn.op = format!("TOP {msgno} 0");
        // A header section larger than this is broken, not mail to keep.
        self.conn
            .read_multiline_within(Some(MAX_LINE as u64 * 16))
            .await
    }

    /// `LIST`: the size in octets of every message, by number.
    pub async fn list_sizes(&mut self) -> Result<std::collections::HashMap<u32, u64>, SourceError> {
        self.conn.command("LIST", "LIST").await?;
        let lines = self.conn.read_multiline_lines().await?;
        lines
            .iter()
            .map(|l| {
                let mut w = l.split_whitespace();
                match (
                    w.next().and_then(|n| n.parse().ok()),
                    w.next().and_then(|n| n.parse().ok()),
                ) {
                    (Some(n), Some(size)) => Ok((n, size)),
                    _ => Err(SourceError::Protocol(format!(
                        "unexpected LIST line: {}",
                        quoted(l)
                    ))),
                }
            })
            .collect()
    }

    /// One message with the ledger identity `pop3:<uid>`: whole when its declared `size` is
    /// within `limit` (bounded by size or limit plus [`SIZE_SLACK`] all the same), else its
    /// header section (`TOP n 0`) marked [`Oversized`].
    pub async fn fetch(
        &mut self,
        msgno: u32,
        uid: &str,
        size: Option<u64>,
        limit: Option<u64>,
    ) -> Result<Fetched, SourceError> {
        if let (Some(size), Some(limit)) = (size, limit)
            && size > limit
        {
            return Ok(Fetched {
                identity: identity(uid),
                raw: self.top_headers(msgno).await?,
                oversized: Some(Oversized { size, limit }),
            });
        }
        let budget = match (size, limit) {
            (Some(s), Some(l)) => Some(s.min(l) + SIZE_SLACK),
            (None, Some(l)) => Some(l + SIZE_SLACK),
            (Some(s), None) => Some(s + SIZE_SLACK),
            (None, None) => None,
        };
        Ok(Fetched {
            identity: identity(uid),
            raw: self.retr_within(msgno, budget).await?,
            oversized: None,
        })
    }

    /// `DELE`: marks the message; the server removes it only at [`Pop3Source::quit`]. Without
    /// a `QUIT` (crash, dropped connection) the mark is undone.
    pub async fn dele(&mut self, msgno: u32) -> Result<(), SourceError> {
        self.conn
            .command(&format!("DELE {msgno}"), &format!("DELE {msgno}"))
            .await
            .map(drop)
    }

    /// `NOOP`.
    pub async fn noop(&mut self) -> Result<(), SourceError> {
        self.conn.command("NOOP", "NOOP").await.map(drop)
    }

    /// `QUIT`: ends the session; the server now removes the messages marked by `DELE`. An
    /// `-ERR` here means the server could not remove them (they are still there).
    pub async fn quit(mut self) -> Result<(), SourceError> {
        self.conn.command("QUIT", "QUIT").await.map(drop)
    }
}

/// A POP3 mailbox as a [`MailSource`]: a session is opened by [`MailSource::list`] and ended
/// by [`MailSource::finish`] (`QUIT`, when `DELE` takes effect; a POP3 session sees the
/// maildrop as it was at login, so each round needs a new one).
///
/// - Listing is `UIDL`, always complete (one short line per message): the ledger, not a
///   position, says what is new, so messages kept on the server never block new ones.
/// - The checkpoint holds the UIDLs to skip (`start = "now"`: what was there at the first
///   sync), pruned to those still on the server; after the first sync it is always stored.
/// - `after = "delete"` is `DELE`; `mark-read` keeps the message (POP3 has no flags);
///   `move:` is refused. `start = "unread"` takes everything (no read flag); `since:` is
///   refused (POP3 cannot select by date without downloading).
#[derive(Debug)]
pub struct Pop3Mailbox {
    settings: Pop3Settings,
    conn: Option<Pop3Source>,
}

/// Prefix of the POP3 checkpoint; the UIDLs to skip follow, one per line.
const SKIP_PREFIX: &str = "pop3-skip:";

impl Pop3Mailbox {
    pub fn new(settings: Pop3Settings) -> Self {
        Self {
            settings,
            conn: None,
        }
    }

    async fn conn(&mut self) -> Result<&mut Pop3Source, SourceError> {
        if self.conn.is_none() {
            self.conn = Some(Pop3Source::connect(&self.settings).await?);
        }
        Ok(self.conn.as_mut().expect("just set"))
    }

    /// (message number, UIDL) from a listed key.
    fn key(item: &Listed) -> Result<(u32, &str), SourceError> {
        item.key
            .split_once(' ')
            .and_then(|(n, u)| Some((n.parse().ok()?, u)))
            .ok_or_else(|| SourceError::Protocol(format!("bad POP3 key {:?}", item.key)))
    }
}

impl MailSource for Pop3Mailbox {
    async fn list(
        &mut self,
        checkpoint: Option<&str>,
        start: Start,
        _limit: usize,
    ) -> Result<Listing, SourceError> {
        if matches!(start, Start::Since(_)) && checkpoint.is_none() {
            return Err(SourceError::Unsupported(
                "POP3 cannot select messages by date; use start = \"all\" or \"now\"".into(),
            ));
        }
        // A session left open by an interrupted round is stale (it does not see new mail).
        if let Some(old) = self.conn.take() {
            let _ = old.quit().await;
        }
        let list = self.conn().await?.uidl().await?;
        let sizes = self.conn().await?.list_sizes().await?;
        let skip: std::collections::HashSet<&str> = match checkpoint {
            Some(cp) => cp
                .strip_prefix(SKIP_PREFIX)
                .unwrap_or("")
                .lines()
                .filter(|l| !l.is_empty())
                .collect(),
            None if start == Start::Now => list.iter().map(|(_, u)| u.as_str()).collect(),
            None => Default::default(),
        };
        let mut kept: Vec<&str> = list
            .iter()
            .map(|(_, u)| u.as_str())
            .filter(|u| skip.contains(u))
            .collect();
        kept.sort_unstable();
        let new_cp = format!("{SKIP_PREFIX}{}", kept.join("\n"));
        Ok(Listing {
            items: list
                .iter()
                .filter(|(_, u)| !skip.contains(u.as_str()))
                .map(|(n, u)| Listed {
                    key: format!("{n} {u}"),
                    identity: identity(u),
                    size: sizes.get(n).copied(),
                })
                .collect(),
            checkpoint: (checkpoint != Some(new_cp.as_str())).then_some(new_cp),
            more: false,
        })
    }

    async fn fetch(&mut self, items: &[Listed]) -> Result<Vec<Fetched>, SourceError> {
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let (n, uid) = Self::key(item)?;
            let uid = uid.to_string();
            let limit = self.settings.max_message_bytes;
            out.push(self.conn().await?.fetch(n, &uid, item.size, limit).await?);
        }
        Ok(out)
    }

    async fn acknowledge(
        &mut self,
        items: &[Listed],
        action: &PostAction,
    ) -> Result<(), SourceError> {
        self.supports(action)?;
        if *action == PostAction::Delete {
            // Takes effect at `QUIT` ([`MailSource::finish`]); a crash before leaves the
            // messages, which the ledger then knows, and the next round deletes them.
            for item in items {
                let (n, _) = Self::key(item)?;
                self.conn().await?.dele(n).await?;
            }
        }
        Ok(())
    }

    fn checkpoint_after(&self, _item: &Listed) -> Option<String> {
        None
    }

    fn supports(&self, action: &PostAction) -> Result<(), SourceError> {
        match action {
            PostAction::Move(_) => Err(SourceError::Unsupported(
                "POP3 cannot move messages; use after = \"delete\" or \"mark-read\" (keep)".into(),
            )),
            _ => Ok(()),
        }
    }

    async fn finish(&mut self) -> Result<(), SourceError> {
        match self.conn.take() {
            Some(c) => c.quit().await,
            None => Ok(()),
        }
    }

    async fn close(mut self) {
        let _ = self.finish().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_line_when_the_command_would_exceed_255_octets_or_exchange() {
        // "AUTH XOAUTH2 " (13) + b64 + CRLF (2) <= 255
        assert!(!needs_two_line(Mechanism::XOAuth2, 240, false));
        assert!(needs_two_line(Mechanism::XOAuth2, 241, false));
        assert!(needs_two_line(Mechanism::XOAuth2, 10, true));
        assert!(needs_two_line(Mechanism::OAuthBearer, 240, false));
    }

    #[test]
    fn capabilities_are_parsed() {
        let lines: Vec<String> = [
            "TOP",
            "UIDL",
            "RESP-CODES",
            "SASL PLAIN xoauth2 OAUTHBEARER",
            "STLS",
            "USER",
            "IMPLEMENTATION Microsoft Exchange POP3",
        ]
        .iter()
        .map(|s| (*s).to_string())
        .collect();
        let c = Capabilities::parse(&lines);
        assert!(c.stls && c.uidl && c.user);
        assert!(c.has_sasl("XOAUTH2") && c.has("resp-codes") && !c.has("SASL-IR"));
        assert!(is_exchange_like("127.0.0.1", "ready", &c));
        assert!(is_exchange_like(
            "outlook.office365.com",
            "",
            &Capabilities::default()
        ));
        assert!(!is_exchange_like(
            "pop.gmail.com",
            "Gpop ready",
            &Capabilities::default()
        ));
    }

    #[test]
    fn quoted_lines_are_trimmed_and_cut() {
        assert_eq!(quoted("-ERR x\r\n"), "-ERR x");
        assert_eq!(quoted(&"a".repeat(600)).chars().count(), MAX_QUOTED + 1);
    }
}
