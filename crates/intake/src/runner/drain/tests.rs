//! Unit tests of the drain: batch shapes, and acknowledgement and checkpoints against fake
//! sources.

use intake_mail::source::Listed;

use super::ramped;

fn items(n: usize) -> Vec<Listed> {
    (0..n)
        .map(|i| Listed {
            key: i.to_string(),
            identity: format!("x:{i}"),
            size: None,
        })
        .collect()
}

#[test]
fn batches_ramp_up_and_down_and_cover_everything_once() {
    let sizes = |n: usize, b: usize| -> Vec<usize> {
        let v = items(n);
        let batches = ramped(&v, b, u64::MAX, |l| l.size.unwrap_or(0));
        let flat: Vec<&str> = batches
            .iter()
            .flat_map(|b| b.iter().map(|l| l.key.as_str()))
            .collect();
        assert_eq!(flat.len(), n);
        assert!(flat.iter().enumerate().all(|(i, k)| *k == i.to_string()));
        batches.iter().map(|b| b.len()).collect()
    };
    assert_eq!(sizes(1200, 500), [100, 500, 500, 100]);
    assert_eq!(sizes(1000, 500), [100, 500, 300, 100]);
    assert_eq!(sizes(400, 500), [400]);
    assert_eq!(sizes(0, 500), Vec::<usize>::new());
    assert_eq!(sizes(7, 1), [1, 1, 1, 1, 1, 1, 1]);
    assert!(sizes(10_000, 100).iter().all(|s| *s <= 100));
}

#[test]
fn batches_are_cut_by_bytes_too_and_never_empty() {
    const MIB: u64 = 1024 * 1024;
    // Ten 40 MB messages: each its own batch (larger than the budget, never an empty batch).
    let mut v = items(10);
    for l in &mut v {
        l.size = Some(40 * MIB);
    }
    let batches = ramped(&v, 100, super::BATCH_BYTES, |l| l.size.unwrap_or(0));
    assert_eq!(batches.iter().map(|b| b.len()).collect::<Vec<_>>(), [1; 10]);
    // 100 messages of 1 MiB in batches of 100: 32 MiB at most per batch, order kept.
    let mut v = items(100);
    for l in &mut v {
        l.size = Some(MIB);
    }
    let batches = ramped(&v, 100, super::BATCH_BYTES, |l| l.size.unwrap_or(0));
    assert_eq!(
        batches.iter().map(|b| b.len()).collect::<Vec<_>>(),
        [32, 32, 32, 4]
    );
    let flat: Vec<&str> = batches
        .iter()
        .copied()
        .flatten()
        .map(|l| l.key.as_str())
        .collect();
    assert_eq!(flat, (0..100).map(|i| i.to_string()).collect::<Vec<_>>());
    // Unknown sizes count as 0; a size the caller zeroes (already known) does not cut.
    let v = items(50);
    assert_eq!(ramped(&v, 100, super::BATCH_BYTES, |_| 0).len(), 1);
    let mut v = items(3);
    v[1].size = Some(33 * MIB);
    let batches = ramped(&v, 100, super::BATCH_BYTES, |l| l.size.unwrap_or(0));
    assert_eq!(
        batches.iter().map(|b| b.len()).collect::<Vec<_>>(),
        [1, 1, 1]
    );
    assert!(
        ramped(&v, 100, super::BATCH_BYTES, |_| 0)
            .iter()
            .all(|b| !b.is_empty())
    );
}

mod fake {
    //! A scripted [`MailSource`]: numbered messages, a fetch that can leave some out without an
    //! error or fail, and a record of what was fetched and acknowledged.

    use std::collections::HashSet;
    use std::sync::Arc;
    use std::time::Duration;

    use intake_mail::source::{
        Fetched, Listed, Listing, MailSource, PostAction, SourceError, Start,
    };
    use intake_store::Store;

    use super::super::{Ctx, Progress, drain};
    use crate::pipeline::Summary;
    use crate::runner::{RunError, Stage};
    use crate::settings::{ChannelSettings, Mode, SourceSettings};

