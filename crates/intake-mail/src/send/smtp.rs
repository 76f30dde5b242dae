//! SMTP submission (RFC 6409) with `AUTH XOAUTH2` or `AUTH PLAIN`, on the same transport as
//! IMAP and POP3 ([`crate::transport`]: HTTP CONNECT / SOCKS5 proxies, a deadline on every read
//! and write, TLS with the channel's extra CA), written here rather than on lettre so that the
//! proxied, deadline-bounded stream and the CA handling are the ones every other protocol uses,
//! and so that each stage's own server reply is at hand for the doctor (docs/decisions.md).
//!
//! Stages: greeting → `EHLO` → `STARTTLS` + `EHLO` (or implicit TLS) → `AUTH` → `MAIL FROM` →
//! `RCPT TO` → `DATA` (dot-stuffed) → `QUIT`. [`SmtpClient::check`] stops after `MAIL FROM`
//! and sends `RSET` (the doctor: nothing is sent). Every reply the server refuses comes back
//! as [`SmtpError::Refused`] with the stage and the server's words; [`explain`] decodes
//! Exchange Online's texts (5.7.139 SMTP AUTH disabled, 5.7.60 not allowed to send as, 5.7.57
//! not authenticated). A 4xx answer or a lost connection is transient, a 5xx permanent.
//! Errors never contain the password or the token.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretString};
use std::fmt::Debug;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

pub use super::Outcome;
use super::SendError;
use crate::source::SourceError;
use crate::source::imap::Tls;
use crate::transport::{self, Endpoint, Timeouts, stalled, timeout_error};

/// The longest reply line accepted.
const MAX_LINE: u64 = 16 * 1024;
/// Lines of one reply accepted (EHLO lists capabilities).
const MAX_LINES: usize = 100;

/// How to log in.
#[derive(Clone)]
pub enum SmtpAuth {
    /// `AUTH PLAIN` (or `LOGIN` when PLAIN is not offered).
    Password {
        user: String,
        password: SecretString,
    },
    /// `AUTH XOAUTH2` with an access token for the SMTP audience.
    XOAuth2 { user: String, token: SecretString },
}

impl Debug for SmtpAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Password { user, .. } => write!(f, "Password({user})"),
            Self::XOAuth2 { user, .. } => write!(f, "XOAuth2({user})"),
        }
    }
}

impl SmtpAuth {
    fn mechanism(&self) -> &'static str {
        match self {
            Self::Password { .. } => "PLAIN",
            Self::XOAuth2 { .. } => "XOAUTH2",
        }
    }
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    /// `Implicit` (port 465), `StartTls` (587), `None` (tests only).
    pub tls: Tls,
    pub ca_pem: Option<Vec<u8>>,
    pub auth: SmtpAuth,
    pub proxy: Option<crate::net::ProxySettings>,
    pub timeouts: Timeouts,
    /// The name sent in `EHLO`.
    pub hello: String,
}

/// One reply: the code, the enhanced status code if any (`5.7.139`), the text of all lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub enhanced: Option<String>,
    pub lines: Vec<String>,
}

impl Reply {
    pub fn text(&self) -> String {
        self.lines.join(" / ")
    }

    fn ok(&self) -> bool {
        (200..400).contains(&self.code)
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code, self.text())
    }
}

