//! Running channels (`intake run`): the entry points [`run_once`] and [`run_forever`].
//!
//! Every protocol — IMAP, POP3, Graph, Maildir, mbox — is a [`MailSource`] opened from typed
//! settings ([`open`]) and driven by one drain loop ([`drain`]: the one place where messages are
//! acknowledged and checkpoints move) into the same engine and ledger. A channel's work runs in
//! its own task under its lease ([`lease`]: the one place where leases are taken, renewed and
//! given up); every stage of that work is bounded in time ([`drain::Stage`]), and a stage that
//! overruns its bound stops the lease's renewal, so a hung server never keeps a channel on a node
//! that makes no progress. [`doctor`] is the connection check behind `intake doctor`;
//! [`folders`] lists a channel's folders (`intake folders`).
//!
//! [`MailSource`]: intake_mail::source::MailSource

pub mod doctor;
pub mod drain;
pub mod fleet;
pub mod folders;
pub mod lease;
pub mod open;

use std::sync::Arc;
use std::time::Duration;

use intake_mail::source::{MailSource, SourceError};
use intake_store::{Store, StoreError};
use tokio::sync::watch;

pub use doctor::{ChannelDiagnosis, check, diagnose, integration_findings};
pub use drain::{BATCH_BYTES, Stage};
pub use lease::node;

use crate::config::ConfigError;
use crate::pipeline::{IngestError, Summary};
use crate::settings::{ChannelSettings, Mode, Settings};

