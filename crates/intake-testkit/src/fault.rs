//! A fault-injecting TCP proxy for the fault tests and the soak benchmark: it listens on a
//! free `127.0.0.1` port and forwards every connection to one target (Dovecot's IMAP/POP3
//! port, an OAuth server, a Graph fake), and the test changes what it does while traffic flows:
//!
//! | call | effect |
//! | --- | --- |
//! | [`FaultProxy::pass`] | forward everything (the default; ends a stall or a drip) |
//! | [`FaultProxy::cut_after`] | the connection that carries the next N bytes in one direction (counted from now, over all connections) is closed after them, both ways: e.g. mid-FETCH (server→client) or mid-command (client→server). One-shot |
//! | [`FaultProxy::stall`] | stop forwarding on every connection, open or new (a hung server): nothing closes, nothing moves, until [`FaultProxy::pass`] |
//! | [`FaultProxy::freeze_open`] | the connections open now stop forwarding for good (until the client gives up and closes); new connections work: recovering needs a client-side timeout |
//! | [`FaultProxy::drip`] | forward `bytes` bytes every `every` (a slow link) until [`FaultProxy::pass`] |
//! | [`FaultProxy::reset_all`] | every open connection is reset (RST, `SO_LINGER` 0) toward the client and the server, e.g. during IDLE |
//! | [`FaultProxy::refuse`] | the listener closes: new connections are refused (`ECONNREFUSED`) until [`FaultProxy::accept`] (open ones go on) |
//! | [`FaultProxy::chaos`] | a random fault of the above every `every` (± half), each over after a short while; for the soak |
//!
//! The proxy runs on its own thread with its own Tokio runtime, so it keeps forwarding while the
//! test's runtime blocks (a `std::process` wait, a synchronous delivery) and can be driven from
//! sync and async code alike. [`FaultProxy::stats`] counts connections, bytes and faults, so a
//! test can assert that its faults really hit traffic. Dropping the proxy closes everything.
//!
//! ```ignore
//! let proxy = FaultProxy::start(("127.0.0.1", dc.imaps_port))?;
//! // point the channel at 127.0.0.1:{proxy.port}
//! proxy.cut_after(Dir::Down, 64 * 1024); // mid-FETCH
//! proxy.reset_all();
//! proxy.refuse(); /* ... */ proxy.accept();
//! ```

use std::io;
use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A direction of traffic through the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// Client → server (commands, uploads).
    Up,
    /// Server → client (responses, FETCH data).
    Down,
}

impl Dir {
    fn index(self) -> usize {
        match self {
            Dir::Up => 0,
            Dir::Down => 1,
        }
    }
}

/// How data moves through open and new connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Pass,
    Stall,
    Drip { bytes: usize, every: Duration },
}

/// What happens to one open connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    Run,
    Freeze,
    Reset,
}

/// Counters of what the proxy did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Connections accepted (and forwarded or attempted).
    pub connections: u64,
    /// Bytes forwarded client → server.
    pub up_bytes: u64,
    /// Bytes forwarded server → client.
    pub down_bytes: u64,
    /// Connections closed by [`FaultProxy::cut_after`].
    pub cuts: u64,
    /// Connections reset by [`FaultProxy::reset_all`].
    pub resets: u64,
    /// Connections frozen by [`FaultProxy::freeze_open`].
    pub frozen: u64,
    /// Connections the proxy could not open to the target (the client was reset).
    pub target_failures: u64,
}

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    bytes: [AtomicU64; 2],
    cuts: AtomicU64,
    resets: AtomicU64,
    frozen: AtomicU64,
    target_failures: AtomicU64,
}

struct Shared {
    target: SocketAddr,
    flow: watch::Sender<Flow>,
    refusing: watch::Sender<bool>,
    shutdown: watch::Sender<bool>,
    /// Armed cut per direction: bytes still to forward before the cut.
    cut: Mutex<[Option<u64>; 2]>,
    conns: Mutex<Vec<watch::Sender<Signal>>>,
    counters: Counters,
    log: Mutex<Vec<(Instant, String)>>,
}

