//! `intake folders --channel NAME`: a channel whose `folder` is a localized display name fails
//! the doctor with RC5 and a fix naming `intake folders --channel NAME`; the listing shows
//! every folder with its ID and role (IMAP SPECIAL-USE on a real Dovecot with German folder
//! names, through the channel's proxy and with its stored token; Graph well-known names on a
//! fake whose display names are German), and a folder chosen from it passes the doctor.

use intake_testkit::TestDb;
use intake_testkit::dovecot::{Dovecot, DovecotOptions, mail_access_token};
use intake_testkit::idp::Idp;
use intake_testkit::proxy::TinyProxy;

use crate::kit::*;

fn folders_json(cfg: &str, db: &str, channel: &str) -> serde_json::Value {
    let (code, stdout, stderr) =
        intake_with(cfg, db, &["folders", "--channel", channel, "--json"], &[]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"))
}

fn listed<'a>(v: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    v["folders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no folder {name:?} in {v}"))
}

/// IMAP: Dovecot with `Gelöschte Elemente` (\Trash), `Gesendete Elemente` (\Sent), `Entwürfe`
/// (\Drafts), `Junk-E-Mail` (\Junk), `Posteingang-Archiv` (\Archive) and `Aufgaben` (no role),
/// reached over IMAPS through tinyproxy with an OAuth token of the test IdP. `folder =
/// "Posteingang"` fails with RC5; `intake folders` lists the folders (names decoded from
/// modified UTF-7, roles from SPECIAL-USE, INBOX as the inbox) through the same proxy with the
/// same token; the trash folder chosen from the listing passes the doctor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folders_lists_imap_special_use_roles_through_the_channels_proxy_and_token() {
    const USER: &str = "help@example.test";
    let Some(idp) = Idp::start_or_skip("folders_imap") else {
        return;
    };
    let Some(dc) = Dovecot::start_or_skip(
        "folders_imap",
        &DovecotOptions::with_users(&[(USER, "unused")])
            .introspect(&idp)
            .localized(),
    ) else {
        return;
    };
    let Some(proxy) = TinyProxy::start_or_skip("folders_imap") else {
        return;
    };
    let db = TestDb::sqlite();
    let token = mail_access_token(&idp, USER).await.unwrap();
    seed_token(&db.url, "idp", USER, "", &token, None, Default::default()).await;
    let config = |folder: &str| {
        format!(
            "[[integration]]\nname = \"idp\"\nprovider = \"custom\"\nclient_id = \"{}\"\nclient_secret = \"env:M365_SECRET\"\n\
             grant = \"authorization_code\"\nauthorize_url = \"{}\"\ntoken_url = \"{}\"\nscopes = [\"openid\", \"email\", \"mail\"]\n\n\
             [[channel]]\nname = \"support\"\nproject = \"OPS\"\nprotocol = \"imap\"\nhost = \"127.0.0.1\"\nport = {}\n\
             ca_file = \"file:{}\"\nproxy = \"{}\"\nmailbox = \"{USER}\"\nauth = \"oauth:idp\"\nfolder = \"{folder}\"\n",
            idp.client_id,
            idp.authorization_endpoint(),
            idp.token_endpoint(),
            dc.imaps_port,
            dc.ca_path.display(),
            proxy.url,
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), &config("Posteingang"));
    let (code, v, text) = doctor(&cfg, &db.url);
    assert_eq!(code, 1, "{v}");
    let rc5 = finding(&v, "RC5");
    assert_eq!(rc5["severity"], "error", "{rc5}");
    assert!(
        rc5["fix"]
            .as_str()
            .unwrap()
            .contains("`intake folders --channel support`"),
        "the fix names the command with the real channel: {rc5}"
    );
    assert!(!text.contains(&token), "{text}");

    let v = folders_json(&cfg, &db.url, "support");
    assert_eq!(v["channel"], "support", "{v}");
    assert_eq!(v["configured"], "Posteingang", "{v}");
    assert_eq!(v["configured_found"], false, "{v}");
    for (name, role) in [
        ("INBOX", "inbox"),
        ("Gelöschte Elemente", "trash"),
        ("Gesendete Elemente", "sent"),
        ("Entwürfe", "drafts"),
        ("Junk-E-Mail", "junk"),
        ("Posteingang-Archiv", "archive"),
    ] {
        let f = listed(&v, name);
        assert_eq!(f["role"], role, "{f}");
        assert_eq!(f["id"], name, "the IMAP name is what `folder` takes: {f}");
        assert_eq!(f["selectable"], true, "{f}");
    }
    assert!(listed(&v, "Aufgaben")["role"].is_null(), "{v}");
    assert_eq!(
        v["folders"][0]["name"], "INBOX",
        "the inbox is listed first: {v}"
    );
    assert!(
        proxy
            .log()
            .matches(&format!("127.0.0.1:{}", dc.imaps_port))
            .count()
            >= 2,
        "the doctor and the listing both went through the channel's proxy:\n{}",
        proxy.log()
    );
    let (code, stdout, stderr) =
        intake_with(&cfg, &db.url, &["folders", "--channel", "support"], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("NOT among them (RC5)") && stdout.contains("trash    Gelöschte Elemente"),
        "{stdout}"
    );
    assert!(!stdout.contains(&token) && !stderr.contains(&token));

    // The folder chosen from the listing works.
    let trash = listed(&v, "Gelöschte Elemente")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let cfg = write(dir.path(), &config(&trash));
    let (code, v, _) = doctor(&cfg, &db.url);
    assert_eq!(code, 0, "{v}");
    assert!(codes(&v).iter().all(|(_, s)| s != "error"), "{v}");
    let v = folders_json(&cfg, &db.url, "support");
    assert_eq!(v["configured_found"], true, "{v}");
}

