//! Issue 10, defects 2 and 7, on SQLite and PostgreSQL:
//! - poison mail never stalls a channel: values the databases refuse are made storable when
//!   the message is prepared, and a batch the database still refuses is bisected until the one
//!   refused message is alone; it is quarantined with the database's words, the rest commits;
//! - threading is scoped to the channel's project, and a reply from someone who is neither the
//!   reporter nor a participant follows the channel's `reply_policy`.

use intake_core::{ChannelRules, LoopGuard, Outcome, PreparedKind, ProjectKey, ReplyPolicy};
use intake_mime::Reader;
use intake_store::{Applied, Backend, BatchRules, Incoming, Store, Table};
use intake_testkit::TestDb;

fn mail(id: &str, from: &str, subject: &str, extra: &str, body: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: help@example.com\r\nSubject: {subject}\r\n\
         Date: Mon, 02 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{id}>\r\n{extra}\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
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

/// `n` lower-case letters that do not compress (PostgreSQL compresses long index entries, so a
/// repeated letter would fit in the btree).
fn noise(n: usize) -> String {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'a' + (x % 26) as u8)
        })
        .collect()
}

fn outcome(a: &Applied) -> String {
    match a {
        Applied::Recorded(o) => o.to_string(),
        Applied::Duplicate => "duplicate".into(),
    }
}

fn no_guard() -> LoopGuard {
    LoopGuard {
        max_per_sender: 0,
        window_seconds: 1,
    }
}

async fn setup(db: &TestDb) -> (Store, ProjectKey, Reader) {
    let store = Store::connect(&db.url).await.expect("connect");
    let help: ProjectKey = "HELP".parse().unwrap();
    store.ensure_project(&help, "Help").await.unwrap();
    let rules = ChannelRules {
        addresses: vec!["help@example.com".into()],
        ..Default::default()
    };
    (store, help, Reader::new(&rules).unwrap())
}

/// A NUL in a decoded subject and body, a 3,000-byte sender, a 3,000-byte Cc address and a
/// 100 KB Message-ID, between normal messages, in one batch: everything commits, the mail behind
/// the poison gets its tickets.
async fn poison_is_sanitized_or_quarantined(db: &TestDb) {
    let (store, help, reader) = setup(db).await;
    let long_local = noise(3_000);
    let nul_subject = mail(
        "n1@x",
        "nul@customer.example",
        "=?utf-8?b?UHJpbnRlcgAgb24gZmlyZQ==?=", // "Printer\0 on fire"
        "Content-Transfer-Encoding: quoted-printable\r\n",
        "smoke=00 everywhere",
    );
    let long_sender = mail(
        "n2@x",
        &format!("{long_local}@customer.example"),
        "long sender",
        "",
        "hi",
    );
    let long_cc = mail(
        "n3@x",
        "cc@customer.example",
        "long cc",
        &format!("Cc: {long_local}@customer.example, ok@customer.example\r\n"),
        "hi",
    );
    let long_id = format!("{}@x", "m".repeat(100_000));
    let long_message_id = mail(&long_id, "id@customer.example", "long id", "", "hi");
    let reply_to_long_id = mail(
        "n5@x",
        "id@customer.example",
        "Re: long id",
        &format!("In-Reply-To: <{long_id}>\r\nReferences: <{long_id}>\r\n"),
        "again",
    );
    let before = mail("b@x", "before@customer.example", "before", "", "first");
    let after = mail("a@x", "after@customer.example", "after", "", "last");
    let raws = [
        &before,
        &nul_subject,
        &long_sender,
        &long_cc,
        &long_message_id,
        &reply_to_long_id,
        &after,
    ];
    let batch: Vec<Incoming> = raws.iter().map(|r| incoming(&reader, r)).collect();
    let got: Vec<String> = store
        .apply_batch("mail", &help, &no_guard(), &batch)
        .await
        .unwrap_or_else(|e| panic!("{}: the batch must commit: {e}", db.kind))
        .iter()
        .map(outcome)
        .collect();
    assert_eq!(got[0], "created HELP-1", "{}: {got:?}", db.kind);
    assert_eq!(got[1], "created HELP-2", "{}: {got:?}", db.kind);
    assert_eq!(
        got[2], "quarantined: sender address of 3017 bytes exceeds the limit of 320 bytes",
        "{}",
        db.kind
    );
    assert_eq!(got[3], "created HELP-3", "{}: {got:?}", db.kind);
    assert_eq!(got[4], "created HELP-4", "{}: {got:?}", db.kind);
    assert_eq!(
        got[5], "created HELP-5",
        "{}: an over-long Message-ID is not stored, so nothing threads on it",
        db.kind
    );
    assert_eq!(got[6], "created HELP-6", "{}: {got:?}", db.kind);

    let t = store.ticket("HELP-2").await.unwrap().unwrap();
    assert_eq!(t.summary, "Printer on fire", "{}", db.kind);
    assert_eq!(t.description, "smoke everywhere", "{}", db.kind);
    let t = store.ticket("HELP-3").await.unwrap().unwrap();
    assert_eq!(t.participants, ["ok@customer.example"], "{}", db.kind);
    assert!(
        t.description
            .contains("longer than 320 bytes were left out"),
        "{}: {}",
        db.kind,
        t.description
    );
    let ledger = store.ledger(Some("mail")).await.unwrap();
    assert_eq!(ledger.len(), 7);
    assert!(ledger.iter().all(|r| r.outcome != "pending"));
    assert_eq!(ledger[4].message_id, None, "{}", db.kind);
    let q = &ledger[2];
    assert_eq!(q.outcome, "quarantined");
    assert_eq!(
        store.blob(q.raw_hash.as_ref().unwrap()).await.unwrap(),
        Some(long_sender.clone()),
        "{}: the quarantined message's raw bytes are kept",
        db.kind
    );
    store.close().await;
}

