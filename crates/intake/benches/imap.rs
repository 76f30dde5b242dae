//! IMAP ingest benchmark against a real Dovecot on loopback: IMAPS beside a local import of the
//! same mail, over plain IMAP, and beside fetchmail.
//!
//! `cargo bench -p intake --bench imap [-- MESSAGES [ROUNDS]]` (default 10,000 messages, 3
//! rounds) delivers N generated messages into a Dovecot mailbox, then measures, in rounds
//! interleaved (a, a2, b, c, c2, d, a, a2, b, …), each on fresh databases:
//! (a) the network floor: one raw `UID FETCH 1:* (BODY.PEEK[])` over IMAPS (password login),
//!     reading to the tagged OK, nothing parsed;
//! (a2) Intake's own IMAP client fetching everything in batches of 500, nothing processed;
//! (b) `intake ingest`'s pipeline over the very same files (the mailbox's Maildir) into a fresh
//!     SQLite file, including the close (final WAL checkpoint);
//! (c) `intake run --once` of an IMAPS channel (password login, `batch = 500`, mark-read) into a
//!     fresh SQLite file: connect, login, lease, fetch, commit, `\Seen`, checkpoint per batch,
//!     close;
//! (c2) the same run on the plain IMAP port without TLS: Dovecot's login process relays TLS
//!     between the client and its `imap` process in 4 KiB records, a cost of the server that
//!     (c) carries on the same cores and (c2) does not (docs/BENCHMARKS.md, fourteenth session);
//! (d) fetchmail over IMAPS (password login, `fetchall`, `keep`, every message to an mda
//!     `cat >/dev/null`), if `fetchmail` is installed (Debian package `fetchmail`).
//! `INTAKE_BENCH_NO_FETCHMAIL=1` skips (d) (it takes ~30× as long as the rest of a round).
//! The summary gives the median of each and the ratios of the medians — (c) ÷ (b), goal ≤ 1.3;
//! (d) ÷ (c), goal ≥ 10 — with every round's own ratio and the load average before and after.
//! (a) and (c) also give Dovecot's CPU (it runs on the same cores here), (a) also its reader's, and
//! the summary the shortest (c) could be were Intake's and Dovecot's CPU packed onto every core.
//! Results go to docs/BENCHMARKS.md by hand, with this command.

use std::time::Instant;

