use std::collections::HashSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

use intake::mailgen::{GenOptions, write_maildir};
use intake_store::{Store, Table};
use intake_testkit::TestDb;
use sqlx::Row;

use crate::{intake, ok};

const MESSAGES: usize = 3000;

/// Kill `intake ingest` with SIGKILL at several points of a large import, re-run it to the end,
/// and check that every message has exactly one outcome and nothing was duplicated or lost.
async fn kill_and_resume(db: &TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().join("md");
    let stats = write_maildir(
        &md,
        &GenOptions {
            messages: MESSAGES,
            seed: 7,
            ..Default::default()
        },
    )
    .unwrap();
    let store = Store::connect(&db.url).await.unwrap();
    let md = md.display().to_string();
    let args = [
        "ingest",
        "--db",
        &db.url,
        "--project",
        "CR",
        "--batch",
        "50",
        "--json",
        &md,
    ];
    let mut kills = Vec::new();
    for threshold in [0_i64, 600, 1500, 2400] {
        let mut child = intake()
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            let n = store.count(Table::Ledger).await.unwrap();
            if n >= threshold || started.elapsed() > Duration::from_secs(120) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        if threshold == 0 {
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills.push(store.count(Table::Ledger).await.unwrap());
    }
    let mid = kills
        .iter()
        .filter(|n| **n > 0 && **n < MESSAGES as i64)
        .count();
    assert!(
        mid >= 2,
        "at least two kills must land in the middle of the import: {kills:?}"
    );

    let before = store.count(Table::Ledger).await.unwrap() as u64;
    let out = ok(intake().args(args).output().unwrap());
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        v["duplicate"].as_u64(),
        Some(before),
        "committed messages are not processed again: {v}"
    );
    let total: u64 = [
        "created",
        "commented",
        "ignored",
        "quarantined",
        "duplicate",
    ]
    .iter()
    .map(|k| v[k].as_u64().unwrap())
    .sum();
    assert_eq!(total, MESSAGES as u64, "{v}");

    // Exactly one outcome per message, none pending.
    let ledger = store.ledger(None).await.unwrap();
    assert_eq!(ledger.len(), MESSAGES, "kills at {kills:?}");
    assert_eq!(
        ledger
            .iter()
            .map(|r| &r.identity)
            .collect::<HashSet<_>>()
            .len(),
        MESSAGES
    );
    assert!(
        ledger
            .iter()
            .all(|r| r.outcome == "created" || r.outcome == "commented"),
        "all generated mail is readable"
    );
    // Effects match outcomes one to one, and match a clean import of the same mail.
    let created = ledger.iter().filter(|r| r.outcome == "created").count() as i64;
    let commented = ledger.iter().filter(|r| r.outcome == "commented").count() as i64;
    assert_eq!(store.count(Table::Tickets).await.unwrap(), created);
    assert_eq!(store.count(Table::Comments).await.unwrap(), commented);
    assert_eq!(created as u64, stats.new_tickets, "kills at {kills:?}");
    assert_eq!(commented as u64, stats.replies, "kills at {kills:?}");
    let summaries: HashSet<String> = sqlx::query("SELECT summary FROM tickets")
        .fetch_all(store.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get::<String, _>("summary").unwrap())
        .collect();
    assert_eq!(summaries.len() as i64, created, "no ticket created twice");
    let numbers: i64 = sqlx::query_scalar("SELECT COUNT(DISTINCT number) FROM tickets")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(numbers, created, "ticket numbers unique");
    let max: i64 = sqlx::query_scalar("SELECT MAX(number) FROM tickets")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(max, created, "no numbers burnt by rolled-back batches");
    let ledger_ids: i64 = sqlx::query_scalar("SELECT COUNT(DISTINCT ledger_id) FROM comments")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(ledger_ids, commented, "one comment per commented message");

    // And once more: nothing changes.
    let out = ok(intake().args(args).output().unwrap());
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["duplicate"].as_u64(), Some(MESSAGES as u64));
    assert_eq!(store.count(Table::Tickets).await.unwrap(), created);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_import_on_sqlite_loses_and_duplicates_nothing() {
    kill_and_resume(&TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_import_on_postgres_loses_and_duplicates_nothing() {
    kill_and_resume(&TestDb::postgres().await).await;
}
