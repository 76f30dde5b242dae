//! The ingest pipeline: raw messages → prepared drafts → committed batches.
//!
//! Three stages overlap, connected by bounded channels (back-pressure: at most two batches wait
//! between stages, so memory stays flat on any mailbox size):
//! 1. **read** (a thread): walks the local sources, hashes each message and sends batches;
//! 2. **prepare** (all cores): skips identities the ledger already holds
//!    (a fast path for re-runs), and runs `intake-mime` on the rest in parallel; then marks
//!    Intake's own mail and, on PostgreSQL, stages the batch ([`Store::stage_batch`]: blobs,
//!    ledger look-up, ledger ids) while the batches before it commit;
//! 3. **commit** (async): orders a batch by Date (so an original precedes its replies) and
//!    applies it with [`Store::apply_staged`], one transaction per batch.
//!
//! Crash safety comes from the store: a batch commits with its ledger claims or not at all, and a
//! re-run skips or de-duplicates what was committed. SQLite runs in WAL mode with
//! `synchronous=NORMAL`, so there is one fsync per checkpoint rather than per message.

use std::path::Path;
use std::sync::Arc;

use indicatif::ProgressBar;
use intake_core::{ChannelRules, IgnoreReason, Outcome, PreparedKind, ProjectKey};
use intake_mail::source::Oversized;
use intake_mime::{Reader, RulesError, content_hash};
use intake_store::{Applied, BatchRules, Incoming, OutboxRules, Staged, Store, StoreError, now};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::source::local::{self, Origin, RawMessage};

/// What `intake ingest --json` prints: the five outcome counters, and how the outbox rows the
/// run created ended (`sent`; `send_failed`: failed, or still failing when the run returned).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub created: u64,
    pub commented: u64,
    pub ignored: u64,
    pub quarantined: u64,
    pub duplicate: u64,
    pub sent: u64,
    pub send_failed: u64,
}

impl Summary {
    pub fn total(&self) -> u64 {
        self.created + self.commented + self.ignored + self.quarantined + self.duplicate
    }

    /// Add another summary's counts to this one.
    pub fn merge(&mut self, other: &Summary) {
        self.created += other.created;
        self.commented += other.commented;
        self.ignored += other.ignored;
        self.quarantined += other.quarantined;
        self.duplicate += other.duplicate;
    }

    fn add(&mut self, a: &Applied) {
        match a {
            Applied::Duplicate => self.duplicate += 1,
            Applied::Recorded(Outcome::Created(_)) => self.created += 1,
            Applied::Recorded(Outcome::Commented(_)) => self.commented += 1,
            Applied::Recorded(Outcome::Ignored(_)) => self.ignored += 1,
            Applied::Recorded(Outcome::Quarantined(_)) => self.quarantined += 1,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("reading mail: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Rules(#[from] RulesError),
    #[error("a pipeline stage stopped unexpectedly: {0}")]
    Stage(String),
}

/// How to ingest.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    pub channel: String,
    pub project: ProjectKey,
    pub rules: ChannelRules,
    /// Messages per transaction.
    pub batch: usize,
    /// Threads preparing messages.
    pub workers: usize,
    /// What the batches enqueue in the outbox, and the channel's own addresses.
    pub outbox: Arc<OutboxRules>,
    /// Keys that recognise Intake's own mail by its header (none: the header is never trusted).
    pub sent_keys: SentKeys,
}

/// What a channel's batches cause besides tickets: the `[[sink]]` routes and the
/// acknowledgement of its project, and the keys that recognise Intake's own mail.
#[derive(Debug, Clone, Default)]
pub struct Effects {
    pub sinks: Vec<intake_store::SinkRoute>,
    pub acknowledge: Option<intake_store::Acknowledge>,
    pub sent_keys: SentKeys,
}

impl IngestOptions {
    /// Add `effects` (the channel's own addresses stay those of its rules).
    pub fn with_effects(mut self, effects: &Effects) -> Self {
        let mut ob = (*self.outbox).clone();
        ob.sinks.clone_from(&effects.sinks);
        ob.acknowledge.clone_from(&effects.acknowledge);
        self.outbox = Arc::new(ob);
        self.sent_keys = effects.sent_keys.clone();
        self
    }
}

/// The keys of the own-mail header (`Keyring::sent_mail_keys`); `Debug` shows only the count.
#[derive(Clone, Default)]
pub struct SentKeys(pub Arc<Vec<Vec<u8>>>);

impl std::fmt::Debug for SentKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SentKeys({} keys)", self.0.len())
    }
}