const INBOX_ID: &str = "AAMkAGI2TG93AAAAAAEMAAAinbox00000000000000000000000000000=";
const SUPPORT_ID: &str = "AAMkAGI2TG93AAAAAAEMAAAsupport000000000000000000000000000=";

fn german_mailbox() -> Vec<FakeFolder> {
    let f = |id, name, parent, well_known, total| FakeFolder {
        id,
        name,
        parent,
        well_known,
        total,
    };
    vec![
        f(INBOX_ID, "Posteingang", None, Some("inbox"), 3),
        f(SUPPORT_ID, "Support", Some(INBOX_ID), None, 7),
        f(
            "AAMkAGI2TG93AAAAAAEMAAAsent0000000000000000000000000000000=",
            "Gesendete Elemente",
            None,
            Some("sentitems"),
            0,
        ),
        f(
            "AAMkAGI2TG93AAAAAAEMAAAdeleted00000000000000000000000000000=",
            "Gelöschte Elemente",
            None,
            Some("deleteditems"),
            0,
        ),
        f(
            "AAMkAGI2TG93AAAAAAEMAAAarchive00000000000000000000000000000=",
            "Archiv",
            None,
            Some("archive"),
            0,
        ),
        f(
            "AAMkAGI2TG93AAAAAAEMAAAdrafts000000000000000000000000000000=",
            "Entwürfe",
            None,
            Some("drafts"),
            0,
        ),
        f(
            "AAMkAGI2TG93AAAAAAEMAAAtasks0000000000000000000000000000000=",
            "Aufgaben",
            None,
            None,
            0,
        ),
    ]
}

