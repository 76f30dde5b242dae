//! One story of store behaviour, run unchanged on SQLite and on PostgreSQL.

use std::sync::Arc;
use std::time::Duration;

use intake_core::{ChannelRules, LoopGuard, Outcome, ProjectKey, ReplyPolicy};
use intake_mime::Reader;
use intake_store::{
    Applied, Backend, BatchRules, Incoming, Staged, Store, Table, migration_names, node_id, now,
};
use intake_testkit::TestDb;
use tokio::sync::Barrier;

fn mail(id: &str, from: &str, subject: &str, extra: &str, body: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: help@example.com\r\nCc: boss@customer.example, help@example.com\r\n\
         Subject: {subject}\r\nDate: Mon, 02 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{id}>\r\n\
         {extra}MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

fn incoming(reader: &Reader, raw: &[u8]) -> Incoming {
    let prepared = reader.prepare(raw);
    Incoming {
        identity: format!("sha256:{}", prepared.envelope.content_hash),
        prepared,
        raw: Some(raw.to_vec()),
        received_at: 1_793_000_000,
    }
}

fn outcome(a: &Applied) -> String {
    match a {
        Applied::Recorded(o) => o.to_string(),
        Applied::Duplicate => "duplicate".into(),
    }
}

/// `batches` batches of `n` plain messages from `n` senders, Message-IDs `{tag}{b}-{i}@x`.
fn plain_batches(reader: &Reader, tag: &str, batches: usize, n: usize) -> Vec<Vec<Incoming>> {
    (0..batches)
        .map(|b| {
            (0..n)
                .map(|i| {
                    let raw = mail(
                        &format!("{tag}{b}-{i}@x"),
                        &format!("u{i}@x.example"),
                        &format!("b{b} m{i}"),
                        "",
                        "hi",
                    );
                    incoming(reader, &raw)
                })
                .collect()
        })
        .collect()
}

/// No loop guard: the same senders write in every batch.
fn unguarded() -> LoopGuard {
    LoopGuard {
        max_per_sender: 0,
        window_seconds: 1,
    }
}

/// Apply `batches` in order on `store` under `project`; how many messages it recorded (not
/// duplicates).
async fn record_all(store: Store, batches: Vec<Vec<Incoming>>, project: ProjectKey) -> usize {
    let mut recorded = 0;
    for batch in &batches {
        recorded += store
            .apply_batch("mail", &project, &unguarded(), batch)
            .await
            .unwrap()
            .iter()
            .filter(|a| **a != Applied::Duplicate)
            .count();
    }
    recorded
}

/// A fresh PostgreSQL database and two stores on it (two nodes).
async fn two_nodes() -> (TestDb, Store, Store) {
    let db = TestDb::postgres().await;
    let a = Store::connect(&db.url).await.unwrap();
    let b = Store::connect(&db.url).await.unwrap();
    (db, a, b)
}

async fn story(db: &TestDb) {
    let store = Store::connect(&db.url).await.expect("connect");
    // Connecting twice (a second node, or a restart) re-runs migrations idempotently.
    let store2 = Store::connect(&db.url).await.expect("second connect");
    let help: ProjectKey = "HELP".parse().unwrap();
    store.ensure_project(&help, "Help desk").await.unwrap();
    store2.ensure_project(&help, "Help desk").await.unwrap();
    let rules = ChannelRules {
        addresses: vec!["help@example.com".into()],
        ..Default::default()
    };
    let reader = Reader::new(&rules).unwrap();
    // Bob (same domain as the reporter, not on the ticket) comments: `reply_policy = "domain"`.
    // The default policy is covered by tests/isolation.rs.
    let guard = BatchRules {
        loop_guard: LoopGuard::default(),
        reply_policy: ReplyPolicy::Domain,
        ..Default::default()
    };

    let first = mail(
        "a1@customer.example",
        "Jane <jane@customer.example>",
        "Printer on fire",
        "",
        "It is on fire.",
    );
    let by_key = mail(
        "a2@customer.example",
        "jane@customer.example",
        "Re: [HELP-1] Printer on fire",
        "",
        "Still burning.\r\n\r\nOn Mon, Help wrote:\r\n> old",
    );
    let by_ref = mail(
        "a3@customer.example",
        "bob@customer.example",
        "Re: Printer on fire",
        "In-Reply-To: <a1@customer.example>\r\nReferences: <a1@customer.example>\r\n",
        "Bob here.",
    );
    let same_id_other_content = mail(
        "a1@customer.example",
        "eve@customer.example",
        "Different",
        "",
        "other",
    );
    let auto = mail(
        "a5@customer.example",
        "jane@customer.example",
        "Automatic reply: hi",
        "Auto-Submitted: auto-replied\r\n",
        "away",
    );
    let junk = b"\x00\x01\x02binary junk\xff\xfe".to_vec();
    let unknown_key = mail(
        "a6@customer.example",
        "kim@customer.example",
        "About NOPE-9 and HELP-999",
        "",
        "new",
    );

    let batch: Vec<Incoming> = [
        &first,
        &by_key,
        &by_ref,
        &same_id_other_content,
        &auto,
        &junk,
        &unknown_key,
    ]
    .iter()
    .map(|r| incoming(&reader, r))
    .collect();
    let got: Vec<String> = store
        .apply_batch("mail", &help, &guard, &batch)
        .await
        .unwrap()
        .iter()
        .map(outcome)
        .collect();
    assert_eq!(got[0], "created HELP-1", "{}", db.kind);
    assert_eq!(got[1], "commented HELP-1", "{}", db.kind);
    assert_eq!(got[2], "commented HELP-1", "{}", db.kind);
    assert_eq!(
        got[3], "created HELP-2",
        "same Message-ID, different content is a different message ({})",
        db.kind
    );
    assert!(got[4].starts_with("ignored: auto-submitted"), "{}", got[4]);
    assert!(
        got[5].starts_with("quarantined: not an email"),
        "{}",
        got[5]
    );
    assert_eq!(
        got[6], "created HELP-3",
        "keys of tickets that do not exist are not targets"
    );

    // Re-applying the same batch (a retry after a crash, or another node) changes nothing.
    let again = store2
        .apply_batch("mail", &help, &guard, &batch)
        .await
        .unwrap();
    assert!(again.iter().all(|a| *a == Applied::Duplicate), "{again:?}");
    assert_eq!(store.count(Table::Tickets).await.unwrap(), 3);
    assert_eq!(store.count(Table::Comments).await.unwrap(), 2);
    assert_eq!(store.count(Table::Ledger).await.unwrap(), 7);

    // Search: case-insensitive over summary, description and comments; `%` and `_` literal.
    for (q, want) in [
        ("PRINTER on", vec!["HELP-1"]),
        ("still BURNING", vec!["HELP-1"]),
        ("bob here", vec!["HELP-1"]),
        ("nope-9", vec!["HELP-3"]),
        ("It Is On Fire", vec!["HELP-1"]),
        ("100%", vec![]),
        ("o_e", vec![]),
        ("ope", vec!["HELP-3"]),
    ] {
        let page = store
            .search_tickets(&intake_store::browse::TicketQuery {
                q: Some(q.into()),
                page: 1,
                per_page: 50,
                ..Default::default()
            })
            .await
            .unwrap();
        let keys: Vec<&str> = page.items.iter().map(|t| t.key.as_str()).collect();
        assert_eq!(keys, want, "search {q:?} on {}", db.kind);
        assert_eq!(page.total, want.len() as i64, "search {q:?} on {}", db.kind);
    }
    // The total is the same from a full page (counted), the short last page (known) and a
    // page past the end (counted).
    for (page, items) in [(1, 2), (2, 1), (3, 0)] {
        let got = store
            .search_tickets(&intake_store::browse::TicketQuery {
                q: Some("e".into()),
                page,
                per_page: 2,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(got.items.len(), items, "page {page} on {}", db.kind);
        assert_eq!(got.total, 3, "page {page} on {}", db.kind);
    }
    // The same message on another channel is that channel's to process.
    let other = store
        .apply_batch("other", &help, &guard, &batch[..1])
        .await
        .unwrap();
    assert_eq!(outcome(&other[0]), "created HELP-4");

    // Ticket contents, participants without the channel's own address, quote-stripped comments.
    let t = store.ticket("help-1").await.unwrap().expect("HELP-1");
    assert_eq!(t.summary, "Printer on fire");
    assert_eq!(t.reporter, "jane@customer.example");
    assert_eq!(
        t.participants,
        vec!["boss@customer.example", "bob@customer.example"]
    );
    assert_eq!(t.comments.len(), 2);
    assert_eq!(t.comments[0].body, "Still burning.");
    assert_eq!(t.comments[1].author, "bob@customer.example");
    let list = store.list_tickets(Some("HELP")).await.unwrap();
    assert_eq!(list.len(), 4);
    assert_eq!((list[0].comments, list[0].key.as_str()), (2, "HELP-1"));
    assert!(store.list_tickets(Some("OPS")).await.unwrap().is_empty());

    // Quarantined raw bytes are kept, byte for byte.
    let ledger = store.ledger(Some("mail")).await.unwrap();
    let q = ledger.iter().find(|r| r.outcome == "quarantined").unwrap();
    assert_eq!(
        store
            .blob(q.raw_hash.as_ref().unwrap())
            .await
            .unwrap()
            .unwrap(),
        junk
    );
    assert_eq!(ledger.iter().filter(|r| r.outcome == "pending").count(), 0);
}

#[tokio::test]
async fn store_story_on_sqlite_and_postgres() {
    for db in TestDb::each().await {
        story(&db).await;
    }
}

async fn attachments_and_loop_guard(db: &TestDb) {
    let store = Store::connect(&db.url).await.unwrap();
    let ops: ProjectKey = "OPS".parse().unwrap();
    store.ensure_project(&ops, "Ops").await.unwrap();
    let reader = Reader::new(&ChannelRules::default()).unwrap();
    let batch: Vec<Incoming> = (1..=2)
        .map(|n| incoming(&reader, &with_image(n, "a@x.example")))
        .collect();
    let got = store
        .apply_batch("c", &ops, &LoopGuard::default(), &batch)
        .await
        .unwrap();
    assert!(
        got.iter()
            .all(|a| matches!(a, Applied::Recorded(Outcome::Created(_)))),
        "{got:?}"
    );
    let t = store.ticket("OPS-1").await.unwrap().unwrap();
    assert_eq!(t.attachments.len(), 1);
    assert_eq!(t.attachments[0].content_id.as_deref(), Some("logo@x"));
    assert!(t.attachments[0].inline);
    assert_eq!(store.count(Table::Attachments).await.unwrap(), 2);
    assert_eq!(
        store.count(Table::Blobs).await.unwrap(),
        3,
        "attachments are content-addressed (one blob), and each HTML message keeps its HTML"
    );

    // Loop guard: 3 per 10 minutes; the 4th and 5th within the window are ignored, in this
    // batch and across batches.
    let guard = LoopGuard {
        max_per_sender: 3,
        window_seconds: 600,
    };
    let flood: Vec<Incoming> = (0..4)
        .map(|i| {
            incoming(
                &reader,
                &mail(
                    &format!("f{i}@x"),
                    "bot@loop.example",
                    &format!("alert {i}"),
                    "",
                    "x",
                ),
            )
        })
        .collect();
    let got: Vec<String> = store
        .apply_batch("c", &ops, &guard, &flood)
        .await
        .unwrap()
        .iter()
        .map(outcome)
        .collect();
    assert!(got[..3].iter().all(|o| o.starts_with("created")), "{got:?}");
    assert!(got[3].starts_with("ignored: mail loop guard"), "{got:?}");
    let later = incoming(
        &reader,
        &mail("f9@x", "bot@loop.example", "alert 9", "", "x"),
    );
    let got = store
        .apply_batch("c", &ops, &guard, &[later])
        .await
        .unwrap();
    assert!(
        outcome(&got[0]).starts_with("ignored: mail loop guard"),
        "{got:?}"
    );

    // Earlier batches count only within the window: the same sender an hour later is fine.
    let hour_later = incoming(
        &reader,
        &with_date(
            mail("f10@x", "bot@loop.example", "alert 10", "", "x"),
            "Mon, 02 Nov 2026 11:00:00 +0000",
        ),
    );
    let got = store
        .apply_batch("c", &ops, &guard, &[hour_later])
        .await
        .unwrap();
    assert!(outcome(&got[0]).starts_with("created"), "{got:?}");

    // Messages without a Date count by arrival time, across batches too.
    let undated = |i: u32| {
        let raw = format!(
            "From: cron@loop.example\r\nSubject: job {i}\r\nMessage-ID: <u{i}@x>\r\n\r\ndone\r\n"
        );
        incoming(&reader, raw.as_bytes())
    };
    let got: Vec<String> = store
        .apply_batch("c", &ops, &guard, &(0..3).map(undated).collect::<Vec<_>>())
        .await
        .unwrap()
        .iter()
        .map(outcome)
        .collect();
    assert!(got.iter().all(|o| o.starts_with("created")), "{got:?}");
    let got = store
        .apply_batch("c", &ops, &guard, &[undated(3)])
        .await
        .unwrap();
    assert!(
        outcome(&got[0]).starts_with("ignored: mail loop guard"),
        "{got:?}"
    );
}

/// `raw` from [`mail`] with another Date.
fn with_date(raw: Vec<u8>, date: &str) -> Vec<u8> {
    String::from_utf8(raw)
        .unwrap()
        .replace("Mon, 02 Nov 2026 10:00:00 +0000", date)
        .into_bytes()
}

#[tokio::test]
async fn attachments_and_loop_guard_on_sqlite_and_postgres() {
    for db in TestDb::each().await {
        attachments_and_loop_guard(&db).await;
    }
}

/// Two nodes apply the same messages at the same time on PostgreSQL: every message gets exactly
/// one outcome in total, and no ticket is created twice.
#[tokio::test]
async fn two_nodes_racing_on_postgres_apply_each_message_once() {
    let (_db, a, b) = two_nodes().await;
    let help: ProjectKey = "HELP".parse().unwrap();
    a.ensure_project(&help, "Help").await.unwrap();
    let reader = Reader::new(&ChannelRules::default()).unwrap();
    let batches = plain_batches(&reader, "m", 10, 20);
    let mut reversed = batches.clone();
    reversed.reverse();
    let (ra, rb) = tokio::join!(
        record_all(a.clone(), batches, help.clone()),
        record_all(b, reversed, help)
    );
    assert_eq!(
        ra + rb,
        200,
        "each message recorded exactly once across both nodes"
    );
    assert_eq!(a.count(Table::Tickets).await.unwrap(), 200);
    assert_eq!(a.count(Table::Ledger).await.unwrap(), 200);
}

/// The ledger insert's safety net (`StoreError::Raced`): two nodes apply the same batches of
/// one channel at the same moment under two different projects, so the project counter lock
/// does not order them. Both look the messages up before either commits; the second ledger
/// insert waits for the first commit, finds the rows there, rolls back its tickets and applies
/// the batch again as duplicates. Each message is recorded once, and no rolled-back ticket is
/// left behind.
#[tokio::test]
async fn a_lost_race_on_the_ledger_insert_rolls_back_and_is_applied_again_as_duplicates() {
    let (_db, a, b) = two_nodes().await;
    let (help, ops): (ProjectKey, ProjectKey) = ("HELP".parse().unwrap(), "OPS".parse().unwrap());
    a.ensure_project(&help, "Help").await.unwrap();
    a.ensure_project(&ops, "Ops").await.unwrap();
    let reader = Reader::new(&ChannelRules::default()).unwrap();
    let batches = plain_batches(&reader, "r", 10, 50);
    let (ra, rb) = tokio::join!(
        record_all(a.clone(), batches.clone(), help),
        record_all(b, batches, ops)
    );
    assert_eq!(
        ra + rb,
        500,
        "each message recorded exactly once across both nodes"
    );
    assert_eq!(a.count(Table::Ledger).await.unwrap(), 500);
    assert_eq!(
        a.count(Table::Tickets).await.unwrap(),
        500,
        "the tickets of a batch that lost the race were rolled back with it"
    );
}

#[test]
fn migration_folders_match() {
    let s = migration_names(Backend::Sqlite);
    assert!(!s.is_empty());
    assert_eq!(s, migration_names(Backend::Postgres));
}

/// Two nodes and one channel lease: the holder keeps it (acquire again = renew), the other node
/// is refused until the holder releases it; neither can renew or release the other's lease.
async fn lease_exclusive(db: &TestDb) {
    let store = Store::connect(&db.url).await.unwrap();
    let other = Store::connect(&db.url).await.unwrap();
    let (a, b) = (node_id(), node_id());
    assert_ne!(a, b);
    let ttl = Duration::from_secs(60);
    let ch = "imap:help@example.com/INBOX";
    assert_eq!(store.lease_holder(ch).await.unwrap(), None);

    assert!(
        store.try_acquire_lease(ch, &a, ttl).await.unwrap(),
        "{}",
        db.kind
    );
    let (holder, expires_at) = store.lease_holder(ch).await.unwrap().unwrap();
    assert_eq!(holder, a);
    assert!(expires_at >= now() + 59, "{expires_at}");
    assert!(
        !other.try_acquire_lease(ch, &b, ttl).await.unwrap(),
        "an unexpired lease is refused to another node ({})",
        db.kind
    );
    assert!(!other.renew_lease(ch, &b, ttl).await.unwrap());
    other.release_lease(ch, &b).await.unwrap();
    assert_eq!(
        store.lease_holder(ch).await.unwrap().unwrap().0,
        a,
        "B cannot release A's lease"
    );
    // Other channels are independent.
    assert!(
        other
            .try_acquire_lease("imap:sales@example.com/INBOX", &b, ttl)
            .await
            .unwrap()
    );

    assert!(
        store
            .renew_lease(ch, &a, Duration::from_secs(120))
            .await
            .unwrap()
    );
    assert!(store.lease_holder(ch).await.unwrap().unwrap().1 >= now() + 119);
    assert!(
        store.try_acquire_lease(ch, &a, ttl).await.unwrap(),
        "re-acquiring renews"
    );
    assert!(!other.try_acquire_lease(ch, &b, ttl).await.unwrap());

    store.release_lease(ch, &a).await.unwrap();
    assert_eq!(store.lease_holder(ch).await.unwrap(), None);
    assert!(
        !store.renew_lease(ch, &a, ttl).await.unwrap(),
        "a released lease is gone"
    );
    assert!(
        other.try_acquire_lease(ch, &b, ttl).await.unwrap(),
        "{}",
        db.kind
    );
    assert_eq!(store.lease_holder(ch).await.unwrap().unwrap().0, b);
    assert!(!store.try_acquire_lease(ch, &a, ttl).await.unwrap());
}

#[tokio::test]
async fn channel_lease_is_exclusive_renewable_and_releasable_on_sqlite_and_postgres() {
    for db in TestDb::each().await {
        lease_exclusive(&db).await;
    }
}

/// A holder that stops renewing loses the lease: once it lapsed, another node takes it over, and
/// from then on the old holder can neither renew, re-acquire nor release it. (A zero TTL lapses
/// at once, which keeps the test free of sleeps.)
async fn lease_takeover(db: &TestDb) {
    let store = Store::connect(&db.url).await.unwrap();
    let other = Store::connect(&db.url).await.unwrap();
    let (a, b) = (node_id(), node_id());
    let ttl = Duration::from_secs(60);
    let ch = "imap:help@example.com/INBOX";

    assert!(
        store
            .try_acquire_lease(ch, &a, Duration::ZERO)
            .await
            .unwrap()
    );
    let (holder, expires_at) = store.lease_holder(ch).await.unwrap().unwrap();
    assert_eq!(holder, a);
    assert!(expires_at <= now(), "a zero TTL has lapsed at once");
    assert!(
        other.try_acquire_lease(ch, &b, ttl).await.unwrap(),
        "a lapsed lease is taken over ({})",
        db.kind
    );
    assert_eq!(store.lease_holder(ch).await.unwrap().unwrap().0, b);
    assert!(
        !store.renew_lease(ch, &a, ttl).await.unwrap(),
        "{}",
        db.kind
    );
    assert!(!store.try_acquire_lease(ch, &a, ttl).await.unwrap());
    store.release_lease(ch, &a).await.unwrap();
    assert_eq!(store.lease_holder(ch).await.unwrap().unwrap().0, b);
    assert!(other.renew_lease(ch, &b, ttl).await.unwrap());

    // A lapsed lease nobody took over can still be renewed by its holder (no other node can
    // have held the channel in between).
    let ch2 = "imap:sales@example.com/INBOX";
    assert!(
        store
            .try_acquire_lease(ch2, &a, Duration::ZERO)
            .await
            .unwrap()
    );
    assert!(store.renew_lease(ch2, &a, ttl).await.unwrap());
    assert!(
        !other.try_acquire_lease(ch2, &b, ttl).await.unwrap(),
        "renewed, so no longer lapsed"
    );
}

#[tokio::test]
async fn lapsed_channel_lease_is_taken_over_on_sqlite_and_postgres() {
    for db in TestDb::each().await {
        lease_takeover(&db).await;
    }
}

/// Eight nodes (each its own connection pool) call `try_acquire_lease` on one channel at the
/// same instant: exactly one wins, and the row names the winner. Rounds alternate between a
/// channel with no lease row (racing inserts) and one whose lease has lapsed (racing takeovers).
async fn lease_race(db: &TestDb) {
    const NODES: usize = 8;
    let first = Store::connect(&db.url).await.unwrap();
    let mut stores = vec![first.clone()];
    for _ in 1..NODES {
        stores.push(Store::connect(&db.url).await.unwrap());
    }
    let holders: Vec<String> = (0..NODES).map(|_| node_id()).collect();
    for round in 0..12 {
        let ch = format!("imap:race{round}@example.com/INBOX");
        if round % 2 == 1 {
            assert!(
                first
                    .try_acquire_lease(&ch, "dead-node", Duration::ZERO)
                    .await
                    .unwrap()
            );
        }
        let barrier = Arc::new(Barrier::new(NODES));
        let tasks: Vec<_> = stores
            .iter()
            .zip(&holders)
            .map(|(s, h)| {
                let (s, h, ch, barrier) = (s.clone(), h.clone(), ch.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    let won = s
                        .try_acquire_lease(&ch, &h, Duration::from_secs(60))
                        .await
                        .unwrap();
                    (h, won)
                })
            })
            .collect();
        let mut winners = Vec::new();
        for t in tasks {
            let (h, won) = t.await.unwrap();
            if won {
                winners.push(h);
            }
        }
        assert_eq!(
            winners.len(),
            1,
            "round {round} on {}: exactly one node gets the lease: {winners:?}",
            db.kind
        );
        assert_eq!(
            first.lease_holder(&ch).await.unwrap().unwrap().0,
            winners[0]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn nodes_racing_for_a_channel_lease_exactly_one_wins_on_sqlite_and_postgres() {
    for db in TestDb::each().await {
        lease_race(&db).await;
    }
}

/// An HTML message from `from` with an inline image: its HTML and the image are blobs (the
/// image the same in every message).
fn with_image(n: u32, from: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nSubject: shot {n}\r\nMessage-ID: <img{n}@x>\r\nDate: Mon, 02 Nov 2026 10:0{n}:00 +0000\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/related; boundary=b\r\n\r\n--b\r\n\
         Content-Type: text/html\r\n\r\n<p>see {n} <img src=\"cid:logo@x\"></p>\r\n--b\r\nContent-Type: image/png\r\n\
         Content-ID: <logo@x>\r\nContent-Disposition: inline; filename=logo.png\r\nContent-Transfer-Encoding: base64\r\n\r\n\
         iVBORw0KGgo=\r\n--b--\r\n"
    )
    .into_bytes()
}

/// Staging (PostgreSQL): the blobs are stored, committed, before the batch's transaction, and
/// the staged batch applies as an unstaged one would, in any order of its messages. On SQLite
/// nothing is staged. A staged batch that is never applied (a crash) leaves only its blobs,
/// and the batch applies later without them being stored twice.
#[tokio::test]
async fn a_staged_batch_stores_its_blobs_first_and_applies_like_an_unstaged_one() {
    let sqlite = TestDb::sqlite();
    let store = Store::connect(&sqlite.url).await.unwrap();
    let reader = Reader::new(&ChannelRules::default()).unwrap();
    let one = incoming(&reader, &with_image(0, "u0@x.example"));
    assert!(
        store.stage_batch("c", [&one]).await.is_none(),
        "SQLite stages nothing"
    );

    let db = TestDb::postgres().await;
    let store = Store::connect(&db.url).await.unwrap();
    let ops: ProjectKey = "OPS".parse().unwrap();
    store.ensure_project(&ops, "Ops").await.unwrap();
    let batch: Vec<Incoming> = (1..=4)
        .map(|n| incoming(&reader, &with_image(n, &format!("u{n}@x.example"))))
        .collect();
    assert!(
        store.stage_batch("c", &[]).await.is_none(),
        "an empty batch has nothing to stage"
    );
    let staged = store
        .stage_batch("c", &batch)
        .await
        .expect("PostgreSQL stages");
    assert_eq!(
        store.count(Table::Blobs).await.unwrap(),
        5,
        "four HTML parts and one shared image, committed before the batch"
    );
    assert_eq!(store.count(Table::Ledger).await.unwrap(), 0);
    // Applied in another order than staged: the staged look-up is by identity.
    let reversed: Vec<Incoming> = batch.iter().rev().cloned().collect();
    let got = store
        .apply_staged("c", &ops, &LoopGuard::default(), &reversed, Some(staged))
        .await
        .unwrap();
    assert!(
        got.iter()
            .all(|a| matches!(a, Applied::Recorded(Outcome::Created(_)))),
        "{got:?}"
    );
    assert_eq!(store.count(Table::Tickets).await.unwrap(), 4);
    assert_eq!(store.count(Table::Attachments).await.unwrap(), 4);
    assert_eq!(store.count(Table::Blobs).await.unwrap(), 5);
    let t = store.ticket("OPS-1").await.unwrap().unwrap();
    assert_eq!(t.attachments.len(), 1);
    assert!(
        store.originals("OPS-1").await.unwrap().first.is_some(),
        "the ticket's HTML is the staged blob"
    );

    // Staged and never applied (the node died): only the blobs are there; the batch applies
    // later, unstaged, and each message once.
    let later: Vec<Incoming> = (5..=6)
        .map(|n| incoming(&reader, &with_image(n, &format!("u{n}@x.example"))))
        .collect();
    drop(store.stage_batch("c", &later).await.expect("staged"));
    assert_eq!(store.count(Table::Blobs).await.unwrap(), 7);
    assert_eq!(store.count(Table::Ledger).await.unwrap(), 4);
    let got = store
        .apply_batch("c", &ops, &LoopGuard::default(), &later)
        .await
        .unwrap();
    assert!(
        got.iter().all(|a| matches!(a, Applied::Recorded(_))),
        "{got:?}"
    );
    assert_eq!(store.count(Table::Blobs).await.unwrap(), 7);
    assert_eq!(store.count(Table::Ledger).await.unwrap(), 6);
}

/// A group commit (the drain commits the batches waiting for the writer as one transaction):
/// two batches staged one after the other, joined, apply as one, each message once; staged
/// work of another channel, or a batch that was not staged, joins into none.
#[tokio::test]
async fn two_staged_batches_joined_apply_as_one_transaction() {
    let db = TestDb::postgres().await;
    let store = Store::connect(&db.url).await.unwrap();
    let ops: ProjectKey = "OPS".parse().unwrap();
    store.ensure_project(&ops, "Ops").await.unwrap();
    let reader = Reader::new(&ChannelRules::default()).unwrap();
    let batches = plain_batches(&reader, "g", 2, 30);
    let first = store.stage_batch("c", &batches[0]).await.expect("staged");
    let second = store.stage_batch("c", &batches[1]).await.expect("staged");
    let other = store.stage_batch("d", &batches[1]).await.expect("staged");
    assert!(Staged::join(Some(first), None).is_none(), "half unstaged");
    let first = store.stage_batch("c", &batches[0]).await.expect("staged");
    assert!(
        Staged::join(Some(first), Some(other)).is_none(),
        "another channel's staged work"
    );
    let first = store.stage_batch("c", &batches[0]).await.expect("staged");
    let joined = Staged::join(Some(first), Some(second)).expect("joined");
    let all: Vec<Incoming> = batches.concat();
    let got = store
        .apply_staged("c", &ops, &LoopGuard::default(), &all, Some(joined))
        .await
        .unwrap();
    assert_eq!(got.len(), 60);
    assert!(
        got.iter()
            .all(|a| matches!(a, Applied::Recorded(Outcome::Created(_)))),
        "{got:?}"
    );
    assert_eq!(store.count(Table::Ledger).await.unwrap(), 60);
    assert_eq!(store.count(Table::Tickets).await.unwrap(), 60);
    let again = store
        .apply_batch("c", &ops, &LoopGuard::default(), &all)
        .await
        .unwrap();
    assert!(again.iter().all(|a| *a == Applied::Duplicate), "{again:?}");
}

/// Staged work goes stale when another writer records the same messages between the staging
/// and the batch's transaction: the staged look-up said "new", the ledger insert finds the
/// rows, and the batch is applied again without the staged work. Each message has one outcome,
/// and the tickets of the rolled-back attempt are gone with it.
#[tokio::test]
async fn stale_staged_work_is_caught_by_the_ledger_and_the_batch_applied_again() {
    let (_db, a, b) = two_nodes().await;
    let help: ProjectKey = "HELP".parse().unwrap();
    a.ensure_project(&help, "Help").await.unwrap();
    let reader = Reader::new(&ChannelRules::default()).unwrap();
    let guard = unguarded();
    let batch = plain_batches(&reader, "s", 1, 40).remove(0);
    let staged = a.stage_batch("mail", &batch).await.expect("staged");
    // Another node records the first half meanwhile.
    let other = b
        .apply_batch("mail", &help, &guard, &batch[..20])
        .await
        .unwrap();
    assert!(other.iter().all(|x| matches!(x, Applied::Recorded(_))));
    let got = a
        .apply_staged("mail", &help, &guard, &batch, Some(staged))
        .await
        .unwrap();
    assert!(
        got[..20].iter().all(|x| *x == Applied::Duplicate),
        "recorded by the other node: {got:?}"
    );
    assert!(
        got[20..]
            .iter()
            .all(|x| matches!(x, Applied::Recorded(Outcome::Created(_)))),
        "{got:?}"
    );
    assert_eq!(a.count(Table::Ledger).await.unwrap(), 40);
    assert_eq!(
        a.count(Table::Tickets).await.unwrap(),
        40,
        "the stale attempt's tickets were rolled back"
    );
}