impl SentKeys {
    /// The keys of the store's keyring (`INTAKE_SECRET_KEY` or the key file) when one exists.
    /// Without one Intake has never signed a mail, so there is nothing to recognise, and no key
    /// file is created just to read mail.
    ///
    /// A key that cannot be read is an error: mail Intake signed with it would otherwise be
    /// ingested as tickets.
    pub fn load(key_file: &Path) -> Result<Self, intake_store::CryptoError> {
        let env = std::env::var("INTAKE_SECRET_KEY").is_ok_and(|v| !v.trim().is_empty());
        if !env && !key_file.exists() {
            return Ok(Self::default());
        }
        let ring = intake_store::Keyring::from_env_or_file(key_file)?;
        Ok(Self(Arc::new(
            ring.sent_mail_keys().iter().map(|k| k.to_vec()).collect(),
        )))
    }
}

impl IngestOptions {
    pub fn new(channel: &str, project: ProjectKey, rules: ChannelRules) -> Self {
        // Preparing uses every core. The SQLite writer takes less CPU than preparing does
        // (docs/BENCHMARKS.md), so holding a core back for it left that core idle between
        // commits; the scheduler shares the cores when both stages run.
        let workers = cores();
        let outbox = Arc::new(BatchRules::from(&rules).outbox.as_ref().clone());
        Self {
            channel: channel.to_string(),
            project,
            rules,
            batch: 500,
            workers,
            outbox,
            sent_keys: SentKeys::default(),
        }
    }

    /// The reader for this channel's mail: its rules and the own-mail header keys.
    pub fn reader(&self) -> Result<Reader, RulesError> {
        Ok(Reader::new(&self.rules)?.with_sent_keys(self.sent_keys.0.to_vec()))
    }

    /// The rules each batch is applied under.
    pub fn batch_rules(&self) -> BatchRules {
        BatchRules {
            outbox: self.outbox.clone(),
            ..BatchRules::from(&self.rules)
        }
    }
}

/// Number of cores this process may use.
pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}

/// Apply `f` to every item on `workers` threads, keeping order. Threads take the next few items
/// as they finish (messages vary from 2 KB to megabytes, so fixed halves leave one thread idle
/// while the other still works).
pub fn par_map<T: Sync, R: Send>(
    items: &[T],
    workers: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    const STEP: usize = 8;
    let workers = workers.max(1).min(items.len().div_ceil(STEP));
    if workers <= 1 {
        return items.iter().map(&f).collect();
    }
    let next = AtomicUsize::new(0);
    let work = || {
        let mut done: Vec<(usize, Vec<R>)> = Vec::new();
        loop {
            let start = next.fetch_add(STEP, Ordering::Relaxed);
            if start >= items.len() {
                return done;
            }
            let end = (start + STEP).min(items.len());
            done.push((start, items[start..end].iter().map(&f).collect()));
        }
    };
    let mut parts: Vec<(usize, Vec<R>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (1..workers).map(|_| s.spawn(work)).collect();
        let mut parts = work();
        for h in handles {
            // A panicking `f` is a bug in the caller; re-raise it here.
            parts.extend(h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
        }
        parts
    });
    parts.sort_unstable_by_key(|(start, _)| *start);
    parts.into_iter().flat_map(|(_, r)| r).collect()
}

/// A message read from disk with its [`content_hash`] (its identity is `sha256:<hash>`).
type Hashed = (RawMessage, String);

