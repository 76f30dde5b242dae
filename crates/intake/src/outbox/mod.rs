//! Delivering the outbox (the table and its protocol: `intake_store::outbox`).
//!
//! - [`effects`]: what a channel's batches enqueue (its project's `[[sink]]`s and
//!   acknowledgement) and the keys that recognise Intake's own mail;
//! - [`Deliverer::pass`]: claim due rows with a lease (any node), send each through its
//!   transport, record the outcome: sent; a transient failure tried again after [`backoff`]
//!   (1, 2, 4, 8, 16 s: six tries within the first 31 s, then slower, at most hourly); a
//!   permanent failure (or [`MAX_ATTEMPTS`] transient ones) kept with its diagnosis and an
//!   `outbox_failed` alert in the mail log;
//! - [`settle`]: what `intake run --once` and `intake ingest` do before they return: deliver the
//!   rows they created until each is sent or failed, or its next try is more than
//!   [`SETTLE_BUDGET`] away (it stays pending for later runs and counts as `send_failed`);
//! - [`run_forever`]: what `intake run` does beside its channels; [`deliver_forever`]: the
//!   same on the live configuration of `intake serve`, on every node;
//! - [`reply`]: a reply from a ticket (`intake reply`, `POST /api/tickets/{key}/replies`).

pub mod config;
pub mod doctor;
pub mod mail;
pub mod reply;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use intake_core::ProjectKey;
use intake_mail::send::SendError;
use intake_mail::send::jira::{Jira, JiraAuth};
use intake_mail::send::webhook::Webhook;
use intake_store::{OutboxItem, OutboxKind, SinkRoute, Store, StoreError, now};
use tokio::sync::watch;

use crate::pipeline::{Effects, SentKeys};
use crate::settings::{ChannelSettings, Settings};
use config::{SinkKind, SinkSettings};

/// After this many failed tries a row is failed for good.
pub const MAX_ATTEMPTS: i64 = 30;

/// How long `run --once` / `ingest` keep retrying the rows they created.
pub const SETTLE_BUDGET: Duration = Duration::from_secs(60);

/// How long a claimed row is held before another node may take it.
/// Rows of one pass are sent one after another, each within its transport's bound (at most
/// [`config::MAX_TIMEOUT_SECONDS`]), so a pass ends well within the lease.
const CLAIM_LEASE: Duration = Duration::from_secs(300);

/// Rows claimed per pass.
const CLAIM_BATCH: i64 = 4;

/// The wait before the next try after `attempts` failed ones: 1, 2, 4, 8, 16 s, then 1, 2, 4 …
/// minutes, at most an hour.
pub fn backoff(attempts: i64) -> Duration {
    match attempts {
        ..=0 => Duration::from_secs(1),
        1..=5 => Duration::from_secs(1 << (attempts - 1)),
        n => Duration::from_secs((60u64 << (n - 6).min(6)).min(3600)),
    }
}

/// What `c`'s batches enqueue (its project's sinks and acknowledgement) and the keys that
/// recognise Intake's own mail.
pub fn effects(
    settings: &Settings,
    c: &ChannelSettings,
) -> Result<Effects, intake_store::CryptoError> {
    let acknowledge = match (
        settings.outbox.acknowledgements.get(c.project.as_str()),
        settings.outbox.send.get(&c.name),
    ) {
        (Some(a), Some(s)) => Some(intake_store::Acknowledge {
            channel: c.name.clone(),
            from: s.from.clone(),
            subject: a.subject.clone(),
            body: a.body.clone(),
            max_per_hour: a.max_per_hour,
            domain: s.domain.clone(),
        }),
        _ => None,
    };
    Ok(Effects {
        sinks: sink_routes(settings, &c.project),
        acknowledge,
        sent_keys: SentKeys::load(&settings.config.secret_key_file())?,
    })
}

/// The `[[sink]]`s of `project` as the apply engine routes events to them.
pub fn sink_routes(settings: &Settings, project: &ProjectKey) -> Vec<SinkRoute> {
    settings
        .outbox
        .sinks
        .iter()
        .filter(|s| s.project == *project)
        .map(|s| SinkRoute {
            name: s.name.clone(),
            kind: match s.kind {
                SinkKind::Webhook => OutboxKind::Webhook,
                SinkKind::Jira { .. } => OutboxKind::Jira,
            },
            events: s.events.clone(),
        })
        .collect()
}