impl Shared {
    fn note(&self, what: String) {
        if let Ok(mut l) = self.log.lock() {
            l.push((Instant::now(), what));
        }
    }

    /// Of `n` bytes about to go in `dir`, how many may go, and whether the connection is cut
    /// after them.
    fn budget(&self, dir: Dir, n: usize) -> (usize, bool) {
        let Ok(mut cut) = self.cut.lock() else {
            return (n, false);
        };
        match cut[dir.index()] {
            None => (n, false),
            Some(left) if (n as u64) < left => {
                cut[dir.index()] = Some(left - n as u64);
                (n, false)
            }
            Some(left) => {
                cut[dir.index()] = None;
                (left as usize, true)
            }
        }
    }

    fn signal_all(&self, s: Signal) -> usize {
        let Ok(mut conns) = self.conns.lock() else {
            return 0;
        };
        conns.retain(|c| !c.is_closed());
        let mut n = 0;
        for c in conns.iter() {
            if *c.borrow() == Signal::Run {
                let _ = c.send(s);
                n += 1;
            }
        }
        n
    }
}

/// A running proxy; dropping it stops it and closes every connection.
pub struct FaultProxy {
    /// The proxy's port on 127.0.0.1: point the client here.
    pub port: u16,
    /// Where it forwards to.
    pub target: SocketAddr,
    shared: Arc<Shared>,
    handle: tokio::runtime::Handle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("port", &self.port)
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl FaultProxy {
    /// Listen on a free `127.0.0.1` port and forward to `target`.
    pub fn start(target: impl ToSocketAddrs) -> io::Result<FaultProxy> {
        let target = target
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::other("no target address"))?;
        let std_listener = std::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
        std_listener.set_nonblocking(true)?;
        let port = std_listener.local_addr()?.port();
        let shared = Arc::new(Shared {
            target,
            flow: watch::channel(Flow::Pass).0,
            refusing: watch::channel(false).0,
            shutdown: watch::channel(false).0,
            cut: Mutex::new([None, None]),
            conns: Mutex::new(Vec::new()),
            counters: Counters::default(),
            log: Mutex::new(Vec::new()),
        });
        // Its own thread and runtime: usable from sync and async tests alike, and it keeps
        // forwarding while the test's runtime blocks.
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("fault-proxy-{port}"))
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = handle_tx.send(Err(e));
                        return;
                    }
                };
                let listener = match rt.block_on(async { TcpListener::from_std(std_listener) }) {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = handle_tx.send(Err(e));
                        return;
                    }
                };
                let _ = handle_tx.send(Ok(rt.handle().clone()));
                rt.block_on(accept_loop(thread_shared, listener, port));
                rt.shutdown_timeout(Duration::from_secs(2));
            })?;
        let handle = handle_rx
            .recv()
            .map_err(|_| io::Error::other("the proxy thread died"))??;
        Ok(FaultProxy {
            port,
            target,
            shared,
            handle,
            thread: Some(thread),
        })
    }

    /// `127.0.0.1:PORT` of the proxy.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// Forward everything again (ends [`FaultProxy::stall`] and [`FaultProxy::drip`]; frozen
    /// connections stay frozen).
    pub fn pass(&self) {
        self.shared.flow.send_replace(Flow::Pass);
        self.shared.note("pass".into());
    }

    /// Close (FIN both ways) the connection that carries the `bytes`-th byte in `dir` from
    /// now on, right after that byte; one-shot. Bytes are counted over all connections, so with
    /// no connection open the next one is hit.
    pub fn cut_after(&self, dir: Dir, bytes: u64) {
        if let Ok(mut cut) = self.shared.cut.lock() {
            cut[dir.index()] = Some(bytes);
        }
        self.shared.note(format!("cut {dir:?} after {bytes} B"));
    }

    /// True while a [`FaultProxy::cut_after`] has not fired yet.
    pub fn cut_pending(&self) -> bool {
        self.shared
            .cut
            .lock()
            .map(|c| c.iter().any(Option::is_some))
            .unwrap_or(false)
    }

    /// Stop forwarding on every connection, open and new, until [`FaultProxy::pass`]: a hung
    /// server (connections are accepted, nothing is answered, nothing closes).
    pub fn stall(&self) {
        self.shared.flow.send_replace(Flow::Stall);
        self.shared.note("stall".into());
    }

    /// Forward at most `bytes` bytes per `every` in both directions until [`FaultProxy::pass`].
    pub fn drip(&self, bytes: usize, every: Duration) {
        self.shared.flow.send_replace(Flow::Drip {
            bytes: bytes.max(1),
            every,
        });
        self.shared
            .note(format!("drip {bytes} B every {} ms", every.as_millis()));
    }

    /// The connections open now stop forwarding for good; the proxy holds them open until the
    /// client closes its side. New connections are not affected. Returns how many were frozen.
    pub fn freeze_open(&self) -> usize {
        let n = self.shared.signal_all(Signal::Freeze);
        self.shared.note(format!("freeze {n} open"));
        n
    }

    /// Reset (RST, `SO_LINGER` 0) every open connection on both sides; returns how many.
    pub fn reset_all(&self) -> usize {
        let n = self.shared.signal_all(Signal::Reset);
        self.shared.note(format!("reset {n} open"));
        n
    }

    /// Close the listener: new connections are refused until [`FaultProxy::accept`].
    pub fn refuse(&self) {
        self.shared.refusing.send_replace(true);
        self.shared.note("refuse".into());
    }

    /// Listen again after [`FaultProxy::refuse`] (same port); returns once it listens.
    pub fn accept(&self) {
        self.shared.refusing.send_replace(false);
        self.shared.note("accept".into());
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect_timeout(&self.addr(), Duration::from_millis(200))
            .is_err()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Connections open right now.
    pub fn open_connections(&self) -> usize {
        self.shared
            .conns
            .lock()
            .map(|mut c| {
                c.retain(|s| !s.is_closed());
                c.len()
            })
            .unwrap_or(0)
    }

    /// What the proxy did so far.
    pub fn stats(&self) -> Stats {
        let c = &self.shared.counters;
        Stats {
            connections: c.connections.load(Ordering::Relaxed),
            up_bytes: c.bytes[0].load(Ordering::Relaxed),
            down_bytes: c.bytes[1].load(Ordering::Relaxed),
            cuts: c.cuts.load(Ordering::Relaxed),
            resets: c.resets.load(Ordering::Relaxed),
            frozen: c.frozen.load(Ordering::Relaxed),
            target_failures: c.target_failures.load(Ordering::Relaxed),
        }
    }

    /// The faults and controls applied so far, oldest first, with when.
    pub fn log(&self) -> Vec<(Instant, String)> {
        self.shared
            .log
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default()
    }

    /// Start a random fault every `every` (± half of it) until the returned [`Chaos`] is
    /// dropped or stopped: a cut in either direction after a random byte count, a stall, a
    /// drip, a reset of all open connections, refused connections (each of the timed ones
    /// lasting `1..=max_outage`), or a freeze of the open connections when `freeze` is set
    /// (recovering from that needs client timeouts). `seed` makes the sequence repeatable.
    pub fn chaos(&self, every: Duration, max_outage: Duration, freeze: bool, seed: u64) -> Chaos {
        let (stop, mut stopped) = watch::channel(false);
        let proxy = Control {
            shared: self.shared.clone(),
        };
        self.handle.spawn(async move {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
            let ms = |d: Duration| d.as_millis().max(1) as u64;
            loop {
                let wait = Duration::from_millis(ms(every) / 2 + rng.below(ms(every)));
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    _ = stopped.changed() => break,
                }
                let outage =
                    Duration::from_millis(1000 + rng.below(ms(max_outage).max(1001) - 999));
                let kinds = if freeze { 7 } else { 6 };
                let timed = match rng.below(kinds) {
                    0 => {
                        proxy.cut_after(Dir::Down, 1 + rng.below(256 * 1024));
                        false
                    }
                    1 => {
                        proxy.cut_after(Dir::Up, 1 + rng.below(512));
                        false
                    }
                    2 => {
                        proxy.shared.flow.send_replace(Flow::Stall);
                        proxy
                            .shared
                            .note(format!("chaos: stall {} ms", outage.as_millis()));
                        true
                    }
                    3 => {
                        proxy.shared.flow.send_replace(Flow::Drip {
                            bytes: 64,
                            every: Duration::from_millis(20),
                        });
                        proxy
                            .shared
                            .note(format!("chaos: drip {} ms", outage.as_millis()));
                        true
                    }
                    4 => {
                        let n = proxy.shared.signal_all(Signal::Reset);
                        proxy.shared.note(format!("chaos: reset {n} open"));
                        false
                    }
                    5 => {
                        proxy.shared.refusing.send_replace(true);
                        proxy
                            .shared
                            .note(format!("chaos: refuse {} ms", outage.as_millis()));
                        true
                    }
                    _ => {
                        let n = proxy.shared.signal_all(Signal::Freeze);
                        proxy.shared.note(format!("chaos: freeze {n} open"));
                        false
                    }
                };
                if timed {
                    tokio::select! {
                        () = tokio::time::sleep(outage) => {}
                        _ = stopped.changed() => {}
                    }
                    proxy.shared.flow.send_replace(Flow::Pass);
                    proxy.shared.refusing.send_replace(false);
                    if *stopped.borrow() {
                        break;
                    }
                }
            }
            // Over: everything passes again, no cut left armed.
            proxy.shared.flow.send_replace(Flow::Pass);
            proxy.shared.refusing.send_replace(false);
            if let Ok(mut cut) = proxy.shared.cut.lock() {
                *cut = [None, None];
            }
            proxy.shared.note("chaos: over".into());
        });
        Chaos { stop }
    }
}