use intake::mailgen::{GenOptions, generate};
use intake::pipeline::{self, IngestOptions};
use intake::settings::Settings;
use intake_core::ChannelRules;
use intake_store::Store;
use intake_testkit::dovecot::{Dovecot, DovecotOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const USER: &str = "bench@example.test";

/// CPU seconds (user + system) this process has used so far, from /proc/self/stat.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    // After the command name: state is field 3; utime and stime are fields 14 and 15.
    let ticks = |i: usize| {
        fields
            .get(i - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(14) + ticks(15)) / 100.0
}

async fn raw_fetch(dc: &Dovecot) -> usize {
    intake_mail::init_crypto();
    let connector = intake_mail::tls::connector(Some(dc.ca_pem.as_bytes())).unwrap();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", dc.imaps_port))
        .await
        .unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut s = connector.connect(name, tcp).await.unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut acc: Vec<u8> = Vec::new();
    async fn until<S: tokio::io::AsyncRead + Unpin>(
        s: &mut S,
        buf: &mut [u8],
        acc: &mut Vec<u8>,
        tag: &[u8],
    ) -> usize {
        let mut total = 0;
        loop {
            let n = s.read(buf).await.unwrap();
            assert!(n > 0, "connection closed");
            total += n;
            acc.extend_from_slice(&buf[..n]);
            if acc.windows(tag.len()).any(|w| w == tag) {
                acc.clear();
                return total;
            }
            if acc.len() > 4096 {
                acc.drain(..acc.len() - 4096);
            }
        }
    }
    until(&mut s, &mut buf, &mut acc, b"\r\n").await;
    s.write_all(format!("a1 LOGIN {USER} s3cret\r\n").as_bytes())
        .await
        .unwrap();
    until(&mut s, &mut buf, &mut acc, b"a1 OK").await;
    s.write_all(b"a2 SELECT INBOX\r\n").await.unwrap();
    until(&mut s, &mut buf, &mut acc, b"a2 OK").await;
    s.write_all(b"a3 UID FETCH 1:* (BODY.PEEK[])\r\n")
        .await
        .unwrap();
    until(&mut s, &mut buf, &mut acc, b"a3 OK").await
}

fn main() {
    let mut args = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse::<usize>().ok());
    let n = args.next().unwrap_or(10_000);
    let rounds = args.next().unwrap_or(3).max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let Some(dc) = Dovecot::start(&DovecotOptions::with_users(&[(USER, "s3cret")])) else {
        eprintln!("Dovecot is not installed: run scripts/testbed/dovecot.sh install");
        return;
    };
    let mut msgs = Vec::with_capacity(n);
    let stats = generate(
        &GenOptions {
            messages: n,
            seed: 5,
            ..Default::default()
        },
        |_, m| {
            msgs.push(m);
            Ok(())
        },
    )
    .unwrap();
    dc.deliver_many(USER, msgs).unwrap();
    println!(
        "{} messages, {:.1} MiB; load average before: {}",
        stats.messages,
        stats.bytes as f64 / 1048576.0,
        loadavg()
    );
    let dir = tempfile::tempdir().unwrap();
    let password_file = dir.path().join("pw");
    std::fs::write(&password_file, "s3cret").unwrap();
    // The channel of (c), and of (c2): the same on the plain IMAP port, without TLS. Each in a
    // configuration file of its own, loaded as `intake run` loads one.
    let load = |file: &str, port: u16, tls: String| {
        let path = dir.path().join(file);
        std::fs::write(
            &path,
            format!(
                "[[channel]]\nname = \"bench\"\nproject = \"BENCH\"\nprotocol = \"imap\"\nhost = \"127.0.0.1\"\nport = {port}\n{tls}\n\
                 mailbox = \"{USER}\"\nauth = \"password:file:{}\"\nstart = \"all\"\nbatch = 500\n",
                password_file.display()
            ),
        )
        .unwrap();
        let settings = Settings::load(Some(&path)).unwrap();
        let channel = settings.channels[0].clone();
        (settings, channel)
    };
    let (settings, channel) = load(
        "intake.toml",
        dc.imaps_port,
        format!("ca_file = \"file:{}\"", dc.ca_path.display()),
    );
    let (plain_settings, plain_channel) =
        load("intake-plain.toml", dc.imap_port, "tls = \"none\"".into());
    let fetchmail = if std::env::var_os("INTAKE_BENCH_NO_FETCHMAIL").is_some() {
        println!("(d) skipped: INTAKE_BENCH_NO_FETCHMAIL is set");
        None
    } else {
        which("fetchmail")
    };
    if fetchmail.is_none() && std::env::var_os("INTAKE_BENCH_NO_FETCHMAIL").is_none() {
        println!("(d) skipped: fetchmail is not installed (apt-get install fetchmail)");
    }

    let (mut floor, mut client, mut maildir, mut imap, mut fm) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut plain = Vec::new();
    // CPU seconds of Intake and Dovecot together during each (c).
    let mut imap_cpu = Vec::new();
    rt.block_on(async {
        // Warm Dovecot's index once (first SELECT of a never-indexed Maildir is slower).
        raw_fetch(&dc).await;
        for round in 1..=rounds {
            println!("round {round}:");
            let (t, cpu, server) = (Instant::now(), cpu_seconds(), dc.cpu_seconds());
            let bytes = raw_fetch(&dc).await;
            let secs = t.elapsed().as_secs_f64();
            println!("  (a) raw UID FETCH 1:* over IMAPS: {secs:.2} s ({:.0} MB/s, {:.2} CPU-s in the reader, {:.2} in Dovecot)", bytes as f64 / secs / 1e6, cpu_seconds() - cpu, dc.cpu_seconds() - server);
            floor.push(secs);

            // (a2) Intake's own IMAP client (async-imap) fetching everything in batches of 500,
            // nothing processed: the client's share of the IMAP run.
            {
                use intake_mail::source::imap::{ImapAuth, ImapSettings, ImapSource, Tls};
                let mut src = ImapSource::connect(&ImapSettings {
                    host: "127.0.0.1".into(),
                    port: dc.imaps_port,
                    tls: Tls::Implicit,
                    ca_pem: Some(dc.ca_pem.as_bytes().to_vec()),
                    auth: ImapAuth::Password {
                        user: USER.into(),
                        password: secrecy::SecretString::from("s3cret".to_string()),
                    },
                    folder: "INBOX".into(),
                    proxy: None,
                    timeouts: Default::default(),
                    max_message_bytes: None,
                })
                .await
                .unwrap();
                let (t, cpu) = (Instant::now(), cpu_seconds());
                let uids = src.new_uids(None, usize::MAX).await.unwrap();
                let mut got = 0;
                for chunk in uids.chunks(500) {
                    got += src.fetch(chunk).await.unwrap().len();
                }
                let secs = t.elapsed().as_secs_f64();
                println!(
                    "  (a2) Intake's IMAP client, UID FETCH in batches of 500, nothing processed: {secs:.2} s ({:.2} CPU-s in Intake, {got} messages)",
                    cpu_seconds() - cpu
                );
                client.push(secs);
            }

            let db = dir.path().join(format!("m{round}.db"));
            // The durability `intake ingest` uses (`intake run` commits with FULL).
            let store = Store::connect_with(&format!("sqlite://{}", db.display()), intake_store::Durability::Process).await.unwrap();
            let opts = IngestOptions::new("maildir", "BENCH".parse().unwrap(), ChannelRules::default());
            settle();
            let (t, cpu) = (Instant::now(), cpu_seconds());
            let s = pipeline::ingest_paths(&store, &[dc.maildir(USER)], &opts, None).await.unwrap();
            store.close().await;
            let secs = t.elapsed().as_secs_f64();
            println!("  (b) intake ingest of the Maildir: {secs:.2} s ({:.0} msg/s, {:.2} CPU-s in Intake) {s:?}", n as f64 / secs, cpu_seconds() - cpu);
            assert_eq!(s.total(), n as u64, "the Maildir ingest lost or doubled messages");
            maildir.push(secs);

            let (secs, cpu, server, s) =
                timed_run(&settings, &channel, &dir.path().join(format!("i{round}.db")), &dc).await;
            println!("  (c) intake run --once over IMAPS: {secs:.2} s ({:.0} msg/s, {cpu:.2} CPU-s in Intake, {server:.2} in Dovecot on the same cores) {s:?}", n as f64 / secs);
            imap_cpu.push(cpu + server);
            assert_eq!(s.total(), n as u64, "the IMAP run lost or doubled messages");
            imap.push(secs);
            println!("  IMAP run / Maildir ingest = {:.2}", imap[imap.len() - 1] / maildir[maildir.len() - 1]);

            let (secs, cpu, server, s) =
                timed_run(&plain_settings, &plain_channel, &dir.path().join(format!("p{round}.db")), &dc).await;
            println!("  (c2) the same over plain IMAP, no TLS: {secs:.2} s ({cpu:.2} CPU-s in Intake, {server:.2} in Dovecot) = {:.2} x (b)", secs / maildir[maildir.len() - 1]);
            assert_eq!(s.total(), n as u64, "the plain IMAP run lost or doubled messages");
            plain.push(secs);

            if let Some(bin) = &fetchmail {
                let secs = run_fetchmail(bin, &dc, dir.path());
                println!("  (d) fetchmail over IMAPS to `cat >/dev/null`: {secs:.2} s ({:.1}x Intake's IMAP run)", secs / imap[imap.len() - 1]);
                fm.push(secs);
            }
        }
    });
    let (b, c) = (median(&maildir), median(&imap));
    println!(
        "medians of {rounds} rounds: (a) floor {:.2} s, (a2) Intake's client {:.2} s, (b) Maildir ingest {b:.2} s, (c) IMAP run {c:.2} s{}",
        median(&floor),
        median(&client),
        if fm.is_empty() {
            String::new()
        } else {
            format!(", (d) fetchmail {:.2} s", median(&fm))
        }
    );
    let per_round = |x: &[f64], y: &[f64]| {
        x.iter()
            .zip(y)
            .map(|(x, y)| format!("{:.2}", x / y))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "IMAP run / Maildir ingest = {:.2} (medians; goal <= 1.3); per round: {}",
        c / b,
        per_round(&imap, &maildir)
    );
    println!(
        "plain IMAP run (c2) / Maildir ingest = {:.2} (medians, no TLS: what Dovecot's TLS proxy adds is the difference); per round: {}",
        median(&plain) / b,
        per_round(&plain, &maildir)
    );
    // The shortest (c) could be with Intake's and Dovecot's CPU packed onto every core.
    let cores = intake::pipeline::cores() as f64;
    println!(
        "(c) with its CPU (Intake + Dovecot, median {:.2} CPU-s) packed onto {cores} cores: {:.2} s = {:.2} x (b)",
        median(&imap_cpu),
        median(&imap_cpu) / cores,
        median(&imap_cpu) / cores / b
    );
    if !fm.is_empty() {
        println!(
            "fetchmail / IMAP run = {:.1} (medians; goal >= 10); per round: {}",
            median(&fm) / c,
            per_round(&fm, &imap)
        );
    }
    println!("load average after: {}", loadavg());
}