/// Why an SMTP session did not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    /// Connect, TLS, a timeout, a lost connection.
    #[error(transparent)]
    Transport(#[from] SourceError),
    /// The server answered `stage` with a refusal.
    #[error("{stage}: the server answered {reply}{}", explain(reply).map(|e| format!(" — {e}")).unwrap_or_default())]
    Refused { stage: &'static str, reply: Reply },
}

impl SmtpError {
    /// The stage that failed, as the doctor names it.
    pub fn stage(&self) -> &str {
        match self {
            Self::Transport(SourceError::Connect { .. }) => "connect",
            Self::Transport(SourceError::Tls { .. }) => "TLS",
            Self::Transport(SourceError::Timeout { .. }) => "timeout",
            Self::Transport(_) => "connection",
            Self::Refused { stage, .. } => stage,
        }
    }
}

impl From<SmtpError> for SendError {
    fn from(e: SmtpError) -> Self {
        match &e {
            SmtpError::Refused { reply, .. } if reply.code >= 500 => {
                SendError::Permanent(e.to_string())
            }
            _ => SendError::transient(e.to_string()),
        }
    }
}

/// What Exchange Online's (and Gmail's) refusals mean, with the fix's section in
/// docs/troubleshooting.md.
pub fn explain(reply: &Reply) -> Option<&'static str> {
    let text = reply.text().to_ascii_lowercase();
    let code = reply.enhanced.as_deref().unwrap_or_default();
    if code == "5.7.139" || text.contains("smtpclientauthentication is disabled") {
        return Some(
            "SMTP AUTH is disabled for this tenant or mailbox (SmtpClientAuthentication): enable authenticated SMTP for the mailbox, or send through Graph; see docs/troubleshooting.md, \"Outgoing mail: 5.7.139\"",
        );
    }
    if code == "5.7.60" || text.contains("not allowed to send as") {
        return Some(
            "the signed-in account may not send as this From address: grant it Send As on the mailbox (or send from the account's own address); see docs/troubleshooting.md, \"Outgoing mail: 5.7.60\"",
        );
    }
    if code == "5.7.57" || text.contains("client not authenticated to send mail") {
        return Some(
            "the server did not count the session as authenticated: use port 587 with STARTTLS and AUTH, and a token with the SMTP.Send scope; see docs/troubleshooting.md, \"Outgoing mail: 5.7.57\"",
        );
    }
    if text.contains("5.7.8") || text.contains("5.7.3") || reply.code == 535 {
        return Some(
            "authentication was refused: check the mailbox (login user), the token's audience and scope (SMTP), or the password; see docs/troubleshooting.md, \"Outgoing mail: authentication refused\"",
        );
    }
    None
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send + Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Debug> Io for T {}

/// An open, authenticated submission session.
#[derive(Debug)]
pub struct SmtpClient {
    io: BufReader<Box<dyn Io>>,
    addr: String,
    op: &'static str,
    /// EHLO capability lines (upper-cased keywords first).
    caps: Vec<String>,
}

impl SmtpClient {
    /// Connect, greet, `EHLO`, TLS as configured, authenticate.
    pub async fn connect(s: &SmtpSettings) -> Result<Self, SmtpError> {
        let mut c = Self::open(s).await?;
        c.authenticate(&s.auth).await?;
        Ok(c)
    }

    /// Connect, greet, `EHLO`, TLS as configured (no authentication yet).
    pub async fn open(s: &SmtpSettings) -> Result<Self, SmtpError> {
        let e = Endpoint {
            host: &s.host,
            port: s.port,
            proxy: s.proxy.as_ref(),
            ca_pem: s.ca_pem.as_deref(),
            timeouts: s.timeouts,
        };
        let addr = e.addr();
        let plain = transport::connect(&e).await?;
        let io: Box<dyn Io> = match s.tls {
            Tls::Implicit => Box::new(transport::tls(&e, plain).await?),
            _ => Box::new(plain),
        };
        let mut c = Self {
            io: BufReader::new(io),
            addr,
            op: "greeting",
            caps: Vec::new(),
        };
        c.expect("greeting", 220).await?;
        c.ehlo(&s.hello).await?;
        if s.tls == Tls::StartTls {
            c.command("STARTTLS", "STARTTLS", 220).await?;
            // Nothing may be buffered past the 220 (a server that pipelines into the
            // handshake is a STARTTLS injection).
            if !c.io.buffer().is_empty() {
                return Err(SmtpError::Transport(SourceError::Protocol(
                    "the SMTP server sent data after its STARTTLS answer".into(),
                )));
            }
            let inner = c.io.into_inner();
            let tls: Box<dyn Io> = Box::new(transport::tls(&e, inner).await?);
            c.io = BufReader::new(tls);
            c.ehlo(&s.hello).await?;
        }
        Ok(c)
    }

    /// Whether `EHLO` offered `keyword` (e.g. `AUTH`, `8BITMIME`).
    pub fn offers(&self, keyword: &str) -> bool {
        self.caps.iter().any(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|k| k.eq_ignore_ascii_case(keyword))
        })
    }

    fn auth_mechanisms(&self) -> Vec<String> {
        self.caps
            .iter()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                let k = w.next()?;
                (k.eq_ignore_ascii_case("AUTH"))
                    .then(|| w.map(str::to_ascii_uppercase).collect::<Vec<_>>())
            })
            .flatten()
            .collect()
    }

    async fn ehlo(&mut self, hello: &str) -> Result<(), SmtpError> {
        let r = self.command(&format!("EHLO {hello}"), "EHLO", 250).await?;
        self.caps = r.lines.iter().skip(1).cloned().collect();
        Ok(())
    }

    /// `AUTH` with the configured credentials.
    pub async fn authenticate(&mut self, auth: &SmtpAuth) -> Result<(), SmtpError> {
        let offered = self.auth_mechanisms();
        let mech = auth.mechanism();
        let (initial, mech) = match auth {
            SmtpAuth::XOAuth2 { user, token } => (
                SecretString::from(
                    STANDARD.encode(crate::sasl::xoauth2(user, token.expose_secret())),
                ),
                mech,
            ),
            SmtpAuth::Password { user, password } => {
                if !offered.iter().any(|m| m == "PLAIN") && offered.iter().any(|m| m == "LOGIN") {
                    return self.auth_login(user, password).await;
                }
                let raw = format!("\0{user}\0{}", password.expose_secret());
                (SecretString::from(STANDARD.encode(raw)), mech)
            }
        };
        if !offered.is_empty() && !offered.iter().any(|m| m == mech) {
            tracing::info!(offered = ?offered, "the SMTP server does not list {mech}; trying it anyway");
        }
        // The initial response on the AUTH line (RFC 4954 allows it; Exchange and Gmail take
        // XOAUTH2 this way). The line is built here and never logged.
        self.send_line(&format!("AUTH {mech} {}", initial.expose_secret()), "AUTH")
            .await?;
        let mut r = self.read_reply().await?;
        if r.code == 334 {
            // XOAUTH2: the server's base64 JSON error challenge; answer with an empty line to
            // get the final reply, and keep the decoded challenge for the error.
            let challenge = r
                .lines
                .first()
                .and_then(|l| STANDARD.decode(l.trim()).ok())
                .map(|b| String::from_utf8_lossy(&b).to_string());
            self.send_line("", "AUTH").await?;
            r = self.read_reply().await?;
            if let Some(c) = challenge {
                r.lines.push(format!("(challenge: {c})"));
            }
        }
        if r.code == 235 {
            return Ok(());
        }
        Err(SmtpError::Refused {
            stage: "AUTH",
            reply: r,
        })
    }

    async fn auth_login(&mut self, user: &str, password: &SecretString) -> Result<(), SmtpError> {
        self.command("AUTH LOGIN", "AUTH", 334).await?;
        self.send_line(&STANDARD.encode(user), "AUTH").await?;
        let r = self.read_reply().await?;
        if r.code != 334 {
            return Err(SmtpError::Refused {
                stage: "AUTH",
                reply: r,
            });
        }
        let p = SecretString::from(STANDARD.encode(password.expose_secret()));
        self.send_line(p.expose_secret(), "AUTH").await?;
        let r = self.read_reply().await?;
        if r.code == 235 {
            Ok(())
        } else {
            Err(SmtpError::Refused {
                stage: "AUTH",
                reply: r,
            })
        }
    }

    /// `MAIL FROM`, then `RSET`: what the doctor checks (the server accepts this sender for
    /// this login) without sending anything.
    pub async fn check_sender(&mut self, from: &str) -> Result<Reply, SmtpError> {
        let r = self
            .command(&format!("MAIL FROM:<{from}>"), "MAIL FROM", 250)
            .await?;
        self.command("RSET", "RSET", 250).await?;
        Ok(r)
    }

    /// Send one message to `to` from `from` ([`SmtpClient::begin`], then
    /// [`SmtpClient::finish`]).
    pub async fn send(
        &mut self,
        from: &str,
        to: &[String],
        message: &[u8],
    ) -> Result<(), SmtpError> {
        self.begin(from, to).await?;
        self.finish(message).await.map_err(|(e, _)| e)
    }

    /// `MAIL FROM`, `RCPT TO` for each recipient, `DATA` answered with 354: everything but the
    /// final step. Nothing is delivered until [`SmtpClient::finish`] ends the data.
    pub async fn begin(&mut self, from: &str, to: &[String]) -> Result<(), SmtpError> {
        self.command(&format!("MAIL FROM:<{from}>"), "MAIL FROM", 250)
            .await?;
        for r in to {
            self.command(&format!("RCPT TO:<{r}>"), "RCPT TO", 250)
                .await?;
        }
        self.command("DATA", "DATA", 354).await?;
        Ok(())
    }

    /// The final step: the message (dot-stuffed), the end of data, and the server's answer.
    /// On failure, the [`Outcome`] says whether the server answered (then nothing was
    /// accepted: RFC 5321 §4.1.1.4, the server takes responsibility only with its 250) or the
    /// answer never came (the message may have been accepted).
    pub async fn finish(&mut self, message: &[u8]) -> Result<(), (SmtpError, Outcome)> {
        let mut data = Vec::with_capacity(message.len() + 64);
        let mut at_line_start = true;
        for &b in message {
            if at_line_start && b == b'.' {
                data.push(b'.');
            }
            data.push(b);
            at_line_start = b == b'\n';
        }
        if !data.ends_with(b"\r\n") {
            data.extend_from_slice(b"\r\n");
        }
        data.extend_from_slice(b".\r\n");
        self.op = "DATA";
        let unknown = |e| (e, Outcome::Unknown);
        self.io
            .get_mut()
            .write_all(&data)
            .await
            .map_err(|e| unknown(self.io_error(e)))?;
        self.io
            .get_mut()
            .flush()
            .await
            .map_err(|e| unknown(self.io_error(e)))?;
        let r = self.read_reply().await.map_err(unknown)?;
        if r.code == 250 {
            Ok(())
        } else {
            Err((
                SmtpError::Refused {
                    stage: "DATA",
                    reply: r,
                },
                Outcome::NotSent,
            ))
        }
    }

    /// `QUIT` (errors ignored: the message is already accepted).
    pub async fn quit(mut self) {
        let _ = self.command("QUIT", "QUIT", 221).await;
    }

    async fn command(
        &mut self,
        line: &str,
        stage: &'static str,
        want: u16,
    ) -> Result<Reply, SmtpError> {
        self.send_line(line, stage).await?;
        self.expect(stage, want).await
    }

    async fn expect(&mut self, stage: &'static str, want: u16) -> Result<Reply, SmtpError> {
        self.op = stage;
        let r = self.read_reply().await?;
        if r.code == want || (want == 250 && r.ok() && r.code < 300) {
            Ok(r)
        } else {
            Err(SmtpError::Refused { stage, reply: r })
        }
    }

    async fn send_line(&mut self, line: &str, stage: &'static str) -> Result<(), SmtpError> {
        self.op = stage;
        let mut bytes = Vec::with_capacity(line.len() + 2);
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        let w = self.io.get_mut();
        w.write_all(&bytes).await.map_err(|e| self.io_error(e))?;
        self.io
            .get_mut()
            .flush()
            .await
            .map_err(|e| self.io_error(e))?;
        Ok(())
    }

    fn io_error(&self, e: std::io::Error) -> SmtpError {
        SmtpError::Transport(match stalled(&e) {
            Some(after) => timeout_error(self.op, &self.addr, after),
            None => SourceError::Protocol(format!("SMTP connection ({}): {e}", self.op)),
        })
    }

    async fn read_reply(&mut self) -> Result<Reply, SmtpError> {
        let mut lines = Vec::new();
        let code;
        loop {
            let mut buf = Vec::new();
            let n = (&mut self.io)
                .take(MAX_LINE)
                .read_until(b'\n', &mut buf)
                .await
                .map_err(|e| self.io_error(e))?;
            if n == 0 {
                return Err(SmtpError::Transport(SourceError::Protocol(format!(
                    "the SMTP server closed the connection (waiting for the answer to {})",
                    self.op
                ))));
            }
            let line = String::from_utf8_lossy(&buf).trim_end().to_string();
            if line.len() < 3 || !line.is_char_boundary(3) {
                return Err(SmtpError::Transport(SourceError::Protocol(format!(
                    "not an SMTP reply: {line:?}"
                ))));
            }
            let this: u16 = line[..3].parse().map_err(|_| {
                SmtpError::Transport(SourceError::Protocol(format!(
                    "not an SMTP reply: {line:?}"
                )))
            })?;
            let more = line.as_bytes().get(3) == Some(&b'-');
            lines.push(line.get(4..).unwrap_or_default().to_string());
            if !more || lines.len() >= MAX_LINES {
                code = this;
                break;
            }
        }
        let enhanced = lines.iter().find_map(|l| {
            let w = l.split_whitespace().next()?;
            let parts: Vec<&str> = w.split('.').collect();
            (parts.len() == 3
                && parts
                    .iter()
                    .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())))
            .then(|| w.to_string())
        });
        Ok(Reply {
            code,
            enhanced,
            lines,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(code: u16, text: &str) -> Reply {
        Reply {
            code,
            enhanced: text
                .split_whitespace()
                .next()
                .filter(|w| w.contains('.'))
                .map(str::to_string),
            lines: vec![text.to_string()],
        }
    }

    #[test]
    fn exchange_refusals_are_decoded() {
        let e = reply(
            535,
            "5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information.",
        );
        assert!(explain(&e).unwrap().contains("SMTP AUTH is disabled"));
        let e = reply(
            550,
            "5.7.60 SMTP; Client does not have permissions to send as this sender",
        );
        assert!(explain(&e).unwrap().contains("Send As"));
        let e = reply(
            530,
            "5.7.57 Client not authenticated to send mail. Error: 535 5.7.139",
        );
        assert!(explain(&e).unwrap().contains("authenticated"));
        assert_eq!(explain(&reply(250, "2.1.0 Sender OK")), None);
    }

    #[test]
    fn a_5xx_is_permanent_and_a_4xx_transient() {
        let p: SendError = SmtpError::Refused {
            stage: "RCPT TO",
            reply: reply(550, "5.1.1 no such user"),
        }
        .into();
        assert!(!p.is_transient());
        let t: SendError = SmtpError::Refused {
            stage: "MAIL FROM",
            reply: reply(451, "4.3.0 try later"),
        }
        .into();
        assert!(t.is_transient());
    }
}
