//! Mail out through a real submission server: Dovecot's SMTP submission service checking
//! XOAUTH2 tokens from the test IdP by introspection (the same check as IMAP), relaying into a
//! receiving server the test reads. Acknowledgement and reply arrive once with the threading
//! headers, the channel's own address is never a recipient, the customer's answer threads back
//! as a comment, and Intake's own reply coming back is not ingested. Plus Graph `sendMail`
//! against a Graph fake (the MIME as sent, `ErrorSendAsDenied` kept as a permanent failure).

use std::collections::HashSet;

use intake_core::token::{TokenIdentity, TokenSet};
use intake_store::{Keyring, Store, now};
use intake_testkit::TestDb;
use intake_testkit::dovecot::{Dovecot, DovecotOptions, mail_access_token};
use intake_testkit::idp::Idp;
use intake_testkit::smtp_sink::SmtpSink;
use secrecy::SecretString;
use serde_json::Value;

use crate::{intake, ok};

const USER: &str = "help@example.test";
const KEY: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";

fn customer_mail(id: &str, subject: &str, extra: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Jane <jane@customer.example>\r\nTo: {USER}\r\nCc: boss@customer.example, {USER}\r\n\
         Subject: {subject}\r\nDate: Mon, 02 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{id}>\r\n\
         {extra}MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

fn run(cfg: &str, db: &str, args: &[&str]) -> String {
    ok(intake()
        .args(["--config", cfg, "--db", db])
        .args(args)
        .env("INTAKE_LEASE_SECONDS", "2")
        .env("INTAKE_SECRET_KEY", KEY)
        .env("UNUSED", "client-secret")
        .output()
        .unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledgement_and_reply_over_dovecot_submission_xoauth2_arrive_once_and_the_answer_threads_back()
 {
    let test = "smtp_acknowledgement_and_reply";
    let Some(idp) = Idp::start_or_skip(test) else {
        return;
    };
    let sink = SmtpSink::start().unwrap();
    let Some(dc) = Dovecot::start_or_skip(
        test,
        &DovecotOptions::with_users(&[(USER, "unused")])
            .introspect(&idp)
            .submission(sink.port),
    ) else {
        return;
    };
    let token = mail_access_token(&idp, USER).await.unwrap();
    let db = TestDb::sqlite();
    let store = Store::connect(&db.url).await.unwrap();
    let keys = Keyring::from_base64(KEY, &[]).unwrap();
    store
        .tokens("")
        .save_token(
            &keys,
            "idp",
            USER,
            &TokenSet {
                access_token: SecretString::from(token),
                refresh_token: None,
                expires_at: now() + 3000,
                scopes: vec!["mail".into()],
                id_token: None,
            },
            &TokenIdentity::default(),
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("intake.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[integration]]\nname = \"idp\"\nprovider = \"custom\"\nclient_id = \"{}\"\nclient_secret = \"env:UNUSED\"\ngrant = \"authorization_code\"\n\
             authorize_url = \"{}\"\ntoken_url = \"{}\"\nscopes = [\"openid\", \"email\", \"mail\"]\n\n\
             [[acknowledgement]]\nproject = \"HELP\"\nsubject = \"[{{key}}] {{summary}}\"\nbody = \"We have your mail as {{key}}.\"\n\n\
             [[channel]]\nname = \"support\"\nproject = \"HELP\"\nprotocol = \"imap\"\nhost = \"127.0.0.1\"\nport = {}\nca_file = \"file:{}\"\n\
             mailbox = \"{USER}\"\nauth = \"oauth:idp\"\n\
             [channel.send]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"starttls\"\n",
            idp.client_id,
            idp.authorization_endpoint(),
            idp.token_endpoint(),
            dc.imaps_port,
            dc.ca_path.display(),
            dc.submission_port,
        ),
    )
    .unwrap();
    let cfg = cfg.display().to_string();

    // 1. A customer writes (Cc the boss and the help address itself): a ticket, acknowledged.
    dc.deliver(
        USER,
        &customer_mail("c1@customer.example", "Printer on fire", "", "It burns."),
    )
    .unwrap();
    let v: Value =
        serde_json::from_str(run(&cfg, &db.url, &["run", "--once", "--json"]).trim()).unwrap();
    assert_eq!(
        (
            v["created"].as_u64(),
            v["sent"].as_u64(),
            v["send_failed"].as_u64()
        ),
        (Some(1), Some(1), Some(0)),
        "{v}\n{}",
        dc.log()
    );
    let got = sink.received();
    assert_eq!(got.len(), 1, "{got:?}");
    let ack = &got[0];
    assert_eq!(ack.mail_from, USER);
    assert_eq!(ack.rcpt_to, vec!["jane@customer.example".to_string()]);
    assert_eq!(
        ack.header("Subject").as_deref(),
        Some("[HELP-1] Printer on fire")
    );
    assert_eq!(
        ack.header("In-Reply-To").as_deref(),
        Some("<c1@customer.example>")
    );
    assert_eq!(
        ack.header("Auto-Submitted").as_deref(),
        Some("auto-replied")
    );
    assert!(
        ack.header("X-Intake-Sent")
            .is_some_and(|v| v.starts_with("v1="))
    );
    let ticket = store.ticket("HELP-1").await.unwrap().unwrap();
    assert_eq!(
        ticket.participants,
        vec!["boss@customer.example".to_string()],
        "the help address is never a participant"
    );

    // 2. An agent replies from the ticket: to the reporter and the participants, never to the
    //    channel's own address, threaded after the acknowledgement.
    let out = run(
        &cfg,
        &db.url,
        &["reply", "HELP-1", "--body", "We are on it.", "--json"],
    );
    let r: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(r["state"], "sent", "{r}");
    let got = sink.received();
    assert_eq!(got.len(), 2);
    let reply = &got[1];
    let mut rcpt = reply.rcpt_to.clone();
    rcpt.sort();
    assert_eq!(
        rcpt,
        vec![
            "boss@customer.example".to_string(),
            "jane@customer.example".to_string()
        ]
    );
    let reply_id = reply.message_id().unwrap();
    assert_eq!(r["message_id"], reply_id.as_str());
    assert!(reply.header("Subject").unwrap().contains("[HELP-1]"));
    assert_eq!(
        reply.header("In-Reply-To"),
        Some(format!("<{}>", ack.message_id().unwrap()))
    );
    let refs = reply.header("References").unwrap();
    assert!(
        refs.contains("<c1@customer.example>") && refs.contains(&ack.message_id().unwrap()),
        "{refs}"
    );
    let ticket = store.ticket("HELP-1").await.unwrap().unwrap();
    assert!(
        ticket
            .comments
            .iter()
            .any(|c| c.body == "We are on it." && c.author == USER)
    );

    // 3. The customer answers the reply without the key in the subject: a comment on HELP-1.
    //    Intake's own reply coming back into the mailbox (a copy) is not ingested.
    dc.deliver(
        USER,
        &customer_mail(
            "c2@customer.example",
            "Re: your answer",
            &format!(
                "In-Reply-To: <{reply_id}>\r\nReferences: <c1@customer.example> <{reply_id}>\r\n"
            ),
            "Thanks, it is out now.",
        ),
    )
    .unwrap();
    dc.deliver(USER, &reply.data).unwrap();
    let v: Value =
        serde_json::from_str(run(&cfg, &db.url, &["run", "--once", "--json"]).trim()).unwrap();
    assert_eq!(
        (
            v["commented"].as_u64(),
            v["ignored"].as_u64(),
            v["created"].as_u64()
        ),
        (Some(1), Some(1), Some(0)),
        "{v}"
    );
    let ledger = store.ledger(Some("support")).await.unwrap();
    let own = ledger
        .iter()
        .find(|l| l.message_id.as_deref() == Some(reply_id.as_str()))
        .unwrap();
    assert_eq!(own.outcome, "ignored");
    let ticket = store.ticket("HELP-1").await.unwrap().unwrap();
    assert!(
        ticket
            .comments
            .iter()
            .any(|c| c.body.contains("it is out now"))
    );

    // Each mail once at the receiving server, by Message-ID.
    let got = sink.received();
    let ids: HashSet<String> = got.iter().filter_map(|m| m.message_id()).collect();
    assert_eq!(ids.len(), got.len(), "no duplicate Message-ID: {got:?}");
    assert_eq!(got.len(), 2, "nothing else was sent");
    store.close().await;
}

/// A configuration with one Maildir channel that sends through `send` (TOML lines of
/// `[channel.send]`), plus `extra` top-level tables.
fn local_channel(dir: &std::path::Path, send: &str, extra: &str) -> String {
    let md = dir.join("md");
    for d in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(md.join(d)).unwrap();
    }
    let cfg = dir.join("intake.toml");
    std::fs::write(
        &cfg,
        format!(
            "{extra}\n[[channel]]\nname = \"support\"\nproject = \"HELP\"\nprotocol = \"maildir\"\npath = \"{}\"\n[channel.send]\nfrom = \"{USER}\"\n{send}\n",
            md.display()
        ),
    )
    .unwrap();
    cfg.display().to_string()
}

/// The doctor's outgoing check names the stage and decodes Exchange Online's refusals: SMTP
/// AUTH disabled for the tenant (5.7.139) and a refused send-as (5.7.60). No local server says
/// Exchange's words, so a scripted SMTP server answers them; the check sends nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_outgoing_check_decodes_smtp_auth_disabled_and_a_refused_send_as() {
    use intake_testkit::smtp_sink::Script;
    let cases = [
        (
            Script {
                auth: Some("535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information.".into()),
                mail_from: None,
            },
            "AUTH",
            "SMTP AUTH is disabled",
        ),
        (
            Script {
                auth: None,
                mail_from: Some("550 5.7.60 SMTP; Client does not have permissions to send as this sender".into()),
            },
            "MAIL FROM",
            "Send As",
        ),
    ];
    for (script, stage, fix) in cases {
        let sink = intake_testkit::smtp_sink::SmtpSink::start_with(script).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cfg = local_channel(
            dir.path(),
            &format!(
                "host = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nauth = \"password:env:SMTP_PW\"",
                sink.port
            ),
            "",
        );
        let db = TestDb::sqlite();
        let out = intake()
            .args(["--config", &cfg, "--db", &db.url, "doctor", "--json"])
            .env("SMTP_PW", "s3cret")
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "a failed outgoing check fails the doctor"
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let o = &v[0]["outgoing"];
        assert_eq!(o["ok"], false, "{v}");
        let failed = o["stages"].as_array().unwrap().last().unwrap();
        assert_eq!(failed["stage"], stage, "{o}");
        assert_eq!(failed["ok"], false);
        assert!(o["fix"].as_str().unwrap().contains(fix), "{o}");
        assert!(
            o["fix"]
                .as_str()
                .unwrap()
                .contains("docs/troubleshooting.md"),
            "{o}"
        );
        assert!(sink.received().is_empty(), "the check sends nothing");
        // A Maildir channel cannot look into a Sent folder: the doctor says mail out is only
        // at least once across a crash.
        assert_eq!(o["exactly_once"], false, "{o}");
        assert!(
            o["after_crash"].as_str().unwrap().contains("at least once"),
            "{o}"
        );
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(!text.contains("s3cret"));
    }
}

/// Graph `sendMail` against a Graph fake: the MIME message as Intake composed it (threading
/// headers, own-mail mark) arrives base64 in the body, from the channel's mailbox; an
/// `ErrorSendAsDenied` answer fails the row for good with its diagnosis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_sendmail_posts_the_mime_as_sent_and_send_as_denied_is_kept_failed() {
    use base64::Engine as _;
    use wiremock::{Mock, MockServer, ResponseTemplate, matchers};
    let graph = MockServer::start().await;
    Mock::given(matchers::method("POST"))
        .and(matchers::path(format!("/v1.0/users/{USER}/sendMail")))
        .and(matchers::header("authorization", "Bearer graph-token"))
        .respond_with(ResponseTemplate::new(202))
        .up_to_n_times(1)
        .mount(&graph)
        .await;
    Mock::given(matchers::method("POST"))
        .respond_with(ResponseTemplate::new(403).set_body_json(serde_json::json!({
            "error": {"code": "ErrorSendAsDenied", "message": "The user account which was used to submit this request does not have the right to send mail on behalf of the specified sending account."}
        })))
        .mount(&graph)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = local_channel(
        dir.path(),
        "transport = \"graph\"\nauth = \"oauth:m365\"",
        &format!(
            "[[integration]]\nname = \"m365\"\nprovider = \"microsoft\"\ncloud = \"worldwide\"\ntenant = \"contoso.onmicrosoft.com\"\n\
             client_id = \"11111111-2222-3333-4444-555555555555\"\nclient_secret = \"env:UNUSED\"\nclient_secret_expires = \"2099-01-01\"\n\
             grant = \"authorization_code\"\nauthority_url = \"{0}\"\ngraph_url = \"{0}\"\n\n\
             [[acknowledgement]]\nproject = \"HELP\"\n",
            graph.uri()
        ),
    );
    let db = TestDb::sqlite();
    let store = Store::connect(&db.url).await.unwrap();
    let keys = Keyring::from_base64(KEY, &[]).unwrap();
    store
        .tokens("graph")
        .save_token(
            &keys,
            "m365",
            USER,
            &TokenSet {
                access_token: SecretString::from("graph-token".to_string()),
                refresh_token: None,
                expires_at: now() + 3000,
                scopes: vec!["Mail.Send".into()],
                id_token: None,
            },
            &TokenIdentity::default(),
        )
        .await
        .unwrap();
    let md = dir.path().join("md/new");
    std::fs::write(
        md.join("1.eml"),
        customer_mail("g1@customer.example", "Graph one", "", "One."),
    )
    .unwrap();
    std::fs::write(
        md.join("2.eml"),
        String::from_utf8(customer_mail(
            "g2@customer.example",
            "Graph two",
            "",
            "Two.",
        ))
        .unwrap()
        .replace("jane@", "kim@"),
    )
    .unwrap();
    let out = run(&cfg, &db.url, &["run", "--once", "--json"]);
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    let rows = store.outbox_since(0).await.unwrap();
    assert_eq!(
        (v["sent"].as_u64(), v["send_failed"].as_u64()),
        (Some(1), Some(1)),
        "{v} {:?}",
        rows.iter()
            .map(|r| r.last_error.clone())
            .collect::<Vec<_>>()
    );
    let reqs = graph.received_requests().await.unwrap();
    let first = reqs.iter().find(|r| r.method.as_str() == "POST").unwrap();
    assert_eq!(
        first.headers.get("content-type").unwrap().to_str().unwrap(),
        "text/plain"
    );
    let mime = base64::engine::general_purpose::STANDARD
        .decode(&first.body)
        .unwrap();
    let m = mail_parser::MessageParser::default().parse(&mime).unwrap();
    assert!(
        m.subject().unwrap().starts_with("[HELP-1]"),
        "{:?}",
        m.subject()
    );
    assert_eq!(m.in_reply_to().as_text(), Some("g1@customer.example"));
    assert!(
        m.header_raw("X-Intake-Sent")
            .is_some_and(|v| v.trim().starts_with("v1="))
    );
    assert_eq!(m.from().unwrap().first().unwrap().address(), Some(USER));
    let rows = store.outbox_since(0).await.unwrap();
    let sent_id = rows
        .iter()
        .find(|r| r.state == "sent")
        .unwrap()
        .message_id
        .clone()
        .unwrap();
    assert_eq!(m.message_id(), Some(sent_id.as_str()));
    let failed = rows.iter().find(|r| r.state == "failed").unwrap();
    let e = failed.last_error.as_deref().unwrap();
    assert!(
        e.contains("ErrorSendAsDenied") && e.contains("Send As"),
        "{e}"
    );
    assert_eq!(failed.attempts, 1, "a 403 is not retried");
    store.close().await;
}

