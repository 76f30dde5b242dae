//! The channel form of `GET /channels` (new) and `GET /channels/{name}/edit` (edit), posted to
//! `POST /channels` and `POST /channels/{name}/edit`: protocol, server, mailbox, authentication
//! (a password, write-only, or an integration), folder, post-action (a choice of the valid
//! actions, with the target folder of `move`) and first-sync policy.
//!
//! - `action=folders` asks the server, with the values typed, for the mailbox's folders
//!   ([`crate::runner::folders::list`], the library function of `intake folders`) and for the
//!   counts of the chosen folder (the doctor's staged check, counts only), and shows the folders
//!   as a list to choose from and how many messages each first-sync policy would import.
//!   Nothing is saved and nothing is fetched. On the edit form an empty password means the
//!   stored one.
//! - `action=save` creates the channel through serve's `POST /api/channels` handler, or changes
//!   it through `PATCH /api/channels/{name}`: the same validation as the file and the API. Each
//!   problem the validation names is shown next to its field ([`FieldErrors`]).
//!
//! Both work as full-page posts; htmx only keeps the page from reloading.

use serde_json::{Map, Value};

use crate::serve::AppState;
use intake_store::config_store::{ConfigEntry, Kind};

/// The form's fields as typed (the password is never sent back).
#[derive(Debug, Default, Clone, serde::Deserialize)]
pub struct ChannelForm {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub project: String,
    #[serde(default)]
    pub protocol: String,
    #[serde(default)]
    pub host: String,
    #[serde(default)]
    pub port: String,
    #[serde(default)]
    pub tls: String,
    #[serde(default)]
    pub mailbox: String,
    /// `password` or `oauth`.
    #[serde(default)]
    pub auth: String,
    #[serde(default)]
    pub password: String,
    #[serde(default)]
    pub integration: String,
    #[serde(default)]
    pub folder: String,
    /// `mark-read`, `move` or `delete`.
    #[serde(default)]
    pub after: String,
    /// The target folder of `after = "move"`.
    #[serde(default)]
    pub move_to: String,
    #[serde(default)]
    pub start: String,
    #[serde(default)]
    pub action: String,
}

impl ChannelForm {
    /// The defaults a new form shows.
    pub fn new() -> Self {
        Self {
            protocol: "imap".into(),
            tls: "implicit".into(),
            auth: "password".into(),
            folder: "INBOX".into(),
            after: "mark-read".into(),
            start: "unread".into(),
            ..Self::default()
        }
    }

