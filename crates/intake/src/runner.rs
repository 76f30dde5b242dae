//! Running server channels: `intake run --once` drains each IMAP channel of the file once.
//!
//! Per batch: search new UIDs after the checkpoint (first sync: the `start` policy), fetch with
//! BODY.PEEK[], prepare, commit (ledger + tickets in one transaction), **then** apply the
//! post-action to every message whose outcome is committed (new or duplicate), **then** move the
//! checkpoint. A crash anywhere re-fetches at most the uncommitted or unacknowledged batch; the
//! ledger makes those duplicates, which are acknowledged then.
//!
//! Not yet here (issue "Mail connectors"): POP3, Graph, IDLE/push mode, proxies, reconnect with
//! backoff, many channels as separate tasks. `intake run` refuses those settings by name.

use std::sync::Arc;

use anyhow::{Context, bail};
use intake_core::ProjectKey;
use intake_core::preset::Protocol;
use intake_mail::oauth::OAuthClient;
use intake_mail::sasl::Mechanism;
use intake_mail::source::PostAction;
use intake_mail::source::imap::{ImapAuth, ImapSettings, ImapSource, Tls};
use intake_mime::Reader;
use intake_store::{Keyring, Store};
use secrecy::SecretString;

use crate::config::{ChannelConfig, Config};
use crate::oauth::TokenService;
use crate::pipeline::{self, IngestOptions, Summary};

/// First-sync policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Unread,
    All,
    Now,
}

fn parse_after(s: Option<&str>) -> anyhow::Result<PostAction> {
    Ok(match s.unwrap_or("mark-read") {
        "mark-read" => PostAction::MarkRead,
        "delete" => PostAction::Delete,
        other => match other.strip_prefix("move:") {
            Some(f) if !f.trim().is_empty() => PostAction::Move(f.trim().to_string()),
            _ => bail!("after = {other:?}: use mark-read, move:FOLDER or delete"),
        },
    })
}

fn secret(spec: &str) -> anyhow::Result<SecretString> {
    let r = intake_core::secret::SecretRef::parse(spec).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(intake_mail::secret::resolve(&r)?)
}

/// Connection settings for an IMAP channel, with a fresh access token for OAuth.
async fn settings(
    config: &Config,
    store: &Store,
    c: &ChannelConfig,
) -> anyhow::Result<ImapSettings> {
    let mailbox = c
        .mailbox
        .clone()
        .with_context(|| format!("channel {}: `mailbox` is required", c.name))?;
    let tls = match c.tls.as_deref().unwrap_or("implicit") {
        "implicit" => Tls::Implicit,
        "starttls" => Tls::StartTls,
        "none" => Tls::None,
        other => bail!(
            "channel {}: tls = {other:?}: use implicit, starttls or none",
            c.name
        ),
    };
    let auth_spec = c
        .auth
        .clone()
        .with_context(|| format!("channel {}: `auth` is required", c.name))?;
    let mut preset_host = None;
    let auth = if let Some(name) = auth_spec.strip_prefix("oauth:") {
        let integration = config.integration(name)?;
        preset_host = Some(integration.endpoints.imap.clone()).filter(|(h, _)| !h.is_empty());
        let client = OAuthClient::new(&integration)?;
        let keys = Keyring::from_env_or_file(&config.secret_key_file())?;
        let tokens = TokenService::new(store.clone(), keys);
        let token = tokens
            .access_token(&client, &mailbox, Protocol::Imap)
            .await?;
        let mechanism = match c.sasl.as_deref().unwrap_or("xoauth2") {
            "xoauth2" => Mechanism::XOAuth2,
            "oauthbearer" => Mechanism::OAuthBearer,
            other => bail!(
                "channel {}: sasl = {other:?}: use xoauth2 or oauthbearer",
                c.name
            ),
        };
        ImapAuth::OAuth {
            mechanism,
            user: mailbox.clone(),
            token,
        }
    } else if let Some(p) = auth_spec.strip_prefix("password:") {
        ImapAuth::Password {
            user: mailbox.clone(),
            password: secret(p)?,
        }
    } else {
        bail!(
            "channel {}: auth = {auth_spec:?}: use oauth:INTEGRATION, password:env:VAR or password:file:PATH",
            c.name
        );
    };
    let (host, default_port) = match (&c.host, preset_host) {
        (Some(h), _) => (h.clone(), if tls == Tls::Implicit { 993 } else { 143 }),
        (None, Some((h, p))) => (h, p),
        (None, None) => bail!("channel {}: `host` is required", c.name),
    };
    let ca_pem = match &c.ca_file {
        Some(spec) => Some(
            secrecy::ExposeSecret::expose_secret(&secret(spec)?)
                .as_bytes()
                .to_vec(),
        ),
        None => None,
    };
    Ok(ImapSettings {
        host,
        port: c.port.unwrap_or(default_port),
        tls,
        ca_pem,
        auth,
        folder: c.folder.clone().unwrap_or_else(|| "INBOX".into()),
        proxy: c.proxy.clone().map(|url| intake_mail::net::ProxySettings {
            url,
            no_proxy: c.no_proxy.clone(),
        }),
    })
}