    #[derive(Default)]
    pub struct Fake {
        pub count: usize,
        /// Identities a fetch leaves out without an error.
        pub drop: HashSet<String>,
        /// Fetches that fail before any succeeds.
        pub fail_fetches: usize,
        /// A fetch never answers.
        pub hang: bool,
        pub fetched: Vec<String>,
        pub acked: Vec<String>,
        /// The checkpoint a listing gives (as Graph's delta link or a POP3 listing would).
        pub listing_checkpoint: Option<String>,
        /// Asks the drain to stop (its stop receiver turns true) once this many fetches ran.
        pub stop_after: Option<(usize, tokio::sync::watch::Sender<bool>)>,
        /// Asks the drain to stop at the first acknowledgement.
        pub stop_on_ack: Option<tokio::sync::watch::Sender<bool>>,
        /// Each message's declared size (100 bytes if not given).
        pub size: Option<u64>,
        /// At the first fetch, another connection takes the database's write lock and holds it
        /// this long: the drain's writer falls behind the connection.
        pub lock_on_fetch: Option<(Store, Duration)>,
    }

    pub fn id(n: usize) -> String {
        format!("fake:{n}")
    }

    impl MailSource for Fake {
        async fn list(
            &mut self,
            checkpoint: Option<&str>,
            _start: Start,
            _limit: usize,
        ) -> Result<Listing, SourceError> {
            let after: usize = checkpoint.map_or(0, |c| c.parse().unwrap());
            Ok(Listing {
                items: (after + 1..=self.count)
                    .map(|n| Listed {
                        key: n.to_string(),
                        identity: id(n),
                        size: Some(self.size.unwrap_or(100)),
                    })
                    .collect(),
                checkpoint: self.listing_checkpoint.clone(),
                more: false,
            })
        }

        async fn fetch(&mut self, items: &[Listed]) -> Result<Vec<Fetched>, SourceError> {
            if self.hang {
                std::future::pending::<()>().await;
            }
            if self.fail_fetches > 0 {
                self.fail_fetches -= 1;
                return Err(SourceError::Protocol(
                    "the FETCH answer for a listed UID had no BODY[]".into(),
                ));
            }
            if let Some((store, hold)) = self.lock_on_fetch.take() {
                let tx = store.begin_write().await.unwrap();
                tokio::spawn(async move {
                    tokio::time::sleep(hold).await;
                    tx.rollback().await.unwrap();
                });
            }
            if let Some((n, stop)) = &mut self.stop_after {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    let _ = stop.send(true);
                }
            }
            let mut out = Vec::new();
            for l in items.iter().filter(|l| !self.drop.contains(&l.identity)) {
                self.fetched.push(l.identity.clone());
                let raw = format!(
                    "From: a{k}@example.com\r\nTo: help@example.com\r\nSubject: message {k}\r\nMessage-ID: <m{k}@example.com>\r\nDate: Mon, 2 Nov 2026 10:00:0{} +0000\r\n\r\nBody {k}\r\n",
                    l.key.len() % 10,
                    k = l.key
                );
                out.push(Fetched {
                    identity: l.identity.clone(),
                    raw: raw.into_bytes(),
                    oversized: None,
                });
            }
            Ok(out)
        }

        async fn acknowledge(
            &mut self,
            items: &[Listed],
            _action: &PostAction,
        ) -> Result<(), SourceError> {
            self.acked.extend(items.iter().map(|l| l.identity.clone()));
            if let Some(stop) = self.stop_on_ack.take() {
                let _ = stop.send(true);
            }
            Ok(())
        }

        fn checkpoint_after(&self, item: &Listed) -> Option<String> {
            Some(item.key.clone())
        }
    }

    pub fn channel(batch: usize, timeout: Duration) -> ChannelSettings {
        ChannelSettings {
            name: "fake".into(),
            project: "HELP".parse().unwrap(),
            rules: intake_core::ChannelRules::default(),
            source: SourceSettings::Maildir("unused".into()),
            after: PostAction::MarkRead,
            start: Start::All,
            batch,
            mode: Mode::Poll,
            wait: Duration::from_secs(1),
            timeout: Some(timeout),
        }
    }

    pub async fn run(
        store: &Store,
        src: &mut Fake,
        c: &ChannelSettings,
    ) -> Result<Summary, RunError> {
        run_until(store, src, c, None).await
    }

    /// [`run`] with a stop receiver, as `intake serve` passes one.
    pub async fn run_until(
        store: &Store,
        src: &mut Fake,
        c: &ChannelSettings,
        stop: Option<&tokio::sync::watch::Receiver<bool>>,
    ) -> Result<Summary, RunError> {
        let ctx = Ctx::new(store, c, &Default::default(), Arc::new(Progress::new())).await?;
        let mut summary = Summary::default();
        drain(store, src, "fake", &ctx, &mut summary, stop).await?;
        Ok(summary)
    }

    /// [`run`], with how many transactions the drain committed.
    pub async fn run_counting(
        store: &Store,
        src: &mut Fake,
        c: &ChannelSettings,
    ) -> Result<(Summary, u64), RunError> {
        let progress = Arc::new(Progress::new());
        let ctx = Ctx::new(store, c, &Default::default(), progress.clone()).await?;
        let mut summary = Summary::default();
        drain(store, src, "fake", &ctx, &mut summary, None).await?;
        Ok((summary, progress.commits()))
    }

    pub async fn outcomes(store: &Store) -> i64 {
        store.count(intake_store::Table::Ledger).await.unwrap()
    }

    pub fn stage_of(e: &RunError) -> Option<Stage> {
        match e {
            RunError::Source { stage, .. } | RunError::Timeout { stage, .. } => Some(*stage),
            _ => None,
        }
    }
}

