//! The folders of a channel's mailbox (`intake folders`, and the web UI's folder picker): the
//! channel's own settings, token and proxy, exactly as `intake run` and `intake doctor` use
//! them ([`super::open`]), then the protocol's listing ([`intake_mail::source::folders`]).
//!
//! The channel's configured `folder` is not needed to list, so a channel whose folder does not
//! exist (RC5) can still list and choose. POP3 has one maildrop, the inbox: nothing is
//! contacted. The whole listing is bounded like a `connect` stage (4 × `timeout_seconds`).

use intake_mail::source::SourceError;
use intake_mail::source::folders::{Folder, FolderRole};
use intake_store::Store;
use serde::Serialize;

use super::RunError;
use super::open::{self, Source};
use crate::settings::{ChannelSettings, Settings, SourceSettings};

/// The folders of one channel's mailbox.
#[derive(Debug, Clone, Serialize)]
pub struct ChannelFolders {
    pub channel: String,
    pub protocol: String,
    /// The channel's `folder` as configured (IMAP default `INBOX`, Graph default `inbox`).
    pub configured: String,
    /// Whether a listed folder is the configured one (`false` on IMAP/Graph: RC5).
    pub configured_found: bool,
    pub folders: Vec<Folder>,
    /// What else to know (POP3: only the inbox).
    pub note: Option<String>,
}

impl ChannelFolders {
    /// The listed folder the channel's `folder` names, if any.
    pub fn configured_folder(&self) -> Option<&Folder> {
        let want = self.configured.trim();
        self.folders.iter().find(|f| {
            f.id == want
                || (f.role == Some(FolderRole::Inbox) && want.eq_ignore_ascii_case("inbox"))
                || f.well_known
                    .as_deref()
                    .is_some_and(|w| w.eq_ignore_ascii_case(want))
        })
    }
}

/// List the folders of channel `c`'s mailbox.
pub async fn list(
    settings: &Settings,
    store: &Store,
    c: &ChannelSettings,
) -> Result<ChannelFolders, RunError> {
    let unit = c.timeout.unwrap_or(std::time::Duration::from_secs(
        crate::settings::DEFAULT_TIMEOUT_SECONDS,
    ));
    let bound = super::drain::Bounds::new(unit).stage;
    match tokio::time::timeout(bound, listing(settings, store, c)).await {
        Ok(r) => r,
        Err(_) => Err(RunError::Timeout {
            stage: super::Stage::Connect,
            after: bound,
        }),
    }
}

async fn listing(
    settings: &Settings,
    store: &Store,
    c: &ChannelSettings,
) -> Result<ChannelFolders, RunError> {
    let source = |error| RunError::Source {
        stage: super::Stage::Connect,
        error,
    };
    let (configured, folders, note) = match &c.source {
        SourceSettings::Imap(s) => {
            let imap = open::imap_settings(settings, store, c, s).await?;
            let folders = intake_mail::source::imap::list_folders(&imap)
                .await
                .map_err(source)?;
            (s.folder.clone(), folders, None)
        }
        SourceSettings::Pop3(_) => (
            "INBOX".to_string(),
            vec![Folder {
                id: "INBOX".into(),
                name: "INBOX".into(),
                role: Some(FolderRole::Inbox),
                well_known: None,
                selectable: true,
                messages: None,
                unread: None,
            }],
            Some(
                "POP3 has only the inbox (one maildrop): a POP3 channel has no `folder`; use \
                 protocol = \"imap\" or \"graph\" to read another folder"
                    .to_string(),
            ),
        ),
        SourceSettings::Graph(g) => {
            // Opened on the inbox: the configured folder may be the very name that is wrong.
            let mut on_inbox = g.clone();
            on_inbox.folder = String::new();
            let folders = match open::open_graph(settings, store, c, &on_inbox).await? {
                Source::Graph(mut src, _) => src
                    .folders()
                    .await
                    .map_err(|e| source(SourceError::from(e)))?,
                _ => {
                    return Err(RunError::Unsupported(SourceError::Unsupported(
                        "not a Graph source".into(),
                    )));
                }
            };
            let configured = if g.folder.trim().is_empty() {
                "inbox".to_string()
            } else {
                g.folder.clone()
            };
            (configured, folders, None)
        }
        SourceSettings::Maildir(_) | SourceSettings::Mbox(_) => {
            return Err(RunError::Unsupported(SourceError::Unsupported(format!(
                "a {} channel reads a local path: it has no server folders",
                c.protocol().as_str()
            ))));
        }
    };
    let mut out = ChannelFolders {
        channel: c.name.clone(),
        protocol: c.protocol().as_str().to_string(),
        configured,
        configured_found: false,
        folders,
        note,
    };
    out.configured_found = out.configured_folder().is_some();
    Ok(out)
}