    /// The form filled from a channel's table as the API shows it (secrets redacted: the
    /// password field stays empty, meaning "keep").
    pub fn from_table(name: &str, table: &Value) -> Self {
        let text = |k: &str| match table.get(k) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => String::new(),
        };
        let (after, move_to) = match text("after").as_str() {
            "" => ("mark-read".to_string(), String::new()),
            a => match a.strip_prefix("move:") {
                Some(f) => ("move".to_string(), f.trim().to_string()),
                None => (a.to_string(), String::new()),
            },
        };
        let (auth, integration) = match table.get("auth") {
            Some(Value::String(a)) => match a.strip_prefix("oauth:") {
                Some(i) => ("oauth".to_string(), i.to_string()),
                None => ("password".to_string(), String::new()),
            },
            _ => ("password".to_string(), String::new()),
        };
        let or = |v: String, d: &str| if v.is_empty() { d.to_string() } else { v };
        Self {
            name: name.to_string(),
            project: text("project"),
            protocol: or(text("protocol"), "imap"),
            host: text("host"),
            port: text("port"),
            tls: or(text("tls"), "implicit"),
            mailbox: text("mailbox"),
            auth,
            password: String::new(),
            integration,
            folder: text("folder"),
            after,
            move_to,
            start: or(text("start"), "unread"),
            action: String::new(),
        }
    }

    /// The `after` value: `move:FOLDER` for a move.
    fn after_value(&self) -> String {
        match self.after.as_str() {
            "move" => format!("move:{}", self.move_to.trim()),
            a => a.to_string(),
        }
    }

    /// The `auth` value typed, if any: `oauth:INTEGRATION`, or `password:…` when a password
    /// was typed (as typed: a literal is sealed in the database like every secret; `env:` and
    /// `file:` references work too).
    fn auth_value(&self) -> Option<String> {
        match self.auth.as_str() {
            "oauth" => Some(format!("oauth:{}", self.integration.trim())),
            _ if !self.password.is_empty() => Some(format!("password:{}", self.password)),
            _ => None,
        }
    }

    /// The `port` value: a number, or the text as typed for the validation to name.
    fn port_value(&self) -> Option<Value> {
        let p = self.port.trim();
        if p.is_empty() {
            return None;
        }
        Some(match p.parse::<u16>() {
            Ok(n) => Value::from(n),
            Err(_) => Value::String(p.to_string()),
        })
    }

    /// The `[[channel]]` table the form describes (empty fields left out, so that the loader's
    /// defaults apply).
    pub fn body(&self) -> Value {
        let mut m = Map::new();
        let mut put = |k: &str, v: &str| {
            if !v.trim().is_empty() {
                m.insert(k.into(), Value::String(v.trim().to_string()));
            }
        };
        put("name", &self.name);
        put("project", &self.project.to_ascii_uppercase());
        put("protocol", &self.protocol);
        put("host", &self.host);
        put("tls", &self.tls);
        put("mailbox", &self.mailbox);
        put("folder", &self.folder);
        put("after", &self.after_value());
        put("start", &self.start);
        if let Some(a) = self.auth_value() {
            m.insert("auth".into(), Value::String(a));
        }
        if let Some(p) = self.port_value() {
            m.insert("port".into(), p);
        }
        Value::Object(m)
    }

    /// The change the edit form makes to a stored channel (a JSON merge patch for `PATCH
    /// /api/channels/{name}`): every field of the form, an empty one removed (`null`, so the
    /// loader's default applies, or the validation says it is required); an empty password
    /// keeps the stored one. Keys the form does not show are left as they are.
    pub fn patch(&self) -> Value {
        let mut m = Map::new();
        let mut put = |k: &str, v: String| {
            let v = v.trim().to_string();
            m.insert(
                k.into(),
                if v.is_empty() {
                    Value::Null
                } else {
                    Value::String(v)
                },
            );
        };
        put("project", self.project.to_ascii_uppercase());
        put("protocol", self.protocol.clone());
        put("host", self.host.clone());
        put("tls", self.tls.clone());
        put("mailbox", self.mailbox.clone());
        put("folder", self.folder.clone());
        put("after", self.after_value());
        put("start", self.start.clone());
        m.insert("port".into(), self.port_value().unwrap_or(Value::Null));
        if let Some(a) = self.auth_value() {
            m.insert("auth".into(), Value::String(a));
        }
        Value::Object(m)
    }

    /// Whether the form asks for a password login (IMAP, POP3) with no password typed.
    pub fn password_missing(&self) -> bool {
        matches!(self.protocol.as_str(), "imap" | "pop3")
            && self.auth != "oauth"
            && self.password.is_empty()
    }

    /// Whether the form can show this channel: the server protocols (a Maildir or mbox
    /// channel's `path` is not on it).
    pub fn fits(&self) -> bool {
        matches!(self.protocol.as_str(), "imap" | "pop3" | "graph")
    }

    pub fn protocol_is(&self, p: &str) -> bool {
        self.protocol == p
    }
    pub fn tls_is(&self, t: &str) -> bool {
        self.tls == t
    }
    pub fn auth_is(&self, a: &str) -> bool {
        self.auth == a
    }
    pub fn start_is(&self, s: &str) -> bool {
        self.start == s
    }
    pub fn after_is(&self, a: &str) -> bool {
        self.after == a
    }
    pub fn integration_is(&self, i: &str) -> bool {
        self.integration == i
    }
}