/// Stage 1: read the sources on a thread, hashing each message as it is read, and send
/// batches. Returns the receiver. (Hashing here keeps the thread busy while it waits on the
/// next batch's back-pressure, and lets the next stage look the batch's identities up at once.)
fn spawn_reader(
    origins: Vec<Origin>,
    batch: usize,
) -> (
    mpsc::Receiver<std::io::Result<Vec<Hashed>>>,
    std::thread::JoinHandle<()>,
) {
    let (tx, rx) = mpsc::channel(2);
    let handle = std::thread::spawn(move || {
        let mut buf = Vec::with_capacity(batch);
        let res = local::read_all(&origins, |m| {
            let hash = content_hash(&m.bytes);
            buf.push((m, hash));
            if buf.len() >= batch {
                let full = std::mem::replace(&mut buf, Vec::with_capacity(batch));
                return tx.blocking_send(Ok(full)).is_ok();
            }
            true
        });
        let last = match res {
            Ok(()) if buf.is_empty() => return,
            Ok(()) => Ok(buf),
            Err(e) => Err(e),
        };
        let _ = tx.blocking_send(last);
    });
    (rx, handle)
}

/// A prepared batch: messages to apply, plus how many were skipped as already known, and what
/// the store did for it ahead of its transaction ([`Store::stage_batch`]).
struct PreparedBatch {
    items: Vec<(String, Incoming)>,
    known: u64,
    staged: Option<Staged>,
}

fn prepare_batch(
    reader: &Reader,
    raw: Vec<Hashed>,
    known: &std::collections::HashSet<String>,
    workers: usize,
) -> PreparedBatch {
    let received_at = now();
    let read = raw.len();
    let todo: Vec<Hashed> = raw
        .into_iter()
        .filter(|(_, h)| !known.contains(&format!("sha256:{h}")))
        .collect();
    // Counted per message: the same content read twice in one batch is two duplicates.
    let skipped = (read - todo.len()) as u64;
    let prepared = par_map(&todo, workers, |(m, h)| {
        reader.prepare_hashed(&m.bytes, h.clone())
    });
    // The raw bytes travel with the message (moved, not copied) until its batch commits: a
    // message the database refuses is quarantined there with them (Store::apply_batch). See
    // `keep_raw` for the size bound.
    let items = todo
        .into_iter()
        .zip(prepared)
        .map(|((m, h), prepared)| {
            let raw = keep_raw(&prepared, m.bytes);
            (
                m.origin,
                Incoming {
                    identity: format!("sha256:{h}"),
                    prepared,
                    raw,
                    received_at,
                },
            )
        })
        .collect();
    PreparedBatch {
        items,
        known: skipped,
        staged: None,
    }
}

/// Raw messages up to this size travel with their prepared draft to the commit, so that a
/// message the database refuses can be quarantined with its raw bytes. Larger ones are kept only
/// when already quarantined: holding every large message's bytes until its commit as well as its
/// draft would double the memory of a batch of large mail (defect 5's peak-RSS bound).
pub const KEEP_RAW_UP_TO: usize = 4 << 20;

/// The raw bytes to pass along with a prepared message (see [`KEEP_RAW_UP_TO`]).
pub(crate) fn keep_raw(p: &intake_core::Prepared, raw: Vec<u8>) -> Option<Vec<u8>> {
    let quarantined = matches!(p.kind, intake_core::PreparedKind::Quarantined(_));
    (quarantined || raw.len() <= KEEP_RAW_UP_TO).then_some(raw)
}