#[tokio::test]
async fn poison_mail_is_sanitized_or_quarantined_and_the_mail_behind_it_ingested_on_sqlite_and_postgres()
 {
    for db in TestDb::each().await {
        poison_is_sanitized_or_quarantined(&db).await;
    }
}

/// Make the database refuse a ticket whose summary contains `REFUSE-ME`, something the
/// sanitizer does not touch: a check constraint on PostgreSQL, a trigger on SQLite.
async fn install_refusal(store: &Store) {
    let sql = match store.backend() {
        Backend::Postgres => {
            "ALTER TABLE tickets ADD CONSTRAINT refuse_me CHECK (position('REFUSE-ME' in summary) = 0)"
        }
        Backend::Sqlite => {
            "CREATE TRIGGER refuse_me BEFORE INSERT ON tickets WHEN instr(NEW.summary, 'REFUSE-ME') > 0
             BEGIN SELECT RAISE(ABORT, 'summary refused by the refuse_me trigger'); END"
        }
    };
    sqlx::query(sql).execute(store.pool()).await.unwrap();
}

/// The database refuses one message of a batch the sanitizer passed: the batch is bisected, the
/// refused message is quarantined with the database's words and its raw bytes, every other
/// message commits (threading across the halves still works), and a retry is all duplicates.
async fn refused_message_is_isolated(db: &TestDb) {
    let (store, help, reader) = setup(db).await;
    install_refusal(&store).await;
    let mut raws: Vec<Vec<u8>> = (0..9)
        .map(|i| {
            mail(
                &format!("r{i}@x"),
                &format!("u{i}@customer.example"),
                &format!("message {i}"),
                "",
                "hi",
            )
        })
        .collect();
    raws[5] = mail(
        "r5@x",
        "u5@customer.example",
        "please REFUSE-ME",
        "",
        "poison",
    );
    // A reply (in the second half) to the first message (in the first half).
    raws[7] = mail(
        "r7@x",
        "u0@customer.example",
        "Re: message 0",
        "In-Reply-To: <r0@x>\r\n",
        "thread",
    );
    let batch: Vec<Incoming> = raws.iter().map(|r| incoming(&reader, r)).collect();
    let got: Vec<String> = store
        .apply_batch("mail", &help, &no_guard(), &batch)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", db.kind))
        .iter()
        .map(outcome)
        .collect();
    let words = match store.backend() {
        Backend::Postgres => "violates check constraint \"refuse_me\"",
        Backend::Sqlite => "summary refused by the refuse_me trigger",
    };
    assert!(
        got[5].starts_with("quarantined: the database refused to store this message: ")
            && got[5].contains(words),
        "{}: {got:?}",
        db.kind
    );
    assert_eq!(got[7], "commented HELP-1", "{}: {got:?}", db.kind);
    let created = got.iter().filter(|o| o.starts_with("created")).count();
    assert_eq!(created, 7, "{}: {got:?}", db.kind);
    assert_eq!(store.count(Table::Tickets).await.unwrap(), 7);
    let ledger = store.ledger(Some("mail")).await.unwrap();
    assert_eq!(ledger.len(), 9);
    assert!(ledger.iter().all(|r| r.outcome != "pending"));
    let q = ledger
        .iter()
        .find(|r| r.outcome == "quarantined")
        .expect("quarantined row");
    assert!(q.reason.as_deref().unwrap().contains(words));
    assert_eq!(
        store.blob(q.raw_hash.as_ref().unwrap()).await.unwrap(),
        Some(raws[5].clone())
    );
    let again = store
        .apply_batch("mail", &help, &no_guard(), &batch)
        .await
        .unwrap();
    assert!(again.iter().all(|a| *a == Applied::Duplicate), "{again:?}");

    // A caller that did not pass the raw bytes (the pipeline keeps them up to 4 MiB): the
    // quarantine says so.
    let mut big = incoming(
        &reader,
        &mail("big@x", "big@customer.example", "big REFUSE-ME", "", "x"),
    );
    big.raw = None;
    let got = store
        .apply_batch("mail", &help, &no_guard(), &[big])
        .await
        .unwrap();
    let o = outcome(&got[0]);
    assert!(
        o.contains(words) && o.contains("bytes) was not kept"),
        "{}: {o}",
        db.kind
    );
    store.close().await;
}