/// The fields a form shows, as the validation names them (`key = …`, `` `key` ``).
const FIELDS: &[&str] = &[
    "name", "project", "protocol", "host", "port", "tls", "mailbox", "auth", "folder", "after",
    "start",
];

/// The problems the validation found, each next to the field it names; the others above the
/// form.
#[derive(Debug, Default, Clone)]
pub struct FieldErrors {
    /// `(field, message)`; `auth` is shown at the password or the integration.
    pub fields: Vec<(String, String)>,
    pub general: Vec<String>,
}

impl FieldErrors {
    /// Split an API error message (`invalid configuration:` and one `- channel "x": key = …:
    /// fix` line per problem, or one sentence) by the field each problem names.
    pub fn from_message(message: &str) -> Self {
        let mut out = FieldErrors::default();
        let lines: Vec<&str> = message
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && *l != "invalid configuration:")
            .collect();
        for line in lines {
            let text = line.trim_start_matches("- ");
            // After the scope (`channel "x": `), the problem starts with its key.
            let problem = match text.find("\": ") {
                Some(i) if text.starts_with("channel \"") => &text[i + 3..],
                _ => text,
            };
            let field = FIELDS.iter().find(|k| {
                problem.starts_with(&format!("{k} = "))
                    || problem.starts_with(&format!("`{k}`"))
                    || problem.starts_with(&format!("channel: `{k}`"))
            });
            match field {
                Some(k) => out.fields.push((k.to_string(), problem.to_string())),
                None if problem.contains("exists already") => {
                    out.fields.push(("name".into(), problem.to_string()))
                }
                None => out.general.push(text.to_string()),
            }
        }
        out
    }

    /// One problem of `field`.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        FieldErrors {
            fields: vec![(field.to_string(), message.into())],
            general: Vec::new(),
        }
    }

    /// The problems of `field`, joined.
    pub fn of(&self, field: &str) -> Option<String> {
        let v: Vec<&str> = self
            .fields
            .iter()
            .filter(|(f, _)| f == field)
            .map(|(_, m)| m.as_str())
            .collect();
        (!v.is_empty()).then(|| v.join(" "))
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty() && self.general.is_empty()
    }
}

/// One folder to choose from.
pub struct FolderOption {
    pub id: String,
    pub name: String,
    pub role: String,
    pub selected: bool,
}

/// What `action=folders` found.
#[derive(Default)]
pub struct Probe {
    pub folders: Vec<FolderOption>,
    /// What each first-sync policy would import from the chosen folder, in words.
    pub counts: Option<String>,
    pub note: Option<String>,
}

