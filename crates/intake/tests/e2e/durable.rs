//! Durable before destructive, and housekeeping, through the application:
//! - the runner refuses to send any post-action after commits that are not power-loss durable,
//!   and the store `intake run` opens is (SQLite `synchronous=FULL`);
//! - `intake ingest` and `intake run` purge mail-log events past `mail_log_retention_days` and
//!   expired OAuth flows when they start.

use std::path::{Path, PathBuf};

use intake::settings::Settings;
use intake_store::{Durability, Keyring, PendingFlow, Store, Table};
use intake_testkit::TestDb;

use crate::{intake, ok};

const DAY: i64 = 86_400;

fn mail(n: usize) -> String {
    format!(
        "From: c{n}@customer.example\r\nTo: help@example.com\r\nSubject: durable {n}\r\n\
         Date: Mon, 02 Nov 2026 10:00:0{n} +0000\r\nMessage-ID: <durable{n}@x>\r\n\r\nbody {n}\r\n"
    )
}

/// A Maildir with `n` new messages.
fn maildir(root: &Path, n: usize) {
    for sub in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    for i in 0..n {
        std::fs::write(
            root.join("new").join(format!("17000000{i:02}.M{i}P1.host")),
            mail(i),
        )
        .unwrap();
    }
}

fn files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|r| r.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default()
}

fn config(dir: &Path, root: &Path, extra: &str) -> PathBuf {
    let cfg = dir.join("intake.toml");
    std::fs::write(
        &cfg,
        format!(
            "{extra}[[channel]]\nname = \"local\"\nproject = \"HELP\"\nprotocol = \"maildir\"\n\
             path = \"{}\"\nstart = \"all\"\nafter = \"move:Done\"\n",
            root.display()
        ),
    )
    .unwrap();
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_actions_only_follow_power_loss_durable_commits() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("Maildir");
    maildir(&root, 3);
    let settings = Settings::load(Some(&config(dir.path(), &root, ""))).unwrap();
    let channel = settings.channel("local").unwrap();
    let db = TestDb::sqlite();

    // A store whose commits a power loss may undo (what `intake ingest` uses): the runner
    // refuses before it commits or moves anything.
    let fast = Store::connect_with(&db.url, Durability::Process)
        .await
        .unwrap();
    let err = intake::runner::run_once(&settings, &fast, channel)
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("power-loss durable"), "{err:#}");
    assert_eq!(files(&root.join("new")).len(), 3, "nothing moved");
    assert_eq!(fast.count(Table::Tickets).await.unwrap(), 0);
    fast.close().await;

    // The store `intake run` opens: FULL on the batch writer, so each commit is on disk before
    // the files move.
    let store = Store::connect(&db.url).await.unwrap();
    assert_eq!(store.durability(), Durability::PowerLoss);
    assert_eq!(store.batch_writer_synchronous().unwrap(), Some(2));
    let summary = intake::runner::run_once(&settings, &store, channel)
        .await
        .unwrap()
        .expect("lease taken");
    assert_eq!(summary.created, 3);
    assert!(files(&root.join("new")).is_empty());
    assert_eq!(files(&root.join(".Done").join("cur")).len(), 3);
    store.close().await;
}

async fn old_rows(store: &Store, keys: &Keyring, tag: &str) {
    let now = intake_store::now();
    for (age, what) in [(100, "100 days"), (10, "10 days")] {
        sqlx::query(
            "INSERT INTO mail_log (at, channel, level, kind, message, fields)
             VALUES ($1, 'local', 'info', 'ignored', $2, '{}')",
        )
        .bind(now - age * DAY)
        .bind(format!("{tag} {what}"))
        .execute(store.pool())
        .await
        .unwrap();
    }
    for (state, expires_at) in [("expired", now - 60), ("live", now + 600)] {
        let flow = PendingFlow {
            state: format!("{tag}-{state}"),
            integration: "corp".into(),
            mailbox: "help@example.com".into(),
            redirect_uri: "http://localhost/cb".into(),
            pkce_verifier: "verifier".to_string().into(),
            expires_at,
        };
        store.save_flow(keys, &flow).await.unwrap();
    }
}

async fn left(store: &Store, tag: &str) -> Vec<String> {
    store
        .recent_events(1_000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.message)
        .filter(|m| m.starts_with(tag))
        .collect()
}

async fn flows(store: &Store) -> Vec<String> {
    let mut v: Vec<String> = sqlx::query_scalar("SELECT state FROM oauth_flows")
        .fetch_all(store.pool())
        .await
        .unwrap();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_and_run_purge_old_mail_log_events_and_expired_flows_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("Maildir");
    maildir(&root, 1);
    let db = TestDb::sqlite();
    let keys = Keyring::generate().unwrap();
    let store = Store::connect(&db.url).await.unwrap();

    // `intake ingest`, default retention (90 days).
    old_rows(&store, &keys, "a").await;
    let cfg = config(dir.path(), &root, "");
    let cfg = cfg.to_str().unwrap();
    ok(intake()
        .args(["--config", cfg, "--db", &db.url, "ingest", "--json"])
        .arg(&root)
        .output()
        .unwrap());
    assert_eq!(left(&store, "a").await, ["a 10 days"]);
    assert_eq!(flows(&store).await, ["a-live"]);

    // `intake run --once` with a 5-day retention.
    old_rows(&store, &keys, "b").await;
    let cfg = config(dir.path(), &root, "mail_log_retention_days = 5\n");
    ok(intake()
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "--db",
            &db.url,
            "run",
            "--once",
        ])
        .env("INTAKE_LEASE_SECONDS", "2")
        .output()
        .unwrap());
    assert!(left(&store, "a").await.is_empty());
    assert!(left(&store, "b").await.is_empty());
    assert_eq!(flows(&store).await, ["a-live", "b-live"]);
    store.close().await;
}