/// Sends claimed rows; keeps one client per target.
pub struct Deliverer {
    settings: Settings,
    store: Store,
    owner: String,
    webhooks: HashMap<String, Webhook>,
    jiras: HashMap<String, Jira>,
    sent_key: Option<Vec<u8>>,
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pass {
    pub claimed: usize,
    pub sent: usize,
    pub retried: usize,
    pub failed: usize,
}

impl Deliverer {
    pub fn new(settings: &Settings, store: &Store) -> Self {
        Self {
            settings: settings.clone(),
            store: store.clone(),
            owner: intake_store::node_id(),
            webhooks: HashMap::new(),
            jiras: HashMap::new(),
            sent_key: None,
        }
    }

    /// Claim due rows with `id > after` and deliver them, in id order.
    pub async fn pass(&mut self, after: i64) -> Result<Pass, StoreError> {
        for owner in self.store.outbox_lease_owners().await? {
            if owner_is_dead(&owner, &self.owner) {
                let n = self.store.outbox_release_owner(&owner).await?;
                tracing::info!(%owner, rows = n, "freed the outbox rows of a process that is gone");
            }
        }
        let rows = self
            .store
            .claim_outbox(&self.owner, CLAIM_LEASE, CLAIM_BATCH, after)
            .await?;
        let mut p = Pass {
            claimed: rows.len(),
            ..Pass::default()
        };
        for row in rows {
            match self.send(&row).await {
                Ok(result) => {
                    self.store
                        .outbox_sent(row.id, &self.owner, result.as_deref())
                        .await?;
                    p.sent += 1;
                    tracing::info!(id = row.id, target = %row.target, event = %row.event, "outbox row delivered");
                }
                Err(SendError::Transient {
                    message,
                    retry_after,
                }) if row.attempts + 1 < MAX_ATTEMPTS => {
                    let wait = backoff(row.attempts + 1).max(retry_after.unwrap_or_default());
                    let next = now().saturating_add(wait.as_secs().max(1) as i64);
                    tracing::warn!(id = row.id, target = %row.target, error = %message, retry_in_s = wait.as_secs(), "outbox row not delivered; will retry");
                    self.store
                        .outbox_retry(row.id, &self.owner, &message, next)
                        .await?;
                    p.retried += 1;
                }
                Err(e) => {
                    let message = match &e {
                        SendError::Transient { message, .. } => {
                            format!("{message} (gave up after {MAX_ATTEMPTS} tries)")
                        }
                        SendError::Permanent(m) => m.clone(),
                    };
                    tracing::error!(id = row.id, target = %row.target, error = %message, "outbox row failed");
                    self.store
                        .outbox_failed(row.id, &self.owner, &message)
                        .await?;
                    p.failed += 1;
                }
            }
        }
        Ok(p)
    }

    /// Send one row. `Ok(Some(..))`: something to keep (a tracker's key).
    async fn send(&mut self, row: &OutboxItem) -> Result<Option<String>, SendError> {
        match OutboxKind::parse(&row.kind) {
            Ok(OutboxKind::Webhook) => {
                let hook = self.webhook(&row.target)?;
                hook.post(&row.event, &row.identity, &row.payload).await?;
                Ok(None)
            }
            Ok(OutboxKind::Mail) => {
                let key = self.sent_key()?;
                mail::send(&self.settings, &self.store, row, &key, &self.owner).await
            }
            Ok(OutboxKind::Jira) => {
                let jira = self.jira(&row.target)?;
                // From the first call on, a repeat must look before it creates.
                if !self
                    .store
                    .outbox_in_flight(row.id, &self.owner)
                    .await
                    .map_err(|e| SendError::transient(e.to_string()))?
                {
                    return Err(SendError::transient(
                        "the row's claim lapsed before the send; another node has it",
                    ));
                }
                jira_send(&jira, &self.store, row).await
            }
            Err(e) => Err(SendError::Permanent(e.to_string())),
        }
    }

    /// The key of the own-mail mark (the current key of the store's keyring; the key file is
    /// created on first use like for tokens).
    fn sent_key(&mut self) -> Result<Vec<u8>, SendError> {
        if let Some(k) = &self.sent_key {
            return Ok(k.clone());
        }
        let ring = intake_store::Keyring::from_env_or_file(&self.settings.config.secret_key_file())
            .map_err(|e| SendError::Permanent(format!("the store's key: {e}")))?;
        let k = ring
            .sent_mail_keys()
            .first()
            .map(|k| k.to_vec())
            .unwrap_or_default();
        self.sent_key = Some(k.clone());
        Ok(k)
    }

    fn sink(&self, name: &str) -> Result<&SinkSettings, SendError> {
        self.settings
            .outbox
            .sinks
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| {
                SendError::Permanent(format!(
                    "sink {name:?} is not in the configuration any more; retry the row after adding it back, or discard it"
                ))
            })
    }

