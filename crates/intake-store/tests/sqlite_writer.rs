//! The SQLite batch writer's own promises: WAL checkpoints happen in the background while
//! batches keep coming (not all at close), and a closed store refuses batches instead of
//! writing past the close.

use std::time::{Duration, Instant};

use intake_core::{ChannelRules, LoopGuard};
use intake_mime::Reader;
use intake_store::{Applied, Incoming, Store, StoreError, Table};
use intake_testkit::TestDb;

fn batch(reader: &Reader, b: usize) -> Vec<Incoming> {
    (0..100)
        .map(|i| {
            // ~13 KB of text per message: 50 batches of 100 write ~65 MB of WAL frames, below
            // SQLite's own automatic checkpoint as configured (8,192 pages of 16 KiB = 128 MiB),
            // so only the background checkpoints move them into the database file.
            let body =
                format!("line {i} of batch {b}: the printer is on fire again\r\n").repeat(250);
            let raw = format!(
                "From: u{i}@customer.example\r\nTo: help@example.com\r\nSubject: b{b} m{i}\r\n\
                 Date: Mon, 02 Nov 2026 10:00:00 +0000\r\nMessage-ID: <b{b}m{i}@x>\r\n\
                 Content-Type: text/plain; charset=utf-8\r\n\r\n{body}"
            );
            let prepared = reader.prepare(raw.as_bytes());
            Incoming {
                identity: format!("sha256:{}", prepared.envelope.content_hash),
                prepared,
                raw: None,
                received_at: 1_793_000_000,
            }
        })
        .collect()
}

fn wal_len(db: &std::path::Path) -> u64 {
    std::fs::metadata(db.with_extension("db-wal"))
        .map(|m| m.len())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_is_checkpointed_in_the_background_while_batches_arrive() {
    let db = TestDb::sqlite();
    let path = std::path::PathBuf::from(db.url.trim_start_matches("sqlite://"));
    let store = Store::connect(&db.url).await.expect("connect");
    let help = "HELP".parse().unwrap();
    store.ensure_project(&help, "Help").await.unwrap();
    let reader = Reader::new(&ChannelRules::default()).unwrap();
    let guard = LoopGuard {
        max_per_sender: 0,
        window_seconds: 1,
    };
    let mut max_wal = 0;
    for b in 0..50 {
        let applied = store
            .apply_batch("mail", &help, &guard, &batch(&reader, b))
            .await
            .expect("apply");
        assert!(applied.iter().all(|a| matches!(a, Applied::Recorded(_))));
        max_wal = max_wal.max(wal_len(&path));
    }
    // Without background checkpoints the database file would stay at its empty size until
    // close, and the WAL would hold every page of all 5,000 tickets.
    let waited = Instant::now();
    let db_len = loop {
        let len = std::fs::metadata(&path).unwrap().len();
        if len > 40 << 20 || waited.elapsed() > Duration::from_secs(20) {
            break len;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        db_len > 40 << 20,
        "before close, the database file should hold most tickets: {db_len} bytes"
    );
    // The WAL file is reused from its start once checkpointed, so it stays below the import.
    assert!(
        max_wal < 45 << 20,
        "the WAL grew to {max_wal} bytes: checkpoints are not keeping up"
    );
    assert_eq!(store.count(Table::Tickets).await.unwrap(), 5_000);

    let started = Instant::now();
    store.close().await;
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "close waits for the checkpoint thread and returns"
    );
    let err = store
        .apply_batch("mail", &help, &guard, &batch(&reader, 999))
        .await
        .expect_err("a closed store takes no batch");
    assert!(matches!(err, StoreError::Closed), "{err}");
}

/// A transaction that reads and then writes must not fail with "database is locked" when
/// another connection commits between its read and its write (the web UI revoking a token while
/// a channel ingests). A deferred `BEGIN` does fail so — the control below shows the mechanism —
/// and `Store::begin_write` (`BEGIN IMMEDIATE` on SQLite) makes the other writer wait instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_transaction_that_reads_first_survives_another_writer_committing() {
    let db = TestDb::sqlite();
    let store = Store::connect(&db.url).await.unwrap();
    let insert = "INSERT INTO audit_log (at, actor, action, target, details) VALUES (1, 'tx', 'a', 't', '{}')";
    let count = "SELECT COUNT(*) AS n FROM audit_log";
    // Control: the deferred transaction's write is refused at once.
    {
        let mut tx = store.pool().begin().await.unwrap();
        sqlx::query(count).fetch_one(&mut *tx).await.unwrap();
        store
            .audit("other", "a", "t", serde_json::json!({}))
            .await
            .unwrap();
        let refused = sqlx::query(insert).execute(&mut *tx).await;
        let e = refused.expect_err("a deferred transaction upgraded after another commit");
        assert!(e.to_string().contains("locked"), "{e}");
    }
    // begin_write: the other writer waits for this transaction, and both writes land.
    let mut tx = store.begin_write().await.unwrap();
    sqlx::query(count).fetch_one(&mut *tx).await.unwrap();
    let other = tokio::spawn({
        let store = store.clone();
        async move { store.audit("other", "b", "t", serde_json::json!({})).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    sqlx::query(insert).execute(&mut *tx).await.unwrap();
    tx.commit().await.unwrap();
    other.await.unwrap().unwrap();
    let n: i64 = sqlx::Row::try_get(
        &sqlx::query(count).fetch_one(store.pool()).await.unwrap(),
        "n",
    )
    .unwrap();
    assert_eq!(n, 3);
}