/// A first mail from `from` (a new ticket each).
fn from_customer(from: &str, id: &str, subject: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: {USER}\r\nSubject: {subject}\r\nDate: Mon, 02 Nov 2026 10:00:00 +0000\r\n\
         Message-ID: <{id}>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHelp.\r\n"
    )
    .into_bytes()
}

/// The Message-IDs (without angle brackets) of every message in `user`'s `folder` on `dc`,
/// read over IMAP (LOGIN with the user's password) — the receiving mailbox as its owner sees it.
async fn imap_message_ids(dc: &Dovecot, user: &str, folder: &str) -> Vec<String> {
    use intake_mail::source::imap::{ImapSettings, ImapSource, Tls};
    use intake_mail::source::{MailAuth, MailSource, Start};
    let password = dc
        .users
        .iter()
        .find(|(u, _)| u == user)
        .map(|(_, p)| p.clone())
        .unwrap();
    let mut src = ImapSource::connect(&ImapSettings {
        host: "127.0.0.1".into(),
        port: dc.imap_port,
        tls: Tls::None,
        ca_pem: None,
        auth: MailAuth::Password {
            user: user.into(),
            password: SecretString::from(password),
        },
        folder: folder.into(),
        proxy: None,
        timeouts: Default::default(),
        max_message_bytes: None,
    })
    .await
    .unwrap();
    let listing = src.list(None, Start::All, 100_000).await.unwrap();
    let fetched = MailSource::fetch(&mut src, &listing.items).await.unwrap();
    let _ = src.logout().await;
    fetched
        .iter()
        .map(|f| {
            mail_parser::MessageParser::default()
                .parse(&f.raw)
                .and_then(|m| m.message_id().map(str::to_string))
                .unwrap_or_default()
        })
        .collect()
}

