//! The drain loop: the one place where messages are fetched, committed, **acknowledged**
//! (post-action) and **passed by the checkpoint**, and where every stage is bounded in time.
//!
//! Per round: list after the stored checkpoint (first sync: the `start` policy); drop what the
//! ledger already has from the fetch (but not from the acknowledgement); then per batch (at most
//! `batch` messages and [`BATCH_BYTES`] by declared size): fetch, prepare, commit (ledger +
//! tickets in one transaction), **then** the post-action, **then** the checkpoint.
//!
//! Three stages run free, joined by queues, each as fast as it can: the **connection** fetches
//! batches ahead of the writer (within [`IN_FLIGHT_BYTES`] and [`AHEAD`] batches; see
//! [`may_fetch`]) and sends out the post-action of each batch the writer has committed, before
//! its next fetch; the **worker threads** prepare each fetched batch (and stage it, on
//! PostgreSQL); the **writer** commits the batches in order — the batches prepared while it
//! committed the last, together as one transaction (a group commit: one fsync for all of
//! them; each batch is still settled and acknowledged as its own) — and, at most once per
//! [`CHECKPOINT_EVERY`] and at the round's end, stores the checkpoint after the last
//! acknowledged batch. (An earlier version moved the three in lock step, one batch each per
//! step: every step waited for its slowest stage.)
//!
//! Only identities whose outcome is in the ledger — committed by this batch, or known before it
//! — are acknowledged or passed by a checkpoint. A listed message that the source neither
//! returned nor failed on has vanished by the [`MailSource::fetch`] contract (a source must fail
//! on a message that still exists but whose body did not come back): it is not acknowledged,
//! no checkpoint of this round passes it (it is listed again next round if it still exists),
//! and the round ends after this listing. A fetch that fails stops the batch before any
//! post-action; the message is fetched again next round. A crash anywhere re-lists what was
//! committed after the last stored checkpoint (at most [`CHECKPOINT_EVERY`] of work) and what
//! was not committed; the ledger makes the committed ones duplicates, which are acknowledged
//! then, and are not fetched again.
//!
//! Every stage runs under [`Ctx::bounded`]: a stage that overruns its bound fails with an
//! error naming it (`fetch timed out after 120s …`), and declares its deadline to [`Progress`],
//! which the lease keeper reads to stop renewing a channel that makes no progress.

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use intake_mail::source::{Fetched, Listed, MailSource, PostAction, SourceError, Start};
use intake_mime::Reader;
use intake_store::{Store, StoreError};

use super::RunError;
use crate::pipeline::{self, IngestError, IngestOptions, Summary};
use crate::settings::ChannelSettings;

/// How many messages one listing hands out at most (RC15: bounded rounds).
pub const LIST_LIMIT: usize = 10_000;

/// A batch holds at most this many bytes by the messages' declared sizes (`Listed::size`;
/// unknown sizes count as 0, already known messages are not fetched and count as 0), besides
/// at most `batch` messages. A message larger than this is a batch of its own: a batch is never
/// empty.
pub const BATCH_BYTES: u64 = 32 * 1024 * 1024;

/// The connection fetches ahead of the writer: a further batch only while the batches fetched
/// and not yet committed, with it, hold at most this many bytes by declared size (or none is in
/// flight). Ten 40 MB messages (each a batch of its own) are fetched one after the other's
/// commit, so one copy of raw, parsed and stored mail is in memory at a time.
pub const IN_FLIGHT_BYTES: u64 = 2 * BATCH_BYTES;

/// At most this many batches are fetched and not yet committed (committing, waiting for the
/// writer, being prepared, waiting to be prepared), however small.
pub const AHEAD: usize = 4;

/// A network stage (connect, list, fetch, acknowledge, finish) may take this many times the
/// channel's `timeout_seconds` (one operation's timeout) before it fails naming the stage.
pub const STAGE_FACTOR: u32 = 4;

/// A fetch may take longer by its batch's declared bytes at this rate, so a slow link that
/// keeps delivering a large batch is not cut (each read's own timeout still catches a stall).
pub const FETCH_FLOOR_BYTES_PER_SECOND: u64 = 128 * 1024;

/// How often the backlog the status page shows is written while a round runs.
const BACKLOG_EVERY: Duration = Duration::from_secs(1);