/// Defect 1: a listed message the source leaves out of a fetch without an error has no outcome,
/// so it is not acknowledged and no checkpoint passes it; the next round lists it again and,
/// once the source returns it, it is committed and acknowledged.
#[tokio::test]
async fn a_message_left_out_of_a_fetch_is_neither_acknowledged_nor_passed_by_the_checkpoint() {
    use fake::{Fake, id};
    let db = intake_testkit::TestDb::sqlite();
    let store = intake_store::Store::connect(&db.url).await.unwrap();
    let c = fake::channel(2, std::time::Duration::from_secs(5));
    let mut src = Fake {
        count: 5,
        drop: [id(3)].into(),
        ..Fake::default()
    };
    let s = fake::run(&store, &mut src, &c).await.unwrap();
    assert_eq!(s.created, 4, "{s:?}");
    assert_eq!(
        src.acked,
        [id(1), id(2), id(4), id(5)],
        "message 3 has no outcome"
    );
    assert_eq!(
        store.checkpoint("fake").await.unwrap().as_deref(),
        Some("2"),
        "the checkpoint stays before the message without an outcome"
    );
    let events = store.recent_events(10).await.unwrap();
    assert!(
        events.iter().any(|e| e.kind == "message_not_returned"),
        "the mail log says so: {events:?}"
    );
    // Next round: the source returns it now.
    src.drop.clear();
    src.acked.clear();
    src.fetched.clear();
    let s = fake::run(&store, &mut src, &c).await.unwrap();
    assert_eq!((s.created, s.duplicate), (1, 2), "{s:?}");
    assert_eq!(src.fetched, [id(3)], "only the missing one is fetched");
    assert_eq!(src.acked, [id(3), id(4), id(5)]);
    assert_eq!(
        store.checkpoint("fake").await.unwrap().as_deref(),
        Some("5")
    );
    assert_eq!(fake::outcomes(&store).await, 5);
}

/// Defect 1: a fetch that fails (a body missing for a message that still exists) stops the
/// batch before any post-action; the message is fetched again next round.
#[tokio::test]
async fn a_failed_fetch_acknowledges_nothing_and_the_messages_are_fetched_again() {
    use fake::{Fake, id};
    let db = intake_testkit::TestDb::sqlite();
    let store = intake_store::Store::connect(&db.url).await.unwrap();
    let c = fake::channel(10, std::time::Duration::from_secs(5));
    let mut src = Fake {
        count: 3,
        fail_fetches: 1,
        ..Fake::default()
    };
    let e = fake::run(&store, &mut src, &c).await.unwrap_err();
    assert_eq!(fake::stage_of(&e), Some(super::Stage::Fetch), "{e}");
    assert!(e.to_string().starts_with("fetch: "), "{e}");
    assert!(
        src.acked.is_empty(),
        "no post-action at all: {:?}",
        src.acked
    );
    assert_eq!(store.checkpoint("fake").await.unwrap(), None);
    assert_eq!(fake::outcomes(&store).await, 0);
    let s = fake::run(&store, &mut src, &c).await.unwrap();
    assert_eq!(s.created, 3);
    assert_eq!(src.fetched, [id(1), id(2), id(3)], "fetched again");
    assert_eq!(src.acked, [id(1), id(2), id(3)]);
}

/// Defect 4: a stage that does not finish within its bound fails naming the stage.
#[tokio::test]
async fn a_fetch_that_never_answers_times_out_naming_the_stage() {
    let db = intake_testkit::TestDb::sqlite();
    let store = intake_store::Store::connect(&db.url).await.unwrap();
    let timeout = std::time::Duration::from_millis(50);
    let c = fake::channel(10, timeout);
    let mut src = fake::Fake {
        count: 2,
        hang: true,
        ..fake::Fake::default()
    };
    let started = std::time::Instant::now();
    let e = fake::run(&store, &mut src, &c).await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(fake::stage_of(&e), Some(super::Stage::Fetch), "{e}");
    assert!(e.to_string().starts_with("fetch timed out"), "{e}");
    assert!(
        took >= timeout * super::STAGE_FACTOR && took < std::time::Duration::from_secs(5),
        "{took:?}"
    );
    assert!(src.acked.is_empty());
}

