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