/// How often a checkpoint is stored while a round runs (besides at its end).
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// A database stage (commit, checkpoint) may take at least this long.
pub const MIN_COMMIT_BOUND: Duration = Duration::from_secs(120);

/// The stages of a channel's work, as named in errors and `channel_stalled` events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Open the source: token, connect, TLS, greeting, login, select.
    Connect,
    /// A fresh access token before a round (Graph).
    Token,
    /// Read the checkpoint, list new messages, look them up in the ledger.
    List,
    /// Download a batch.
    Fetch,
    /// Write a batch's outcomes (one transaction).
    Commit,
    /// The post-action on committed messages.
    Acknowledge,
    /// Store a checkpoint.
    Checkpoint,
    /// End a round (POP3 QUIT).
    Finish,
    /// Wait for new mail (IMAP IDLE or a poll interval).
    Idle,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Token => "token",
            Self::List => "list",
            Self::Fetch => "fetch",
            Self::Commit => "commit",
            Self::Acknowledge => "acknowledge",
            Self::Checkpoint => "checkpoint",
            Self::Finish => "finish",
            Self::Idle => "idle",
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a channel is doing and by when it must be done, read by the lease keeper
/// ([`super::lease::hold`]). Stages overlap (a batch commits while the next is fetched), so each
/// running stage has its own deadline ([`Progress::begin`] returns a guard that ends it); between
/// stages (preparing on the worker threads) the deadline is the last ended stage's bound again.
#[derive(Debug)]
pub struct Progress {
    state: Mutex<ProgressState>,
    /// Transactions the drain committed (a group commit of several batches is one).
    commits: std::sync::atomic::AtomicU64,
}

#[derive(Debug)]
struct ProgressState {
    next: u64,
    /// Running stages: (id, stage, began, deadline).
    running: Vec<(u64, Stage, Instant, Instant)>,
    /// When nothing runs: the stage that ended last, when it ended, and the deadline for the
    /// next stage to begin.
    idle: (Stage, Instant, Instant),
}

/// A running stage; dropping it ends the stage.
pub struct StageGuard<'a> {
    progress: &'a Progress,
    id: u64,
    bound: Duration,
}

impl Drop for StageGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut s) = self.progress.state.lock()
            && let Some(i) = s.running.iter().position(|r| r.0 == self.id)
        {
            let (_, stage, _, _) = s.running.swap_remove(i);
            let now = Instant::now();
            s.idle = (stage, now, now + self.bound);
        }
    }
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress {
    /// Starting (connecting), with the longest bound a stage has until the first stage begins.
    pub fn new() -> Self {
        let now = Instant::now();
        Self {
            state: Mutex::new(ProgressState {
                next: 0,
                running: Vec::new(),
                idle: (Stage::Connect, now, now + MIN_COMMIT_BOUND),
            }),
            commits: Default::default(),
        }
    }

    /// How many transactions the drain has committed with this progress.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// `stage` begins now and must end within `bound`; it ends when the guard is dropped.
    pub fn begin(&self, stage: Stage, bound: Duration) -> StageGuard<'_> {
        let now = Instant::now();
        let mut id = 0;
        if let Ok(mut s) = self.state.lock() {
            id = s.next;
            s.next += 1;
            s.running.push((id, stage, now, now + bound));
        }
        StageGuard {
            progress: self,
            id,
            bound,
        }
    }

    /// A stage (and how long it has run) more than `margin` past its deadline — a running
    /// stage, or, when none runs, the wait for the next one.
    pub fn overdue(&self, margin: Duration) -> Option<(Stage, Duration)> {
        let s = self.state.lock().ok()?;
        let now = Instant::now();
        let late = |deadline: Instant| now > deadline + margin;
        if s.running.is_empty() {
            let (stage, since, deadline) = s.idle;
            return late(deadline).then(|| (stage, now - since));
        }
        s.running
            .iter()
            .find(|r| late(r.3))
            .map(|&(_, stage, began, _)| (stage, now - began))
    }
}

/// How long each kind of stage may take.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// A network stage: [`STAGE_FACTOR`] × `timeout`.
    pub stage: Duration,
    /// A database stage: the network bound, at least [`MIN_COMMIT_BOUND`].
    pub commit: Duration,
}