/// A stop request in the middle of a round: the connection fetches nothing more, every batch
/// committed is acknowledged, and neither the listing's checkpoint nor a message's passes what
/// was not committed; the next round takes the rest, each message once.
#[tokio::test]
async fn a_round_stopped_midway_acknowledges_what_it_committed_and_no_checkpoint_passes_the_rest() {
    use fake::{Fake, id};
    let db = intake_testkit::TestDb::sqlite();
    let store = intake_store::Store::connect(&db.url).await.unwrap();
    let c = fake::channel(5, std::time::Duration::from_secs(5));
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    // The sixth fetch can start only once two batches are committed (at most AHEAD = 4 are
    // fetched and not yet committed), so the stop comes after some commits.
    let mut src = Fake {
        count: 60,
        listing_checkpoint: Some("end".into()),
        stop_after: Some((6, stop_tx)),
        ..Fake::default()
    };
    let s = fake::run_until(&store, &mut src, &c, Some(&stop))
        .await
        .unwrap();
    assert!(
        s.created >= 6 && s.created < 60,
        "stopped midway with something committed: {s:?}"
    );
    assert_eq!(fake::outcomes(&store).await, s.created as i64);
    let committed: Vec<String> = (1..=s.created as usize).map(id).collect();
    assert_eq!(
        src.acked, committed,
        "exactly what was committed is acknowledged"
    );
    assert!(
        src.fetched.len() < 60,
        "nothing more is fetched once stopped: {:?}",
        src.fetched
    );
    assert_eq!(
        store.checkpoint("fake").await.unwrap(),
        Some(s.created.to_string()),
        "the checkpoint is the last committed message's, never the listing's"
    );
    // The next round takes the rest, each message once.
    src.stop_after = None;
    src.acked.clear();
    let rest = fake::run(&store, &mut src, &c).await.unwrap();
    assert_eq!(rest.created + s.created, 60, "{rest:?}");
    assert_eq!(fake::outcomes(&store).await, 60);
    assert_eq!(
        store.checkpoint("fake").await.unwrap().as_deref(),
        Some("end")
    );
}

/// A stop request while nothing is in flight: the writer has committed everything fetched and
/// never sees the request, the connection fetches nothing more; the listing's checkpoint still
/// does not pass the batches it did not fetch.
#[tokio::test]
async fn a_round_stopped_between_batches_does_not_store_the_listings_checkpoint() {
    use fake::{Fake, id};
    let db = intake_testkit::TestDb::sqlite();
    let store = intake_store::Store::connect(&db.url).await.unwrap();
    let c = fake::channel(1, std::time::Duration::from_secs(5));
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    // 40 MB each by declared size: one batch in flight at a time, so the stop (at the first
    // post-action) comes when the writer has nothing more to commit.
    let mut src = Fake {
        count: 3,
        listing_checkpoint: Some("end".into()),
        stop_on_ack: Some(stop_tx),
        size: Some(40 << 20),
        ..Fake::default()
    };
    let s = fake::run_until(&store, &mut src, &c, Some(&stop))
        .await
        .unwrap();
    assert_eq!(s.created, 1, "{s:?}");
    assert_eq!(src.fetched, [id(1)]);
    assert_eq!(src.acked, [id(1)]);
    assert_eq!(
        store.checkpoint("fake").await.unwrap().as_deref(),
        Some("1"),
        "not the listing's checkpoint: messages 2 and 3 were never fetched"
    );
    let rest = fake::run(&store, &mut src, &c).await.unwrap();
    assert_eq!(rest.created, 2, "{rest:?}");
    assert_eq!(
        store.checkpoint("fake").await.unwrap().as_deref(),
        Some("end")
    );
}

