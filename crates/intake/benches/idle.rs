//! IMAP IDLE benchmarks against a real Dovecot on loopback (issue "Mail connectors").
//!
//! `cargo bench -p intake --bench idle` runs the `intake` binary (`intake --config FILE run`, the
//! release build cargo makes for this bench) against a Dovecot from `intake_testkit`, with a
//! SQLite database in a temporary directory, and measures:
//!
//! 1. **Arrival → ticket latency** with one IMAP channel in push mode (IDLE over IMAPS, password
//!    login). After three warm-up messages, N times: wait a random 0..GAP ms, `APPEND` one
//!    message over a separate IMAP connection, and from the append's tagged `OK` (the message
//!    is in the mailbox) poll the database every 2 ms until the ledger row of that Message-ID
//!    points at an existing ticket. Prints p50, p90, p99, max; a message without a ticket after
//!    15 s counts as missed (and is picked up with the next one). Also the server's floor (a
//!    bare client in IDLE on another mailbox: arrival → `* N EXISTS`; Dovecot 2.3 waits a fixed
//!    500 ms) and pairs of messages 500..520 ms apart (the second arrives while intake handles
//!    the first). Goal: p50 ≤ 250 ms, p99 ≤ 1 s.
//! 2. **Many IDLE channels in one process**: C users on a Dovecot with raised limits, a config
//!    with C `[[channel]]` tables (own name, project and mailbox each, push mode), one
//!    `intake run`; waits until Dovecot shows all C connections in IDLE (one `imap` process per
//!    connection, counted from the process titles), then reads VmRSS / VmHWM of the intake
//!    process from /proc. Then appends one message to a few random channels and waits for their
//!    tickets (the channels really idle). Goal: ≤ 150 MB RSS for 1,000 channels.
//!
//! Environment: `INTAKE_BENCH_IDLE_N` (default 200; 0 skips part 1), `INTAKE_BENCH_IDLE_GAP_MS`
//! (default 100), `INTAKE_BENCH_CHANNELS` (default 1000; 0 skips part 2; 1,000 channels took
//! about 1.5 GB of RAM in all, Dovecot's 1,000 `imap` processes about half of it),
//! `INTAKE_BENCH_PROBES` (default 5), `INTAKE_BENCH_RACE_N` (default 50),
//! `INTAKE_BENCH_INTAKE_LOG` (intake's `INTAKE_LOG`, default `warn`; e.g.
//! `warn,async_imap=trace` shows the IMAP conversation), `INTAKE_BENCH_KEEP_LOGS=DIR` (copy
//! intake's stderr there). Results go to docs/BENCHMARKS.md by hand.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use intake_testkit::dovecot::{Appender, Dovecot, DovecotOptions};
use sqlx::Connection as _;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};

const PASSWORD: &str = "s3cret";
/// A message without a ticket after this long counts as missed.
const MISS_AFTER: Duration = Duration::from_secs(15);

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// xorshift64*: random gaps and picks without a dependency.
struct Rng(u64);