/// Why a channel's run failed. The message names the stage where it did.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The mail server (or local source) failed in `stage`.
    #[error("{stage}: {error}")]
    Source { stage: Stage, error: SourceError },
    /// A source refused the channel's settings before anything was fetched.
    #[error(transparent)]
    Unsupported(SourceError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error(transparent)]
    Token(#[from] crate::oauth::TokenError),
    #[error(transparent)]
    OAuth(#[from] intake_mail::oauth::OAuthError),
    #[error(transparent)]
    Keys(#[from] intake_store::CryptoError),
    #[error(transparent)]
    Rules(#[from] intake_mime::RulesError),
    #[error("{what}: {error}")]
    Secret {
        what: &'static str,
        error: intake_mail::secret::SecretError,
    },
    /// The store's commits could be undone by a power loss (durable before destructive).
    #[error(
        "the store is not power-loss durable, so no post-action may follow its commits (open it with Store::connect)"
    )]
    NotDurable,
    /// A stage did not finish within its bound (the server stopped answering).
    #[error("{stage} timed out after {}s: no answer in time (the stage's bound; see timeout_seconds)", .after.as_secs())]
    Timeout { stage: Stage, after: Duration },
    /// The lease keeper found the channel making no progress in `stage` and stopped it.
    #[error("the channel made no progress in {stage} for {}s; stopped on this node and its lease left to lapse", .after.as_secs())]
    Stalled { stage: Stage, after: Duration },
    /// The channel's task ended abnormally (a panic).
    #[error("the channel's task ended abnormally: {0}")]
    Task(String),
}

/// Drain one channel once (`intake run --once`). The channel's lease is waited for up to its
/// time to live (so a run right after a crash takes over the dead process's lease); a channel
/// whose lease another live node keeps renewing is skipped with a log event (`Ok(None)`):
/// that node is processing it.
pub async fn run_once(
    settings: &Settings,
    store: &Store,
    c: &Arc<ChannelSettings>,
) -> Result<Option<Summary>, RunError> {
    if !lease::acquire_within(store, &c.name, settings.lease).await? {
        return Ok(None);
    }
    let progress = Arc::new(drain::Progress::new());
    let (halt_tx, halt) = watch::channel(false);
    let work = {
        let (settings, store, c, progress) =
            (settings.clone(), store.clone(), c.clone(), progress.clone());
        tokio::spawn(async move {
            let effects = crate::outbox::effects(&settings, &c)?;
            let ctx = drain::Ctx::new(&store, &c, &effects, progress).await?;
            let mut source = ctx
                .bounded(
                    Stage::Connect,
                    ctx.bounds.stage,
                    open::open(&settings, &store, &c),
                )
                .await?;
            ctx.bounded(Stage::Token, ctx.bounds.stage, source.refresh())
                .await?;
            let mut summary = Summary::default();
            let origin = c.origin();
            drain::drain(
                &store,
                &mut source,
                &origin,
                &ctx,
                &mut summary,
                Some(&halt),
            )
            .await?;
            close(source, &ctx).await;
            Ok::<_, RunError>(summary)
        })
    };
    let held = lease::hold(
        store,
        &c.name,
        lease::Terms::new(settings.lease),
        &progress,
        halt_tx,
        None,
        work,
    )
    .await;
    match held {
        lease::Held::Done(result) => {
            store.release_lease(&c.name, node()).await?;
            result.map(Some)
        }
        lease::Held::Lost(result) => result.map(Some),
        lease::Held::Stalled { stage, after } => Err(RunError::Stalled { stage, after }),
    }
}

/// Run one channel until `shutdown` turns true: take its lease (waiting while another node
/// holds it), then drain, wait for a change (IDLE, or a poll interval) and drain again. Any
/// failure (server restart, expired token, network, a stage that timed out) reconnects with a
/// fresh token after an exponential backoff (1 s … 60 s), logged in the mail log; a shutdown
/// finishes the current batch and logs out; a lost lease stops the channel on this node; a
/// stalled channel is dropped here and its lease left to lapse.
pub async fn run_forever(
    settings: &Settings,
    store: &Store,
    c: &Arc<ChannelSettings>,
    shutdown: watch::Receiver<bool>,
) {
    let ttl = settings.lease;
    let mut backoff = Duration::from_secs(1);
    let mut last_cause: Option<&'static str> = None;
    while !*shutdown.borrow() {
        let wait = match store.try_acquire_lease(&c.name, node(), ttl).await {
            Ok(true) => None,
            Ok(false) => Some(ttl / 3),
            Err(e) => {
                tracing::warn!(channel = %c.name, error = %e, "cannot take the channel lease");
                Some(backoff)
            }
        };
        if let Some(wait) = wait {
            let mut rx = shutdown.clone();
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = rx.changed() => {}
            }
            continue;
        }
        let _ = store
            .log_event(
                Some(&c.name),
                "info",
                "channel_started",
                &format!("channel {} runs on node {}", c.name, node()),
                serde_json::json!({"node": node()}),
            )
            .await;
        let progress = Arc::new(drain::Progress::new());
        let (halt_tx, halt) = watch::channel(false);
        let work = {
            let (settings, store, c, progress) =
                (settings.clone(), store.clone(), c.clone(), progress.clone());
            tokio::spawn(async move { session(&settings, &store, &c, progress, halt).await })
        };
        let held = lease::hold(
            store,
            &c.name,
            lease::Terms::new(ttl),
            &progress,
            halt_tx,
            Some(shutdown.clone()),
            work,
        )
        .await;
        let (result, release, stalled) = match held {
            lease::Held::Done(r) => (r, true, false),
            lease::Held::Lost(r) => (r, false, false),
            lease::Held::Stalled { stage, after } => {
                (Err(RunError::Stalled { stage, after }), false, true)
            }
        };
        // After a stall this node waits until its unrenewed lease has lapsed and a little
        // more, so another node (polling every third of the TTL) gets the channel first.
        let pause = if stalled {
            backoff.max(ttl + ttl / 3)
        } else {
            backoff
        };
        if let Err(e) = &result {
            let msg = format!("{e:#}");
            tracing::warn!(channel = %c.name, error = %msg, "channel failed; reconnecting");
            let _ = store.record_channel_failure(&c.name, node(), &msg).await;
            let _ = store
                .log_event(
                    Some(&c.name),
                    "error",
                    "channel_failed",
                    &msg,
                    serde_json::json!({"retry_in_seconds": pause.as_secs(), "node": node()}),
                )
                .await;
            // The doctor's diagnosis, once per change of cause (not every retry).
            let d = doctor::diagnose_failure(settings, store, c, e).await;
            let code = d.as_ref().map(|d| d.code);
            if code != last_cause {
                if let Some(d) = d {
                    log_diagnosis(store, &c.name, &d).await;
                }
                last_cause = code;
            }
        } else {
            last_cause = None;
        }
        if release {
            let _ = store.release_lease(&c.name, node()).await;
        }
        if result.is_err() {
            let mut rx = shutdown.clone();
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                _ = rx.changed() => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(60));
        } else {
            backoff = Duration::from_secs(1);
        }
    }
}