#[tokio::test]
async fn a_message_the_database_refuses_is_bisected_out_and_quarantined_on_sqlite_and_postgres() {
    for db in TestDb::each().await {
        refused_message_is_isolated(&db).await;
    }
}

/// On PostgreSQL, values from a caller that skipped the sanitizer: a NUL in a summary (22021)
/// and a 3,000-byte reporter, whose customer row overflows its btree index (54000) and whose
/// ledger row does too, so the quarantine is recorded without the envelope's sender.
#[tokio::test]
async fn postgres_refusals_of_unsanitized_values_are_isolated_with_the_database_words() {
    let db = TestDb::postgres().await;
    let (store, help, reader) = setup(&db).await;
    let mut batch: Vec<Incoming> = (0..4)
        .map(|i| {
            incoming(
                &reader,
                &mail(
                    &format!("p{i}@x"),
                    &format!("p{i}@customer.example"),
                    &format!("pg {i}"),
                    "",
                    "hi",
                ),
            )
        })
        .collect();
    if let PreparedKind::Mail(d) = &mut batch[1].prepared.kind {
        d.summary = "nul\0here".into();
    }
    let long = format!("{}@customer.example", noise(3_000));
    batch[2].prepared.envelope.sender = Some(long.clone());
    if let PreparedKind::Mail(d) = &mut batch[2].prepared.kind {
        d.reporter = long;
    }
    let got: Vec<String> = store
        .apply_batch("mail", &help, &no_guard(), &batch)
        .await
        .unwrap()
        .iter()
        .map(outcome)
        .collect();
    assert_eq!(got[0], "created HELP-1", "{got:?}");
    assert!(
        got[1].contains("0x00") && got[1].contains("SQLSTATE 22021"),
        "{got:?}"
    );
    assert!(
        got[2].contains("index row") && got[2].contains("SQLSTATE 54000"),
        "{got:?}"
    );
    assert_eq!(got[3], "created HELP-2", "{got:?}");
    let ledger = store.ledger(Some("mail")).await.unwrap();
    assert!(ledger.iter().all(|r| r.outcome != "pending"));
    assert_eq!(
        ledger.iter().filter(|r| r.outcome == "quarantined").count(),
        2
    );
    store.close().await;
}

