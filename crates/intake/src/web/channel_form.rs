//! The new-channel form of `GET /channels`, posted to `POST /channels`: protocol, server,
//! mailbox, authentication (a password, write-only, or an integration), folder, post-action and
//! first-sync policy.
//!
//! - `action=folders` asks the server, with the values typed, for the mailbox's folders
//!   ([`crate::runner::folders::list`], the library function of `intake folders`) and for the
//!   counts of the chosen folder (the doctor's staged check, counts only), and shows the folders
//!   as a list to choose from and how many messages each first-sync policy would import.
//!   Nothing is saved and nothing is fetched.
//! - `action=save` creates the channel through serve's `POST /api/channels` handler: the same
//!   validation as the file and the API, its error shown above the form.
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
    #[serde(default)]
    pub after: String,
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
        put("after", &self.after);
        put("start", &self.start);
        match self.auth.as_str() {
            "oauth" => put("auth", &format!("oauth:{}", self.integration.trim())),
            _ if !self.password.is_empty() => {
                // As typed: a literal is sealed in the database like every secret; `env:` and
                // `file:` references work too.
                m.insert(
                    "auth".into(),
                    Value::String(format!("password:{}", self.password)),
                );
            }
            _ => {}
        }
        if let Ok(port) = self.port.trim().parse::<u16>() {
            m.insert("port".into(), Value::from(port));
        }
        Value::Object(m)
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
    pub fn integration_is(&self, i: &str) -> bool {
        self.integration == i
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
pub async fn probe(state: &AppState, form: &ChannelForm) -> Result<Probe, String> {
    let mut body = form.body();
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
}
