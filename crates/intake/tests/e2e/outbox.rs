//! The outbox end to end: `[[sink]] type = "webhook"` against a receiver on loopback (signature,
//! retries on 500, the idempotency key, per-ticket order, 4xx kept as failed), SIGKILL while
//! sending, and Intake's own-mail header that an outside sender cannot forge.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use intake::mailgen::{GenOptions, write_maildir};
use intake_mail::send::webhook::verify;
use intake_store::{Store, Table};
use intake_testkit::TestDb;
use serde_json::Value;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate, matchers};

use crate::{intake, ok};

const SECRET: &str = "whsec_test_0123456789";
/// base64 of 32 bytes: the store's key for these tests (never a key file in a shared place).
const STORE_KEY: [u8; 32] = [5u8; 32];

fn store_key_b64() -> String {
    base64::engine::general_purpose::STANDARD.encode(STORE_KEY)
}

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    key: String,
    event: String,
    body: Value,
    signed: bool,
    status: u16,
}

/// A webhook receiver: verifies the signature, answers `fail_first` 500s per idempotency key
/// (or always `always`), then 200; records everything; the *effects* it applies are one per
/// idempotency key.
#[derive(Clone)]
struct Receiver {
    seen: Arc<Mutex<Vec<Seen>>>,
    fail_first: usize,
    always: Option<u16>,
    delay: Duration,
}

impl Respond for Receiver {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let header = |n: &str| {
            req.headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let signed = verify(
            SECRET.as_bytes(),
            &header("Intake-Signature"),
            &req.body,
            now,
            300,
        );
        let key = header("Idempotency-Key");
        let mut seen = self.seen.lock().unwrap();
        let earlier = seen.iter().filter(|s| s.key == key).count();
        let status = match self.always {
            Some(s) => s,
            None if earlier < self.fail_first => 500,
            None => 200,
        };
        seen.push(Seen {
            at: Instant::now(),
            key,
            event: header("Intake-Event"),
            body: serde_json::from_slice(&req.body).unwrap_or(Value::Null),
            signed,
            status,
        });
        ResponseTemplate::new(status)
            .set_body_string(if status == 400 {
                "{\"error\":\"unknown field\"}"
            } else {
                "ok"
            })
            .set_delay(self.delay)
    }
}

async fn receiver(r: Receiver) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(matchers::method("POST"))
        .and(matchers::path("/hook"))
        .respond_with(r)
        .mount(&server)
        .await;
    server
}

fn config(dir: &Path, url: &str) -> String {
    let path = dir.join("intake.toml");
    std::fs::write(
        &path,
        format!(
            "[[sink]]\nname = \"hooks\"\nproject = \"HELP\"\ntype = \"webhook\"\nurl = \"{url}/hook\"\nsecret = \"env:HOOK_SECRET\"\ntimeout_seconds = 10\n"
        ),
    )
    .unwrap();
    path.display().to_string()
}

fn mail(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text.replace('\n', "\r\n")).unwrap();
}

