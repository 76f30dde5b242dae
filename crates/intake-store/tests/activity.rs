//! `Store::hourly_activity` (the admin overview's charts) and `Store::quarantined_id` (mail-log
//! links) on SQLite and PostgreSQL.

use intake_store::Store;
use intake_testkit::TestDb;

async fn story(db: &TestDb) {
    let store = Store::connect(&db.url).await.unwrap();
    // (channel, processed_at, outcome, message id)
    let rows = [
        ("a", 7_205, "created", "m1"),
        ("a", 7_200 + 3_000, "ignored", "m2"),
        ("a", 3 * 3_600, "quarantined", "m3"),
        ("b", 7_200, "created", "m4"),
        ("a", 10, "created", "m5"), // before `since`: left out
    ];
    for (i, (ch, t, outcome, mid)) in rows.iter().enumerate() {
        sqlx::query(
            "INSERT INTO message_ledger (channel, identity, message_id, content_hash, outcome, received_at, processed_at)
             VALUES ($1, $2, $3, $4, $5, $6, $6)",
        )
        .bind(*ch)
        .bind(format!("id{i}"))
        .bind(*mid)
        .bind(format!("h{i}"))
        .bind(*outcome)
        .bind(*t as i64)
        .execute(store.pool())
        .await
        .unwrap();
    }
    let mut got = store.hourly_activity(3_600).await.unwrap();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("a".to_string(), 2, 2),
            ("a".to_string(), 3, 1),
            ("b".to_string(), 2, 1)
        ],
        "{}",
        db.kind
    );
    let q = store.quarantined_id("a", "m3").await.unwrap();
    assert!(q.is_some(), "{}", db.kind);
    assert_eq!(
        store.quarantined_id("a", "m1").await.unwrap(),
        None,
        "not quarantined"
    );
    assert_eq!(
        store.quarantined_id("b", "m3").await.unwrap(),
        None,
        "other channel"
    );
}

#[tokio::test]
async fn hourly_activity_and_quarantine_links_on_sqlite_and_postgres() {
    story(&TestDb::sqlite()).await;
    story(&TestDb::postgres().await).await;
}