fn parse_checkpoint(s: &str) -> Option<(u32, u32)> {
    let (v, u) = s.split_once(':')?;
    Some((v.parse().ok()?, u.parse().ok()?))
}

/// Everything a channel run needs besides the connection.
struct Ctx {
    opts: IngestOptions,
    reader: Arc<Reader>,
    after: PostAction,
    start: Start,
}

/// The channel's run settings; creates its project if missing.
async fn ctx(config: &Config, store: &Store, c: &ChannelConfig) -> anyhow::Result<Ctx> {
    if let Some(p) = c
        .protocol
        .as_deref()
        .filter(|p| !matches!(*p, "imap" | "pop3" | "graph"))
    {
        bail!(
            "channel {}: protocol {p:?} is not implemented yet in `intake run` (imap, pop3 and graph run)",
            c.name
        );
    }
    let after = parse_after(c.after.as_deref())?;
    let start = match c.start.as_deref().unwrap_or("unread") {
        "unread" => Start::Unread,
        "all" => Start::All,
        "now" => Start::Now,
        other => bail!(
            "channel {}: start = {other:?}: use unread, all or now",
            c.name
        ),
    };
    let project: ProjectKey = c.project.parse()?;
    let rules = config.rules_for(Some(c))?;
    let mut opts = IngestOptions::new(&c.name, project, rules);
    opts.batch = c.batch.unwrap_or(100).max(1);
    let reader = Arc::new(Reader::new(&opts.rules)?);
    store
        .ensure_project(&opts.project, opts.project.as_str())
        .await?;
    Ok(Ctx {
        opts,
        reader,
        after,
        start,
    })
}

/// Take everything new: batches of fetch → commit → post-action → checkpoint, until nothing is
/// left or `stop` says so (checked between batches: a batch is always finished).
async fn drain(
    store: &Store,
    source: &mut ImapSource,
    host_folder: &str,
    ctx: &Ctx,
    summary: &mut Summary,
    stop: Option<&tokio::sync::watch::Receiver<bool>>,
) -> anyhow::Result<()> {
    let channel = &ctx.opts.channel;
    let mut checkpoint = store
        .checkpoint(channel)
        .await?
        .as_deref()
        .and_then(parse_checkpoint);
    if checkpoint.is_none_or(|(v, _)| v != source.uid_validity()) && ctx.start == Start::Now {
        let last = source
            .new_uids(None, usize::MAX)
            .await?
            .last()
            .copied()
            .unwrap_or(0);
        store
            .set_checkpoint(channel, &format!("{}:{last}", source.uid_validity()))
            .await?;
        checkpoint = Some((source.uid_validity(), last));
    }
    let validity = source.uid_validity();
    let mut next = fetch_batch(source, checkpoint, ctx, host_folder).await?;
    while let Some((uids, raw)) = next.take() {
        if stop.is_some_and(|r| *r.borrow()) {
            break;
        }
        let last = *uids.last().unwrap_or(&0);
        // Commit this batch while the next one is fetched (UIDs after this batch): fetching
        // overlaps processing. Only this batch is acknowledged and checkpointed afterwards.
        let commit = async {
            let prepared =
                pipeline::prepare_fetched(ctx.reader.clone(), raw, ctx.opts.workers).await?;
            pipeline::commit(store, &ctx.opts, prepared, summary).await?;
            anyhow::Ok(())
        };
        let (committed, fetched) = tokio::join!(
            commit,
            fetch_batch(source, Some((validity, last)), ctx, host_folder)
        );
        committed?;
        // Committed (new or duplicate): now the post-action, then the checkpoint.
        source.acknowledge(&uids, &ctx.after).await?;
        store
            .set_checkpoint(channel, &format!("{validity}:{last}"))
            .await?;
        next = fetched?;
    }
    Ok(())
}