/// Kill `intake run` with SIGKILL again and again while it sends acknowledgements, then let
/// `run --once` finish; `kill_now` says when to kill (it is polled every 5 ms after the
/// start). Returns the number of kills.
async fn kill_while_sending(
    spawn: &dyn Fn() -> std::process::Child,
    kill_now: &dyn Fn(usize, std::time::Instant) -> bool,
    done: &dyn Fn() -> bool,
    max_kills: usize,
) -> usize {
    use std::time::{Duration, Instant};
    let mut kills = 0;
    let started = Instant::now();
    while kills < max_kills && !done() && started.elapsed() < Duration::from_secs(240) {
        let mut child = spawn();
        let t = Instant::now();
        loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            if done() {
                // Everything went out: stop this run without counting it as a kill.
                child.kill().unwrap();
                break;
            }
            if kill_now(kills, t) || t.elapsed() > Duration::from_secs(30) {
                child.kill().unwrap();
                kills += 1;
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        child.wait().unwrap();
    }
    kills
}

/// Exactly once over SMTP across crashes: Dovecot's submission service (XOAUTH2 checked by
/// introspection at the test IdP) relays through [`SentRelay`], which delivers into the
/// customers' mailboxes and files the sender's copy in its `Sent` folder before it answers
/// 250 — the provider's save-to-Sent — and holds the 250 back 300 ms (a slow provider). `intake
/// run` is killed with SIGKILL again and again while it sends 40 acknowledgements: half the
/// kills right after a delivery (inside the window between the server taking the mail and the
/// row being marked sent), half at staggered times. Then `run --once` settles. Every row is
/// sent, and each Message-ID is in its customer's INBOX exactly once (read over IMAP) and in
/// the help mailbox's Sent folder exactly once; some rows were found in Sent rather than sent
/// again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_sending_over_smtp_each_mail_arrives_exactly_once() {
    use intake_testkit::sent_relay::SentRelay;
    use std::process::Stdio;
    use std::time::Duration;
    let test = "smtp_sigkill_exactly_once";
    let Some(idp) = Idp::start_or_skip(test) else {
        return;
    };
    let relay = SentRelay::start().unwrap();
    let customers = [
        "ann@customer.example",
        "bob@customer.example",
        "cid@customer.example",
        "dee@customer.example",
    ];
    let mut users = vec![(USER, "unused")];
    users.extend(customers.iter().map(|c| (*c, "pw")));
    let Some(dc) = Dovecot::start_or_skip(
        test,
        &DovecotOptions::with_users(&users)
            .introspect(&idp)
            .submission(relay.port)
            .sent_folder(),
    ) else {
        return;
    };
    relay.deliver_to(dc.lmtp_socket());
    relay.reply_delay(Duration::from_millis(300));
    let token = mail_access_token(&idp, USER).await.unwrap();
    let db = TestDb::sqlite();
    let store = Store::connect(&db.url).await.unwrap();
    let keys = Keyring::from_base64(KEY, &[]).unwrap();
    store
        .tokens("")
        .save_token(
            &keys,
            "idp",
            USER,
            &TokenSet {
                access_token: SecretString::from(token),
                refresh_token: None,
                expires_at: now() + 3000,
                scopes: vec!["mail".into()],
                id_token: None,
            },
            &TokenIdentity::default(),
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("intake.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[integration]]\nname = \"idp\"\nprovider = \"custom\"\nclient_id = \"{}\"\nclient_secret = \"env:UNUSED\"\ngrant = \"authorization_code\"\n\
             authorize_url = \"{}\"\ntoken_url = \"{}\"\nscopes = [\"openid\", \"email\", \"mail\"]\n\n\
             [[acknowledgement]]\nproject = \"HELP\"\nmax_per_hour = 1000\n\n\
             [[channel]]\nname = \"support\"\nproject = \"HELP\"\nprotocol = \"imap\"\nhost = \"127.0.0.1\"\nport = {}\nca_file = \"file:{}\"\n\
             mailbox = \"{USER}\"\nauth = \"oauth:idp\"\n\
             [channel.send]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"starttls\"\nsent_copy_wait_seconds = 3\n",
            idp.client_id,
            idp.authorization_endpoint(),
            idp.token_endpoint(),
            dc.imaps_port,
            dc.ca_path.display(),
            dc.submission_port,
        ),
    )
    .unwrap();
    let cfg = cfg.display().to_string();
    const MAILS: usize = 40;
    for i in 0..MAILS {
        let c = customers[i % customers.len()];
        dc.deliver(
            USER,
            &from_customer(
                c,
                &format!("k{i}@customer.example"),
                &format!("Question {i}"),
            ),
        )
        .unwrap();
    }
    let spawn = || {
        intake()
            .args(["--config", &cfg, "--db", &db.url, "run"])
            .env("INTAKE_LEASE_SECONDS", "2")
            .env("INTAKE_SECRET_KEY", KEY)
            .env("UNUSED", "client-secret")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let delivered_at_start = std::sync::Mutex::new((usize::MAX, 0u64));
    let kill_now = |k: usize, t: std::time::Instant| {
        let mut s = delivered_at_start.lock().unwrap();
        if s.0 != k {
            *s = (k, relay.delivered());
        }
        if k.is_multiple_of(2) {
            // Right after the server delivered (the 250 is still on its way).
            relay.delivered() > s.1
        } else {
            t.elapsed() > Duration::from_millis(700 + 173 * k as u64 % 900)
        }
    };
    let done = || relay.delivered() as usize >= MAILS;
    let kills = kill_while_sending(&spawn, &kill_now, &done, 16).await;
    assert!(kills >= 12, "killed {kills} times");
    let v: Value =
        serde_json::from_str(run(&cfg, &db.url, &["run", "--once", "--json"]).trim()).unwrap();
    let rows = store.outbox_since(0).await.unwrap();
    assert_eq!(rows.len(), MAILS, "one acknowledgement per ticket");
    assert!(
        rows.iter().all(|r| r.state == "sent"),
        "every row sent: {v} {:?}",
        rows.iter()
            .filter(|r| r.state != "sent")
            .map(|r| (&r.state, &r.last_error))
            .collect::<Vec<_>>()
    );
    // Exactly once in each receiving mailbox, by Message-ID.
    let mut inboxes: Vec<String> = Vec::new();
    for c in customers {
        inboxes.extend(imap_message_ids(&dc, c, "INBOX").await);
    }
    let sent_folder = imap_message_ids(&dc, USER, "Sent").await;
    for r in &rows {
        let id = r.message_id.clone().unwrap();
        let n = inboxes.iter().filter(|m| **m == id).count();
        assert_eq!(n, 1, "{id} arrived {n} times");
        assert_eq!(
            sent_folder.iter().filter(|m| **m == id).count(),
            1,
            "{id} in Sent"
        );
    }
    assert_eq!(inboxes.len(), MAILS, "nothing else arrived");
    let found = rows
        .iter()
        .filter(|r| r.result.as_deref() == Some(intake::outbox::mail::FOUND_IN_SENT))
        .count();
    eprintln!(
        "SIGKILL x{kills}: {MAILS} rows sent, {found} recognised in the Sent folder, relay delivered {}",
        relay.delivered()
    );
    assert!(
        found >= 1,
        "some kills hit the window after the server's 250"
    );
    assert_eq!(
        relay.delivered() as usize,
        MAILS,
        "the relay delivered each mail once"
    );
    store.close().await;
}

/// A Graph fake for sending: `sendMail` (MIME, base64) files the message in the mailbox's Sent
/// Items and hands it to its recipients (the fake's record of what arrived, by Message-ID), as
/// Graph does by default, then answers 202 after `delay`; `mailFolders/sentitems/messages` with
/// `$filter=internetMessageId eq '<id>'` finds it. Requests without the bearer token get 401.
/// (Message-ID with angle brackets, recipients).
type SentItem = (String, Vec<String>);

#[derive(Clone, Default)]
struct GraphSendFake {
    /// (Message-ID with angle brackets, recipients) of every message sent.
    sent_items: std::sync::Arc<std::sync::Mutex<Vec<SentItem>>>,
    lookups: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    delay: std::time::Duration,
    /// The first this many `sendMail` requests answer 500 without sending (a gateway that
    /// fails before Exchange takes the message).
    fail_first: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// When each `sendMail` request arrived.
    posts: std::sync::Arc<std::sync::Mutex<Vec<std::time::Instant>>>,
}

impl wiremock::Respond for GraphSendFake {
    fn respond(&self, req: &wiremock::Request) -> wiremock::ResponseTemplate {
        use base64::Engine as _;
        use wiremock::ResponseTemplate;
        let authorized = req
            .headers
            .get("authorization")
            .is_some_and(|v| v == "Bearer graph-token");
        if !authorized {
            return ResponseTemplate::new(401)
                .set_body_json(serde_json::json!({"error": {"code": "InvalidAuthenticationToken", "message": "no"}}));
        }
        let path = req.url.path();
        if req.method.as_str() == "POST" && path == format!("/v1.0/users/{USER}/sendMail") {
            self.posts.lock().unwrap().push(std::time::Instant::now());
            let failing = self.fail_first.load(std::sync::atomic::Ordering::Relaxed);
            if failing > 0 {
                self.fail_first
                    .store(failing - 1, std::sync::atomic::Ordering::Relaxed);
                return ResponseTemplate::new(500).set_body_json(serde_json::json!({"error": {"code": "InternalServerError", "message": "try again"}}));
            }
            let mime = base64::engine::general_purpose::STANDARD
                .decode(&req.body)
                .unwrap();
            let m = mail_parser::MessageParser::default().parse(&mime).unwrap();
            let id = format!("<{}>", m.message_id().unwrap());
            let to: Vec<String> = m
                .to()
                .into_iter()
                .chain(m.cc())
                .flat_map(|a| a.iter())
                .filter_map(|a| a.address().map(str::to_string))
                .collect();
            self.sent_items.lock().unwrap().push((id, to));
            return ResponseTemplate::new(202).set_delay(self.delay);
        }
        if req.method.as_str() == "GET"
            && path == format!("/v1.0/users/{USER}/mailFolders/sentitems/messages")
        {
            self.lookups
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let filter = req
                .url
                .query_pairs()
                .find(|(k, _)| k == "$filter")
                .map(|(_, v)| v.to_string())
                .unwrap_or_default();
            let want = filter
                .strip_prefix("internetMessageId eq '")
                .and_then(|f| f.strip_suffix('\''))
                .unwrap_or_default()
                .replace("''", "'");
            let value: Vec<Value> = self
                .sent_items
                .lock()
                .unwrap()
                .iter()
                .filter(|(id, _)| *id == want)
                .map(|(id, _)| serde_json::json!({"id": "AAMk", "internetMessageId": id}))
                .collect();
            return ResponseTemplate::new(200).set_body_json(serde_json::json!({"value": value}));
        }
        ResponseTemplate::new(404)
    }
}

/// Exactly once over Graph `sendMail` across crashes: the fake files every sent message in Sent
/// Items (as Graph does) and answers 202 only 300 ms later. `intake run` is killed with SIGKILL
/// again and again while it sends 40 acknowledgements (half right after the fake took a
/// message, half at staggered times); `run --once` settles. Every row is sent, each
/// Message-ID reached the fake exactly once, and the rows interrupted after the fake took them
/// were found in Sent Items instead of being sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_sending_over_graph_each_mail_arrives_exactly_once() {
    use std::process::Stdio;
    use std::time::Duration;
    use wiremock::{Mock, MockServer, matchers};
    let fake = GraphSendFake {
        delay: Duration::from_millis(300),
        ..Default::default()
    };
    let graph = MockServer::start().await;
    Mock::given(matchers::any())
        .respond_with(fake.clone())
        .mount(&graph)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = local_channel(
        dir.path(),
        "transport = \"graph\"\nauth = \"oauth:m365\"\nsent_copy_wait_seconds = 3",
        &format!(
            "[[integration]]\nname = \"m365\"\nprovider = \"microsoft\"\ncloud = \"worldwide\"\ntenant = \"contoso.onmicrosoft.com\"\n\
             client_id = \"11111111-2222-3333-4444-555555555555\"\nclient_secret = \"env:UNUSED\"\nclient_secret_expires = \"2099-01-01\"\n\
             grant = \"authorization_code\"\nauthority_url = \"{0}\"\ngraph_url = \"{0}\"\n\n\
             [[acknowledgement]]\nproject = \"HELP\"\nmax_per_hour = 1000\n",
            graph.uri()
        ),
    );
    let db = TestDb::sqlite();
    let store = Store::connect(&db.url).await.unwrap();
    let keys = Keyring::from_base64(KEY, &[]).unwrap();
    store
        .tokens("graph")
        .save_token(
            &keys,
            "m365",
            USER,
            &TokenSet {
                access_token: SecretString::from("graph-token".to_string()),
                refresh_token: None,
                expires_at: now() + 3000,
                scopes: vec!["Mail.Send".into(), "Mail.Read".into()],
                id_token: None,
            },
            &TokenIdentity::default(),
        )
        .await
        .unwrap();
    const MAILS: usize = 40;
    let customers = ["ann", "bob", "cid", "dee"];
    for i in 0..MAILS {
        let c = format!("{}@customer.example", customers[i % customers.len()]);
        std::fs::write(
            dir.path().join(format!("md/new/{i}.eml")),
            from_customer(
                &c,
                &format!("g{i}@customer.example"),
                &format!("Question {i}"),
            ),
        )
        .unwrap();
    }
    let taken = || fake.sent_items.lock().unwrap().len();
    let spawn = || {
        intake()
            .args(["--config", &cfg, "--db", &db.url, "run"])
            .env("INTAKE_LEASE_SECONDS", "2")
            .env("INTAKE_SECRET_KEY", KEY)
            .env("UNUSED", "client-secret")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let at_start = std::sync::Mutex::new((usize::MAX, 0usize));
    let kill_now = |k: usize, t: std::time::Instant| {
        let mut s = at_start.lock().unwrap();
        if s.0 != k {
            *s = (k, taken());
        }
        if k.is_multiple_of(2) {
            taken() > s.1
        } else {
            t.elapsed() > Duration::from_millis(500 + 173 * k as u64 % 900)
        }
    };
    let done = || taken() >= MAILS;
    let kills = kill_while_sending(&spawn, &kill_now, &done, 16).await;
    assert!(kills >= 12, "killed {kills} times");
    let v: Value =
        serde_json::from_str(run(&cfg, &db.url, &["run", "--once", "--json"]).trim()).unwrap();
    let rows = store.outbox_since(0).await.unwrap();
    assert_eq!(rows.len(), MAILS, "one acknowledgement per ticket");
    assert!(
        rows.iter().all(|r| r.state == "sent"),
        "every row sent: {v} {:?}",
        rows.iter()
            .filter(|r| r.state != "sent")
            .map(|r| (&r.state, &r.last_error))
            .collect::<Vec<_>>()
    );
    let sent = fake.sent_items.lock().unwrap().clone();
    for r in &rows {
        let id = format!("<{}>", r.message_id.clone().unwrap());
        let n = sent.iter().filter(|(m, _)| *m == id).count();
        assert_eq!(n, 1, "{id} reached Graph {n} times");
        let (_, to) = sent.iter().find(|(m, _)| *m == id).unwrap();
        assert_eq!(to.len(), 1, "{to:?}");
    }
    assert_eq!(sent.len(), MAILS, "nothing else was sent");
    let found = rows
        .iter()
        .filter(|r| r.result.as_deref() == Some(intake::outbox::mail::FOUND_IN_SENT))
        .count();
    eprintln!(
        "SIGKILL x{kills}: {MAILS} rows sent, {found} recognised in Sent Items, {} look-ups",
        fake.lookups.load(std::sync::atomic::Ordering::Relaxed)
    );
    assert!(
        found >= 1,
        "some kills hit the window after Graph took the mail"
    );
    store.close().await;
}

/// `intake serve` delivers the outbox: a reply posted through the API (with an attachment) on a
/// running node goes out over Dovecot submission (XOAUTH2) and arrives in the reporter's and
/// the participant's mailboxes once each (read over IMAP), recorded as an outgoing comment; the
/// outbox routes list it as sent, refuse to retry or discard a sent row (409), and discard a
/// failed one with its reason (audited).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_posted_through_the_api_on_a_running_serve_arrives_once() {
    use base64::Engine as _;
    use intake_testkit::sent_relay::SentRelay;
    use std::time::{Duration, Instant};
    let test = "serve_reply_arrives_once";
    let Some(idp) = Idp::start_or_skip(test) else {
        return;
    };
    let relay = SentRelay::start().unwrap();
    let Some(dc) = Dovecot::start_or_skip(
        test,
        &DovecotOptions::with_users(&[
            (USER, "unused"),
            ("jane@customer.example", "pw"),
            ("boss@customer.example", "pw"),
        ])
        .introspect(&idp)
        .submission(relay.port)
        .sent_folder(),
    ) else {
        return;
    };
    relay.deliver_to(dc.lmtp_socket());
    let token = mail_access_token(&idp, USER).await.unwrap();
    let db = TestDb::sqlite();
    let store = Store::connect(&db.url).await.unwrap();
    let keys = Keyring::from_base64(KEY, &[]).unwrap();
    store
        .tokens("")
        .save_token(
            &keys,
            "idp",
            USER,
            &TokenSet {
                access_token: SecretString::from(token),
                refresh_token: None,
                expires_at: now() + 3000,
                scopes: vec!["mail".into()],
                id_token: None,
            },
            &TokenIdentity::default(),
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("intake.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[integration]]\nname = \"idp\"\nprovider = \"custom\"\nclient_id = \"{}\"\nclient_secret = \"env:UNUSED\"\ngrant = \"authorization_code\"\n\
             authorize_url = \"{}\"\ntoken_url = \"{}\"\nscopes = [\"openid\", \"email\", \"mail\"]\n\n\
             [[channel]]\nname = \"support\"\nproject = \"HELP\"\nprotocol = \"imap\"\nhost = \"127.0.0.1\"\nport = {}\nca_file = \"file:{}\"\n\
             mailbox = \"{USER}\"\nauth = \"oauth:idp\"\n\
             [channel.send]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"starttls\"\n",
            idp.client_id,
            idp.authorization_endpoint(),
            idp.token_endpoint(),
            dc.imaps_port,
            dc.ca_path.display(),
            dc.submission_port,
        ),
    )
    .unwrap();
    dc.deliver(
        USER,
        &customer_mail("s1@customer.example", "Printer on fire", "", "It burns."),
    )
    .unwrap();
    crate::serve::create_admin(&db.url, "alice", "a long enough password");
    let api_token = crate::serve::admin_token(&db.url, "alice");
    let node = crate::serve::Node::start(
        &db.url,
        Some(&cfg),
        &[],
        &[
            ("INTAKE_SECRET_KEY", KEY),
            ("UNUSED", "client-secret"),
            ("INTAKE_LEASE_SECONDS", "2"),
        ],
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.ticket("HELP-1").await.unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "serve made no ticket: {}",
            node.stderr.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let c = reqwest::Client::new();
    let r = c
        .post(node.url("/api/tickets/HELP-1/replies"))
        .bearer_auth(&api_token)
        .json(&serde_json::json!({
            "body": "We are on it.",
            "attachments": [{
                "filename": "steps.txt",
                "content_type": "text/plain",
                "data_base64": base64::engine::general_purpose::STANDARD.encode("1. unplug\n"),
            }],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let q: Value = r.json().await.unwrap();
    let message_id = q["message_id"].as_str().unwrap().to_string();
    let mut rcpt: Vec<String> = q["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    rcpt.sort();
    assert_eq!(rcpt, vec!["boss@customer.example", "jane@customer.example"]);
    // Delivered by the node, without any other process.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ids = imap_message_ids(&dc, "jane@customer.example", "INBOX").await;
        if ids.contains(&message_id) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the reply did not arrive: {}",
            node.stderr.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Passes keep running: still once a few seconds later.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for who in ["jane@customer.example", "boss@customer.example"] {
        let ids = imap_message_ids(&dc, who, "INBOX").await;
        assert_eq!(
            ids.iter().filter(|m| **m == message_id).count(),
            1,
            "{who}: {ids:?}"
        );
        assert_eq!(ids.len(), 1, "{who}: nothing else");
    }
    assert_eq!(relay.delivered(), 1);
    let ticket = store.ticket("HELP-1").await.unwrap().unwrap();
    assert!(
        ticket
            .comments
            .iter()
            .any(|c| c.body == "We are on it." && c.author == USER)
    );
    // The outbox over the API.
    let rows: Value = c
        .get(node.url("/api/outbox?state=sent"))
        .bearer_auth(&api_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["identity"] == message_id.as_str())
        .unwrap_or_else(|| panic!("{rows}"))
        .clone();
    assert_eq!(
        (row["kind"].as_str(), row["event"].as_str()),
        (Some("mail"), Some("reply"))
    );
    assert_eq!(row["in_flight_at"], Value::Null);
    let id = row["id"].as_i64().unwrap();
    for action in ["retry", "discard"] {
        let r = c
            .post(node.url(&format!("/api/outbox/{id}/{action}")))
            .bearer_auth(&api_token)
            .json(&serde_json::json!({"reason": "test"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 409, "{action} of a sent row");
    }
    let bad: Value = c
        .get(node.url("/api/outbox?state=nope"))
        .bearer_auth(&api_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bad["error"], "invalid", "{bad}");
    // A failed row: discarded with its reason, audited.
    sqlx::query(
        "INSERT INTO outbox (kind, target, ticket_key, event, identity, message_id, recipient,
             payload, state, attempts, next_at, created_at, last_error)
         VALUES ('webhook', 'gone', NULL, 'ticket.quarantined', 'intake:gone:1', NULL, NULL,
             '{}', 'failed', 1, 0, 0, 'HTTP 400')",
    )
    .execute(store.pool())
    .await
    .unwrap();
    let failed: Value = c
        .get(node.url("/api/outbox?state=failed"))
        .bearer_auth(&api_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let fid = failed[0]["id"].as_i64().unwrap();
    let r = c
        .post(node.url(&format!("/api/outbox/{fid}/discard")))
        .bearer_auth(&api_token)
        .json(&serde_json::json!({"reason": "the sink is gone"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let row = store.outbox_item(fid).await.unwrap().unwrap();
    assert_eq!(row.state, "discarded");
    assert_eq!(
        row.last_error.as_deref(),
        Some("discarded by alice: the sink is gone")
    );
    let audit: Value = c
        .get(node.url("/api/audit"))
        .bearer_auth(&api_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(
        actions.contains(&"outbox_discarded") && actions.contains(&"ticket_replied"),
        "{actions:?}"
    );
    store.close().await;
}

/// The other side of the reconciliation: Graph answers a `sendMail` with 500 (the mail may or
/// may not have gone out, so the row stays in flight), and the mail is not in Sent Items. The
/// next try looks, keeps looking until `sent_copy_wait_seconds` (4) after the interrupted try,
/// then sends it again — once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_send_missing_from_sent_items_goes_again_after_the_wait() {
    use std::time::Duration;
    use wiremock::{Mock, MockServer, matchers};
    let fake = GraphSendFake {
        fail_first: std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(1)),
        ..Default::default()
    };
    let graph = MockServer::start().await;
    Mock::given(matchers::any())
        .respond_with(fake.clone())
        .mount(&graph)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = local_channel(
        dir.path(),
        "transport = \"graph\"\nauth = \"oauth:m365\"\nsent_copy_wait_seconds = 4",
        &format!(
            "[[integration]]\nname = \"m365\"\nprovider = \"microsoft\"\ncloud = \"worldwide\"\ntenant = \"contoso.onmicrosoft.com\"\n\
             client_id = \"11111111-2222-3333-4444-555555555555\"\nclient_secret = \"env:UNUSED\"\nclient_secret_expires = \"2099-01-01\"\n\
             grant = \"authorization_code\"\nauthority_url = \"{0}\"\ngraph_url = \"{0}\"\n\n\
             [[acknowledgement]]\nproject = \"HELP\"\n",
            graph.uri()
        ),
    );
    let db = TestDb::sqlite();
    let store = Store::connect(&db.url).await.unwrap();
    let keys = Keyring::from_base64(KEY, &[]).unwrap();
    store
        .tokens("graph")
        .save_token(
            &keys,
            "m365",
            USER,
            &TokenSet {
                access_token: SecretString::from("graph-token".to_string()),
                refresh_token: None,
                expires_at: now() + 3000,
                scopes: vec!["Mail.Send".into(), "Mail.Read".into()],
                id_token: None,
            },
            &TokenIdentity::default(),
        )
        .await
        .unwrap();
    std::fs::write(
        dir.path().join("md/new/1.eml"),
        from_customer("ann@customer.example", "m1@customer.example", "Question"),
    )
    .unwrap();
    let v: Value =
        serde_json::from_str(run(&cfg, &db.url, &["run", "--once", "--json"]).trim()).unwrap();
    assert_eq!(v["sent"].as_u64(), Some(1), "{v}");
    let rows = store.outbox_since(0).await.unwrap();
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row.state, "sent");
    assert_eq!(row.attempts, 2, "the 500, then the send after the look-up");
    assert_eq!(row.result, None, "sent, not found in Sent Items");
    assert_eq!(row.in_flight_at, None);
    let sent = fake.sent_items.lock().unwrap().clone();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].0, format!("<{}>", row.message_id.clone().unwrap()));
    let lookups = fake.lookups.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        lookups >= 2,
        "looked, and looked again while waiting: {lookups}"
    );
    let posts = fake.posts.lock().unwrap().clone();
    assert_eq!(posts.len(), 2);
    assert!(
        posts[1].duration_since(posts[0]) >= Duration::from_millis(2500),
        "the resend waited for the Sent copy: {:?}",
        posts[1].duration_since(posts[0])
    );
    store.close().await;
}