/// A writer that falls behind (the database is locked by another connection while the first
/// batch commits) commits the batches prepared meanwhile as one transaction; each batch is
/// still acknowledged as its own, every message once and in order, and the checkpoint ends
/// after the last. (Multi-threaded, as in `intake run`: the SQLite writer blocks its worker
/// while it waits for the lock, and the lock's holder must run meanwhile to let it go.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_behind_commits_the_waiting_batches_as_one_transaction() {
    use fake::{Fake, id};
    let db = intake_testkit::TestDb::sqlite();
    let store = intake_store::Store::connect(&db.url).await.unwrap();
    let locker = intake_store::Store::connect(&db.url).await.unwrap();
    let c = fake::channel(10, std::time::Duration::from_secs(30));
    let listed: Vec<intake_mail::source::Listed> = (1..=100)
        .map(|n| intake_mail::source::Listed {
            key: n.to_string(),
            identity: id(n),
            size: Some(100),
        })
        .collect();
    let batches = super::ramped(&listed, 10, super::BATCH_BYTES, |_| 100).len();
    let mut src = Fake {
        count: 100,
        lock_on_fetch: Some((locker, std::time::Duration::from_secs(1))),
        ..Fake::default()
    };
    let (s, commits) = fake::run_counting(&store, &mut src, &c).await.unwrap();
    assert_eq!(s.created, 100, "{s:?}");
    assert!(
        commits <= batches as u64 - (super::AHEAD as u64 - 2),
        "{commits} transactions for {batches} batches: the batches fetched while the first \
         waited for the lock were committed together"
    );
    assert_eq!(src.acked, (1..=100).map(id).collect::<Vec<_>>());
    assert_eq!(fake::outcomes(&store).await, 100);
    assert_eq!(
        store.checkpoint("fake").await.unwrap().as_deref(),
        Some("100")
    );
    // Without a lock the writer need not fall behind: each batch may be its own transaction,
    // and nothing is counted twice.
    let mut src = Fake {
        count: 100,
        ..Fake::default()
    };
    let again = intake_testkit::TestDb::sqlite();
    let store = intake_store::Store::connect(&again.url).await.unwrap();
    let (s, commits) = fake::run_counting(&store, &mut src, &c).await.unwrap();
    assert_eq!(s.created, 100, "{s:?}");
    assert!((1..=batches as u64).contains(&commits), "{commits}");
}

#[test]
fn the_connection_fetches_ahead_within_the_byte_and_batch_bounds() {
    use std::collections::VecDeque;

    use super::{AHEAD, BATCH_BYTES, IN_FLIGHT_BYTES, may_fetch};
    const MB: u64 = 1 << 20;
    assert!(may_fetch(&VecDeque::new(), 40 * MB), "nothing in flight");
    assert!(
        may_fetch(&VecDeque::from([BATCH_BYTES]), BATCH_BYTES),
        "two full batches: one commits while the next is fetched"
    );
    assert!(
        !may_fetch(&VecDeque::from([40 * MB]), 40 * MB),
        "a 40 MB message waits for the one before it to commit"
    );
    assert!(
        !may_fetch(&VecDeque::from([IN_FLIGHT_BYTES]), 1),
        "the byte bound counts what is in flight"
    );
    let small: VecDeque<u64> = std::iter::repeat_n(5 * MB, AHEAD - 1).collect();
    assert!(may_fetch(&small, 5 * MB), "small batches up to AHEAD");
    let full: VecDeque<u64> = std::iter::repeat_n(MB, AHEAD).collect();
    assert!(!may_fetch(&full, 0), "never more than AHEAD batches");
}

/// Overlapping stages each keep their own deadline: a short stage that ended does not make a
/// long one still within its bound look stalled; a running stage past its deadline does, and
/// so does a gap between stages longer than the last stage's bound.
#[test]
fn progress_tracks_overlapping_stages_by_their_own_deadlines() {
    use std::time::Duration;

    use super::{Progress, Stage};
    let p = Progress::new();
    assert_eq!(p.overdue(Duration::ZERO), None);
    let commit = p.begin(Stage::Commit, Duration::from_secs(60));
    {
        let _fetch = p.begin(Stage::Fetch, Duration::from_millis(1));
    }
    let _ack = p.begin(Stage::Acknowledge, Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(
        p.overdue(Duration::ZERO),
        None,
        "commit and ack are within bound"
    );
    let stuck = p.begin(Stage::List, Duration::ZERO);
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(p.overdue(Duration::ZERO).map(|o| o.0), Some(Stage::List));
    assert_eq!(
        p.overdue(Duration::from_secs(10)),
        None,
        "the margin applies"
    );
    drop(stuck);
    drop(commit);
    drop(_ack);
    // Nothing runs: the next stage is due within the last stage's bound (60 s).
    assert_eq!(p.overdue(Duration::ZERO), None);
    {
        let _quick = p.begin(Stage::Checkpoint, Duration::ZERO);
    }
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(
        p.overdue(Duration::ZERO).map(|o| o.0),
        Some(Stage::Checkpoint),
        "no stage began within the last one's bound"
    );
}
