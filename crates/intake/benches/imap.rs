//! IMAP ingest benchmark against a real Dovecot on loopback (issue "Mail connectors").
//!
//! `cargo bench -p intake --bench imap [-- MESSAGES]` (default 10,000) delivers N generated
//! messages into a Dovecot mailbox, then measures in one run:
//! (a) the network floor: one raw `UID FETCH 1:* (BODY.PEEK[])` over IMAPS, reading to the
//!     tagged OK, nothing parsed;
//! (b) `intake ingest` of the same messages from the mailbox's Maildir into a fresh SQLite file;
//! (c) `intake run --once` of the IMAP channel over IMAPS into a fresh SQLite file (fetch,
//!     commit, `\Seen`, checkpoint per batch).
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
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10_000);
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
        "{} messages, {:.1} MiB",
        stats.messages,
        stats.bytes as f64 / 1048576.0
    );
    rt.block_on(async {
        // Warm Dovecot's index once (first SELECT of a never-indexed Maildir is slower).
        raw_fetch(&dc).await;
        let t = Instant::now();
        let bytes = raw_fetch(&dc).await;
        let floor = t.elapsed().as_secs_f64();
        println!("(a) raw UID FETCH 1:* over IMAPS: {floor:.2} s ({:.0} MB/s)", bytes as f64 / floor / 1e6);

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
            println!(
                "(a2) Intake's IMAP client, UID FETCH in batches of 500, nothing processed: {:.2} s ({:.2} CPU-s in Intake, {got} messages)",
                t.elapsed().as_secs_f64(),
                cpu_seconds() - cpu
            );
        }

        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect_with(&format!("sqlite://{}", dir.path().join("m.db").display()), intake_store::Durability::Process).await.unwrap();
        let opts = IngestOptions::new("maildir", "BENCH".parse().unwrap(), ChannelRules::default());
        let (t, cpu) = (Instant::now(), cpu_seconds());
        let s = pipeline::ingest_paths(&store, &[dc.maildir(USER)], &opts, None).await.unwrap();
        store.close().await;
        let maildir = t.elapsed().as_secs_f64();
        let maildir_cpu = cpu_seconds() - cpu;
        println!("(b) intake ingest of the Maildir: {maildir:.2} s ({:.0} msg/s, {maildir_cpu:.2} CPU-s in Intake) {s:?}", n as f64 / maildir);

        let store = Store::connect(&format!("sqlite://{}", dir.path().join("i.db").display())).await.unwrap();
        let password_file = dir.path().join("pw");
        std::fs::write(&password_file, "s3cret").unwrap();
        let toml = format!(
            "[[channel]]\nname = \"bench\"\nproject = \"BENCH\"\nprotocol = \"imap\"\nhost = \"127.0.0.1\"\nport = {}\nca_file = \"file:{}\"\n\
             mailbox = \"{USER}\"\nauth = \"password:file:{}\"\nstart = \"all\"\nbatch = 500\n",
            dc.imaps_port,
            dc.ca_path.display(),
            password_file.display()
        );
        let cfg_path = dir.path().join("intake.toml");
        std::fs::write(&cfg_path, toml).unwrap();
        let settings = Settings::load(Some(&cfg_path)).unwrap();
        let channel = settings.channels[0].clone();
        let (t, cpu) = (Instant::now(), cpu_seconds());
        let s = intake::runner::run_once(&settings, &store, &channel).await.unwrap().unwrap();
        store.close().await;
        let imap = t.elapsed().as_secs_f64();
        let imap_cpu = cpu_seconds() - cpu;
        println!("(c) intake run --once over IMAPS: {imap:.2} s ({:.0} msg/s, {imap_cpu:.2} CPU-s in Intake; Dovecot's own CPU comes on top) {s:?}", n as f64 / imap);
        println!("IMAP run / Maildir ingest = {:.2} (goal <= 1.3)", imap / maildir);
    });
}