/// Ingest the given sources into the store. `progress` is advanced per committed batch.
pub async fn ingest(
    store: &Store,
    origins: Vec<Origin>,
    opts: &IngestOptions,
    progress: Option<&ProgressBar>,
) -> Result<Summary, IngestError> {
    store
        .ensure_project(&opts.project, opts.project.as_str())
        .await?;
    let reader = Arc::new(opts.reader()?);
    let (mut raw_rx, read_handle) = spawn_reader(origins, opts.batch.max(1));
    let (prep_tx, mut prep_rx) = mpsc::channel::<Result<PreparedBatch, IngestError>>(2);
    let (workers, channel) = (opts.workers, opts.channel.clone());
    let prep_store = store.clone();
    // On a channel's first import nothing can be known yet: messages this run commits are not
    // read again, and a file read twice is caught by the claim like any duplicate.
    let precheck = store.has_messages(&channel).await?;
    let preparer = tokio::spawn(async move {
        while let Some(raw) = raw_rx.recv().await {
            let res = async {
                let raw = raw?;
                let known = if precheck {
                    let ids: Vec<String> = raw.iter().map(|(_, h)| format!("sha256:{h}")).collect();
                    prep_store.known_identities(&channel, &ids).await?
                } else {
                    std::collections::HashSet::new()
                };
                let r = reader.clone();
                let t = std::time::Instant::now();
                let res =
                    tokio::task::spawn_blocking(move || prepare_batch(&r, raw, &known, workers))
                        .await;
                tracing::debug!(
                    prepare_ms = t.elapsed().as_millis() as u64,
                    "batch prepared"
                );
                let mut batch = res.map_err(|e| IngestError::Stage(e.to_string()))?;
                batch.staged = ready_for_commit(&prep_store, &channel, &mut batch.items).await?;
                Ok(batch)
            }
            .await;
            let stop = res.is_err();
            if prep_tx.send(res).await.is_err() || stop {
                break;
            }
        }
    });
    let mut summary = Summary::default();
    let started = std::time::Instant::now();
    while let Some(batch) = prep_rx.recv().await {
        let batch = batch?;
        summary.duplicate += batch.known;
        let applied = commit(store, opts, batch.items, batch.staged, &mut summary).await?;
        if let Some(p) = progress {
            p.inc((applied.len() as u64) + batch.known);
        }
    }
    preparer
        .await
        .map_err(|e| IngestError::Stage(e.to_string()))?;
    read_handle
        .join()
        .map_err(|_| IngestError::Stage("reader thread panicked".into()))?;
    let secs = started.elapsed().as_secs_f64();
    store
        .log_event(
            Some(&opts.channel),
            "info",
            "ingest",
            &format!("ingested {} messages in {secs:.1}s", summary.total()),
            serde_json::to_value(summary).unwrap_or_default(),
        )
        .await?;
    Ok(summary)
}

/// Apply one prepared batch in Date order (an original before its replies), add the outcomes to
/// `summary`, and log ignored and quarantined messages. Returns the outcomes in the order given.
/// The caller has made the batch [`ready_for_commit`] already, off the database writer's path
/// ([`ingest`] and the drain, while preparing), and passes what the store staged for it.
pub async fn commit(
    store: &Store,
    opts: &IngestOptions,
    mut items: Vec<(String, Incoming)>,
    staged: Option<Staged>,
    summary: &mut Summary,
) -> Result<Vec<Applied>, IngestError> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|i| items[*i].1.prepared.envelope.sent_at.unwrap_or(i64::MAX));
    let mut slots: Vec<Option<(String, Incoming)>> = items.drain(..).map(Some).collect();
    let sorted: Vec<(String, Incoming)> = order.iter().filter_map(|i| slots[*i].take()).collect();
    let (origins, incoming): (Vec<String>, Vec<Incoming>) = sorted.into_iter().unzip();
    let t = std::time::Instant::now();
    let applied = store
        .apply_staged(
            &opts.channel,
            &opts.project,
            opts.batch_rules(),
            &incoming,
            staged,
        )
        .await?;
    let apply_ms = t.elapsed().as_millis() as u64;
    tracing::debug!(messages = incoming.len(), apply_ms, "batch committed");
    for ((origin, inc), a) in origins.iter().zip(&incoming).zip(&applied) {
        summary.add(a);
        if let Applied::Recorded(o @ (Outcome::Ignored(_) | Outcome::Quarantined(_))) = a {
            let level = if matches!(o, Outcome::Quarantined(_)) {
                "warn"
            } else {
                "info"
            };
            let fields = serde_json::json!({
                "origin": origin,
                "message_id": inc.prepared.envelope.message_id,
            });
            store
                .log_event(Some(&opts.channel), level, o.kind(), &o.to_string(), fields)
                .await?;
        }
    }
    let mut in_order = vec![Applied::Duplicate; applied.len()];
    for (pos, a) in order.into_iter().zip(applied) {
        in_order[pos] = a;
    }
    Ok(in_order)
}

/// What a prepared batch needs before its commit, done while the batches before it commit (off
/// the database writer's path): Intake's own mail is marked ([`mark_own_mail`]), and the store
/// does what it can ahead of the batch's transaction ([`Store::stage_batch`]: PostgreSQL;
/// nothing on SQLite). Returns what was staged, for [`commit`].
pub(crate) async fn ready_for_commit(
    store: &Store,
    channel: &str,
    items: &mut [(String, Incoming)],
) -> Result<Option<Staged>, StoreError> {
    mark_own_mail(store, items.iter_mut().map(|(_, inc)| inc)).await?;
    Ok(store
        .stage_batch(channel, items.iter().map(|(_, inc)| inc))
        .await)
}