fn three_events(dir: &Path) {
    mail(
        dir,
        "1.eml",
        "From: Jane <jane@customer.example>\nTo: help@example.com\nSubject: Printer on fire\nDate: Mon, 02 Nov 2026 10:00:00 +0000\nMessage-ID: <w1@customer.example>\n\nIt burns.\n",
    );
    mail(
        dir,
        "2.eml",
        "From: jane@customer.example\nTo: help@example.com\nSubject: Re: Printer on fire\nDate: Mon, 02 Nov 2026 10:05:00 +0000\nMessage-ID: <w2@customer.example>\nIn-Reply-To: <w1@customer.example>\n\nStill burning.\n",
    );
    std::fs::write(dir.join("3.eml"), b"\x00\x01\x02 not a mail").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_is_signed_retried_on_500_in_ticket_order_and_each_event_has_one_effect() {
    let r = Receiver {
        seen: Arc::default(),
        fail_first: 2,
        always: None,
        delay: Duration::ZERO,
    };
    let server = receiver(r.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let mails = dir.path().join("mail");
    std::fs::create_dir(&mails).unwrap();
    three_events(&mails);
    let cfg = config(dir.path(), &server.uri());
    let db = TestDb::sqlite();
    let started = Instant::now();
    let out = ok(intake()
        .env("HOOK_SECRET", SECRET)
        .env("INTAKE_SECRET_KEY", store_key_b64())
        .args(["--config", &cfg, "ingest", "--db", &db.url, "--json"])
        .arg(&mails)
        .output()
        .unwrap());
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (v["sent"].as_u64(), v["send_failed"].as_u64()),
        (Some(3), Some(0)),
        "{v}"
    );
    assert!(started.elapsed() < Duration::from_secs(40));

    let seen = r.seen.lock().unwrap().clone();
    assert!(
        seen.iter().all(|s| s.signed),
        "every request's signature verifies"
    );
    // Three events, each tried three times (500, 500, 200) with the same key and body.
    let mut by_key: HashMap<&str, Vec<&Seen>> = HashMap::new();
    for s in &seen {
        by_key.entry(&s.key).or_default().push(s);
    }
    assert_eq!(by_key.len(), 3, "{seen:?}");
    for (key, tries) in &by_key {
        assert_eq!(
            tries.iter().map(|s| s.status).collect::<Vec<_>>(),
            vec![500, 500, 200],
            "{key}"
        );
        assert!(tries.iter().all(|s| s.body == tries[0].body), "{key}");
        // At least the 5-tries-a-minute pace: the second retry within 10 s of the first try.
        assert!(tries[2].at.duration_since(tries[0].at) < Duration::from_secs(10));
    }
    // Effects: one per idempotency key, whatever the number of deliveries.
    let effects: HashSet<&str> = seen
        .iter()
        .filter(|s| s.status == 200)
        .map(|s| s.key.as_str())
        .collect();
    assert_eq!(effects.len(), 3);
    let accepted = |event: &str| {
        seen.iter()
            .find(|s| s.status == 200 && s.event == event)
            .unwrap_or_else(|| panic!("{event} accepted"))
    };
    let created = accepted("ticket.created");
    let comment = accepted("comment.added");
    let quarantined = accepted("ticket.quarantined");
    assert_eq!(created.body["event"], "ticket.created");
    assert_eq!(created.body["key"], "HELP-1");
    assert_eq!(created.body["project"], "HELP");
    assert_eq!(created.body["ticket"]["summary"], "Printer on fire");
    assert_eq!(comment.body["key"], "HELP-1");
    assert_eq!(quarantined.body["key"], Value::Null);
    // Per-ticket order: the comment was first tried only after its ticket was accepted.
    let first_comment_try = seen.iter().find(|s| s.event == "comment.added").unwrap().at;
    assert!(first_comment_try >= created.at);

    // Again: all duplicates, nothing new to send.
    let out = ok(intake()
        .env("HOOK_SECRET", SECRET)
        .env("INTAKE_SECRET_KEY", store_key_b64())
        .args(["--config", &cfg, "ingest", "--db", &db.url, "--json"])
        .arg(&mails)
        .output()
        .unwrap());
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (v["sent"].as_u64(), v["duplicate"].as_u64()),
        (Some(0), Some(3))
    );
    assert_eq!(r.seen.lock().unwrap().len(), seen.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_4xx_is_not_retried_and_kept_failed_with_its_diagnosis() {
    let r = Receiver {
        seen: Arc::default(),
        fail_first: 0,
        always: Some(400),
        delay: Duration::ZERO,
    };
    let server = receiver(r.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let mails = dir.path().join("mail");
    std::fs::create_dir(&mails).unwrap();
    three_events(&mails);
    let cfg = config(dir.path(), &server.uri());
    let db = TestDb::sqlite();
    let out = ok(intake()
        .env("HOOK_SECRET", SECRET)
        .args(["--config", &cfg, "ingest", "--db", &db.url, "--json"])
        .arg(&mails)
        .output()
        .unwrap());
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (v["sent"].as_u64(), v["send_failed"].as_u64()),
        (Some(0), Some(3)),
        "{v}"
    );
    let seen = r.seen.lock().unwrap().clone();
    // Tried once each (the comment waits behind its failed ticket and is not tried at all).
    assert_eq!(seen.len(), 2, "{seen:?}");
    let store = Store::connect(&db.url).await.unwrap();
    let failed = store.list_outbox(Some("failed"), 10).await.unwrap();
    assert_eq!(failed.len(), 2);
    for f in &failed {
        let e = f.last_error.as_deref().unwrap();
        assert!(e.contains("HTTP 400") && e.contains("unknown field"), "{e}");
    }
    let log = store.recent_events(50).await.unwrap();
    assert_eq!(log.iter().filter(|e| e.kind == "outbox_failed").count(), 2);
    // `intake outbox retry` puts a row back; `discard` gives up on it.
    let pending = store.list_outbox(Some("pending"), 10).await.unwrap();
    assert_eq!(pending.len(), 1, "the comment is held back");
    store.close().await;
}

/// Kill `intake ingest` with SIGKILL while it delivers webhook calls, several times, then let
/// a run finish: every outbox row is delivered, and the receiver sees each event's key (its
/// effect) exactly once however many times a delivery was repeated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_sending_webhooks_every_row_delivered_each_effect_once() {
    let r = Receiver {
        seen: Arc::default(),
        fail_first: 0,
        always: None,
        delay: Duration::from_millis(40),
    };
    let server = receiver(r.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().join("md");
    write_maildir(
        &md,
        &GenOptions {
            messages: 120,
            seed: 11,
            ..Default::default()
        },
    )
    .unwrap();
    let cfg = config(dir.path(), &server.uri());
    let db = TestDb::sqlite();
    let store = Store::connect(&db.url).await.unwrap();
    let run = || {
        let mut c = intake();
        c.env("HOOK_SECRET", SECRET)
            .args([
                "--config",
                &cfg,
                "ingest",
                "--db",
                &db.url,
                "--project",
                "HELP",
                "--json",
            ])
            .arg(&md);
        c
    };
    let mut kills = 0;
    for threshold in [10usize, 40, 75] {
        let mut child = run()
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            if r.seen.lock().unwrap().len() >= threshold
                || started.elapsed() > Duration::from_secs(60)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            kills += 1;
        }
        child.wait().unwrap();
    }
    assert!(kills >= 2, "the runs were killed while sending ({kills})");
    let out = ok(run().output().unwrap());
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["send_failed"].as_u64(), Some(0), "{v}");
    let rows = store.outbox_since(0).await.unwrap();
    let tickets = store.count(Table::Tickets).await.unwrap() as usize;
    assert!(rows.len() >= tickets && tickets > 0);
    assert!(
        rows.iter().all(|r| r.state == "sent"),
        "every row delivered"
    );
    let seen = r.seen.lock().unwrap().clone();
    let keys: HashSet<&str> = seen.iter().map(|s| s.key.as_str()).collect();
    let identities: HashSet<&str> = rows.iter().map(|r| r.identity.as_str()).collect();
    assert_eq!(
        keys, identities,
        "the receiver's effects are exactly the rows"
    );
    eprintln!(
        "{} rows, {} deliveries ({} repeated by the kills)",
        rows.len(),
        seen.len(),
        seen.len() - keys.len()
    );
    store.close().await;
}