/// Resolve the form's channel with the stored configuration, as saving would, then list the
/// mailbox's folders and count the chosen one. An `Err` is the reason, for the form.
pub async fn probe(state: &AppState, mut body: Value) -> Result<Probe, String> {
    let name = match body.get("name").and_then(Value::as_str) {
        Some(n) => n.to_string(),
        None => {
            body["name"] = Value::String("new-channel".into());
            "new-channel".into()
        }
    };
    let mut all = state
        .store
        .config_entries(&state.live.keys)
        .await
        .map_err(|e| e.to_string())?;
    all.retain(|e| !(e.kind == Kind::Channel && e.name == name));
    all.push(ConfigEntry {
        kind: Kind::Channel,
        name: name.clone(),
        body,
        managed_by: "api".into(),
        paused: true,
        updated_at: intake_store::now(),
    });
    let settings = state.live.check(&all).map_err(|e| e.to_string())?;
    let c = settings
        .channel(&name)
        .cloned()
        .ok_or_else(|| "the channel did not resolve".to_string())?;
    let listed = crate::runner::folders::list(&settings, &state.store, &c)
        .await
        .map_err(|e| format!("The server could not list the folders: {e}"))?;
    let chosen = listed.configured_folder().map(|f| f.id.clone());
    let folders = listed
        .folders
        .iter()
        .filter(|f| f.selectable)
        .map(|f| FolderOption {
            id: f.id.clone(),
            name: f.name.clone(),
            role: f.role.map(|r| r.as_str().to_string()).unwrap_or_default(),
            selected: chosen.as_deref() == Some(f.id.as_str()),
        })
        .collect();
    let mut out = Probe {
        folders,
        note: listed.note.clone(),
        counts: None,
    };
    if listed.configured_found {
        let report = crate::runner::doctor::check(&settings, &state.store, &c).await;
        out.counts = report.counts.map(|n| {
            let unread = n
                .unread
                .map_or_else(|| "every one (POP3 has no read flag)".into(), |u| u.to_string());
            format!(
                "{} holds {} messages: a first sync takes {} with \"unread\", {} with \"all\", none with \"now\".",
                listed.configured, n.messages, unread, n.messages
            )
        });
        if !report.ok
            && let Some(s) = report.stages.iter().find(|s| !s.ok)
        {
            out.note = Some(format!("Counting failed at {}: {}", s.stage, s.detail));
        }
    } else {
        out.note = Some(format!(
            "The mailbox has no folder {:?}: choose one from the list (RC5: use the protocol name, never a localized display name).",
            listed.configured
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_leaves_out_empty_fields_and_keeps_the_password_as_typed() {
        let f = ChannelForm {
            name: "help".into(),
            project: "help".into(),
            host: "127.0.0.1".into(),
            port: "1143".into(),
            mailbox: "help@example.test".into(),
            password: "env:HELP_PW".into(),
            ..ChannelForm::new()
        };
        let b = f.body();
        assert_eq!(b["project"], "HELP");
        assert_eq!(b["port"], 1143);
        assert_eq!(b["auth"], "password:env:HELP_PW");
        assert!(b.get("integration").is_none());
        let o = ChannelForm {
            auth: "oauth".into(),
            integration: "idp".into(),
            port: "".into(),
            ..f
        };
        assert_eq!(o.body()["auth"], "oauth:idp");
        assert!(o.body().get("port").is_none());
    }

    #[test]
    fn each_problem_of_the_validation_goes_next_to_its_field() {
        let e = FieldErrors::from_message(
            "invalid configuration:\n  - channel \"dove\": after = \"move:\": use mark-read, move:FOLDER or delete\n  - channel \"dove\": `auth` is required (oauth:INTEGRATION, password:env:VAR or password:file:PATH)\n  - something else entirely",
        );
        assert_eq!(
            e.of("after").as_deref(),
            Some("after = \"move:\": use mark-read, move:FOLDER or delete")
        );
        assert!(e.of("auth").unwrap().starts_with("`auth` is required"));
        assert_eq!(e.general, ["something else entirely"]);
        assert!(e.of("host").is_none());
        let dup = FieldErrors::from_message("a channel named \"dove\" exists already");
        assert!(dup.of("name").is_some() && dup.general.is_empty());
    }

    #[test]
    fn the_edit_form_round_trips_a_table_and_patches_what_it_shows() {
        let table = serde_json::json!({
            "name": "dove", "project": "DOVE", "host": "127.0.0.1", "port": 1143,
            "tls": "none", "mailbox": "help@example.test", "after": "move:Archiv",
            "start": "all", "poll_seconds": 5,
            "auth": {"set": true, "kind": "password"}
        });
        let f = ChannelForm::from_table("dove", &table);
        assert_eq!((f.after.as_str(), f.move_to.as_str()), ("move", "Archiv"));
        assert_eq!(f.port, "1143");
        assert_eq!(f.auth, "password");
        assert!(f.password_missing());
        let p = f.patch();
        assert_eq!(p["after"], "move:Archiv");
        assert_eq!(p["port"], 1143);
        // An empty password keeps the stored one; keys the form does not show stay.
        assert!(p.get("auth").is_none() && p.get("poll_seconds").is_none());
        let cleared = ChannelForm {
            host: String::new(),
            port: "x1".into(),
            password: "new".into(),
            ..f
        };
        let p = cleared.patch();
        assert_eq!(p["host"], serde_json::Value::Null);
        assert_eq!(p["port"], "x1");
        assert_eq!(p["auth"], "password:new");
    }
}