/// Connection-level failures are not bisected: a closed store fails the batch.
#[tokio::test]
async fn errors_that_are_not_about_the_data_fail_the_batch() {
    let db = TestDb::sqlite();
    let (store, help, reader) = setup(&db).await;
    store.close().await;
    let batch = vec![incoming(&reader, &mail("c@x", "c@x.example", "c", "", "c"))];
    assert!(
        store
            .apply_batch("mail", &help, &no_guard(), &batch)
            .await
            .is_err()
    );
}

// ---- defect 7: thread scope and reply policy ------------------------------------------------

fn policy(p: ReplyPolicy) -> BatchRules {
    BatchRules {
        loop_guard: no_guard(),
        reply_policy: p,
        ..Default::default()
    }
}

async fn apply(
    store: &Store,
    channel: &str,
    project: &ProjectKey,
    rules: &BatchRules,
    reader: &Reader,
    raws: &[Vec<u8>],
) -> Vec<String> {
    let batch: Vec<Incoming> = raws.iter().map(|r| incoming(reader, r)).collect();
    store
        .apply_batch(channel, project, rules, &batch)
        .await
        .unwrap()
        .iter()
        .map(outcome)
        .collect()
}

async fn thread_scope_and_reply_policy(db: &TestDb) {
    let (store, help, reader) = setup(db).await;
    let ops: ProjectKey = "OPS".parse().unwrap();
    store.ensure_project(&ops, "Ops").await.unwrap();
    let default = policy(ReplyPolicy::default());
    let first = mail(
        "t1@customer.example",
        "jane@customer.example",
        "Printer on fire",
        "Cc: bob@partner.example\r\n",
        "It burns.",
    );
    let got = apply(&store, "help", &help, &default, &reader, &[first]).await;
    assert_eq!(got, ["created HELP-1"]);

    // Another project's channel: neither the key in the subject nor the Message-ID reaches
    // HELP-1, even from its own reporter; each becomes a ticket of OPS, with no link.
    let by_key = mail(
        "o1@x",
        "jane@customer.example",
        "Re: [HELP-1] Printer on fire",
        "",
        "x",
    );
    let by_ref = mail(
        "o2@x",
        "jane@customer.example",
        "Re: Printer",
        "In-Reply-To: <t1@customer.example>\r\nReferences: <t1@customer.example>\r\n",
        "x",
    );
    let got = apply(&store, "ops", &ops, &default, &reader, &[by_key, by_ref]).await;
    assert_eq!(got, ["created OPS-1", "created OPS-2"], "{}", db.kind);
    let h1 = store.ticket("HELP-1").await.unwrap().unwrap();
    assert!(h1.comments.is_empty() && h1.related.is_empty(), "{h1:?}");

    // A stranger guessing the key, and one who knows the Message-ID: new tickets that follow
    // HELP-1. The participant and the reporter comment.
    let stranger_key = mail(
        "s1@x",
        "eve@evil.example",
        "Re: [HELP-1] Printer on fire",
        "",
        "I am the printer now",
    );
    let stranger_ref = mail(
        "s2@x",
        "mallory@evil.example",
        "Re: Printer",
        "In-Reply-To: <t1@customer.example>\r\n",
        "me too",
    );
    let participant = mail(
        "s3@x",
        "bob@partner.example",
        "Re: Printer",
        "In-Reply-To: <t1@customer.example>\r\n",
        "on my way",
    );
    let reporter = mail(
        "s4@x",
        "Jane@Customer.example",
        "Re: [HELP-1] Printer on fire",
        "",
        "thanks",
    );
    let got = apply(
        &store,
        "help",
        &help,
        &default,
        &reader,
        &[stranger_key, stranger_ref, participant, reporter],
    )
    .await;
    assert_eq!(
        got,
        [
            "created HELP-2",
            "created HELP-3",
            "commented HELP-1",
            "commented HELP-1"
        ],
        "{}",
        db.kind
    );
    let h1 = store.ticket("HELP-1").await.unwrap().unwrap();
    assert_eq!(h1.comments.len(), 2);
    let rel: Vec<(&str, &str)> = h1
        .related
        .iter()
        .map(|r| (r.key.as_str(), r.relation.as_str()))
        .collect();
    assert_eq!(
        rel,
        [("HELP-2", "followed_by"), ("HELP-3", "followed_by")],
        "{}",
        db.kind
    );
    let h2 = store.ticket("HELP-2").await.unwrap().unwrap();
    assert_eq!(h2.reporter, "eve@evil.example");
    assert_eq!(h2.related.len(), 1);
    assert_eq!(
        (h2.related[0].key.as_str(), h2.related[0].relation.as_str()),
        ("HELP-1", "follows")
    );
    let json = serde_json::to_value(&h2).unwrap();
    assert_eq!(json["related"][0]["key"], "HELP-1");

    // Within one batch: a stranger's reply to a ticket the same batch creates.
    let got = apply(
        &store,
        "help",
        &help,
        &default,
        &reader,
        &[
            mail("w1@x", "ann@a.example", "Wifi down", "", "down"),
            mail(
                "w2@x",
                "zed@z.example",
                "Re: Wifi",
                "In-Reply-To: <w1@x>\r\n",
                "x",
            ),
        ],
    )
    .await;
    assert_eq!(got, ["created HELP-4", "created HELP-5"], "{}", db.kind);
    let h5 = store.ticket("HELP-5").await.unwrap().unwrap();
    assert_eq!(h5.related[0].key, "HELP-4");

    // `domain`: a colleague of the reporter (or of a participant) comments; a stranger does not.
    let domain = policy(ReplyPolicy::Domain);
    let got = apply(
        &store,
        "help",
        &help,
        &domain,
        &reader,
        &[
            mail(
                "d1@x",
                "kim@customer.example",
                "Re: [HELP-1] x",
                "",
                "colleague",
            ),
            mail(
                "d2@x",
                "al@partner.example",
                "Re: [HELP-1] x",
                "",
                "partner",
            ),
            mail("d3@x", "eve@evil.example", "Re: [HELP-1] x", "", "stranger"),
        ],
    )
    .await;
    assert_eq!(
        got,
        ["commented HELP-1", "commented HELP-1", "created HELP-6"],
        "{}",
        db.kind
    );

    // `anyone`: the old behaviour, within the project only.
    let anyone = policy(ReplyPolicy::Anyone);
    let got = apply(
        &store,
        "help",
        &help,
        &anyone,
        &reader,
        &[mail("a1@x", "eve@evil.example", "Re: [HELP-1] x", "", "hi")],
    )
    .await;
    assert_eq!(got, ["commented HELP-1"], "{}", db.kind);
    let got = apply(
        &store,
        "ops",
        &ops,
        &anyone,
        &reader,
        &[mail("a2@x", "eve@evil.example", "Re: [HELP-1] x", "", "hi")],
    )
    .await;
    assert_eq!(got, ["created OPS-3"], "{}", db.kind);
    assert!(
        store
            .ticket("OPS-3")
            .await
            .unwrap()
            .unwrap()
            .related
            .is_empty()
    );
    // ChannelRules carry the policy into the store too.
    let rules = ChannelRules {
        reply_policy: ReplyPolicy::Anyone,
        loop_guard: no_guard(),
        ..Default::default()
    };
    let batch = vec![incoming(
        &reader,
        &mail("a3@x", "zoe@z.example", "Re: [HELP-1] x", "", "hi"),
    )];
    let got = store
        .apply_batch("help", &help, &rules, &batch)
        .await
        .unwrap();
    assert_eq!(
        got,
        [Applied::Recorded(Outcome::Commented(
            "HELP-1".parse().unwrap()
        ))]
    );
    store.close().await;
}

#[tokio::test]
async fn threads_stay_in_their_project_and_strangers_follow_the_reply_policy_on_sqlite_and_postgres()
 {
    for db in TestDb::each().await {
        thread_scope_and_reply_policy(&db).await;
    }
}