/// `X-Intake-Sent` only counts when it carries the HMAC of the message's Message-ID under the
/// store's key: a forged one is ingested like any mail; a real one, and a Message-ID Intake
/// stored for its own mail, are ignored as Intake's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_x_intake_sent_header_is_ingested_and_intakes_own_mail_is_not() {
    let keys = intake_store::Keyring::from_base64(&store_key_b64(), &[])
        .unwrap()
        .sent_mail_keys();
    let real = intake_mime::loops::sent_header_value(&keys[0][..], "own1@help.example");
    let forged_with_other_key =
        intake_mime::loops::sent_header_value(&[1u8; 32], "forged2@outside.example");
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path();
    mail(
        m,
        "1.eml",
        "From: mallory@outside.example\nTo: help@example.com\nSubject: Please ignore me\nMessage-ID: <forged1@outside.example>\nX-Intake-Sent: 1\n\nA forged header.\n",
    );
    mail(
        m,
        "2.eml",
        &format!(
            "From: mallory@outside.example\nTo: help@example.com\nSubject: Me too\nMessage-ID: <forged2@outside.example>\nX-Intake-Sent: {forged_with_other_key}\n\nSigned with another key.\n"
        ),
    );
    mail(
        m,
        "3.eml",
        &format!(
            "From: help@example.com\nTo: jane@customer.example\nSubject: [HELP-9] Re: hi\nMessage-ID: <own1@help.example>\nX-Intake-Sent: {real}\n\nOur own reply.\n"
        ),
    );
    mail(
        m,
        "4.eml",
        "From: someone@relay.example\nTo: help@example.com\nSubject: Copy of our mail\nMessage-ID: <stored1@help.example>\n\nIntake sent this one (its Message-ID is in the outbox).\n",
    );
    let db = TestDb::sqlite();
    let store = Store::connect(&db.url).await.unwrap();
    // A mail row of the outbox with that Message-ID, as an acknowledgement leaves it.
    sqlx::query(
        "INSERT INTO outbox (kind, target, ticket_key, event, identity, message_id, recipient,
             payload, state, attempts, next_at, created_at)
         VALUES ('mail', 'support', NULL, 'ack', 'stored1@help.example', 'stored1@help.example',
             'x@example.com', '{}', 'sent', 1, 0, 0)",
    )
    .execute(store.pool())
    .await
    .unwrap();
    let out = ok(intake()
        .env("INTAKE_SECRET_KEY", store_key_b64())
        .args(["ingest", "--db", &db.url, "--json"])
        .arg(m)
        .output()
        .unwrap());
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (v["created"].as_u64(), v["ignored"].as_u64()),
        (Some(2), Some(2)),
        "{v}"
    );
    let ledger = store.ledger(None).await.unwrap();
    let reason = |id: &str| {
        ledger
            .iter()
            .find(|l| l.message_id.as_deref() == Some(id))
            .map(|l| (l.outcome.clone(), l.reason.clone().unwrap_or_default()))
            .unwrap()
    };
    assert_eq!(reason("forged1@outside.example").0, "created");
    assert_eq!(reason("forged2@outside.example").0, "created");
    let (o, r) = reason("own1@help.example");
    assert!(o == "ignored" && r.contains("X-Intake-Sent"), "{o} {r}");
    let (o, r) = reason("stored1@help.example");
    assert!(o == "ignored" && r.contains("sent by Intake"), "{o} {r}");
    store.close().await;
}

