//! The runner's side of `intake doctor`: the staged connection check of one channel
//! ([`intake_mail::check`]) with the same typed settings, secrets and tokens a run would use.
//! It counts only: nothing is fetched, committed or acknowledged. The whole check is bounded
//! like a `connect` stage (4 × `timeout_seconds`, 2 minutes when unset), so a server that
//! stops answering fails the check instead of hanging it.

use intake_mail::check::{self, Counts, Report};
use intake_store::Store;

use super::open::{self, Source};
use crate::settings::{ChannelSettings, Settings, SourceSettings};

/// The staged connection check of one channel (`intake doctor`): counts only, changes nothing.
pub async fn check(settings: &Settings, store: &Store, c: &ChannelSettings) -> Report {
    let unit = c.timeout.unwrap_or(std::time::Duration::from_secs(
        crate::settings::DEFAULT_TIMEOUT_SECONDS,
    ));
    let bound = super::drain::Bounds::new(unit).stage;
    match tokio::time::timeout(bound, staged(settings, store, c)).await {
        Ok(report) => report,
        Err(_) => Report::default().fail(
            "timeout",
            c.origin(),
            format!(
                "the check did not finish within {}s: the server stopped answering",
                bound.as_secs()
            ),
            None,
        ),
    }
}

async fn staged(settings: &Settings, store: &Store, c: &ChannelSettings) -> Report {
    let failed = |e: &dyn std::fmt::Display| {
        Report::default().fail("config", c.name.clone(), format!("{e:#}"), None)
    };
    let ok_counts = |what: &str, counts: Counts| {
        let mut r = Report::new();
        r.counts = Some(counts);
        r.pass("counts", what, "counted on disk; nothing read");
        r
    };
    match &c.source {
        SourceSettings::Imap(s) => match open::imap_settings(settings, store, c, s).await {
            Ok(s) => check::check_imap(&s).await,
            Err(e) => failed(&e),
        },
        SourceSettings::Pop3(s) => match open::pop3_settings(settings, store, c, s).await {
            Ok(s) => check::check_pop3(&s).await,
            Err(e) => failed(&e),
        },
        SourceSettings::Graph(g) => match open::open_graph(settings, store, c, g).await {
            Ok(Source::Graph(mut src, _)) => check::check_graph(&mut src, &g.folder).await,
            Ok(_) => failed(&"not a Graph source"),
            Err(e) => failed(&e),
        },
        SourceSettings::Maildir(path) | SourceSettings::Mbox(path) => {
            match crate::source::folder::count(path) {
                Ok(counts) => ok_counts(&path.display().to_string(), counts),
                Err(e) => failed(&e),
            }
        }
    }
}