impl Rng {
    fn new() -> Self {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Rng(seed | 1)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

/// A plain-text customer mail of about 3 KB, its own sender and subject (no threading, no loop
/// guard).
fn message(to: &str, id: &str, i: usize) -> Vec<u8> {
    let mut body = String::new();
    for line in 0..40 {
        let _ = writeln!(
            body,
            "Line {line}: the label printer on floor {} stops after the first page again.\r",
            i % 7
        );
    }
    format!(
        "From: Customer {i} <customer{i}@customer.example>\r\nTo: {to}\r\n\
         Subject: Printer problem report {id}\r\nMessage-ID: <{id}>\r\n\
         Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\nHello,\r\n\r\n{body}\r\nRegards,\r\nCustomer {i}\r\n"
    )
    .into_bytes()
}

/// `intake --config FILE run`, with the soft open-files limit raised to the hard one (one socket
/// per channel), stderr to a file. Killed when dropped.
struct Intake {
    child: Child,
    stderr: PathBuf,
}

impl Intake {
    fn start(dir: &Path, config: &Path, db: &str) -> Intake {
        let stderr = dir.join("intake.stderr");
        let child = Command::new("sh")
            .arg("-c")
            .arg("ulimit -n \"$(ulimit -Hn)\" 2>/dev/null; exec \"$0\" \"$@\"")
            .arg(env!("CARGO_BIN_EXE_intake"))
            .arg("--config")
            .arg(config)
            .arg("--db")
            .arg(db)
            .arg("run")
            .env_remove("INTAKE_DATABASE_URL")
            .env(
                "INTAKE_LOG",
                std::env::var("INTAKE_BENCH_INTAKE_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&stderr).unwrap()))
            .spawn()
            .expect("spawn intake");
        Intake { child, stderr }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Panics with its stderr when the process has exited.
    fn check_alive(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("intake exited ({status}):\n{}", self.stderr());
        }
    }

    /// SIGTERM (finish batches, log out), then wait; the time it took.
    fn stop(mut self) -> Duration {
        let t = Instant::now();
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        t.elapsed()
    }
}

impl Drop for Intake {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        if let Some(dir) = std::env::var_os("INTAKE_BENCH_KEEP_LOGS") {
            let to = Path::new(&dir).join(format!("intake-{}.stderr", self.child.id()));
            let _ = std::fs::copy(&self.stderr, to);
        }
    }
}

/// `(VmRSS, VmHWM, RssAnon, Threads)` of a process, KiB (threads as a count).
fn memory(pid: u32) -> (u64, u64, u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (
        field("VmRSS:"),
        field("VmHWM:"),
        field("RssAnon:"),
        field("Threads:"),
    )
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Open sockets of a process (its IMAP connections).
fn sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    std::fs::read_link(e.path())
                        .is_ok_and(|l| l.to_string_lossy().starts_with("socket:"))
                })
                .count()
        })
        .unwrap_or(0)
}

fn channel_toml(dc: &Dovecot, name: &str, project: &str, user: &str, pw: &Path) -> String {
    format!(
        "[[channel]]\nname = \"{name}\"\nproject = \"{project}\"\nprotocol = \"imap\"\nhost = \"127.0.0.1\"\n\
         port = {}\ntls = \"implicit\"\nca_file = \"file:{}\"\nmailbox = \"{user}\"\n\
         auth = \"password:file:{}\"\nmode = \"push\"\n\n",
        dc.imaps_port,
        dc.ca_path.display(),
        pw.display()
    )
}

/// Read-only view of intake's database: is there a ticket for this Message-ID yet?
struct Probe {
    path: PathBuf,
    conn: Option<SqliteConnection>,
}

impl Probe {
    fn new(path: PathBuf) -> Self {
        Probe { path, conn: None }
    }

    /// The ticket key once the ledger row of `message_id` names a ticket that exists.
    async fn ticket(&mut self, message_id: &str) -> Option<String> {
        if self.conn.is_none() {
            if !self.path.exists() {
                return None;
            }
            let opts = SqliteConnectOptions::new()
                .filename(&self.path)
                .read_only(true);
            self.conn = SqliteConnection::connect_with(&opts).await.ok();
        }
        let conn = self.conn.as_mut()?;
        // Before intake's migrations ran, the tables are missing: an error, i.e. not yet.
        sqlx::query_scalar::<_, String>(
            "SELECT t.key FROM message_ledger l JOIN tickets t ON t.key = l.ticket_key \
             WHERE l.message_id = ?1",
        )
        .bind(message_id)
        .fetch_optional(conn)
        .await
        .ok()
        .flatten()
    }