/// Write a failed channel's diagnosis to the mail log (`channel_diagnosis`: code, fix).
pub async fn log_diagnosis(store: &Store, channel: &str, d: &intake_core::Diagnosed) {
    let _ = store
        .log_event(
            Some(channel),
            "error",
            "channel_diagnosis",
            &format!("{} {}: {}. Fix: {}", d.code, d.title, d.evidence, d.fix),
            serde_json::json!({"code": d.code, "severity": d.severity_label(), "title": d.title, "fix": d.fix}),
        )
        .await;
}

/// One connection's life: open, then rounds of drain and wait until `halt`.
async fn session(
    settings: &Settings,
    store: &Store,
    c: &ChannelSettings,
    progress: Arc<drain::Progress>,
    halt: watch::Receiver<bool>,
) -> Result<(), RunError> {
    let effects = crate::outbox::effects(settings, c)?;
    let ctx = drain::Ctx::new(store, c, &effects, progress).await?;
    let mut source = ctx
        .bounded(
            Stage::Connect,
            ctx.bounds.stage,
            open::open(settings, store, c),
        )
        .await?;
    let origin = c.origin();
    let idle = c.mode == Mode::Push;
    loop {
        ctx.bounded(Stage::Token, ctx.bounds.stage, source.refresh())
            .await?;
        let mut summary = Summary::default();
        drain::drain(store, &mut source, &origin, &ctx, &mut summary, Some(&halt)).await?;
        // The status API and the alerts read this (channel_status): a round went through.
        let _ = store.record_channel_success(&c.name, node()).await;
        for (outcome, n) in [
            ("created", summary.created),
            ("commented", summary.commented),
            ("ignored", summary.ignored),
            ("quarantined", summary.quarantined),
            ("duplicate", summary.duplicate),
        ] {
            if n > 0 {
                metrics::counter!("intake_messages_total", "channel" => c.name.clone(), "outcome" => outcome)
                    .increment(n);
            }
        }
        if *halt.borrow() {
            close(source, &ctx).await;
            return Ok(());
        }
        let mut rx = halt.clone();
        let stop = async move {
            let _ = rx.changed().await;
        };
        // A healthy wait: the lease is renewed through it (its bound is the wait itself plus
        // the stage bound, for IDLE's own deadline handling).
        let bound = c.wait + ctx.bounds.stage;
        if idle {
            ctx.bounded(Stage::Idle, bound, source.wait_for_change(c.wait, stop))
                .await?;
        } else {
            let _waiting = ctx.progress.begin(Stage::Idle, bound);
            tokio::select! {
                () = tokio::time::sleep(c.wait) => {}
                () = stop => {}
            }
        }
    }
}

/// Log out, best effort, within a network stage's bound (a hung server does not hold it).
async fn close(source: open::Source, ctx: &drain::Ctx) {
    let _closing = ctx.progress.begin(Stage::Finish, ctx.bounds.stage);
    let _ = tokio::time::timeout(ctx.bounds.stage, source.close()).await;
}
