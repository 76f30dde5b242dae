//! The one transport layer under every mail protocol client (IMAP and POP3 today, SMTP next):
//! a TCP connection (direct, HTTP CONNECT or SOCKS5: [`crate::net`]), optionally wrapped in TLS
//! (implicit, or after the protocol's STARTTLS/STLS), inside a [`Timed`] stream whose every read
//! and write has a deadline.
//!
//! The invariant: **no network operation waits forever**. A connection attempt has
//! [`Timeouts::connect`], a TLS handshake [`Timeouts::tls`], and every read or write that makes no
//! progress for [`Timeouts::command`] fails with an [`std::io::ErrorKind::TimedOut`] error that
//! carries the address and how long it waited ([`Stalled`]). The deadline is per *progress*, not
//! per operation: a 40 MB FETCH that keeps delivering bytes never times out, a server that stops
//! sending in the middle of one does after `command`. Protocol clients turn the stall into
//! [`SourceError::Timeout`] naming the operation (`greeting`, `LOGIN`, `UID FETCH`, `RETR 7`…),
//! see [`timeout_error`].
//!
//! IDLE waits longer than `command` on purpose: the IMAP client raises the read deadline with
//! [`Deadline::set`] while IDLE runs (to its own re-issue deadline plus `command`) and lowers it
//! again for `DONE`, so a connection that died during IDLE is found at the latest when IDLE is
//! re-issued. TCP keep-alive (probes after 60 s of silence) finds a vanished peer sooner.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use crate::net::ProxySettings;
use crate::source::SourceError;

/// Deadlines for the network operations of a mail connection. `Default` gives the documented
/// defaults (docs/configuration.md); a channel's `timeout_seconds` sets them all at once
/// ([`Timeouts::uniform`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP connect, including the proxy's CONNECT / SOCKS5 handshake. Default 15 s.
    pub connect: Duration,
    /// A TLS handshake (implicit TLS or after STARTTLS/STLS). Default 15 s.
    pub tls: Duration,
    /// The server's answer to anything: greeting, login, SELECT, SEARCH, STORE, POP3 commands;
    /// and for long answers (FETCH, RETR, HTTP bodies) each stretch without a single byte.
    /// Default 60 s.
    pub command: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(15),
            tls: Duration::from_secs(15),
            command: Duration::from_secs(60),
        }
    }
}

impl Timeouts {
    /// Every deadline set to `d` (a channel's `timeout_seconds`).
    pub fn uniform(d: Duration) -> Self {
        Self {
            connect: d,
            tls: d,
            command: d,
        }
    }
}

/// The payload of the `TimedOut` I/O error a [`Timed`] stream returns.
#[derive(Debug, thiserror::Error)]
#[error("no data from {addr} for {}", secs(*after))]
pub struct Stalled {
    pub addr: String,
    pub after: Duration,
}

pub(crate) fn secs(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// How long a stall lasted when `e` is a [`Timed`] stream's timeout (looking through the I/O
/// error's source chain, as protocol libraries wrap it).
pub fn stalled(e: &(dyn std::error::Error + 'static)) -> Option<Duration> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(s) = err.downcast_ref::<Stalled>() {
            return Some(s.after);
        }
        if let Some(io) = err.downcast_ref::<io::Error>()
            && let Some(s) = io.get_ref().and_then(|i| i.downcast_ref::<Stalled>())
        {
            return Some(s.after);
        }
        cur = err.source();
    }
    None
}

/// [`SourceError::Timeout`] for `operation` on `addr` after `after`.
pub fn timeout_error(operation: impl Into<String>, addr: &str, after: Duration) -> SourceError {
    SourceError::Timeout {
        operation: operation.into(),
        addr: addr.to_string(),
        after,
    }
}

/// Run `f` with a deadline; past it, [`SourceError::Timeout`] for `operation`.
pub async fn within<T>(
    operation: &str,
    addr: &str,
    limit: Duration,
    f: impl Future<Output = Result<T, SourceError>>,
) -> Result<T, SourceError> {
    match tokio::time::timeout(limit, f).await {
        Ok(r) => r,
        Err(_) => Err(timeout_error(operation, addr, limit)),
    }
}

/// A shared handle to a [`Timed`] stream's read deadline, so a protocol client can raise it
/// for a long wait (IDLE) and lower it again. Every [`set`](Self::set) also forgets a deadline
/// armed by an earlier, abandoned read.
#[derive(Debug, Clone)]
pub struct Deadline(Arc<DeadlineInner>);

#[derive(Debug)]
struct DeadlineInner {
    read_ms: AtomicU64,
    epoch: AtomicU64,
}

impl Deadline {
    fn new(read: Duration) -> Self {
        Self(Arc::new(DeadlineInner {
            read_ms: AtomicU64::new(read.as_millis() as u64),
            epoch: AtomicU64::new(0),
        }))
    }