/// The controls, for the chaos task.
struct Control {
    shared: Arc<Shared>,
}

impl Control {
    fn cut_after(&self, dir: Dir, bytes: u64) {
        if let Ok(mut cut) = self.shared.cut.lock() {
            cut[dir.index()] = Some(bytes);
        }
        self.shared
            .note(format!("chaos: cut {dir:?} after {bytes} B"));
    }
}

/// A running [`FaultProxy::chaos`] schedule; dropping it stops the schedule and lets traffic
/// pass again (frozen connections stay frozen).
#[derive(Debug)]
pub struct Chaos {
    stop: watch::Sender<bool>,
}

impl Chaos {
    /// Stop injecting faults.
    pub fn stop(self) {}
}

impl Drop for Chaos {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.shutdown.send_replace(true);
        self.shared.signal_all(Signal::Reset);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// xorshift64*: random faults without a dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, port: u16) {
    let mut shutdown = shared.shutdown.subscribe();
    let mut refusing = shared.refusing.subscribe();
    let mut listener = Some(listener);
    loop {
        if *shutdown.borrow() {
            return;
        }
        if *refusing.borrow_and_update() {
            // Closed listener: the kernel refuses connections to the port.
            listener = None;
            tokio::select! {
                _ = refusing.changed() => {}
                _ = shutdown.changed() => return,
            }
            continue;
        }
        let l = match listener.take() {
            Some(l) => l,
            None => match TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await {
                Ok(l) => l,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        tokio::select! {
            r = l.accept() => {
                if let Ok((client, _)) = r {
                    shared.counters.connections.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(serve(shared.clone(), client));
                }
                listener = Some(l);
            }
            _ = refusing.changed() => { listener = Some(l); }
            _ = shutdown.changed() => return,
        }
    }
}

/// How a pump ended.
enum End {
    Eof,
    Cut,
}

async fn serve(shared: Arc<Shared>, mut client: TcpStream) {
    let mut server = match TcpStream::connect(shared.target).await {
        Ok(s) => s,
        Err(_) => {
            shared
                .counters
                .target_failures
                .fetch_add(1, Ordering::Relaxed);
            let _ = client.set_zero_linger();
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (signal_tx, mut signal) = watch::channel(Signal::Run);
    if let Ok(mut conns) = shared.conns.lock() {
        conns.push(signal_tx);
    }
    let mut shutdown = shared.shutdown.subscribe();
    let ending = {
        let (mut cr, mut cw) = client.split();
        let (mut sr, mut sw) = server.split();
        let up = pump(&shared, &mut cr, &mut sw, Dir::Up);
        let down = pump(&shared, &mut sr, &mut cw, Dir::Down);
        tokio::pin!(up, down);
        let (mut up_done, mut down_done) = (false, false);
        loop {
            if up_done && down_done {
                break Signal::Run;
            }
            tokio::select! {
                r = &mut up, if !up_done => match r {
                    Ok(End::Eof) => up_done = true,
                    Ok(End::Cut) | Err(_) => break Signal::Run,
                },
                r = &mut down, if !down_done => match r {
                    Ok(End::Eof) => down_done = true,
                    Ok(End::Cut) | Err(_) => break Signal::Run,
                },
                _ = signal.changed() => {
                    let s = *signal.borrow_and_update();
                    if s != Signal::Run {
                        break s;
                    }
                }
                _ = shutdown.changed() => break Signal::Reset,
            }
        }
    };
    match ending {
        Signal::Run => {}
        Signal::Reset => {
            shared.counters.resets.fetch_add(1, Ordering::Relaxed);
            let _ = client.set_zero_linger();
            let _ = server.set_zero_linger();
        }
        Signal::Freeze => {
            shared.counters.frozen.fetch_add(1, Ordering::Relaxed);
            // Hold both ends open and forward nothing until the client closes (what it sends
            // is swallowed) or the proxy stops.
            let mut sink = vec![0u8; 16 * 1024];
            loop {
                tokio::select! {
                    r = client.read(&mut sink) => if matches!(r, Ok(0) | Err(_)) { break },
                    _ = shutdown.changed() => break,
                    _ = signal.changed() => if *signal.borrow_and_update() == Signal::Reset {
                        let _ = client.set_zero_linger();
                        let _ = server.set_zero_linger();
                        break;
                    },
                }
            }
        }
    }
}

async fn pump(
    shared: &Shared,
    from: &mut (impl AsyncReadExt + Unpin),
    to: &mut (impl AsyncWriteExt + Unpin),
    dir: Dir,
) -> io::Result<End> {
    let mut flow = shared.flow.subscribe();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        // A stall stops reading too (back-pressure, like a server that stopped).
        while *flow.borrow_and_update() == Flow::Stall {
            if flow.changed().await.is_err() {
                return Ok(End::Eof);
            }
        }
        let n = from.read(&mut buf).await?;
        if n == 0 {
            let _ = to.shutdown().await;
            return Ok(End::Eof);
        }
        let (allowed, cut) = shared.budget(dir, n);
        let mut data = &buf[..allowed];
        while !data.is_empty() {
            let f = *flow.borrow_and_update();
            match f {
                Flow::Pass => {
                    to.write_all(data).await?;
                    shared.counters.bytes[dir.index()]
                        .fetch_add(data.len() as u64, Ordering::Relaxed);
                    data = &[];
                }
                Flow::Stall => {
                    if flow.changed().await.is_err() {
                        return Ok(End::Eof);
                    }
                }
                Flow::Drip { bytes, every } => {
                    let k = bytes.min(data.len());
                    to.write_all(&data[..k]).await?;
                    to.flush().await?;
                    shared.counters.bytes[dir.index()].fetch_add(k as u64, Ordering::Relaxed);
                    data = &data[k..];
                    tokio::time::sleep(every).await;
                }
            }
        }
        if cut {
            to.flush().await?;
            shared.counters.cuts.fetch_add(1, Ordering::Relaxed);
            shared.note(format!("cut a connection ({dir:?})"));
            return Ok(End::Cut);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// An echo server on a free port; returns its address.
    async fn echo() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn roundtrip(s: &mut TcpStream, data: &[u8]) -> io::Result<Vec<u8>> {
        s.write_all(data).await?;
        let mut back = vec![0u8; data.len()];
        s.read_exact(&mut back).await?;
        Ok(back)
    }

    async fn connect(p: &FaultProxy) -> TcpStream {
        TcpStream::connect(p.addr()).await.unwrap()
    }

    #[tokio::test]
    async fn passes_bytes_both_ways_and_counts_them() {
        let p = FaultProxy::start(echo().await).unwrap();
        let mut s = connect(&p).await;
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(roundtrip(&mut s, &data).await.unwrap(), data);
        let st = p.stats();
        assert_eq!(
            (st.connections, st.up_bytes, st.down_bytes),
            (1, 200_000, 200_000)
        );
        assert_eq!(p.open_connections(), 1);
    }

    #[tokio::test]
    async fn cut_after_n_bytes_down_closes_mid_stream_once() {
        let p = FaultProxy::start(echo().await).unwrap();
        let mut s = connect(&p).await;
        assert_eq!(roundtrip(&mut s, b"hello").await.unwrap(), b"hello");
        p.cut_after(Dir::Down, 1000);
        s.write_all(&[7u8; 5000]).await.unwrap();
        let mut got = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got)).await;
        assert!(r.is_ok(), "the cut closes the connection");
        assert_eq!(got.len(), 1000, "exactly the allowed bytes arrive");
        assert_eq!(p.stats().cuts, 1);
        assert!(!p.cut_pending());
        // One-shot: the next connection passes everything.
        let mut s = connect(&p).await;
        assert_eq!(
            roundtrip(&mut s, &[1u8; 5000]).await.unwrap(),
            vec![1u8; 5000]
        );
    }

    #[tokio::test]
    async fn cut_after_n_bytes_up_stops_what_reaches_the_server() {
        let p = FaultProxy::start(echo().await).unwrap();
        p.cut_after(Dir::Up, 10);
        let mut s = connect(&p).await;
        s.write_all(b"0123456789abcdef").await.unwrap();
        let mut got = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got))
            .await
            .expect("closed");
        assert!(got.len() <= 10, "{got:?}");
        assert_eq!(p.stats().up_bytes, 10);
        assert_eq!(p.stats().cuts, 1);
    }

    #[tokio::test]
    async fn stall_holds_everything_without_closing_until_pass() {
        let p = FaultProxy::start(echo().await).unwrap();
        let mut s = connect(&p).await;
        assert_eq!(roundtrip(&mut s, b"a").await.unwrap(), b"a");
        p.stall();
        s.write_all(b"bc").await.unwrap();
        let mut b = [0u8; 2];
        assert!(
            tokio::time::timeout(Duration::from_millis(500), s.read_exact(&mut b))
                .await
                .is_err(),
            "nothing moves during a stall"
        );
        // New connections are accepted but stall too.
        let mut s2 = connect(&p).await;
        s2.write_all(b"x").await.unwrap();
        let mut x = [0u8; 1];
        assert!(
            tokio::time::timeout(Duration::from_millis(300), s2.read_exact(&mut x))
                .await
                .is_err()
        );
        p.pass();
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut b))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&b, b"bc", "held bytes are delivered after the stall");
        tokio::time::timeout(Duration::from_secs(5), s2.read_exact(&mut x))
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn drip_slows_the_transfer_to_the_given_rate() {
        let p = FaultProxy::start(echo().await).unwrap();
        let mut s = connect(&p).await;
        p.drip(10, Duration::from_millis(50));
        let t = Instant::now();
        assert_eq!(
            roundtrip(&mut s, &[3u8; 100]).await.unwrap(),
            vec![3u8; 100]
        );
        // 100 bytes at 10 per 50 ms: ≥ 450 ms each way (the two overlap).
        assert!(
            t.elapsed() >= Duration::from_millis(450),
            "{:?}",
            t.elapsed()
        );
        p.pass();
        let t = Instant::now();
        roundtrip(&mut s, &[3u8; 100_000]).await.unwrap();
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    }

    #[tokio::test]
    async fn reset_all_sends_rst_to_open_connections() {
        let p = FaultProxy::start(echo().await).unwrap();
        let mut s = connect(&p).await;
        assert_eq!(roundtrip(&mut s, b"ping").await.unwrap(), b"ping");
        assert_eq!(p.reset_all(), 1);
        let mut b = [0u8; 1];
        let r = tokio::time::timeout(Duration::from_secs(5), s.read(&mut b))
            .await
            .expect("answered at once");
        assert_eq!(
            r.map_err(|e| e.kind()),
            Err(io::ErrorKind::ConnectionReset),
            "RST, not FIN"
        );
        assert_eq!(p.stats().resets, 1);
        let mut s = connect(&p).await;
        assert_eq!(roundtrip(&mut s, b"again").await.unwrap(), b"again");
    }

    #[tokio::test]
    async fn refuse_closes_the_port_until_accept_and_keeps_open_connections() {
        let p = FaultProxy::start(echo().await).unwrap();
        let mut open = connect(&p).await;
        // Accepted by the proxy (not still in the listen backlog, which a closed listener resets).
        assert_eq!(roundtrip(&mut open, b"first").await.unwrap(), b"first");
        p.refuse();
        let deadline = Instant::now() + Duration::from_secs(5);
        let refused = loop {
            match TcpStream::connect(p.addr()).await {
                // A connection caught in the closing listener's backlog is reset: try again
                // until the closed port refuses.
                Err(e)
                    if e.kind() == io::ErrorKind::ConnectionReset && Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => break e,
                Ok(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Ok(_) => panic!("still accepting"),
            }
        };
        assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
        assert_eq!(roundtrip(&mut open, b"still").await.unwrap(), b"still");
        p.accept();
        let mut s = connect(&p).await;
        assert_eq!(roundtrip(&mut s, b"back").await.unwrap(), b"back");
    }

    #[tokio::test]
    async fn freeze_open_hangs_open_connections_but_not_new_ones() {
        let p = FaultProxy::start(echo().await).unwrap();
        let mut s = connect(&p).await;
        assert_eq!(roundtrip(&mut s, b"a").await.unwrap(), b"a");
        assert_eq!(p.freeze_open(), 1);
        s.write_all(b"b").await.unwrap();
        let mut b = [0u8; 1];
        assert!(
            tokio::time::timeout(Duration::from_millis(500), s.read(&mut b))
                .await
                .is_err(),
            "a frozen connection neither answers nor closes"
        );
        let mut s2 = connect(&p).await;
        assert_eq!(roundtrip(&mut s2, b"new").await.unwrap(), b"new");
        assert_eq!(p.stats().frozen, 1);
        drop(s);
        let deadline = Instant::now() + Duration::from_secs(5);
        while p.open_connections() > 1 {
            assert!(
                Instant::now() < deadline,
                "the frozen one ends when the client closes"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn chaos_injects_faults_and_traffic_recovers() {
        let p = FaultProxy::start(echo().await).unwrap();
        let chaos = p.chaos(
            Duration::from_millis(100),
            Duration::from_millis(1000),
            false,
            3,
        );
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut ok = 0;
        while Instant::now() < deadline {
            if let Ok(mut s) = TcpStream::connect(p.addr()).await
                && let Ok(Ok(b)) =
                    tokio::time::timeout(Duration::from_millis(300), roundtrip(&mut s, b"x")).await
                && b == b"x"
            {
                ok += 1;
            }
        }
        drop(chaos);
        let faults = p
            .log()
            .iter()
            .filter(|(_, l)| l.starts_with("chaos"))
            .count();
        assert!(faults >= 5, "{:?}", p.log());
        assert!(ok > 0);
        // After the schedule stops, everything passes again.
        tokio::time::sleep(Duration::from_millis(100)).await;
        p.pass();
        p.accept();
        let mut s = connect(&p).await;
        let mut got = None;
        for _ in 0..3 {
            match tokio::time::timeout(Duration::from_secs(2), roundtrip(&mut s, b"end")).await {
                Ok(Ok(b)) => {
                    got = Some(b);
                    break;
                }
                _ => s = connect(&p).await,
            }
        }
        assert_eq!(got.as_deref(), Some(&b"end"[..]));
    }
}