    /// Polls every 2 ms until the ticket exists (its time) or `timeout`.
    async fn wait(
        &mut self,
        intake: &mut Intake,
        message_id: &str,
        timeout: Duration,
    ) -> Option<Instant> {
        let t = Instant::now();
        loop {
            if self.ticket(message_id).await.is_some() {
                return Some(Instant::now());
            }
            if t.elapsed() > timeout {
                return None;
            }
            intake.check_alive();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// A bare IMAP client in IDLE on the plain port (no parsing beyond lines): the time each
/// `* N EXISTS` arrives, i.e. when Dovecot tells *any* IDLE client about new mail. Dovecot 2.3
/// waits a fixed 500 ms after a mailbox change before it tells IDLE clients
/// (`NOTIFY_DELAY_MSECS` in lib-storage/mailbox-watch.c), so this is the server's floor.
fn idler(port: u16, user: &str) -> std::sync::mpsc::Receiver<(Instant, u64)> {
    use std::io::{BufRead, BufReader, Write};
    let (tx, rx) = std::sync::mpsc::channel();
    let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_nodelay(true).unwrap();
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    let mut until = |r: &mut BufReader<std::net::TcpStream>, prefix: &str| loop {
        line.clear();
        assert!(r.read_line(&mut line).unwrap() > 0, "idler: closed");
        if let Some(rest) = line.strip_prefix(prefix) {
            assert!(
                rest.trim_start().starts_with("OK") || prefix == "+",
                "{line}"
            );
            return;
        }
    };
    until(&mut r, "*");
    write!(w, "a LOGIN \"{user}\" \"{PASSWORD}\"\r\n").unwrap();
    until(&mut r, "a ");
    write!(w, "b SELECT INBOX\r\nc IDLE\r\n").unwrap();
    until(&mut r, "+");
    std::thread::spawn(move || {
        let _keep = w;
        let mut line = String::new();
        loop {
            line.clear();
            match r.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let at = Instant::now();
            let mut words = line.split_whitespace();
            if let (Some("*"), Some(n), Some(kind)) = (words.next(), words.next(), words.next())
                && kind.eq_ignore_ascii_case("EXISTS")
                && let Ok(n) = n.parse()
                && tx.send((at, n)).is_err()
            {
                return;
            }
        }
    });
    rx
}

/// The time of the first `EXISTS` of at least `count` messages, waiting up to `timeout`.
fn exists_at(
    rx: &std::sync::mpsc::Receiver<(Instant, u64)>,
    count: u64,
    timeout: Duration,
) -> Option<Instant> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        match rx.recv_timeout(left) {
            Ok((at, n)) if n >= count => return Some(at),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

/// Nearest-rank percentile of sorted values.
fn pct(sorted: &[Duration], q: f64) -> Duration {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn latency(n: usize, gap_ms: u64, race_n: usize) {
    const USER: &str = "help@example.test";
    const FLOOR_USER: &str = "floor@example.test";
    const WARM_UP: usize = 3;
    println!("== 1. arrival -> ticket latency, IMAP IDLE, {n} messages, random gap 0..{gap_ms} ms");
    let Some(dc) = Dovecot::start(&DovecotOptions::with_users(&[
        (USER, PASSWORD),
        (FLOOR_USER, PASSWORD),
    ])) else {
        eprintln!("Dovecot is not installed: run scripts/testbed/dovecot.sh install");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, PASSWORD).unwrap();
    let cfg = dir.path().join("intake.toml");
    std::fs::write(&cfg, channel_toml(&dc, "helpdesk", "HELP", USER, &pw)).unwrap();
    let db_path = dir.path().join("intake.db");
    let db = format!("sqlite://{}", db_path.display());
    let mut rng = Rng::new();

    // The server's floor: a bare client in IDLE on another mailbox. Its own index updates
    // after each EXISTS arm Dovecot's 500 ms notify timer again, so it waits that out first
    // (intake's session is not in IDLE while it marks messages read, so its timer always starts
    // at the arrival).
    let floor_n = n.min(50);
    let exists = idler(dc.imap_port, FLOOR_USER);
    let mut floor_appender = dc.appender(FLOOR_USER).unwrap();
    let mut floor = Vec::with_capacity(floor_n);
    for i in 0..floor_n {
        tokio::time::sleep(Duration::from_millis(600 + rng.below(gap_ms + 1))).await;
        floor_appender
            .append(
                "INBOX",
                &message(FLOOR_USER, &format!("floor-{i}@bench.example"), i),
            )
            .unwrap();
        let arrived = Instant::now();
        let told = exists_at(&exists, (i + 1) as u64, MISS_AFTER).expect("EXISTS in IDLE");
        floor.push(told - arrived);
    }
    let _ = floor_appender.logout();
    floor.sort();

    let mut appender: Appender = dc.appender(USER).unwrap();
    let mut intake = Intake::start(dir.path(), &cfg, &db);
    let mut probe = Probe::new(db_path);
    let run = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();

    // Warm-up: intake connects, drains, and goes into IDLE; the first tickets prove it.
    let t = Instant::now();
    for w in 0..WARM_UP {
        let id = format!("warm-{w}-{run}@bench.example");
        appender
            .append("INBOX", &message(USER, &id, 100_000 + w))
            .unwrap();
        probe
            .wait(&mut intake, &id, Duration::from_secs(60))
            .await
            .unwrap_or_else(|| panic!("no ticket for the warm-up message\n{}", intake.stderr()));
    }
    println!(
        "   warm-up (start, connect, {WARM_UP} tickets): {:.0} ms",
        ms(t.elapsed())
    );
    tokio::time::sleep(Duration::from_millis(200)).await;

    let (mut lat, mut appends) = (vec![], vec![]);
    let mut missed = Vec::new();
    let started = Instant::now();
    for i in 0..n {
        tokio::time::sleep(Duration::from_millis(rng.below(gap_ms + 1))).await;
        let id = format!("lat-{i}-{run}@bench.example");
        let raw = message(USER, &id, i);
        let t0 = Instant::now();
        appender.append("INBOX", &raw).unwrap();
        let arrived = Instant::now();
        appends.push(arrived - t0);
        match probe.wait(&mut intake, &id, MISS_AFTER).await {
            Some(ticket) => lat.push(ticket - arrived),
            None => {
                eprintln!("   message {i} ({id}): no ticket after {MISS_AFTER:?}");
                missed.push(i);
            }
        }
    }
    let wall = started.elapsed();

    // Arrivals while intake works on the previous message: B is appended 500..520 ms after A,
    // when Dovecot has just told intake about A and intake fetches and commits it.
    let mut race_lat = Vec::with_capacity(race_n);
    let mut race_missed = Vec::new();
    for k in 0..race_n {
        tokio::time::sleep(Duration::from_millis(rng.below(gap_ms + 1))).await;
        let a = format!("race-a-{k}-{run}@bench.example");
        let b = format!("race-b-{k}-{run}@bench.example");
        appender.append("INBOX", &message(USER, &a, 2 * k)).unwrap();
        tokio::time::sleep(Duration::from_millis(500 + rng.below(21))).await;
        appender
            .append("INBOX", &message(USER, &b, 2 * k + 1))
            .unwrap();
        let arrived = Instant::now();
        let got_a = probe.wait(&mut intake, &a, MISS_AFTER).await.is_some();
        match probe.wait(&mut intake, &b, MISS_AFTER).await {
            Some(t) if got_a => race_lat.push(t - arrived),
            _ => {
                eprintln!("   pair {k}: A ticket {got_a}, B no ticket within {MISS_AFTER:?}");
                race_missed.push(k);
            }
        }
    }

    let (rss, hwm, anon, threads) = memory(intake.pid());
    let stop = intake.stop();
    let _ = appender.logout();
    race_lat.sort();
    lat.sort();
    appends.sort();
    println!(
        "   {} tickets in {:.1} s; APPEND itself: p50 {:.1} ms",
        lat.len(),
        wall.as_secs_f64(),
        ms(pct(&appends, 0.5))
    );
    let line = |what: &str, v: &[Duration]| {
        if !v.is_empty() {
            println!(
                "   {what}: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms (min {:.1} ms, n = {})",
                ms(pct(v, 0.5)),
                ms(pct(v, 0.9)),
                ms(pct(v, 0.99)),
                ms(*v.last().unwrap()),
                ms(v[0]),
                v.len()
            );
        }
    };
    line("arrival (APPEND OK) -> intake ticket", &lat);
    line(
        "floor: arrival -> `* N EXISTS` to a bare IDLE client",
        &floor,
    );
    if !lat.is_empty() && !floor.is_empty() {
        println!(
            "   intake's share: p50 {:.1} ms (p50 latency - p50 floor); latency - 500 ms notify delay: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            ms(pct(&lat, 0.5).saturating_sub(pct(&floor, 0.5))),
            ms(pct(&lat, 0.5).saturating_sub(Duration::from_millis(500))),
            ms(pct(&lat, 0.99).saturating_sub(Duration::from_millis(500))),
            ms(lat
                .last()
                .unwrap()
                .saturating_sub(Duration::from_millis(500))),
        );
    }
    println!(
        "   missed (no ticket within {} s): {} {missed:?}",
        MISS_AFTER.as_secs(),
        missed.len()
    );
    if race_n > 0 {
        line(
            "second of a pair 500..520 ms apart: arrival -> ticket",
            &race_lat,
        );
        println!(
            "   pairs whose second message got no ticket within {} s: {} of {race_n} {race_missed:?}",
            MISS_AFTER.as_secs(),
            race_missed.len()
        );
    }
    println!(
        "   intake (1 channel): RSS {:.1} MiB, peak {:.1} MiB, anon {:.1} MiB, {threads} threads; SIGTERM -> exit {:.0} ms",
        mib(rss),
        mib(hwm),
        mib(anon),
        ms(stop)
    );
}

async fn many(channels: usize, probes: usize) {
    println!("== 2. {channels} IDLE channels in one intake process");
    let users: Vec<(String, String)> = (0..channels)
        .map(|i| (format!("u{i:04}@example.test"), PASSWORD.to_string()))
        .collect();
    let opts = DovecotOptions {
        users,
        ..Default::default()
    }
    .max_connections(u32::try_from(channels).unwrap() + 50);
    let t = Instant::now();
    let Some(dc) = Dovecot::start(&opts) else {
        eprintln!("Dovecot is not installed: run scripts/testbed/dovecot.sh install");
        return;
    };
    println!(
        "   Dovecot with {channels} users up in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, PASSWORD).unwrap();
    let mut toml = String::new();
    for (i, (user, _)) in dc.users.iter().enumerate() {
        toml.push_str(&channel_toml(
            &dc,
            &format!("ch{i:04}"),
            &format!("P{i:04}"),
            user,
            &pw,
        ));
    }
    let cfg = dir.path().join("intake.toml");
    std::fs::write(&cfg, &toml).unwrap();
    println!(
        "   config: {} KiB; size_of::<ChannelConfig>() = {} bytes",
        toml.len() / 1024,
        std::mem::size_of::<intake::config::ChannelConfig>()
    );
    let db_path = dir.path().join("intake.db");
    let db = format!("sqlite://{}", db_path.display());

    let t = Instant::now();
    let mut intake = Intake::start(dir.path(), &cfg, &db);
    let pid = intake.pid();
    let deadline = Duration::from_secs(600);
    let mut last_report = Instant::now();
    let mut max_rss = 0;
    let up = loop {
        intake.check_alive();
        let idle = dc.idle_connections();
        let (rss, _, _, _) = memory(pid);
        max_rss = max_rss.max(rss);
        if idle >= channels {
            break t.elapsed();
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            last_report = Instant::now();
            println!(
                "   ... {:.0} s: {idle} in IDLE, {} sockets, RSS {:.1} MiB",
                t.elapsed().as_secs_f64(),
                sockets(pid),
                mib(rss)
            );
        }
        if t.elapsed() > deadline {
            panic!(
                "only {idle} of {channels} channels in IDLE after {deadline:?}\nintake stderr (tail): {}\n",
                tail(&intake.stderr(), 4000)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (rss, hwm, anon, threads) = memory(pid);
    println!(
        "   all {channels} in IDLE after {:.2} s: intake RSS {:.1} MiB, peak {:.1} MiB, anon {:.1} MiB, {threads} threads, {} sockets",
        up.as_secs_f64(),
        mib(rss),
        mib(hwm),
        mib(anon),
        sockets(pid)
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    intake.check_alive();
    let (rss, hwm, anon, _) = memory(pid);
    println!(
        "   10 s later: RSS {:.1} MiB, peak {:.1} MiB, anon {:.1} MiB; {} in IDLE",
        mib(rss),
        mib(hwm),
        mib(anon),
        dc.idle_connections()
    );

    // A few random channels get a message each: their tickets must appear (push, not the
    // 300 s IDLE re-issue).
    let mut rng = Rng::new();
    let mut probe = Probe::new(db_path);
    let run = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    for p in 0..probes {
        let k = rng.below(channels as u64) as usize;
        let user = dc.users[k].0.clone();
        let id = format!("probe-{p}-{run}@bench.example");
        let mut a = dc.appender(&user).unwrap();
        a.append("INBOX", &message(&user, &id, k)).unwrap();
        let _ = a.logout();
        let arrived = Instant::now();
        match probe.wait(&mut intake, &id, MISS_AFTER).await {
            Some(t) => println!(
                "   channel ch{k:04}: ticket {:.0} ms after the APPEND",
                ms(t - arrived)
            ),
            None => println!(
                "   channel ch{k:04}: NO ticket within {} s",
                MISS_AFTER.as_secs()
            ),
        }
    }
    let (rss, hwm, _, _) = memory(pid);
    let failures = intake
        .stderr()
        .lines()
        .filter(|l| l.contains("reconnecting"))
        .count();
    let stop = intake.stop();
    println!(
        "   after the probes: RSS {:.1} MiB, peak {:.1} MiB; 'reconnecting' warnings: {failures}; SIGTERM -> exit {:.2} s",
        mib(rss),
        mib(hwm),
        stop.as_secs_f64()
    );
    // Dovecot's complaints, by kind (the text after "Warning: " etc., cut short).
    let mut kinds = std::collections::BTreeMap::<String, usize>::new();
    for l in dc.log().lines() {
        for level in ["Warning: ", "Error: ", "Fatal: ", "Panic: "] {
            if let Some((_, text)) = l.split_once(level) {
                let text: String = text.chars().take(110).collect();
                *kinds.entry(format!("{level}{text}")).or_default() += 1;
            }
        }
    }
    for (text, count) in &kinds {
        println!("   Dovecot log, {count} x: {text}");
    }
}

fn tail(s: &str, n: usize) -> &str {
    let mut start = s.len().saturating_sub(n);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

fn main() {
    // `cargo bench` passes `--bench`; there is nothing to filter.
    let n = env_usize("INTAKE_BENCH_IDLE_N", 200);
    let gap = env_usize("INTAKE_BENCH_IDLE_GAP_MS", 100) as u64;
    let channels = env_usize("INTAKE_BENCH_CHANNELS", 1000);
    let probes = env_usize("INTAKE_BENCH_PROBES", 5);
    let race_n = env_usize("INTAKE_BENCH_RACE_N", 50);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        if n > 0 {
            latency(n, gap, race_n).await;
        }
        if channels > 0 {
            many(channels, probes).await;
        }
    });
}
