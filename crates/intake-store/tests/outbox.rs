//! The outbox on SQLite and PostgreSQL: rows written in the apply transaction (and only once per
//! message), the channel's own addresses never participants, acknowledgements rate-limited per
//! recipient, claims exclusive and in ticket order, retries and failures kept, and an answer to
//! Intake's own mail threaded back onto its ticket.

use std::sync::Arc;
use std::time::Duration;

use intake_core::{ChannelRules, LoopGuard, ProjectKey};
use intake_mime::Reader;
use intake_store::{
    Acknowledge, Applied, BatchRules, Incoming, OutboxKind, OutboxRules, SinkRoute, Store,
};
use intake_testkit::TestDb;

fn mail(id: &str, from: &str, subject: &str, extra: &str, body: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: help@example.com\r\nCc: boss@customer.example, Help@Example.com\r\n\
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

fn rules() -> BatchRules {
    BatchRules {
        loop_guard: LoopGuard {
            max_per_sender: 0,
            window_seconds: 600,
        },
        outbox: Arc::new(OutboxRules {
            own: vec!["help@example.com".into()],
            sinks: vec![
                SinkRoute {
                    name: "hooks".into(),
                    kind: OutboxKind::Webhook,
                    events: vec![],
                },
                SinkRoute {
                    name: "jira".into(),
                    kind: OutboxKind::Jira,
                    events: vec!["ticket.created".into()],
                },
            ],
            acknowledge: Some(Acknowledge {
                channel: "support".into(),
                from: "help@example.com".into(),
                subject: "[{key}] {summary}".into(),
                body: "We got your mail about {summary} as {key}.".into(),
                max_per_hour: 1,
                domain: "example.com".into(),
            }),
        }),
        ..Default::default()
    }
}

async fn story(db: &TestDb) {
    let store = Store::connect(&db.url).await.expect("connect");
    let help: ProjectKey = "HELP".parse().unwrap();
    store.ensure_project(&help, "Help").await.unwrap();
    // The reader knows no own address here: the engine itself keeps the channel's own
    // address out of the participants.
    let reader = Reader::new(&ChannelRules::default()).unwrap();
    let first = mail(
        "a1@customer.example",
        "Jane <jane@customer.example>",
        "Printer on fire",
        "",
        "It is on fire.",
    );
    let reply = mail(
        "a2@customer.example",
        "boss@customer.example",
        "Re: Printer on fire",
        "In-Reply-To: <a1@customer.example>\r\n",
        "Put it out.",
    );
    let second = mail(
        "a3@customer.example",
        "jane@customer.example",
        "Scanner too",
        "",
        "Also broken.",
    );
    let junk = b"\x00\x01not mail at all".to_vec();
    let batch: Vec<Incoming> = [&first, &reply, &second, &junk]
        .iter()
        .map(|r| incoming(&reader, r))
        .collect();
    let rules = rules();
    let out = store
        .apply_batch("support", &help, &rules, &batch)
        .await
        .unwrap();
    assert!(
        out.iter().all(|a| matches!(a, Applied::Recorded(_))),
        "{out:?}"
    );

    let t = store.ticket("HELP-1").await.unwrap().unwrap();
    assert_eq!(
        t.participants,
        vec!["boss@customer.example".to_string()],
        "{}",
        db.kind
    );

    let rows = store.outbox_since(0).await.unwrap();
    let seen: Vec<(String, String, Option<String>)> = rows
        .iter()
        .map(|r| (r.target.clone(), r.event.clone(), r.ticket_key.clone()))
        .collect();
    let k = |s: &str| Some(s.to_string());
    assert_eq!(
        seen,
        vec![
            ("hooks".into(), "ticket.created".into(), k("HELP-1")),
            ("jira".into(), "ticket.created".into(), k("HELP-1")),
            ("support".into(), "ack".into(), k("HELP-1")),
            ("hooks".into(), "ticket.created".into(), k("HELP-2")),
            ("jira".into(), "ticket.created".into(), k("HELP-2")),
            // No acknowledgement for HELP-2: one per recipient per hour.
            ("hooks".into(), "comment.added".into(), k("HELP-1")),
            ("hooks".into(), "ticket.quarantined".into(), None),
        ],
        "{}",
        db.kind
    );
    let ack = &rows[2];
    let p: serde_json::Value = serde_json::from_str(&ack.payload).unwrap();
    assert_eq!(p["to"], serde_json::json!(["jane@customer.example"]));
    assert_eq!(p["subject"], "[HELP-1] Printer on fire");
    assert_eq!(p["in_reply_to"], "a1@customer.example");
    assert_eq!(p["references"], serde_json::json!(["a1@customer.example"]));
    assert_eq!(ack.identity, ack.message_id.clone().unwrap());
    assert_eq!(ack.recipient.as_deref(), Some("jane@customer.example"));
    let hook: serde_json::Value = serde_json::from_str(&rows[0].payload).unwrap();
    assert_eq!(hook["event"], "ticket.created");
    assert_eq!(hook["key"], "HELP-1");
    assert_eq!(hook["project"], "HELP");
    assert_eq!(hook["ticket"]["reporter"], "jane@customer.example");
    // Identities are distinct and fixed.
    let mut ids: Vec<&str> = rows.iter().map(|r| r.identity.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), rows.len());

    // Re-applying: all duplicates, nothing enqueued twice.
    let again = store
        .apply_batch("support", &help, &rules, &batch)
        .await
        .unwrap();
    assert!(again.iter().all(|a| *a == Applied::Duplicate));
    assert_eq!(store.outbox_since(0).await.unwrap().len(), rows.len());

    // Own mail is recognised by its stored Message-ID.
    let mid = ack.message_id.clone().unwrap();
    let own = store
        .own_message_ids(&[mid.as_str(), "a1@customer.example"])
        .await
        .unwrap();
    assert_eq!(own.into_iter().collect::<Vec<_>>(), vec![mid.clone()]);

    // Claims: the comment waits for its ticket at the same sink; leases are exclusive.
    let lease = Duration::from_secs(60);
    let a = store.claim_outbox("node-a", lease, 100, 0).await.unwrap();
    let claimed: Vec<(String, String, Option<String>)> = a
        .iter()
        .map(|r| (r.target.clone(), r.event.clone(), r.ticket_key.clone()))
        .collect();
    assert!(
        !claimed.contains(&("hooks".into(), "comment.added".into(), k("HELP-1"))),
        "{claimed:?}"
    );
    assert_eq!(a.len(), rows.len() - 1, "{}", db.kind);
    assert!(
        store
            .claim_outbox("node-b", lease, 100, 0)
            .await
            .unwrap()
            .is_empty()
    );
    let created = a
        .iter()
        .find(|r| r.target == "hooks" && r.ticket_key.as_deref() == Some("HELP-1"))
        .unwrap();
    // Only the holder records an outcome.
    assert!(!store.outbox_sent(created.id, "node-b", None).await.unwrap());
    assert!(store.outbox_sent(created.id, "node-a", None).await.unwrap());
    let b = store.claim_outbox("node-b", lease, 100, 0).await.unwrap();
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].event, "comment.added");

    // Retry later: not due now; failure: kept with its words and an alert in the mail log.
    assert!(
        store
            .outbox_retry(b[0].id, "node-b", "HTTP 500", i64::MAX / 2)
            .await
            .unwrap()
    );
    assert!(
        store
            .claim_outbox("node-c", lease, 100, 0)
            .await
            .unwrap()
            .is_empty()
    );
    let jira1 = a
        .iter()
        .find(|r| r.target == "jira" && r.ticket_key.as_deref() == Some("HELP-1"))
        .unwrap();
    assert!(
        store
            .outbox_sent(jira1.id, "node-a", Some("SUP-7"))
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .ticket_external_key("HELP-1")
            .await
            .unwrap()
            .as_deref(),
        Some("SUP-7")
    );
    let jira2 = a
        .iter()
        .find(|r| r.target == "jira" && r.ticket_key.as_deref() == Some("HELP-2"))
        .unwrap();
    assert!(
        store
            .outbox_failed(jira2.id, "node-a", "HTTP 400: issuetype: unknown")
            .await
            .unwrap()
    );
    let failed = store.list_outbox(Some("failed"), 10).await.unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(
        failed[0].last_error.as_deref(),
        Some("HTTP 400: issuetype: unknown")
    );
    let log = store.recent_events(100).await.unwrap();
    assert!(log.iter().any(|e| e.kind == "outbox_failed"), "{}", db.kind);
    assert!(store.retry_outbox(jira2.id).await.unwrap());
    let c = store.claim_outbox("node-c", lease, 100, 0).await.unwrap();
    assert_eq!(c.iter().map(|r| r.id).collect::<Vec<_>>(), vec![jira2.id]);
    assert!(store.discard_outbox(b[0].id, None).await.unwrap());
    let tally = store.outbox_tally(0).await.unwrap();
    assert_eq!(tally.sent, 2);

    // A customer's answer to the acknowledgement (its Message-ID only, no key in the subject)
    // is a comment on HELP-1.
    let answer = mail(
        "a4@customer.example",
        "jane@customer.example",
        "Re: thanks",
        &format!("In-Reply-To: <{mid}>\r\nReferences: <{mid}>\r\n"),
        "Thanks!",
    );
    let out = store
        .apply_batch("support", &help, &rules, &[incoming(&reader, &answer)])
        .await
        .unwrap();
    assert_eq!(
        out,
        vec![Applied::Recorded(intake_core::Outcome::Commented(
            "HELP-1".parse().unwrap()
        ))],
        "{}",
        db.kind
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_rows_commit_with_their_effects_claim_in_ticket_order_on_sqlite_and_postgres() {
    for db in TestDb::each().await {
        story(&db).await;
    }
}