/// A Jira REST fake: records every request; creates issues `SUP-1`, `SUP-2`, … (400 with
/// `errors` for an unknown issue type), keeps comments per issue, accepts attachments.
/// (method, path, body) of one request.
type Logged = (String, String, Vec<u8>);

/// (filename, size) of an uploaded file.
type Uploaded = (String, u64);

#[derive(Clone, Default)]
struct JiraFake {
    log: Arc<Mutex<Vec<Logged>>>,
    issues: Arc<Mutex<Vec<(String, Value)>>>,
    comments: Arc<Mutex<HashMap<String, Vec<String>>>>,
    /// Per issue: (filename, size) of each uploaded file.
    attachments: Arc<Mutex<HashMap<String, Vec<Uploaded>>>>,
    /// Operations (`create`, `attach`, `comment`) whose next request is applied but answered
    /// only after 5 s, past the client's timeout: the crash window, where the effect happened
    /// and the sender never hears so. Each is taken off once used.
    swallow: Arc<Mutex<Vec<&'static str>>>,
}

impl JiraFake {
    /// The answer to an applied request: `ok`, or, if `op` is to be swallowed, the same answer
    /// too late for the client.
    fn answer(&self, op: &str, ok: ResponseTemplate) -> ResponseTemplate {
        let mut s = self.swallow.lock().unwrap();
        match s.iter().position(|o| *o == op) {
            Some(i) => {
                s.remove(i);
                ok.set_delay(Duration::from_secs(5))
            }
            None => ok,
        }
    }
}