impl Bounds {
    /// A fetch of `bytes` (declared): the network bound plus the bytes at
    /// [`FETCH_FLOOR_BYTES_PER_SECOND`].
    pub fn fetch(&self, bytes: u64) -> Duration {
        self.stage + Duration::from_secs(bytes / FETCH_FLOOR_BYTES_PER_SECOND)
    }

    pub fn new(timeout: Duration) -> Self {
        let stage = timeout * STAGE_FACTOR;
        Self {
            stage,
            commit: stage.max(MIN_COMMIT_BOUND),
        }
    }
}

/// An error of a stage, with the stage named where the error comes from a source.
pub trait AtStage {
    fn at(self, stage: Stage) -> RunError;
}

impl AtStage for SourceError {
    fn at(self, stage: Stage) -> RunError {
        RunError::Source { stage, error: self }
    }
}

impl AtStage for RunError {
    fn at(self, _: Stage) -> RunError {
        self
    }
}

impl AtStage for StoreError {
    fn at(self, _: Stage) -> RunError {
        self.into()
    }
}

impl AtStage for IngestError {
    fn at(self, _: Stage) -> RunError {
        self.into()
    }
}

/// Everything a channel's drain needs besides the connection.
pub struct Ctx {
    pub opts: IngestOptions,
    pub reader: Arc<Reader>,
    pub after: PostAction,
    pub start: Start,
    pub bounds: Bounds,
    pub progress: Arc<Progress>,
    /// Whether the channel's ledger is known to hold messages; once true it stays true (ledger
    /// rows are never deleted), so later rounds do not ask again.
    recorded_before: AtomicBool,
}

impl Ctx {
    /// The channel's run settings; creates its project if missing.
    pub async fn new(
        store: &Store,
        c: &ChannelSettings,
        effects: &crate::pipeline::Effects,
        progress: Arc<Progress>,
    ) -> Result<Self, RunError> {
        let mut opts =
            IngestOptions::new(&c.name, c.project.clone(), c.rules.clone()).with_effects(effects);
        opts.batch = c.batch;
        let reader = Arc::new(opts.reader()?);
        store
            .ensure_project(&opts.project, opts.project.as_str())
            .await?;
        Ok(Self {
            opts,
            reader,
            after: c.after.clone(),
            start: c.start,
            bounds: Bounds::new(c.timeout.unwrap_or(Duration::from_secs(
                crate::settings::DEFAULT_TIMEOUT_SECONDS,
            ))),
            progress,
            recorded_before: AtomicBool::new(false),
        })
    }

    /// Whether the channel's ledger holds any message ([`Store::has_messages`], asked until
    /// the answer is yes).
    async fn recorded_before(&self, store: &Store) -> Result<bool, StoreError> {
        if self.recorded_before.load(Ordering::Relaxed) {
            return Ok(true);
        }
        let has = store.has_messages(&self.opts.channel).await?;
        self.recorded_before.store(has, Ordering::Relaxed);
        Ok(has)
    }

    /// Run one stage within `bound`: its deadline is declared to [`Progress`]; overrunning it
    /// is [`RunError::Timeout`] naming the stage; a source's error names the stage too.
    pub async fn bounded<T, E: AtStage>(
        &self,
        stage: Stage,
        bound: Duration,
        work: impl Future<Output = Result<T, E>>,
    ) -> Result<T, RunError> {
        let _running = self.progress.begin(stage, bound);
        let started = std::time::Instant::now();
        let result = tokio::time::timeout(bound, work).await;
        // `intake serve`'s /metrics: fetch, commit and every other stage's latency.
        metrics::histogram!("intake_stage_seconds", "stage" => stage.as_str())
            .record(started.elapsed().as_secs_f64());
        match result {
            Ok(r) => r.map_err(|e| e.at(stage)),
            Err(_) => Err(RunError::Timeout {
                stage,
                after: bound,
            }),
        }
    }
}

/// What may be done for a committed batch: the post-action on `ack`, and the checkpoint after
/// `upto` (the last item before anything of the round that has no outcome).
struct Settled<'a> {
    ack: Vec<Listed>,
    upto: Option<&'a Listed>,
}