/// The next batch after `checkpoint` under the start policy: (UIDs, raw messages), or `None`.
type RawBatch = (Vec<u32>, Vec<(String, String, Vec<u8>)>);

async fn fetch_batch(
    source: &mut ImapSource,
    checkpoint: Option<(u32, u32)>,
    ctx: &Ctx,
    host_folder: &str,
) -> anyhow::Result<Option<RawBatch>> {
    let mut uids = source.new_uids(checkpoint, usize::MAX).await?;
    if ctx.start == Start::Unread {
        let unseen = source.unseen_uids().await?;
        uids.retain(|u| unseen.binary_search(u).is_ok());
    }
    uids.truncate(ctx.opts.batch);
    if uids.is_empty() {
        return Ok(None);
    }
    let raw = source
        .fetch(&uids)
        .await?
        .into_iter()
        .map(|(uid, f)| (format!("{host_folder}/{uid}"), f.identity, f.raw))
        .collect();
    Ok(Some((uids, raw)))
}

/// Drain one IMAP channel once.
pub async fn run_imap_once(
    config: &Config,
    store: &Store,
    c: &ChannelConfig,
) -> anyhow::Result<Summary> {
    let ctx = ctx(config, store, c).await?;
    let settings = settings(config, store, c).await?;
    let mut source = ImapSource::connect(&settings).await?;
    let mut summary = Summary::default();
    let where_ = format!("{}:{}", settings.host, settings.folder);
    drain(store, &mut source, &where_, &ctx, &mut summary, None).await?;
    let _ = source.logout().await;
    Ok(summary)
}

/// Run one IMAP channel until `shutdown` turns true: drain, then IDLE (or poll) and drain again.
/// Any failure (server restart, expired token, network) reconnects with a fresh token after an
/// exponential backoff (1 s … 60 s), logged in the mail log; a shutdown finishes the current
/// batch and logs out.
pub async fn run_imap_forever(
    config: &Config,
    store: &Store,
    c: &ChannelConfig,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut backoff = std::time::Duration::from_secs(1);
    while !*shutdown.borrow() {
        match session(config, store, c, shutdown.clone()).await {
            Ok(()) => return,
            Err(e) => {
                let msg = format!("{e:#}");
                tracing::warn!(channel = %c.name, error = %msg, "channel failed; reconnecting");
                let _ = store
                    .log_event(
                        Some(&c.name),
                        "error",
                        "channel_failed",
                        &msg,
                        serde_json::json!({"retry_in_seconds": backoff.as_secs()}),
                    )
                    .await;
                let mut rx = shutdown.clone();
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    _ = rx.changed() => {}
                }
                backoff = (backoff * 2).min(std::time::Duration::from_secs(60));
            }
        }
    }
}

