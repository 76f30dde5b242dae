//! Retrying a quarantined message (`POST /api/quarantine/{id}/retry`, and the admin UI's
//! button): the stored raw message goes through the same prepare and apply as ingest, under the
//! channel's current rules, exactly once ([`intake_store::retry`]).
//!
//! - Still unreadable (prepare quarantines it again): it stays quarantined, with the new reason.
//! - Readable: one transaction turns the quarantine entry into `retried` and records the
//!   message's new outcome (a ticket, a comment, or ignored) with the effects and outbox rows
//!   ingest would write.
//! - Already applied elsewhere (the same message reached the ledger again): the entry is marked
//!   `retried` and the answer names the outcome the message already has.
//!
//! A message quarantined as oversized from its headers alone (the body was never downloaded)
//! is refused: retrying would make a ticket without the body.

use std::sync::Arc;

use intake_core::{Outcome, PreparedKind};
use intake_store::{Applied, Incoming, Store, StoreError};
use serde_json::json;

use crate::pipeline::{IngestOptions, keep_raw, mark_own_mail};
use crate::settings::Settings;

/// What a retry did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Retried {
    /// The quarantine entry (ledger row) retried.
    pub id: i64,
    pub channel: String,
    /// `created`, `commented`, `ignored`, `duplicate` (the message already had an outcome) or
    /// `quarantined` (still unreadable: the entry stays, with `reason`).
    pub result: String,
    /// The ticket it became or was added to.
    pub ticket_key: Option<String>,
    /// Why it was ignored or is still quarantined.
    pub reason: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    #[error("no quarantined message {0} (unknown, discarded or already retried)")]
    NotQuarantined(i64),
    #[error(
        "quarantined message {id} came from channel {channel:?}, which no longer exists: its rules are unknown (discard it, or create the channel again)"
    )]
    NoChannel { id: i64, channel: String },
    #[error(
        "quarantined message {id} was too large to download ({size} bytes): only its headers ({kept} bytes) were kept, so a retry would lose the body. Fetch it from the mailbox after raising the limit, then discard this entry"
    )]
    HeadersOnly { id: i64, size: u64, kept: usize },
    #[error("preparing the message: {0}")]
    Prepare(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The size a `TooLarge` reason states ("message of N bytes exceeds …").
fn stated_size(reason: &str) -> Option<u64> {
    reason
        .strip_prefix("message of ")?
        .split(' ')
        .next()?
        .parse()
        .ok()
}

/// Retry quarantined message `id` under `settings` (its channel's current rules and effects);
/// `actor` is recorded in the mail log.
pub async fn retry(
    store: &Store,
    settings: &Settings,
    id: i64,
    actor: &str,
) -> Result<Retried, RetryError> {
    let (q, raw) = store
        .quarantined(id)
        .await?
        .ok_or(RetryError::NotQuarantined(id))?;
    if let Some(size) = q.reason.as_deref().and_then(stated_size)
        && (raw.len() as u64) < size
    {
        return Err(RetryError::HeadersOnly {
            id,
            size,
            kept: raw.len(),
        });
    }
    let c = settings
        .channel(&q.channel)
        .ok_or_else(|| RetryError::NoChannel {
            id,
            channel: q.channel.clone(),
        })?;
    let effects =
        crate::outbox::effects(settings, c).map_err(|e| RetryError::Prepare(e.to_string()))?;
    let opts =
        IngestOptions::new(&c.name, c.project.clone(), c.rules.clone()).with_effects(&effects);
    let reader = Arc::new(
        opts.reader()
            .map_err(|e| RetryError::Prepare(e.to_string()))?,
    );
    let prepared = {
        let reader = reader.clone();
        tokio::task::spawn_blocking(move || {
            let p = reader.prepare(&raw);
            (p, raw)
        })
        .await
        .map_err(|e| RetryError::Prepare(e.to_string()))?
    };
    let (prepared, raw) = prepared;
    let mut incoming = vec![Incoming {
        identity: q.identity.clone(),
        raw: keep_raw(&prepared, raw),
        prepared,
        received_at: q.received_at,
    }];
    mark_own_mail(store, incoming.iter_mut()).await?;
    let inc = incoming.pop().expect("one message");
    let done = |result: &str, ticket_key: Option<String>, reason: Option<String>| Retried {
        id,
        channel: q.channel.clone(),
        result: result.into(),
        ticket_key,
        reason,
    };
    if let PreparedKind::Quarantined(r) = &inc.prepared.kind {
        let reason = r.to_string();
        if !store.requarantine(id, &reason).await? {
            return Err(RetryError::NotQuarantined(id));
        }
        log(
            store,
            &q.channel,
            "warn",
            "retry_quarantined",
            id,
            actor,
            &reason,
        )
        .await?;
        return Ok(done("quarantined", None, Some(reason)));
    }
    store
        .ensure_project(&opts.project, opts.project.as_str())
        .await?;
    let applied = store
        .retry_quarantined(&c.name, &opts.project, opts.batch_rules(), id, &inc)
        .await?
        .ok_or(RetryError::NotQuarantined(id))?;
    let out = match applied {
        Applied::Recorded(Outcome::Created(k)) => done("created", Some(k.to_string()), None),
        Applied::Recorded(Outcome::Commented(k)) => done("commented", Some(k.to_string()), None),
        Applied::Recorded(Outcome::Ignored(r)) => done("ignored", None, Some(r)),
        Applied::Recorded(Outcome::Quarantined(r)) => done("quarantined", None, Some(r)),
        Applied::Duplicate => {
            let had = store.ledger_outcome(&c.name, &q.identity).await?;
            done(
                "duplicate",
                had.as_ref().and_then(|(_, _, k)| k.clone()),
                had.map(|(row, outcome, _)| {
                    format!("the message already has an outcome: {outcome} (ledger row {row})")
                }),
            )
        }
    };
    let what = match (&out.ticket_key, &out.reason) {
        (Some(k), _) => format!("{} {k}", out.result),
        (None, Some(r)) => format!("{}: {r}", out.result),
        (None, None) => out.result.clone(),
    };
    log(
        store,
        &q.channel,
        "info",
        "retry_quarantined",
        id,
        actor,
        &what,
    )
    .await?;
    Ok(out)
}

async fn log(
    store: &Store,
    channel: &str,
    level: &str,
    kind: &str,
    id: i64,
    actor: &str,
    what: &str,
) -> Result<(), StoreError> {
    store
        .log_event(
            Some(channel),
            level,
            kind,
            &format!("quarantined message {id} retried by {actor}: {what}"),
            json!({"quarantine_id": id, "actor": actor}),
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::stated_size;

    #[test]
    fn the_size_of_a_too_large_reason_is_read_back() {
        let r = intake_core::QuarantineReason::TooLarge {
            size: 41_943_040,
            limit: 26_214_400,
        }
        .to_string();
        assert_eq!(stated_size(&r), Some(41_943_040));
        assert_eq!(stated_size("no sender address (From is missing)"), None);
    }
}
