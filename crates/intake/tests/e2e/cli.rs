use intake_testkit::TestDb;
use serde_json::Value;

use crate::{intake, ok, repo};

fn samples() -> String {
    repo().join("samples/mail").display().to_string()
}

#[test]
fn ingest_json_is_exactly_one_object_with_the_five_counters() {
    let db = TestDb::sqlite();
    let out = ok(intake()
        .args(["ingest", "--db", &db.url, "--json", &samples()])
        .output()
        .unwrap());
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "one line of JSON on stdout: {out}");
    let v: Value = serde_json::from_str(lines[0]).unwrap();
    let obj = v.as_object().unwrap();
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "commented",
            "created",
            "duplicate",
            "ignored",
            "quarantined",
            "send_failed",
            "sent"
        ]
    );
    assert_eq!(v["created"], 3);
    assert_eq!(v["commented"], 2);
    assert_eq!(v["ignored"], 3);
    assert_eq!(v["quarantined"], 1);
    // Again: everything is a duplicate, nothing changes.
    let again = ok(intake()
        .args(["ingest", "--db", &db.url, "--json", &samples()])
        .output()
        .unwrap());
    let v: Value = serde_json::from_str(again.trim()).unwrap();
    assert_eq!(
        (v["duplicate"].as_u64(), v["created"].as_u64()),
        (Some(9), Some(0))
    );
}

#[test]
fn tickets_list_and_show_json_contract() {
    let db = TestDb::sqlite();
    let cfg = repo().join("samples/intake.toml").display().to_string();
    ok(intake()
        .args(["--config", &cfg, "ingest", "--db", &db.url, &samples()])
        .output()
        .unwrap());
    let list: Value = serde_json::from_str(&ok(intake()
        .args([
            "tickets",
            "list",
            "--db",
            &db.url,
            "--project",
            "HELP",
            "--json",
        ])
        .output()
        .unwrap()))
    .unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 3);
    for t in list {
        for k in [
            "key",
            "summary",
            "reporter",
            "status",
            "participants",
            "comments",
            "attachments",
        ] {
            assert!(t.get(k).is_some(), "field {k} missing in {t}");
        }
        assert!(t["participants"].is_array());
    }
    let vpn = &list[0];
    assert_eq!(vpn["key"], "HELP-1");
    assert_eq!(vpn["summary"], "VPN drops every 10 minutes");
    assert_eq!(vpn["reporter"], "jane.doe@customer.example");
    assert_eq!(vpn["comments"], 2);
    assert_eq!(
        vpn["participants"],
        serde_json::json!(["max@customer.example"]),
        "own address excluded"
    );
    let jp = list
        .iter()
        .find(|t| t["attachments"] == 1)
        .expect("ticket with the inline image");
    assert_eq!(jp["summary"], "プリンタが使えません");

    let show: Value = serde_json::from_str(&ok(intake()
        .args(["tickets", "show", "help-1", "--db", &db.url, "--json"])
        .output()
        .unwrap()))
    .unwrap();
    assert_eq!(show["key"], "HELP-1");
    let comments = show["comments"].as_array().unwrap();
    assert_eq!(
        comments[0]["body"],
        "It also happens on my colleague's laptop."
    );
    assert_eq!(
        comments[1]["body"], "Same here \u{2013} every 10 minutes.",
        "windows-1252 decoded, Outlook quote cut"
    );
    let text = ok(intake()
        .args([
            "tickets",
            "show",
            jp["key"].as_str().unwrap(),
            "--db",
            &db.url,
        ])
        .output()
        .unwrap());
    assert!(text.contains("attachment: screen.png"), "{text}");
    let missing = intake()
        .args(["tickets", "show", "HELP-99", "--db", &db.url])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
}

#[test]
fn database_url_from_environment_and_config_file_and_flag_precedence() {
    let dir = tempfile::tempdir().unwrap();
    let env_db = TestDb::sqlite();
    let file_db = TestDb::sqlite();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!("database_url = \"{}\"\nproject = \"OPS\"\n", file_db.url),
    )
    .unwrap();
    let c = cfg.display().to_string();
    // File only.
    ok(intake()
        .args(["--config", &c, "ingest", &samples()])
        .output()
        .unwrap());
    let l = ok(intake()
        .args(["--config", &c, "tickets", "list", "--json"])
        .output()
        .unwrap());
    assert!(l.contains("\"OPS-1\""), "{l}");
    // Environment beats the file.
    ok(intake()
        .args(["--config", &c, "ingest", &samples()])
        .env("INTAKE_DATABASE_URL", &env_db.url)
        .output()
        .unwrap());
    let l = ok(intake()
        .args(["tickets", "list", "--json", "--db", &env_db.url])
        .output()
        .unwrap());
    assert!(l.contains("\"OPS-1\""), "{l}");
    // A typo in the file is an error naming the key.
    std::fs::write(&cfg, "databse_url = \"x\"\n").unwrap();
    let bad = intake()
        .args(["--config", &c, "tickets", "list"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("databse_url"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

#[test]
fn zero_byte_and_junk_files_are_quarantined_and_logged_not_dropped() {
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("empty.eml"), b"").unwrap();
    std::fs::write(
        dir.path().join("junk.bin"),
        (0..4096u32)
            .map(|i| (i * 7919 % 251) as u8)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("nofrom.eml"),
        b"Subject: who am I\r\n\r\nbody\r\n",
    )
    .unwrap();
    let out = ok(intake()
        .args([
            "ingest",
            "--db",
            &db.url,
            "--json",
            dir.path().to_str().unwrap(),
        ])
        .output()
        .unwrap());
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["quarantined"], 3, "{v}");
    let log: Value = serde_json::from_str(&ok(intake()
        .args(["log", "--db", &db.url, "--json"])
        .output()
        .unwrap()))
    .unwrap();
    let reasons: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "quarantined")
        .filter_map(|e| e["message"].as_str())
        .collect();
    assert_eq!(reasons.len(), 3, "{log}");
    assert!(
        reasons.iter().any(|r| r.contains("empty message")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("no sender")),
        "{reasons:?}"
    );
}