    /// The longest a read may wait for its first byte from now on.
    pub fn set(&self, read: Duration) {
        self.0
            .read_ms
            .store(read.as_millis() as u64, Ordering::SeqCst);
        self.0.epoch.fetch_add(1, Ordering::SeqCst);
    }

    fn read(&self) -> Duration {
        Duration::from_millis(self.0.read_ms.load(Ordering::SeqCst))
    }

    fn epoch(&self) -> u64 {
        self.0.epoch.load(Ordering::SeqCst)
    }
}

/// A stream whose reads and writes fail with [`Stalled`] after making no progress for their
/// deadline (reads: [`Deadline`], default [`Timeouts::command`]; writes: `command`). The clock
/// starts when an operation first has to wait and stops at every byte moved.
///
/// Cheap per read: a bulk download waits (returns `Pending`) thousands of times, each time only
/// for a moment. Each direction keeps one timer for the connection's life and notes when the
/// current wait began; the timer may be set earlier than the wait's deadline (by an earlier
/// wait), and when it fires early it is moved to the deadline. So the timer is armed about once
/// per deadline period instead of once per wait (docs/BENCHMARKS.md, issue 15).
#[derive(Debug)]
pub struct Timed<S> {
    inner: S,
    addr: String,
    deadline: Deadline,
    write_after: Duration,
    read: Clock,
    write: Clock,
}

/// One direction's stall clock: the running wait (when it began, and the [`Deadline`] epoch it
/// began in) and the reusable timer.
#[derive(Debug, Default)]
struct Clock {
    waiting: Option<(Instant, u64)>,
    timer: Option<Pin<Box<Sleep>>>,
}

impl Clock {
    /// Progress: the running wait (if any) is over.
    fn progress(&mut self) {
        self.waiting = None;
    }

    /// The operation has to wait: `Ready` with how long it waited once the current wait has
    /// lasted `after`, else `Pending` with the timer set to wake the task by then. A wait that
    /// began in an earlier `epoch` is forgotten (the deadline was moved since).
    fn wait(&mut self, cx: &mut Context<'_>, after: Duration, epoch: u64) -> Poll<Duration> {
        let since = match self.waiting {
            Some((t, e)) if e == epoch => t,
            _ => {
                let now = Instant::now();
                self.waiting = Some((now, epoch));
                now
            }
        };
        let due = since + after;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
        if timer.deadline() > due {
            timer.as_mut().reset(due);
        }
        loop {
            ready!(timer.as_mut().poll(cx));
            if Instant::now() >= due {
                self.waiting = None;
                return Poll::Ready(after);
            }
            // Set by an earlier wait: move it to this wait's deadline.
            timer.as_mut().reset(due);
        }
    }
}

impl<S> Timed<S> {
    pub fn new(inner: S, addr: &str, t: &Timeouts) -> Self {
        Self {
            inner,
            addr: addr.to_string(),
            deadline: Deadline::new(t.command),
            write_after: t.command,
            read: Clock::default(),
            write: Clock::default(),
        }
    }