    fn jira(&mut self, name: &str) -> Result<Jira, SendError> {
        if let Some(j) = self.jiras.get(name) {
            return Ok(j.clone());
        }
        let s = self.sink(name)?.clone();
        let SinkKind::Jira {
            project,
            issue_type,
            email,
        } = &s.kind
        else {
            return Err(SendError::Permanent(format!(
                "sink {name:?} is not a Jira sink"
            )));
        };
        let secret = intake_mail::secret::resolve(&s.secret)
            .map_err(|e| SendError::transient(format!("sink {name:?} secret: {e}")))?;
        let client = intake_mail::http::client(&intake_mail::http::HttpOptions {
            timeout: Some(s.timeout),
            ..Default::default()
        })
        .map_err(|e| SendError::Permanent(format!("sink {name:?}: {e}")))?;
        let j = Jira {
            client,
            base: s.url.clone(),
            auth: match email {
                Some(e) => JiraAuth::Cloud {
                    email: e.clone(),
                    token: secret,
                },
                None => JiraAuth::Pat(secret),
            },
            project: project.clone(),
            issue_type: issue_type.clone(),
        };
        self.jiras.insert(name.to_string(), j.clone());
        Ok(j)
    }

    fn webhook(&mut self, name: &str) -> Result<Webhook, SendError> {
        if let Some(w) = self.webhooks.get(name) {
            return Ok(w.clone());
        }
        let s = self.sink(name)?.clone();
        let secret = intake_mail::secret::resolve(&s.secret)
            .map_err(|e| SendError::transient(format!("sink {name:?} secret: {e}")))?;
        let client = intake_mail::http::client(&intake_mail::http::HttpOptions {
            timeout: Some(s.timeout),
            ..Default::default()
        })
        .map_err(|e| SendError::Permanent(format!("sink {name:?}: {e}")))?;
        let w = Webhook::new(client, s.url.clone(), secret);
        self.webhooks.insert(name.to_string(), w.clone());
        Ok(w)
    }
}

/// A `ticket.created` becomes an issue (its key is kept on the ticket), a `comment.added` a
/// comment on the ticket's issue; attachments follow each. Every step is safe to repeat after
/// an interruption (the row was in flight): the issue is found by its label, the comment by its
/// marker, and an attachment already on the issue (same filename and size) is not uploaded
/// again.
async fn jira_send(
    jira: &Jira,
    store: &Store,
    row: &OutboxItem,
) -> Result<Option<String>, SendError> {
    let v: serde_json::Value = serde_json::from_str(&row.payload)
        .map_err(|e| SendError::Permanent(format!("outbox row {}: {e}", row.id)))?;
    let text = |p: &serde_json::Value| p.as_str().unwrap_or_default().to_string();
    let (issue, attachments, result) = match row.event.as_str() {
        "ticket.created" => {
            let t = &v["ticket"];
            let key = jira
                .create_issue(
                    &row.identity,
                    &format!("[{}] {}", text(&t["key"]), text(&t["summary"])),
                    &text(&t["description"]),
                    &text(&t["reporter"]),
                )
                .await?;
            (key.clone(), t["attachments"].clone(), Some(key))
        }
        "comment.added" => {
            let ticket = row.ticket_key.clone().unwrap_or_default();
            let issue = store
                .ticket_external_key(&ticket)
                .await
                .map_err(|e| SendError::transient(e.to_string()))?
                .ok_or_else(|| {
                    SendError::Permanent(format!(
                        "{ticket} has no Jira issue (its ticket.created row at this sink was not delivered)"
                    ))
                })?;
            let c = &v["comment"];
            jira.add_comment(
                &issue,
                &row.identity,
                &format!("{}\n\n— {} (by mail)", text(&c["body"]), text(&c["author"])),
            )
            .await?;
            (issue, c["attachments"].clone(), None)
        }
        other => {
            return Err(SendError::Permanent(format!(
                "a Jira sink does not take {other}"
            )));
        }
    };
    // (filename, size) already on the issue, counted: only a repeat can find its own uploads.
    let mut there: HashMap<(String, u64), usize> = HashMap::new();
    let list = attachments.as_array().cloned().unwrap_or_default();
    if row.in_flight_at.is_some() && !list.is_empty() {
        for k in jira.attachments(&issue).await? {
            *there.entry(k).or_default() += 1;
        }
    }
    for a in &list {
        let hash = text(&a["hash"]);
        let data = store
            .blob(&hash)
            .await
            .map_err(|e| SendError::transient(e.to_string()))?
            .ok_or_else(|| {
                SendError::Permanent(format!("attachment {hash} is not in the store"))
            })?;
        if let Some(n) = there
            .get_mut(&(text(&a["filename"]), data.len() as u64))
            .filter(|n| **n > 0)
        {
            *n -= 1;
            tracing::info!(id = row.id, issue = %issue, file = %text(&a["filename"]), "attachment already on the issue (an interrupted delivery uploaded it); not uploading it again");
            continue;
        }
        jira.add_attachment(
            &issue,
            &text(&a["filename"]),
            &text(&a["content_type"]),
            &data,
        )
        .await?;
    }
    Ok(result)
}