/// (filename, size) of the file in a multipart upload.
fn uploaded(body: &[u8]) -> (String, u64) {
    let find = |needle: &[u8]| body.windows(needle.len()).position(|w| w == needle);
    let rfind = |needle: &[u8]| body.windows(needle.len()).rposition(|w| w == needle);
    let text = String::from_utf8_lossy(body);
    let name = text
        .split("filename=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_default()
        .to_string();
    let start = find(b"\r\n\r\n").map(|i| i + 4).unwrap_or(0);
    let end = rfind(b"\r\n--").unwrap_or(body.len());
    (name, end.saturating_sub(start) as u64)
}

impl Respond for JiraFake {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let path = req.url.path().to_string();
        let method = req.method.to_string();
        self.log
            .lock()
            .unwrap()
            .push((method.clone(), path.clone(), req.body.clone()));
        let auth = req
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if auth != "Bearer pat-secret" {
            return ResponseTemplate::new(401).set_body_json(
                serde_json::json!({"errorMessages": ["Unauthorized"], "errors": {}}),
            );
        }
        match (method.as_str(), path.as_str()) {
            ("GET", "/rest/api/2/search") => {
                let jql = req
                    .url
                    .query_pairs()
                    .find(|(k, _)| k == "jql")
                    .map(|(_, v)| v.to_string())
                    .unwrap_or_default();
                let issues = self.issues.lock().unwrap();
                let found: Vec<Value> = issues
                    .iter()
                    .filter(|(_, f)| {
                        f["labels"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .any(|l| jql.contains(l.as_str().unwrap()))
                    })
                    .map(|(k, _)| serde_json::json!({"key": k}))
                    .collect();
                ResponseTemplate::new(200).set_body_json(serde_json::json!({"issues": found}))
            }
            ("POST", "/rest/api/2/issue") => {
                let v: Value = serde_json::from_slice(&req.body).unwrap();
                let fields = v["fields"].clone();
                if fields["issuetype"]["name"] != "Task" {
                    return ResponseTemplate::new(400).set_body_json(serde_json::json!({
                        "errorMessages": [], "errors": {"issuetype": "Specify a valid issue type"}
                    }));
                }
                let mut issues = self.issues.lock().unwrap();
                let key = format!("SUP-{}", issues.len() + 1);
                issues.push((key.clone(), fields));
                self.answer(
                    "create",
                    ResponseTemplate::new(201)
                        .set_body_json(serde_json::json!({"id": "1", "key": key})),
                )
            }
            (m, p) if p.ends_with("/comment") => {
                let issue = p.split('/').nth(5).unwrap_or_default().to_string();
                let mut comments = self.comments.lock().unwrap();
                let list = comments.entry(issue).or_default();
                if m == "POST" {
                    let v: Value = serde_json::from_slice(&req.body).unwrap();
                    list.push(v["body"].as_str().unwrap().to_string());
                    drop(comments);
                    self.answer(
                        "comment",
                        ResponseTemplate::new(201).set_body_json(serde_json::json!({"id": "10"})),
                    )
                } else {
                    let cs: Vec<Value> = list
                        .iter()
                        .map(|b| serde_json::json!({"body": b}))
                        .collect();
                    ResponseTemplate::new(200).set_body_json(serde_json::json!({"comments": cs}))
                }
            }
            ("POST", p) if p.ends_with("/attachments") => {
                assert_eq!(req.headers.get("x-atlassian-token").unwrap(), "no-check");
                let issue = p.split('/').nth(5).unwrap_or_default().to_string();
                self.attachments
                    .lock()
                    .unwrap()
                    .entry(issue)
                    .or_default()
                    .push(uploaded(&req.body));
                self.answer(
                    "attach",
                    ResponseTemplate::new(200).set_body_json(serde_json::json!([{"id": "5"}])),
                )
            }
            ("GET", p) if p.starts_with("/rest/api/2/issue/") => {
                let issue = p.split('/').nth(5).unwrap_or_default().to_string();
                let files: Vec<Value> = self
                    .attachments
                    .lock()
                    .unwrap()
                    .get(&issue)
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(f, n)| serde_json::json!({"filename": f, "size": n}))
                    .collect();
                ResponseTemplate::new(200).set_body_json(
                    serde_json::json!({"key": issue, "fields": {"attachment": files}}),
                )
            }
            _ => ResponseTemplate::new(404),
        }
    }
}

