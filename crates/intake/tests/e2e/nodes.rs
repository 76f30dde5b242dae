//! One node per mailbox: two `intake run` processes on one PostgreSQL database and one real
//! Dovecot mailbox. Only the node holding the channel's lease works it; when that node is
//! SIGKILLed, the other takes the channel over after the lease's time to live, and every
//! message still ends with exactly one outcome and one post-action.

use std::collections::HashSet;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use intake_mail::source::imap::{ImapAuth, ImapSettings, ImapSource, Tls};
use intake_store::{Store, Table};
use intake_testkit::TestDb;
use intake_testkit::dovecot::{Dovecot, DovecotOptions};
use secrecy::SecretString;

use crate::intake;

const USER: &str = "help@example.test";

fn mail(n: usize) -> Vec<u8> {
    format!(
        "From: customer{n}@example.org\r\nTo: {USER}\r\nSubject: Node test {n}\r\nMessage-ID: <node{n}@example.org>\r\n\r\nbody {n}\r\n"
    )
    .into_bytes()
}

fn spawn(cfg: &str, db: &str) -> Child {
    intake()
        .args(["--config", cfg, "--db", db, "run"])
        .env("IMAP_PW", "s3cret")
        .env("INTAKE_LEASE_SECONDS", "2")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Nodes that logged `channel_started` for the channel, in order.
async fn starters(store: &Store) -> Vec<String> {
    let mut v: Vec<_> = store
        .recent_events(10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "channel_started")
        .collect();
    v.sort_by_key(|e| e.at);
    v.into_iter()
        .filter_map(|e| e.fields["node"].as_str().map(str::to_string))
        .collect()
}

async fn wait_ledger(store: &Store, n: i64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(40);
    while Instant::now() < deadline {
        if store.count(Table::Ledger).await.unwrap() >= n {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// The pid in a node id (`host:pid:random`).
fn pid_of(node: &str) -> u32 {
    node.split(':').nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_postgres_one_works_the_mailbox_and_the_other_takes_over_after_a_kill() {
    let Some(dc) = Dovecot::start_or_skip(
        "two_nodes_on_postgres",
        &DovecotOptions::with_users(&[(USER, "s3cret")]),
    ) else {
        return;
    };
    for n in 0..40 {
        dc.deliver(USER, &mail(n)).unwrap();
    }
    let db = TestDb::postgres().await;
    let store = Store::connect(&db.url).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("intake.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[channel]]\nname = \"helpdesk\"\nproject = \"HELP\"\nprotocol = \"imap\"\nhost = \"127.0.0.1\"\nport = {}\n\
             ca_file = \"file:{}\"\nmailbox = \"{USER}\"\nauth = \"password:env:IMAP_PW\"\nstart = \"all\"\n\
             after = \"mark-read\"\nbatch = 10\nmode = \"push\"\npoll_seconds = 5\n",
            dc.imaps_port,
            dc.ca_path.display()
        ),
    )
    .unwrap();
    let cfg = cfg.display().to_string();
    let mut a = spawn(&cfg, &db.url);
    let mut b = spawn(&cfg, &db.url);
    assert!(wait_ledger(&store, 40).await, "the first 40 were taken");
    // Both nodes run for a while (several lease renewals) with the channel on one of them.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let first = starters(&store).await;
    assert_eq!(
        first.len(),
        1,
        "exactly one node started the channel while both were up: {first:?}"
    );
    let (holder, _) = store.lease_holder("helpdesk").await.unwrap().unwrap();
    assert_eq!(holder, first[0], "the lease names the working node");
    let holder_pid = pid_of(&holder);
    assert!(holder_pid == a.id() || holder_pid == b.id());
    let (dead, survivor) = if holder_pid == a.id() {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    dead.kill().unwrap();
    dead.wait().unwrap();
    for n in 40..50 {
        dc.deliver(USER, &mail(n)).unwrap();
    }
    assert!(
        wait_ledger(&store, 50).await,
        "the surviving node took the channel over and ingested the new mail"
    );
    let all = starters(&store).await;
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(pid_of(&all[1]), survivor.id(), "the survivor took over");

    // Exactly once: one outcome per message, one ticket per message, all marked read once.
    let ledger = store.ledger(Some("helpdesk")).await.unwrap();
    assert_eq!(ledger.len(), 50);
    let ids: HashSet<_> = ledger.iter().map(|r| r.identity.clone()).collect();
    assert_eq!(ids.len(), 50);
    assert_eq!(store.count(Table::Tickets).await.unwrap(), 50);
    let mut imap = ImapSource::connect(&ImapSettings {
        host: "127.0.0.1".into(),
        port: dc.imap_port,
        tls: Tls::None,
        ca_pem: None,
        auth: ImapAuth::Password {
            user: USER.into(),
            password: SecretString::from("s3cret".to_string()),
        },
        folder: "INBOX".into(),
        proxy: None,
        timeouts: Default::default(),
        max_message_bytes: None,
    })
    .await
    .unwrap();
    assert_eq!(imap.seen_uids().await.unwrap().len(), 50);
    assert!(imap.unseen_uids().await.unwrap().is_empty());

    let _ = std::process::Command::new("kill")
        .args(["-TERM", &survivor.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while survivor.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the survivor stops on SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        store.lease_holder("helpdesk").await.unwrap(),
        None,
        "a clean stop releases the lease"
    );
}