/// Deliver the rows with `id > after` until each is sent or failed, or its next try is more
/// than [`SETTLE_BUDGET`] from the start (rows other runs left behind are delivered too when
/// due). Returns (sent, not sent) of the rows with `id > after`.
pub async fn settle(
    settings: &Settings,
    store: &Store,
    after: i64,
) -> Result<(u64, u64), StoreError> {
    let mut d = Deliverer::new(settings, store);
    let end = now().saturating_add(SETTLE_BUDGET.as_secs() as i64);
    loop {
        // Whatever is due is delivered, this run's rows or rows a crashed run left behind.
        if d.pass(0).await?.claimed > 0 {
            continue;
        }
        let t = store.outbox_tally(after).await?;
        if t.pending == 0 {
            return Ok((t.sent, t.failed));
        }
        let (held, pending) = store.outbox_held_back(after).await?;
        let next = store.outbox_next_due(after).await?.unwrap_or(i64::MAX);
        let t_now = now();
        // Every pending row waits behind a failed one, or the next try is past the budget:
        // they stay pending for later runs.
        if held == pending || next > end || t_now > end {
            return Ok((t.sent, t.failed + t.pending));
        }
        // Due but held by another node's lease, or due in a moment.
        let wait = (next - t_now).clamp(0, 5) as u64;
        tokio::time::sleep(Duration::from_millis(wait * 1000 + 250)).await;
    }
}

/// Whether the process that holds `owner` (a [`intake_store::node_id`]: `host:pid:random`) is
/// known to be gone: it ran on this host and its pid no longer exists. Its row leases can be
/// freed at once instead of lapsing.
fn owner_is_dead(owner: &str, me: &str) -> bool {
    let mut mine = me.split(':');
    let mut theirs = owner.split(':');
    let (Some(my_host), Some(their_host), Some(pid)) = (mine.next(), theirs.next(), theirs.next())
    else {
        return false;
    };
    my_host == their_host
        && owner != me
        && pid.parse::<u32>().is_ok_and(|p| {
            p != std::process::id() && !std::path::Path::new(&format!("/proc/{p}")).exists()
        })
}

/// `intake run`: deliver due rows until `shutdown`, a pass every second (at once again while
/// there is more).
pub async fn run_forever(settings: Arc<Settings>, store: Store, shutdown: watch::Receiver<bool>) {
    deliver_forever(move || (0, settings.clone()), store, shutdown).await;
}

/// Deliver due rows until `shutdown`, with the configuration `current` gives as (version,
/// settings): a new version builds a new [`Deliverer`] (`intake serve`'s live configuration;
/// `intake run` has one version). Every node runs this: rows are claimed with a lease, so each
/// is delivered by one node at a time.
pub async fn deliver_forever(
    current: impl Fn() -> (i64, Arc<Settings>) + Send,
    store: Store,
    mut shutdown: watch::Receiver<bool>,
) {
    let (mut version, settings) = current();
    let mut d = Deliverer::new(&settings, &store);
    loop {
        if *shutdown.borrow() {
            return;
        }
        let (v, settings) = current();
        if v != version {
            version = v;
            d = Deliverer::new(&settings, &store);
        }
        let more = match d.pass(0).await {
            Ok(p) => p.claimed > 0,
            Err(e) => {
                tracing::warn!(error = %e, "outbox pass failed");
                false
            }
        };
        if !more {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_tries_at_least_five_times_in_the_first_minute_then_slows() {
        let mut at = 0u64;
        let mut tries_in_first_minute = 1; // the first try, at 0
        for a in 1..=20 {
            at += backoff(a).as_secs();
            if at <= 60 {
                tries_in_first_minute += 1;
            }
        }
        assert!(tries_in_first_minute >= 5, "{tries_in_first_minute}");
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(5), Duration::from_secs(16));
        assert_eq!(backoff(6), Duration::from_secs(60));
        assert_eq!(backoff(30), Duration::from_secs(3600));
    }
}