/// A Jira sink against a Jira REST fake: the ticket becomes an issue (summary, description with
/// the reporter, attachment), the comment follows on that issue in order, the Jira key is kept
/// on the ticket and shown with it; a 400 with `errors` (unknown issue type) is decoded, not
/// retried, and holds back that sink's comment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jira_sink_creates_the_issue_with_attachment_then_the_comment_and_decodes_a_400() {
    let fake = JiraFake::default();
    let server = MockServer::start().await;
    Mock::given(matchers::any())
        .respond_with(fake.clone())
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let mails = dir.path().join("mail");
    std::fs::create_dir(&mails).unwrap();
    mail(
        &mails,
        "1.eml",
        "From: Jane <jane@customer.example>\nTo: help@example.com\nSubject: Printer on fire\nDate: Mon, 02 Nov 2026 10:00:00 +0000\nMessage-ID: <j1@customer.example>\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b\"\n\n--b\nContent-Type: text/plain\n\nIt burns, see the log.\n--b\nContent-Type: text/plain; name=\"printer.log\"\nContent-Disposition: attachment; filename=\"printer.log\"\n\nFIRE AT 10:00\n--b--\n",
    );
    mail(
        &mails,
        "2.eml",
        "From: jane@customer.example\nTo: help@example.com\nSubject: Re: Printer on fire\nDate: Mon, 02 Nov 2026 10:05:00 +0000\nMessage-ID: <j2@customer.example>\nIn-Reply-To: <j1@customer.example>\n\nStill burning.\n",
    );
    let cfg = dir.path().join("intake.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[sink]]\nname = \"jira\"\nproject = \"HELP\"\ntype = \"jira\"\nurl = \"{0}\"\nsecret = \"env:JIRA_PAT\"\njira_project = \"SUP\"\n\n\
             [[sink]]\nname = \"jira-bad\"\nproject = \"HELP\"\ntype = \"jira\"\nurl = \"{0}\"\nsecret = \"env:JIRA_PAT\"\njira_project = \"SUP\"\nissue_type = \"Nope\"\n",
            server.uri()
        ),
    )
    .unwrap();
    let cfg = cfg.display().to_string();
    let db = TestDb::sqlite();
    let out = ok(intake()
        .env("JIRA_PAT", "pat-secret")
        .args(["--config", &cfg, "ingest", "--db", &db.url, "--json"])
        .arg(&mails)
        .output()
        .unwrap());
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    // jira: issue + comment sent; jira-bad: the issue failed, its comment held back.
    assert_eq!(
        (v["sent"].as_u64(), v["send_failed"].as_u64()),
        (Some(2), Some(2)),
        "{v}"
    );
    let issues = fake.issues.lock().unwrap().clone();
    assert_eq!(issues.len(), 1);
    let (key, fields) = &issues[0];
    assert_eq!(key, "SUP-1");
    assert_eq!(fields["project"]["key"], "SUP");
    assert_eq!(fields["summary"], "[HELP-1] Printer on fire");
    let description = fields["description"].as_str().unwrap();
    assert!(
        description.contains("It burns") && description.contains("Reporter: jane@customer.example"),
        "{description}"
    );
    let comments = fake.comments.lock().unwrap().clone();
    assert_eq!(comments["SUP-1"].len(), 1);
    assert!(comments["SUP-1"][0].contains("Still burning."));
    // Order at the good sink: create, attach, then the comment.
    let log = fake.log.lock().unwrap().clone();
    let pos = |m: &str, p: &str| {
        log.iter()
            .position(|(mm, pp, _)| mm == m && pp.ends_with(p))
            .unwrap()
    };
    let created = log
        .iter()
        .position(|(m, p, b)| {
            m == "POST"
                && p == "/rest/api/2/issue"
                && String::from_utf8_lossy(b).contains("\"Task\"")
        })
        .unwrap();
    let attached = pos("POST", "/SUP-1/attachments");
    let commented = pos("POST", "/SUP-1/comment");
    assert!(created < attached && attached < commented, "{log:?}");
    let upload = &log[attached].2;
    assert!(String::from_utf8_lossy(upload).contains("FIRE AT 10:00"));
    assert!(String::from_utf8_lossy(upload).contains("filename=\"printer.log\""));
    // The key is on the ticket and shown with it.
    let store = Store::connect(&db.url).await.unwrap();
    assert_eq!(
        store
            .ticket_external_key("HELP-1")
            .await
            .unwrap()
            .as_deref(),
        Some("SUP-1")
    );
    let shown = ok(intake()
        .args(["tickets", "show", "HELP-1", "--db", &db.url, "--json"])
        .output()
        .unwrap());
    let t: Value = serde_json::from_str(shown.trim()).unwrap();
    assert_eq!(t["external_key"], "SUP-1", "{t}");
    // The 400: decoded, not retried.
    let failed = store.list_outbox(Some("failed"), 10).await.unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].target, "jira-bad");
    assert_eq!(failed[0].attempts, 1);
    let e = failed[0].last_error.as_deref().unwrap();
    assert!(
        e.contains("issuetype: Specify a valid issue type") && e.contains("issue type is unknown"),
        "{e}"
    );
    let bad_creates = log
        .iter()
        .filter(|(m, p, b)| {
            m == "POST"
                && p == "/rest/api/2/issue"
                && String::from_utf8_lossy(b).contains("\"Nope\"")
        })
        .count();
    assert_eq!(bad_creates, 1, "a 400 is not retried blindly");
    store.close().await;
}

