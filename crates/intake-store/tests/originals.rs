//! The HTML of a message is kept with the ticket or comment it became, in the same
//! transaction, on SQLite and PostgreSQL; plain text, HTML over the bound, ignored mail and a
//! re-applied batch keep nothing more.

use intake_core::{ChannelRules, KeptHtml, LoopGuard, Outcome, ProjectKey};
use intake_mime::Reader;
use intake_mime::original::html_part;
use intake_store::{Applied, Incoming, Store, Table};
use intake_testkit::TestDb;

fn incoming(reader: &Reader, raw: &[u8]) -> Incoming {
    let prepared = reader.prepare(raw);
    Incoming {
        identity: format!("sha256:{}", prepared.envelope.content_hash),
        prepared,
        raw: Some(raw.to_vec()),
        received_at: 1_793_000_000,
    }
}

fn mail(id: &str, subject: &str, extra: &str, content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "From: ann@customer.example\r\nTo: help@example.com\r\nSubject: {subject}\r\n\
         Date: Mon, 02 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{id}>\r\n{extra}MIME-Version: 1.0\r\n\
         Content-Type: {content_type}; charset=utf-8\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

async fn story(db: &TestDb) {
    let store = Store::connect(&db.url).await.unwrap();
    let p: ProjectKey = "ORIG".parse().unwrap();
    store.ensure_project(&p, "Originals").await.unwrap();
    let reader = Reader::new(&ChannelRules::default()).unwrap();
    let html = mail("h1@x", "HTML", "", "text/html", "<p>Hello <b>there</b></p>");
    let plain = mail("p1@x", "Plain", "", "text/plain", "just text");
    let big = mail(
        "b1@x",
        "Big",
        "",
        "text/html",
        &format!("<p>{}</p>", "x".repeat(KeptHtml::UP_TO)),
    );
    let reply = mail(
        "h2@x",
        "Re: HTML",
        "In-Reply-To: <h1@x>\r\nReferences: <h1@x>\r\n",
        "text/html",
        "<p>A reply in <i>HTML</i></p>",
    );
    let batch: Vec<Incoming> = [&html, &plain, &big, &reply]
        .iter()
        .map(|m| incoming(&reader, m))
        .collect();
    let got = store
        .apply_batch("c", &p, &LoopGuard::default(), &batch)
        .await
        .unwrap();
    let outcomes: Vec<String> = got
        .iter()
        .map(|a| match a {
            Applied::Recorded(o) => o.to_string(),
            Applied::Duplicate => "duplicate".into(),
        })
        .collect();
    assert!(
        matches!(&got[3], Applied::Recorded(Outcome::Commented(k)) if k.to_string() == "ORIG-1"),
        "{outcomes:?}"
    );

    // What is kept is the HTML part as a minimal MIME message, which reads back as the
    // message's HTML.
    let first = store.originals("ORIG-1").await.unwrap();
    let kept = first.first.as_deref().expect("the ticket's HTML is kept");
    assert!(kept.starts_with(KeptHtml::HEADER.as_bytes()));
    assert_eq!(html_part(kept), html_part(&html));
    assert!(html_part(kept).is_some_and(|h| h.contains("<b>there</b>")));
    let t = store.ticket("ORIG-1").await.unwrap().unwrap();
    assert_eq!(t.comments.len(), 1);
    let kept = first.comments.get(&t.comments[0].id).map(Vec::as_slice);
    assert!(
        kept.and_then(html_part)
            .is_some_and(|h| h.contains("A reply in <i>HTML</i>")),
        "the reply's HTML is kept with its comment"
    );
    assert_eq!(store.originals("ORIG-2").await.unwrap(), Default::default());
    assert_eq!(
        store.originals("ORIG-3").await.unwrap(),
        Default::default(),
        "mail over the bound keeps no original"
    );
    assert_eq!(store.count(Table::Blobs).await.unwrap(), 2);

    // Applying the same batch again is all duplicates and keeps nothing more.
    let again = store
        .apply_batch("c", &p, &LoopGuard::default(), &batch)
        .await
        .unwrap();
    assert!(again.iter().all(|a| matches!(a, Applied::Duplicate)));
    assert_eq!(store.count(Table::Blobs).await.unwrap(), 2);
}

#[tokio::test]
async fn originals_of_html_mail_are_kept_with_their_ticket_and_comment_on_sqlite_and_postgres() {
    for db in TestDb::each().await {
        story(&db).await;
    }
}