/// Graph: a mailbox whose display names are German (`Posteingang` is the inbox). `folder =
/// "Posteingang"` fails with RC5 and a fix naming `intake folders --channel helpdesk`; the
/// listing (pages of two, a child folder) gives each folder's ID, display path and role, the
/// roles from Graph's well-known names (`junkemail`, which this mailbox lacks, is left out);
/// the child folder's ID chosen from it passes the doctor. A POP3 channel says it has only
/// the inbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folders_lists_graph_folders_with_well_known_roles_and_localized_names() {
    const M: &str = "help@contoso.example";
    let login = token_endpoint(
        200,
        serde_json::json!({"token_type": "Bearer", "expires_in": 3600, "access_token": graph_app_token()}),
    )
    .await;
    let (graph, _) =
        graph_fake_with(M, &graph_app_token(), 3, Vec::new(), german_mailbox(), None).await;
    let config = |folder: &str| {
        format!(
            "{}{}[[channel]]\nname = \"pop\"\nproject = \"PO\"\nprotocol = \"pop3\"\nhost = \"127.0.0.1\"\nport = {}\n\
             tls = \"none\"\nmailbox = \"{M}\"\nauth = \"password:env:POP_PW\"\n",
            integration(
                &login.uri(),
                &format!(
                    "client_secret = \"env:M365_SECRET\"\ngrant = \"client_credentials\"\ngraph_url = \"{}\"",
                    graph.uri()
                )
            ),
            graph_channel(M, &format!("folder = \"{folder}\"")),
            closed_port(),
        )
    };
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), &config("Posteingang"));
    let (code, stdout, stderr) = intake_with(
        &cfg,
        &db.url,
        &["doctor", "--json", "--channel", "helpdesk"],
        &[],
    );
    assert_eq!(code, 1, "{stdout}{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let rc5 = finding(&v, "RC5");
    assert_eq!(rc5["severity"], "error", "{rc5}");
    assert!(
        rc5["fix"]
            .as_str()
            .unwrap()
            .contains("`intake folders --channel helpdesk`"),
        "{rc5}"
    );

    let v = folders_json(&cfg, &db.url, "helpdesk");
    assert_eq!(v["protocol"], "graph", "{v}");
    assert_eq!(v["configured_found"], false, "{v}");
    assert_eq!(v["folders"].as_array().unwrap().len(), 7, "{v}");
    let inbox = listed(&v, "Posteingang");
    assert_eq!(inbox["id"], INBOX_ID, "{inbox}");
    assert_eq!(inbox["role"], "inbox", "{inbox}");
    assert_eq!(inbox["well_known"], "inbox", "{inbox}");
    assert_eq!(inbox["messages"], 3, "{inbox}");
    for (name, role, wk) in [
        ("Gesendete Elemente", "sent", "sentitems"),
        ("Gelöschte Elemente", "trash", "deleteditems"),
        ("Archiv", "archive", "archive"),
        ("Entwürfe", "drafts", "drafts"),
    ] {
        let f = listed(&v, name);
        assert_eq!(f["role"], role, "{f}");
        assert_eq!(f["well_known"], wk, "{f}");
    }
    let support = listed(&v, "Posteingang/Support");
    assert_eq!(support["id"], SUPPORT_ID, "{support}");
    assert!(support["role"].is_null(), "{support}");
    assert!(listed(&v, "Aufgaben")["role"].is_null());
    assert!(
        v["folders"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["role"] != "junk"),
        "{v}"
    );
    let (code, stdout, _) = intake_with(&cfg, &db.url, &["folders", "--channel", "helpdesk"], &[]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains(&format!("Posteingang/Support  id {SUPPORT_ID}")),
        "{stdout}"
    );
    assert!(!stdout.contains(SECRET) && !stdout.contains(&graph_app_token()));

    let (code, stdout, stderr) = intake_with(&cfg, &db.url, &["folders", "--channel", "pop"], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("POP3 has only the inbox"), "{stdout}");

    // The child folder chosen by its ID.
    let cfg = write(dir.path(), &config(SUPPORT_ID));
    let (code, stdout, stderr) = intake_with(
        &cfg,
        &db.url,
        &["doctor", "--json", "--channel", "helpdesk"],
        &[],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v[0]["counts"]["messages"], 7, "{v}");
    let v = folders_json(&cfg, &db.url, "helpdesk");
    assert_eq!(v["configured_found"], true, "{v}");

    // Without a token (a delegated integration nobody authorized): the listing fails with
    // the doctor's diagnosis and the command that fixes it, and Graph is not asked.
    let before = graph.received_requests().await.unwrap().len();
    let cfg = write(
        dir.path(),
        &config(SUPPORT_ID).replace("grant = \"client_credentials\"\n", ""),
    );
    let fresh = TestDb::sqlite();
    let (code, stdout, stderr) =
        intake_with(&cfg, &fresh.url, &["folders", "--channel", "helpdesk"], &[]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stderr.contains("TOKEN_MISSING")
            && stderr.contains(&format!("intake authorize m365 --mailbox {M}")),
        "{stderr}"
    );
    assert_eq!(graph.received_requests().await.unwrap().len(), before);
}

/// An empty password is refused at once, naming where it came from, before anything is sent
/// to the server (`intake folders` and the web UI's folder picker share the listing); a wrong
/// one fails fast with the server's words. (A listing with an empty password once looked like
/// a hang of more than 60 s in the browser test: that was the test waiting 60 s for a count
/// while the page showed the error.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folders_refuses_an_empty_password_at_once_and_a_wrong_one_fails_fast() {
    const USER: &str = "help@example.test";
    let Some(dc) = Dovecot::start_or_skip(
        "folders_empty_password",
        &DovecotOptions::with_users(&[(USER, "s3cret")]),
    ) else {
        return;
    };
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("intake.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[channel]]\nname = \"e\"\nproject = \"HELP\"\nhost = \"127.0.0.1\"\nport = {}\n\
             tls = \"none\"\nmailbox = \"{USER}\"\nauth = \"password:env:CHANNEL_PW\"\n",
            dc.imap_port
        ),
    )
    .unwrap();
    let cfg = cfg.display().to_string();
    let list = |pw: &str| {
        let t = std::time::Instant::now();
        let (code, stdout, stderr) = intake_with(
            &cfg,
            &db.url,
            &["folders", "--channel", "e", "--json"],
            &[("CHANNEL_PW", pw)],
        );
        (code, format!("{stdout}{stderr}"), t.elapsed())
    };
    let (code, out, took) = list("");
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("the password from environment variable CHANNEL_PW is empty"),
        "{out}"
    );
    assert!(took < std::time::Duration::from_secs(10), "took {took:?}");
    assert!(
        !dc.log().contains("auth failed"),
        "an empty password reached the server:\n{}",
        dc.log()
    );
    let (code, out, took) = list("wrong");
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("[AUTHENTICATIONFAILED]"), "{out}");
    assert!(took < std::time::Duration::from_secs(10), "took {took:?}");
    let (code, out, _) = list("s3cret");
    assert_eq!(code, 0, "{out}");
}