async fn session(
    config: &Config,
    store: &Store,
    c: &ChannelConfig,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let ctx = ctx(config, store, c).await?;
    let settings = settings(config, store, c).await?;
    let mut source = ImapSource::connect(&settings).await?;
    let where_ = format!("{}:{}", settings.host, settings.folder);
    let poll = c.mode.as_deref() == Some("poll");
    let wait = std::time::Duration::from_secs(
        c.poll_seconds.unwrap_or(if poll { 60 } else { 300 }).max(1),
    );
    loop {
        let mut summary = Summary::default();
        drain(
            store,
            &mut source,
            &where_,
            &ctx,
            &mut summary,
            Some(&shutdown),
        )
        .await?;
        if *shutdown.borrow() {
            let _ = source.logout().await;
            return Ok(());
        }
        let mut rx = shutdown.clone();
        let stop = async move {
            let _ = rx.changed().await;
        };
        if poll {
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = stop => {}
            }
        } else {
            source.wait_for_change(wait, stop).await?;
        }
    }
}

/// Drain one POP3 channel once. POP3 has no flags or folders: the ledger (identity
/// `pop3:<UIDL>`) decides what is new, `after = "delete"` sends DELE for committed messages
/// (taking effect at QUIT; a crash before QUIT leaves them, and the next run deletes them as
/// duplicates), `mark-read` keeps mail on the server, and `move:` is refused.
pub async fn run_pop3_once(
    config: &Config,
    store: &Store,
    c: &ChannelConfig,
) -> anyhow::Result<Summary> {
    use intake_mail::source::pop3::{Pop3Settings, Pop3Source, SaslForm};
    let ctx = ctx(config, store, c).await?;
    let delete = match &ctx.after {
        PostAction::Delete => true,
        PostAction::MarkRead => false,
        PostAction::Move(_) => bail!(
            "channel {}: POP3 cannot move messages; use after = \"delete\" or \"mark-read\" (keep)",
            c.name
        ),
    };
    let imap = settings(config, store, c).await?;
    let port = c
        .port
        .unwrap_or(if imap.tls == Tls::Implicit { 995 } else { 110 });
    let auth = imap.auth;
    let s = Pop3Settings {
        host: imap.host.clone(),
        port,
        tls: imap.tls,
        ca_pem: imap.ca_pem,
        auth,
        sasl_form: SaslForm::Auto,
        proxy: imap.proxy,
    };
    let mut summary = Summary::default();
    loop {
        let mut src = Pop3Source::connect(&s).await?;
        let list = src.uidl().await?;
        let ids: Vec<String> = list
            .iter()
            .map(|(_, u)| intake_mail::source::pop3::identity(u))
            .collect();
        let known = store.known_identities(&ctx.opts.channel, &ids).await?;
        let (done, todo): (Vec<_>, Vec<_>) = list
            .iter()
            .zip(&ids)
            .partition(|(_, id)| known.contains(*id));
        let batch: Vec<_> = todo.iter().take(ctx.opts.batch).collect();
        let mut raw = Vec::with_capacity(batch.len());
        for ((n, uid), id) in &batch {
            raw.push((
                format!("{}:pop3/{uid}", s.host),
                (*id).clone(),
                src.retr(*n).await?,
            ));
        }
        let prepared = pipeline::prepare_fetched(ctx.reader.clone(), raw, ctx.opts.workers).await?;
        pipeline::commit(store, &ctx.opts, prepared, &mut summary).await?;
        if delete {
            // Committed now (this batch) or earlier (`done`, e.g. left by a crash before QUIT).
            let msgnos: Vec<u32> = done
                .iter()
                .map(|((n, _), _)| *n)
                .chain(batch.iter().map(|((n, _), _)| *n))
                .collect();
            src.acknowledge(&msgnos).await?;
        } else {
            src.quit().await?;
        }
        if todo.len() <= ctx.opts.batch {
            break;
        }
    }
    Ok(summary)
}