/// The crash window at a Jira sink: the fake creates the issue, stores the attachment and adds
/// the comment, but answers each of them too late for the client (past `timeout_seconds`), as
/// when Intake dies after Jira acted and before the row is marked sent. The repeats look before
/// they act — the issue by its label (JQL), the attachments by filename and size, the comment by
/// its marker — so Jira ends with one issue, one copy of the file and one comment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jira_sink_after_an_unanswered_create_upload_and_comment_makes_each_once() {
    let fake = JiraFake {
        swallow: Arc::new(Mutex::new(vec!["create", "attach", "comment"])),
        ..Default::default()
    };
    let server = MockServer::start().await;
    Mock::given(matchers::any())
        .respond_with(fake.clone())
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let mails = dir.path().join("mail");
    std::fs::create_dir(&mails).unwrap();
    mail(
        &mails,
        "1.eml",
        "From: Jane <jane@customer.example>\nTo: help@example.com\nSubject: Printer on fire\nDate: Mon, 02 Nov 2026 10:00:00 +0000\nMessage-ID: <jc1@customer.example>\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b\"\n\n--b\nContent-Type: text/plain\n\nIt burns, see the log.\n--b\nContent-Type: text/plain; name=\"printer.log\"\nContent-Disposition: attachment; filename=\"printer.log\"\n\nFIRE AT 10:00\n--b--\n",
    );
    mail(
        &mails,
        "2.eml",
        "From: jane@customer.example\nTo: help@example.com\nSubject: Re: Printer on fire\nDate: Mon, 02 Nov 2026 10:05:00 +0000\nMessage-ID: <jc2@customer.example>\nIn-Reply-To: <jc1@customer.example>\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b\"\n\n--b\nContent-Type: text/plain\n\nStill burning, photo attached.\n--b\nContent-Type: image/png; name=\"photo.png\"\nContent-Disposition: attachment; filename=\"photo.png\"\nContent-Transfer-Encoding: base64\n\niVBORw0KGgo=\n--b--\n",
    );
    let cfg = dir.path().join("intake.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[sink]]\nname = \"jira\"\nproject = \"HELP\"\ntype = \"jira\"\nurl = \"{}\"\nsecret = \"env:JIRA_PAT\"\njira_project = \"SUP\"\ntimeout_seconds = 1\n",
            server.uri()
        ),
    )
    .unwrap();
    let cfg = cfg.display().to_string();
    let db = TestDb::sqlite();
    let out = ok(intake()
        .env("JIRA_PAT", "pat-secret")
        .args(["--config", &cfg, "ingest", "--db", &db.url, "--json"])
        .arg(&mails)
        .output()
        .unwrap());
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (v["sent"].as_u64(), v["send_failed"].as_u64()),
        (Some(2), Some(0)),
        "{v}"
    );
    assert!(
        fake.swallow.lock().unwrap().is_empty(),
        "every crash window was hit"
    );
    let issues = fake.issues.lock().unwrap().clone();
    assert_eq!(issues.len(), 1, "one issue: {issues:?}");
    let files = fake.attachments.lock().unwrap().clone();
    let mut on_issue = files["SUP-1"].clone();
    on_issue.sort();
    assert_eq!(
        on_issue,
        vec![
            ("photo.png".to_string(), 8),
            ("printer.log".to_string(), 13),
        ],
        "each file once"
    );
    let comments = fake.comments.lock().unwrap().clone();
    assert_eq!(comments["SUP-1"].len(), 1, "{comments:?}");
    let log = fake.log.lock().unwrap().clone();
    let creates = log
        .iter()
        .filter(|(m, p, _)| m == "POST" && p == "/rest/api/2/issue")
        .count();
    let searches = log
        .iter()
        .filter(|(m, p, _)| m == "GET" && p == "/rest/api/2/search")
        .count();
    assert_eq!(
        creates, 1,
        "the repeat found the issue instead of creating it"
    );
    assert!(searches >= 2, "looked up before creating, twice");
    let store = Store::connect(&db.url).await.unwrap();
    assert_eq!(
        store
            .ticket_external_key("HELP-1")
            .await
            .unwrap()
            .as_deref(),
        Some("SUP-1")
    );
    store.close().await;
}