/// Mail whose Message-ID Intake generated (an acknowledgement or reply in its outbox) is its
/// own, whatever its headers say: it becomes an ignored outcome, never a ticket or comment.
pub(crate) async fn mark_own_mail<'a>(
    store: &Store,
    incoming: impl IntoIterator<Item = &'a mut Incoming>,
) -> Result<(), StoreError> {
    let mut incoming: Vec<&mut Incoming> = incoming.into_iter().collect();
    let ids: Vec<&str> = incoming
        .iter()
        .filter(|i| matches!(i.prepared.kind, PreparedKind::Mail(_)))
        .filter_map(|i| i.prepared.envelope.message_id.as_deref())
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    let own = store.own_message_ids(&ids).await?;
    if own.is_empty() {
        return Ok(());
    }
    for i in incoming.iter_mut() {
        if let (PreparedKind::Mail(_), Some(id)) =
            (&i.prepared.kind, &i.prepared.envelope.message_id)
            && own.contains(id)
        {
            i.prepared.kind = PreparedKind::Ignored(IgnoreReason::OwnMessage(format!(
                "Message-ID <{id}> was sent by Intake"
            )));
        }
    }
    Ok(())
}

/// Prepare raw messages from a server source (identity given by the source) on `workers` threads.
/// A message marked [`Oversized`] (the source left its body on the server) is quarantined from
/// its headers with its declared size and the limit ([`Reader::prepare_oversized`]); the
/// headers are what is stored as its raw message.
pub async fn prepare_fetched(
    reader: Arc<Reader>,
    fetched: Vec<(String, String, Vec<u8>, Option<Oversized>)>,
    workers: usize,
) -> Result<Vec<(String, Incoming)>, IngestError> {
    tokio::task::spawn_blocking(move || {
        let received_at = now();
        let prepared = par_map(
            &fetched,
            workers,
            |(_, _, raw, oversized)| match oversized {
                Some(o) => reader.prepare_oversized(raw, o.size, o.limit),
                None => reader.prepare(raw),
            },
        );
        // Raw bytes kept (moved): see `keep_raw`.
        fetched
            .into_iter()
            .zip(prepared)
            .map(|((origin, identity, raw, _), prepared)| {
                let raw = keep_raw(&prepared, raw);
                (
                    origin,
                    Incoming {
                        identity,
                        prepared,
                        raw,
                        received_at,
                    },
                )
            })
            .collect()
    })
    .await
    .map_err(|e| IngestError::Stage(e.to_string()))
}

/// Read, hash and prepare every message without storing anything (the benchmark's parse-only
/// rate): the same reader stage and the same MIME work as [`ingest`].
/// Returns the number of messages prepared.
pub async fn parse_only(
    origins: Vec<Origin>,
    rules: &ChannelRules,
    batch: usize,
    workers: usize,
) -> Result<u64, IngestError> {
    let reader = Arc::new(Reader::new(rules)?);
    let (mut rx, handle) = spawn_reader(origins, batch.max(1));
    let mut n = 0u64;
    while let Some(raw) = rx.recv().await {
        let raw = raw?;
        let r = reader.clone();
        n += tokio::task::spawn_blocking(move || {
            par_map(&raw, workers, |(m, h)| {
                r.prepare_hashed(&m.bytes, h.clone())
            })
            .len() as u64
        })
        .await
        .map_err(|e| IngestError::Stage(e.to_string()))?;
    }
    handle
        .join()
        .map_err(|_| IngestError::Stage("reader thread panicked".into()))?;
    Ok(n)
}

/// Convenience: walk `paths` and ingest them.
pub async fn ingest_paths(
    store: &Store,
    paths: &[impl AsRef<Path>],
    opts: &IngestOptions,
    progress: Option<&ProgressBar>,
) -> Result<Summary, IngestError> {
    let paths: Vec<_> = paths.iter().map(|p| p.as_ref().to_path_buf()).collect();
    let origins = local::walk(&paths)?;
    ingest(store, origins, opts, progress).await
}