/// Drain one Microsoft Graph channel once: delta pages from the stored deltaLink (a 410 restarts
/// without one; the ledger de-duplicates), `$value` MIME into the same engine, post-action per
/// message after the commit, and the new deltaLink stored last. The mailbox is addressed as
/// `/users/{mailbox}`, which serves the signed-in user's own and shared mailboxes alike; the
/// Graph host follows the integration's cloud (G2).
pub async fn run_graph_once(
    config: &Config,
    store: &Store,
    c: &ChannelConfig,
) -> anyhow::Result<Summary> {
    use intake_mail::source::graph::{GraphError, GraphSettings, GraphSource, Next};
    let ctx = ctx(config, store, c).await?;
    let mailbox = c
        .mailbox
        .clone()
        .with_context(|| format!("channel {}: `mailbox` is required", c.name))?;
    let name = c
        .auth
        .as_deref()
        .and_then(|a| a.strip_prefix("oauth:"))
        .with_context(|| {
            format!(
                "channel {}: Graph needs auth = \"oauth:INTEGRATION\"",
                c.name
            )
        })?;
    let integration = config.integration(name)?;
    let graph_url = integration
        .endpoints
        .graph_url
        .clone()
        .with_context(|| format!("integration {name} has no Graph endpoint (set graph_url)"))?;
    let client = OAuthClient::new(&integration)?;
    let tokens = TokenService::new(
        store.clone(),
        Keyring::from_env_or_file(&config.secret_key_file())?,
    );
    let token = tokens
        .access_token(&client, &mailbox, Protocol::Graph)
        .await?;
    let mut src = GraphSource::new(
        GraphSettings {
            graph_url,
            mailbox: Some(mailbox),
            folder: c.folder.clone().unwrap_or_else(|| "inbox".into()),
            page_size: u32::try_from(ctx.opts.batch).unwrap_or(100),
            http: intake_mail::http::HttpOptions {
                proxy: c.proxy.clone(),
                no_proxy: c.no_proxy.clone(),
                ..Default::default()
            },
        },
        token,
    )?;
    let channel = ctx.opts.channel.clone();
    let mut summary = Summary::default();
    let mut link = store.checkpoint(&channel).await?;
    let mut resynced = false;
    loop {
        let page = match src.delta(link.as_deref()).await {
            Err(GraphError::Resync { .. }) if !resynced => {
                resynced = true;
                link = None;
                continue;
            }
            r => r?,
        };
        let ids: Vec<String> = page
            .ids
            .iter()
            .map(|id| GraphSource::identity(id))
            .collect();
        let known = store.known_identities(&channel, &ids).await?;
        let mut raw = Vec::new();
        let mut new_ids = Vec::new();
        for (id, identity) in page.ids.iter().zip(&ids) {
            if !known.contains(identity) {
                raw.push((
                    format!("graph/{id}"),
                    identity.clone(),
                    src.fetch_mime(id).await?,
                ));
                new_ids.push(id.clone());
            }
        }
        let prepared = pipeline::prepare_fetched(ctx.reader.clone(), raw, ctx.opts.workers).await?;
        pipeline::commit(store, &ctx.opts, prepared, &mut summary).await?;
        for id in &new_ids {
            src.acknowledge(id, &ctx.after).await?;
        }
        match page.next {
            Next::More(next) => link = Some(next),
            Next::Done(delta) => {
                store.set_checkpoint(&channel, &delta).await?;
                break;
            }
        }
    }
    Ok(summary)
}

/// Drain a channel once, whatever its protocol.
pub async fn run_once(
    config: &Config,
    store: &Store,
    c: &ChannelConfig,
) -> anyhow::Result<Summary> {
    match c.protocol.as_deref() {
        Some("pop3") => run_pop3_once(config, store, c).await,
        Some("graph") => run_graph_once(config, store, c).await,
        _ => run_imap_once(config, store, c).await,
    }
}

/// Poll a POP3 or Graph channel every `poll_seconds` (default 60) until shutdown; failures are
/// logged and retried at the next poll. (Graph change notifications are not used yet.)
pub async fn run_polling_forever(
    config: &Config,
    store: &Store,
    c: &ChannelConfig,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let wait = std::time::Duration::from_secs(c.poll_seconds.unwrap_or(60).max(1));
    while !*shutdown.borrow() {
        if let Err(e) = run_once(config, store, c).await {
            let msg = format!("{e:#}");
            let _ = store
                .log_event(
                    Some(&c.name),
                    "error",
                    "channel_failed",
                    &msg,
                    serde_json::json!({}),
                )
                .await;
        }
        let mut rx = shutdown.clone();
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = rx.changed() => {}
        }
    }
}