/// One `intake run --once` of `channel` into a fresh SQLite file at `db`, timed from after the
/// store's connection to its close: wall seconds, Intake's and Dovecot's CPU seconds, and the
/// run's summary.
async fn timed_run(
    settings: &Settings,
    channel: &std::sync::Arc<intake::settings::ChannelSettings>,
    db: &std::path::Path,
    dc: &Dovecot,
) -> (f64, f64, f64, intake::pipeline::Summary) {
    let store = Store::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    settle();
    let (t, cpu, server) = (Instant::now(), cpu_seconds(), dc.cpu_seconds());
    let s = intake::runner::run_once(settings, &store, channel)
        .await
        .unwrap()
        .unwrap();
    store.close().await;
    let secs = t.elapsed().as_secs_f64();
    (secs, cpu_seconds() - cpu, dc.cpu_seconds() - server, s)
}

/// The 1-, 5- and 15-minute load averages.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Dirty pages of an earlier step are written back before a timed one, untimed.
fn settle() {
    let _ = std::process::Command::new("sync").status();
}

fn which(bin: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| std::path::Path::new(d).join(bin))
        .find(|p| p.is_file())
}

/// fetchmail over IMAPS with password login, every message (seen or not, kept on the server)
/// handed to `cat >/dev/null`; returns the wall time. The test certificate names `localhost`,
/// so fetchmail is told to expect that name (`sslcommonname`) while it connects to 127.0.0.1.
fn run_fetchmail(bin: &std::path::Path, dc: &Dovecot, dir: &std::path::Path) -> f64 {
    use std::os::unix::fs::PermissionsExt;
    let home = dir.join("fetchmail");
    std::fs::create_dir_all(&home).unwrap();
    let rc = home.join("fetchmailrc");
    std::fs::write(
        &rc,
        format!(
            "set no syslog\nset no bouncemail\n\
             poll 127.0.0.1 protocol IMAP port {} timeout 600\n  \
             user \"{USER}\" password \"s3cret\" is root here\n  \
             ssl sslcertck sslcommonname localhost sslcertfile \"{}\"\n  folder INBOX\n  fetchall keep\n  \
             mda \"cat >/dev/null\"\n",
            dc.imaps_port,
            dc.ca_path.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o600)).unwrap();
    settle();
    let t = Instant::now();
    let out = std::process::Command::new(bin)
        .args(["--silent", "--fetchmailrc"])
        .arg(&rc)
        .args(["--idfile"])
        .arg(home.join("ids"))
        .env("FETCHMAILHOME", &home)
        .env("HOME", &home)
        .output()
        .unwrap();
    let secs = t.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "fetchmail failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    secs
}

/// The median of `v` (the mean of the middle two for an even count).
fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}