#[test]
fn mbox_from_lines_are_unescaped() {
    let db = TestDb::sqlite();
    let mbox = repo()
        .join("samples/mail/archive.mbox")
        .display()
        .to_string();
    ok(intake()
        .args(["ingest", "--db", &db.url, &mbox])
        .output()
        .unwrap());
    let t: Value = serde_json::from_str(&ok(intake()
        .args(["tickets", "show", "HELP-1", "--db", &db.url, "--json"])
        .output()
        .unwrap()))
    .unwrap();
    let d = t["description"].as_str().unwrap();
    assert!(
        d.contains("Rechnung für September ist nicht angekommen"),
        "{d}"
    );
    assert!(d.contains("\nFrom our records"), "{d}");
}

/// The whole configuration is checked at load, for every command: a bad channel value fails
/// `intake tickets list` (which never opens a channel) at once, naming the channel and the key,
/// and every bad value is listed, not just the first.
#[test]
fn a_bad_channel_value_fails_every_command_at_load_naming_the_key() {
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(
        &cfg,
        "[[channel]]\nname = \"support\"\nproject = \"HELP\"\nhost = \"mail.example.com\"\nmailbox = \"help@example.com\"\nauth = \"password:env:PW\"\nmode = \"pol\"\ntls = \"startls\"\n",
    )
    .unwrap();
    let cfg = cfg.display().to_string();
    for args in [
        vec!["tickets", "list"],
        vec!["log"],
        vec!["run", "--once"],
        vec!["doctor"],
    ] {
        let out = intake()
            .args(["--config", &cfg, "--db", &db.url])
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("channel \"support\": mode = \"pol\": use push or poll")
                && err.contains(
                    "channel \"support\": tls = \"startls\": use implicit, starttls or none"
                ),
            "{args:?}: {err}"
        );
        assert!(out.stdout.is_empty(), "{args:?}: nothing ran");
    }
}

/// Issue 10, defect 7, through the CLI: a reply from a stranger becomes a new ticket that
/// `intake tickets show` lists as related (text and JSON), the reporter's reply comments,
/// `reply_policy = "anyone"` restores commenting, and a bad value is an error naming the key.
#[test]
fn a_strangers_reply_becomes_a_linked_ticket_and_reply_policy_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let mail = dir.path().join("mail");
    std::fs::create_dir(&mail).unwrap();
    let msg = |name: &str, from: &str, subject: &str, minute: u32, extra: &str| {
        std::fs::write(
            mail.join(name),
            format!(
                "From: {from}\r\nTo: help@example.com\r\nSubject: {subject}\r\n\
                 Date: Mon, 02 Nov 2026 10:{minute:02}:00 +0000\r\nMessage-ID: <{name}@x>\r\n{extra}\r\nbody of {name}\r\n"
            ),
        )
        .unwrap();
    };
    msg("p1.eml", "jane@customer.example", "Printer on fire", 0, "");
    msg(
        "p2.eml",
        "eve@evil.example",
        "Re: Printer on fire",
        5,
        "In-Reply-To: <p1.eml@x>\r\n",
    );
    msg(
        "p3.eml",
        "jane@customer.example",
        "Re: [HELP-1] Printer on fire",
        10,
        "",
    );
    let path = mail.display().to_string();
    let db = TestDb::sqlite();
    let out = ok(intake()
        .args(["ingest", "--db", &db.url, "--json", &path])
        .output()
        .unwrap());
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (v["created"].as_u64(), v["commented"].as_u64()),
        (Some(2), Some(1)),
        "{out}"
    );
    let show = |key: &str, json: bool| {
        let mut args = vec!["tickets", "show", key, "--db", &db.url];
        if json {
            args.push("--json");
        }
        ok(intake().args(&args).output().unwrap())
    };
    let h1: Value = serde_json::from_str(&show("HELP-1", true)).unwrap();
    assert_eq!(h1["comments"].as_array().unwrap().len(), 1);
    assert_eq!(
        h1["related"],
        serde_json::json!([{"key": "HELP-2", "relation": "followed_by"}])
    );
    let text = show("HELP-2", false);
    assert!(text.contains("related: follows up HELP-1"), "{text}");

    let cfg = dir.path().join("intake.toml");
    std::fs::write(&cfg, "[rules]\nreply_policy = \"anyone\"\n").unwrap();
    let cfg = cfg.display().to_string();
    let db2 = TestDb::sqlite();
    let out = ok(intake()
        .args([
            "--config", &cfg, "ingest", "--db", &db2.url, "--json", &path,
        ])
        .output()
        .unwrap());
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (v["created"].as_u64(), v["commented"].as_u64()),
        (Some(1), Some(2)),
        "{out}"
    );

    std::fs::write(&cfg, "[rules]\nreply_policy = \"everyone\"\n").unwrap();
    let out = intake()
        .args(["--config", &cfg, "ingest", "--db", &db2.url, &path])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("reply_policy") && err.contains("everyone"),
        "{err}"
    );
}