/// Split a committed batch into what has an outcome (known before, or committed now) and what
/// the source did not return; `gap` turns true at the first item without an outcome, and no
/// checkpoint passes it.
fn settle<'a>(
    batch: &'a [Listed],
    known: &HashSet<String>,
    committed: &HashSet<String>,
    gap: &mut bool,
) -> (Settled<'a>, Vec<&'a Listed>) {
    let mut settled = Settled {
        ack: Vec::with_capacity(batch.len()),
        upto: None,
    };
    let mut missing = Vec::new();
    for l in batch {
        if known.contains(&l.identity) || committed.contains(&l.identity) {
            settled.ack.push(l.clone());
            if !*gap {
                settled.upto = Some(l);
            }
        } else {
            *gap = true;
            missing.push(l);
        }
    }
    (settled, missing)
}

/// Take everything new: rounds of list → (fetch → commit → post-action → checkpoint) per batch,
/// until the source has nothing more or `stop` says so (checked between batches: a batch is
/// always finished).
pub async fn drain<S: MailSource>(
    store: &Store,
    source: &mut S,
    origin: &str,
    ctx: &Ctx,
    summary: &mut Summary,
    stop: Option<&tokio::sync::watch::Receiver<bool>>,
) -> Result<(), RunError> {
    let channel = &ctx.opts.channel;
    let b = ctx.bounds;
    let stopped = || stop.is_some_and(|r| *r.borrow());
    source.supports(&ctx.after).map_err(RunError::Unsupported)?;
    // Durable before destructive: every post-action below follows a commit it depends on.
    if store.durability() != intake_store::Durability::PowerLoss {
        return Err(RunError::NotDurable);
    }
    loop {
        let (listing, known) = ctx
            .bounded(Stage::List, b.stage, async {
                let checkpoint = store.checkpoint(channel).await?;
                let listing = source
                    .list(checkpoint.as_deref(), ctx.start, LIST_LIMIT)
                    .await
                    .map_err(|e| e.at(Stage::List))?;
                // On a channel's first round nothing can be known yet (as `intake ingest`
                // does): the look-up of every listed identity is skipped.
                let known = if ctx.recorded_before(store).await? {
                    let ids: Vec<String> =
                        listing.items.iter().map(|i| i.identity.clone()).collect();
                    store.known_identities(channel, &ids).await?
                } else {
                    HashSet::new()
                };
                Ok::<_, RunError>((listing, known))
            })
            .await?;
        summary.duplicate += known.len() as u64;
        // `intake serve`'s channel status: what this listing found without an outcome,
        // counted down per committed batch.
        let backlog = listing
            .items
            .iter()
            .filter(|l| !known.contains(&l.identity))
            .count() as i64;
        let weight = |l: &Listed| {
            if known.contains(&l.identity) {
                0
            } else {
                l.size.unwrap_or(0)
            }
        };
        let batches = ramped(&listing.items, ctx.opts.batch, BATCH_BYTES, weight);
        let bytes: Vec<u64> = batches.iter().map(|b| b.iter().map(weight).sum()).collect();
        let fetch_new = async |src: &mut S, batch: &[Listed]| {
            let todo: Vec<Listed> = batch
                .iter()
                .filter(|i| !known.contains(&i.identity))
                .cloned()
                .collect();
            if todo.is_empty() {
                return Ok(Vec::new());
            }
            let bytes = todo.iter().filter_map(|l| l.size).sum();
            ctx.bounded(Stage::Fetch, b.fetch(bytes), src.fetch(&todo))
                .await
        };
        // Raw messages of a batch with their origin (for the mail log), then prepared on the
        // worker threads.
        let prepare = async |batch: &[Listed], fetched: Vec<Fetched>| {
            let keys: std::collections::HashMap<&str, &str> = batch
                .iter()
                .map(|l| (l.identity.as_str(), l.key.as_str()))
                .collect();
            let raw = fetched
                .into_iter()
                .map(|f| {
                    let key = keys.get(f.identity.as_str()).copied().unwrap_or("");
                    (format!("{origin}/{key}"), f.identity, f.raw, f.oversized)
                })
                .collect();
            let mut prepared =
                pipeline::prepare_fetched(ctx.reader.clone(), raw, ctx.opts.workers).await?;
            // While the batch before it commits, as `intake ingest` does.
            let staged = pipeline::ready_for_commit(store, channel, &mut prepared).await?;
            Ok::<_, RunError>((prepared, staged))
        };
        let acknowledge = async |src: &mut S, ack: &[Listed]| {
            if ack.is_empty() {
                return Ok(());
            }
            ctx.bounded(
                Stage::Acknowledge,
                b.stage,
                src.acknowledge(ack, &ctx.after),
            )
            .await
        };
        // Three stages run free, each as fast as it can, joined by queues (a stage that waits
        // for the one before it never holds up the one after): the connection fetches batches
        // ahead (within the in-flight bound) and sends out the post-action of each committed
        // batch; the worker threads prepare; the single database writer commits, in order.
        let (fetched_tx, fetched_rx) = tokio::sync::mpsc::channel::<(usize, Vec<Fetched>)>(1);
        // Prepared batches wait for the writer without holding up the preparing (the in-flight
        // bound already counts them), so a writer that falls behind finds them all waiting
        // and commits them together.
        let (prepared_tx, prepared_rx) = tokio::sync::mpsc::channel(AHEAD);
        let (settled_tx, mut settled_rx) = tokio::sync::mpsc::unbounded_channel::<Settled>();
        let (passed_tx, mut passed_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        // The connection: fetch, and the post-action of committed batches (which goes first:
        // it is short, and a batch's checkpoint waits for it). Returns the checkpoint after
        // the last acknowledged batch, and whether it stopped before fetching every batch.
        let connection = async {
            let mut fetched_tx = Some(fetched_tx);
            // Declared bytes of the batches fetched and not yet committed, oldest first.
            let mut in_flight: std::collections::VecDeque<u64> = Default::default();
            let (mut next, mut passed, mut cut) = (0, None, false);
            loop {
                if fetched_tx.is_some() && (next == batches.len() || stopped()) {
                    // Nothing more to fetch: the preparing stage ends once it has the rest.
                    cut = next < batches.len();
                    fetched_tx = None;
                }
                let room = fetched_tx.is_some() && may_fetch(&in_flight, bytes[next]);
                let notice = if room {
                    settled_rx.try_recv().ok()
                } else {
                    match settled_rx.recv().await {
                        Some(settled) => Some(settled),
                        // The writer is done: every committed batch is acknowledged.
                        None => return Ok::<_, RunError>((passed, cut)),
                    }
                };
                if let Some(settled) = notice {
                    in_flight.pop_front();
                    acknowledge(source, &settled.ack).await?;
                    if let Some(cp) = settled.upto.and_then(|l| source.checkpoint_after(l)) {
                        passed = Some(cp.clone());
                        let _ = passed_tx.send(cp);
                    }
                    continue;
                }
                let fetched = fetch_new(source, batches[next]).await?;
                in_flight.push_back(bytes[next]);
                let sent = match &fetched_tx {
                    Some(tx) => tx.send((next, fetched)).await.is_ok(),
                    None => false,
                };
                if sent {
                    next += 1;
                } else {
                    // The writer stopped (a stop request): nothing more is fetched.
                    (cut, fetched_tx) = (true, None);
                }
            }
        };
        // The worker threads: prepare each fetched batch, and stage it while the batch before
        // it commits.
        let preparing = async {
            // Both queues owned here: the writer's ends when this stage does, and the
            // connection's sends fail when it stops.
            let (mut fetched_rx, prepared_tx) = (fetched_rx, prepared_tx);
            while let Some((i, fetched)) = fetched_rx.recv().await {
                let prepared = prepare(batches[i], fetched).await?;
                if prepared_tx.send((i, prepared)).await.is_err() {
                    break;
                }
            }
            Ok::<_, RunError>(())
        };
        // The database writer: commit each batch in order, then hand it to the connection for
        // its post-action; write the checkpoint the connection passed last between commits.
        let writer = async {
            let mut summary = Summary::default();
            // Whether an item of this round has no outcome (the source did not return it): no
            // checkpoint of this round may pass it.
            let mut gap = false;
            let mut interrupted = false;
            // The listing's backlog first: written here while the connection fetches the
            // first batch, not on the connection's path before it. Then counted down at most
            // once per BACKLOG_EVERY while the round runs (each is a write with its own fsync
            // between two commits), and once at its end.
            note_backlog(store, channel, backlog).await;
            let (mut backlog, mut noted) = (backlog, Instant::now());
            let (mut passed, mut checkpointed) = (None, Instant::now());
            // Owned here: when the writer stops, the preparing stage's sends fail.
            let mut prepared_rx = prepared_rx;
            while let Some(first) = prepared_rx.recv().await {
                if stopped() {
                    interrupted = true;
                    break;
                }
                // A group commit: the batches prepared meanwhile join this one's transaction,
                // so a writer that falls behind pays one commit and one fsync for all of them.
                // They are fetched already (within the in-flight bound), and each is still
                // settled and acknowledged as its own batch below.
                let (mut group, (mut prepared, mut staged)) = (vec![first.0], first.1);
                while let Ok((i, (more, more_staged))) = prepared_rx.try_recv() {
                    group.push(i);
                    prepared.extend(more);
                    staged = intake_store::Staged::join(staged, more_staged);
                }
                let committed: HashSet<String> = prepared
                    .iter()
                    .map(|(_, inc)| inc.identity.clone())
                    .collect();
                // On a task of its own: the SQLite writer runs its transaction synchronously
                // (`block_in_place`), which would stop every future joined with it in this
                // task — the fetch on the connection and the preparing — for the whole commit
                // and its fsync.
                let counted = ctx
                    .bounded(
                        Stage::Commit,
                        b.commit,
                        spawn_commit(store, ctx, prepared, staged),
                    )
                    .await?;
                ctx.progress.commits.fetch_add(1, Ordering::Relaxed);
                summary.merge(&counted);
                backlog = (backlog - committed.len() as i64).max(0);
                if noted.elapsed() >= BACKLOG_EVERY {
                    note_backlog(store, channel, backlog).await;
                    noted = Instant::now();
                }
                for i in group {
                    let (settled, missing) = settle(batches[i], &known, &committed, &mut gap);
                    if !missing.is_empty() {
                        log_missing(store, channel, &missing).await;
                    }
                    let _ = settled_tx.send(settled);
                }
                // The newest checkpoint the connection passed (its batch is acknowledged), at
                // most once per CHECKPOINT_EVERY: each is a transaction of its own on the
                // writer's path, and one that lags only re-lists messages the ledger knows.
                while let Ok(cp) = passed_rx.try_recv() {
                    passed = Some(cp);
                }
                if checkpointed.elapsed() >= CHECKPOINT_EVERY
                    && let Some(cp) = passed.take()
                {
                    save_checkpoint(ctx, store, channel, &cp).await?;
                    checkpointed = Instant::now();
                }
            }
            drop(settled_tx);
            Ok::<_, RunError>((summary, gap, interrupted, backlog))
        };
        let ((passed, cut), (), (counted, gap, stopped_writing, backlog)) =
            tokio::try_join!(connection, preparing, writer)?;
        // A round cut short by a stop request ends here: no checkpoint of the listing passes
        // the batches it did not fetch or commit.
        let interrupted = cut || stopped_writing;
        summary.merge(&counted);
        if let Some(cp) = passed {
            save_checkpoint(ctx, store, channel, &cp).await?;
        }
        note_backlog(store, channel, backlog).await;
        if interrupted {
            return Ok(());
        }
        if !gap && let Some(cp) = &listing.checkpoint {
            save_checkpoint(ctx, store, channel, cp).await?;
        }
        // After a gap the round ends here, so a message that keeps coming back without a body
        // is retried at the next round, not in a tight loop.
        if !listing.more || gap {
            ctx.bounded(Stage::Finish, b.stage, source.finish()).await?;
            return Ok(());
        }
        if stopped() {
            return Ok(());
        }
    }
}

/// Commit prepared messages (a batch, or a group of batches) as one transaction on a task of
/// its own (see the drain loop); their counts come back.
/// Dropping the returned future (the stage's bound ran out, or the drain was abandoned) aborts
/// the task at its next await, as dropping an inline commit would: an interrupted transaction
/// rolls back, and one that committed meanwhile is a known duplicate next round.
async fn spawn_commit(
    store: &Store,
    ctx: &Ctx,
    prepared: Vec<(String, intake_store::Incoming)>,
    staged: Option<intake_store::Staged>,
) -> Result<Summary, RunError> {
    struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);
    impl<T> Drop for AbortOnDrop<T> {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let (store, opts) = (store.clone(), ctx.opts.clone());
    let mut task = AbortOnDrop(tokio::spawn(async move {
        let mut counted = Summary::default();
        pipeline::commit(&store, &opts, prepared, staged, &mut counted)
            .await
            .map(|_| counted)
    }));
    match (&mut task.0).await {
        Ok(r) => Ok(r?),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(RunError::Task(format!("commit: {e}"))),
    }
}

/// Record the channel's backlog; a failure only costs the status page a number.
async fn note_backlog(store: &Store, channel: &str, backlog: i64) {
    if let Err(e) = store
        .record_backlog(channel, super::lease::node(), backlog)
        .await
    {
        tracing::debug!(channel, error = %e, "could not record the backlog");
    }
}

/// A mail-log event for listed messages the source returned neither nor failed on.
async fn log_missing(store: &Store, channel: &str, missing: &[&Listed]) {
    let keys: Vec<&str> = missing.iter().map(|l| l.key.as_str()).collect();
    let msg = format!(
        "{} listed message(s) were not returned by the server (gone meanwhile?): not acknowledged; the checkpoint stays before them and they are listed again next round",
        missing.len()
    );
    tracing::warn!(channel, ?keys, "{msg}");
    let _ = store
        .log_event(
            Some(channel),
            "warn",
            "message_not_returned",
            &msg,
            serde_json::json!({"keys": keys}),
        )
        .await;
}

/// `items` in batches of at most `batch` messages, the first and the last a fifth of that (the
/// stages of the drain overlap sooner at the start and the final post-action is short at the
/// end), each cut further so it holds at most `budget` bytes by `size` (a single larger item
/// is a batch of its own; never an empty batch).
pub fn ramped(
    items: &[Listed],
    batch: usize,
    budget: u64,
    size: impl Fn(&Listed) -> u64,
) -> Vec<&[Listed]> {
    let batch = batch.max(1);
    let edge = (batch / 5).max(1);
    let by_count: Vec<&[Listed]> = if items.len() <= batch {
        items.chunks(batch).collect()
    } else {
        let (first, rest) = items.split_at(edge);
        let (middle, last) = rest.split_at(rest.len().saturating_sub(edge));
        std::iter::once(first)
            .chain(middle.chunks(batch))
            .chain(std::iter::once(last).filter(|l| !l.is_empty()))
            .collect()
    };
    let mut out = Vec::with_capacity(by_count.len());
    for chunk in by_count {
        let (mut start, mut bytes) = (0, 0u64);
        for (j, l) in chunk.iter().enumerate() {
            let s = size(l);
            if j > start && bytes.saturating_add(s) > budget {
                out.push(&chunk[start..j]);
                (start, bytes) = (j, 0);
            }
            bytes = bytes.saturating_add(s);
        }
        if start < chunk.len() {
            out.push(&chunk[start..]);
        }
    }
    out
}

/// Store a checkpoint, within the checkpoint stage's bound: the one after a committed and
/// acknowledged batch, where the source has one per message (IMAP: after the last item of the
/// round with an outcome before any gap), or the listing's own (POP3, Graph).
async fn save_checkpoint(
    ctx: &Ctx,
    store: &Store,
    channel: &str,
    checkpoint: &str,
) -> Result<(), RunError> {
    ctx.bounded(
        Stage::Checkpoint,
        ctx.bounds.commit,
        store.set_checkpoint(channel, checkpoint),
    )
    .await
}

/// Whether a batch of `bytes` (declared) may be fetched while the batches in `in_flight` are
/// fetched and not yet committed: always when none is, otherwise while they stay within
/// [`IN_FLIGHT_BYTES`] and [`AHEAD`] batches. Two full batches ([`BATCH_BYTES`] each) fit,
/// so one commits while the next is fetched and prepared; a batch larger than that (one very
/// large message) waits until the one before it is committed.
fn may_fetch(in_flight: &std::collections::VecDeque<u64>, bytes: u64) -> bool {
    in_flight.is_empty()
        || (in_flight.len() < AHEAD && in_flight.iter().sum::<u64>() + bytes <= IN_FLIGHT_BYTES)
}

#[cfg(test)]
mod tests;