    /// The handle that moves this stream's read deadline.
    pub fn deadline(&self) -> Deadline {
        self.deadline.clone()
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    fn stalled(&self, after: Duration) -> io::Error {
        io::Error::new(
            io::ErrorKind::TimedOut,
            Stalled {
                addr: self.addr.clone(),
                after,
            },
        )
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Timed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                this.read.progress();
                Poll::Ready(r)
            }
            Poll::Pending => {
                let (after, epoch) = (this.deadline.read(), this.deadline.epoch());
                let waited = ready!(this.read.wait(cx, after, epoch));
                Poll::Ready(Err(this.stalled(waited)))
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> Timed<S> {
    fn poll_write_deadline<T>(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match r {
            Poll::Ready(r) => {
                self.write.progress();
                Poll::Ready(r)
            }
            Poll::Pending => {
                let waited = ready!(self.write.wait(cx, self.write_after, 0));
                Poll::Ready(Err(self.stalled(waited)))
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Timed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.poll_write_deadline(cx, r)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_flush(cx);
        this.poll_write_deadline(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.poll_write_deadline(cx, r)
    }
}

/// Where and how to open a connection.
#[derive(Debug, Clone)]
pub struct Endpoint<'a> {
    pub host: &'a str,
    pub port: u16,
    pub proxy: Option<&'a ProxySettings>,
    /// Extra CA certificates (PEM) trusted besides the web PKI roots.
    pub ca_pem: Option<&'a [u8]>,
    pub timeouts: Timeouts,
}

impl Endpoint<'_> {
    /// `host:port`, as errors name it.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// A TCP connection with deadlines, before any TLS.
pub type Plain = Timed<TcpStream>;
/// A TLS connection over a [`Plain`] one (the deadline sits under TLS, so handshake and
/// records are bounded too).
pub type Secure = tokio_rustls::client::TlsStream<Plain>;

/// TCP (through the proxy unless `no_proxy` exempts the host) within [`Timeouts::connect`],
/// with TCP keep-alive on.
pub async fn connect(e: &Endpoint<'_>) -> Result<Plain, SourceError> {
    let addr = e.addr();
    let tcp = within("connect", &addr, e.timeouts.connect, async {
        crate::net::connect(e.host, e.port, e.proxy)
            .await
            .map_err(|err| SourceError::Connect {
                addr: addr.clone(),
                message: err.to_string(),
            })
    })
    .await?;
    keepalive(&tcp);
    Ok(Timed::new(tcp, &addr, &e.timeouts))
}

/// Probes after 60 s of silence, every 15 s, 4 times: a peer that vanished (no FIN, no RST)
/// is noticed within about two minutes even while nothing is sent (IDLE).
fn keepalive(tcp: &TcpStream) {
    let ka = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(60))
        .with_interval(Duration::from_secs(15));
    #[cfg(any(target_os = "linux", target_os = "macos", target_os = "freebsd"))]
    let ka = ka.with_retries(4);
    if let Err(err) = socket2::SockRef::from(tcp).set_tcp_keepalive(&ka) {
        tracing::debug!("TCP keep-alive not set: {err}");
    }
}

/// The TLS handshake over `stream` within [`Timeouts::tls`], checking the certificate against
/// `host` and the web PKI roots plus the endpoint's extra CA.
pub async fn tls<S>(
    e: &Endpoint<'_>,
    stream: S,
) -> Result<tokio_rustls::client::TlsStream<S>, SourceError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let addr = e.addr();
    let tls_err = |message: String| SourceError::Tls {
        addr: addr.clone(),
        message,
    };
    let connector = crate::tls::connector(e.ca_pem).map_err(|err| tls_err(err.to_string()))?;
    let name = rustls_pki_types::ServerName::try_from(e.host.to_string())
        .map_err(|err| tls_err(err.to_string()))?;
    match tokio::time::timeout(e.timeouts.tls, connector.connect(name, stream)).await {
        Err(_) => Err(timeout_error("TLS handshake", &addr, e.timeouts.tls)),
        Ok(Err(err)) => match stalled(&err) {
            Some(after) => Err(timeout_error("TLS handshake", &addr, after)),
            None => Err(tls_err(err.to_string())),
        },
        Ok(Ok(s)) => Ok(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::time::Instant;

    #[tokio::test]
    async fn a_silent_peer_fails_the_read_after_the_deadline_and_names_the_address() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut c, _) = l.accept().await.unwrap();
            // A trickle that keeps the reader alive, then silence.
            for _ in 0..4 {
                c.write_all(b"x").await.unwrap();
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        let t = Timeouts::uniform(Duration::from_millis(400));
        let e = Endpoint {
            host: "127.0.0.1",
            port,
            proxy: None,
            ca_pem: None,
            timeouts: t,
        };
        let mut s = connect(&e).await.unwrap();
        let start = Instant::now();
        let mut buf = Vec::new();
        let err = s.read_to_end(&mut buf).await.unwrap_err();
        assert_eq!(buf, b"xxxx", "progress resets the deadline");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(stalled(&err), Some(Duration::from_millis(400)));
        assert!(
            err.to_string().contains(&format!("127.0.0.1:{port}")),
            "{err}"
        );
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(750) && took < Duration::from_secs(3),
            "{took:?}"
        );
        server.abort();
    }

    #[tokio::test]
    async fn a_raised_deadline_applies_to_the_next_wait_and_forgets_an_abandoned_one() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut c, _) = l.accept().await.unwrap();
            tokio::time::sleep(Duration::from_millis(700)).await;
            c.write_all(b"late").await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        let t = Timeouts::uniform(Duration::from_millis(200));
        let e = Endpoint {
            host: "127.0.0.1",
            port,
            proxy: None,
            ca_pem: None,
            timeouts: t,
        };
        let mut s = connect(&e).await.unwrap();
        let d = s.deadline();
        // A read abandoned before its deadline (as when IDLE is interrupted) …
        let mut b = [0u8; 4];
        assert!(
            tokio::time::timeout(Duration::from_millis(50), s.read(&mut b))
                .await
                .is_err()
        );
        // … and a raised deadline: the late answer arrives.
        d.set(Duration::from_secs(2));
        s.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"late");
        server.abort();
    }

    #[tokio::test]
    async fn connect_to_a_black_hole_times_out_naming_connect() {
        // A listener whose backlog is full does not complete new handshakes on Linux only
        // sometimes; a proxy that never answers is deterministic: the CONNECT reply never comes.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let hold = tokio::spawn(async move {
            let (_c, _) = l.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        let proxy = ProxySettings {
            url: format!("http://127.0.0.1:{port}"),
            no_proxy: vec![],
        };
        let e = Endpoint {
            host: "mail.test",
            port: 993,
            proxy: Some(&proxy),
            ca_pem: None,
            timeouts: Timeouts::uniform(Duration::from_millis(300)),
        };
        let err = connect(&e).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "connect on mail.test:993 timed out after 0.3 s"
        );
        hold.abort();
    }
}
