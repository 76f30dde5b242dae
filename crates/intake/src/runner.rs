//! Running channels (`intake run`): every protocol — IMAP, POP3, Graph, Maildir, mbox — is a
//! [`MailSource`] driven by one [`drain`] loop into the same engine and ledger.
//!
//! Per round: list after the stored checkpoint (first sync: the `start` policy); drop what the
//! ledger already has from the fetch (but not from the acknowledgement); then per batch of
//! `batch` messages: fetch (overlapping the previous batch's commit), prepare, commit (ledger +
//! tickets in one transaction), **then** the post-action for the whole batch, **then** the
//! checkpoint (the post-action and checkpoint of batch k run while batch k+1 commits and batch
//! k+2 is fetched). A crash anywhere re-lists at most the uncommitted or unacknowledged batch; the
//! ledger makes those duplicates, which are acknowledged then.
//!
//! One node per channel: with several nodes on one PostgreSQL database, a channel runs only on
//! the node holding its lease (`channel_leases`), renewed every third of its time to live
//! (`lease_seconds`, default 30); a node that stops renewing (crash, network) loses the channel
//! to another node after that time, and a node that finds its lease taken stops the channel at
//! once. The lease is about work and post-actions happening once; exactly-once ticket effects
//! do not depend on it (the ledger claim does that).

use std::sync::Arc;

use anyhow::{Context, bail};
use intake_core::ProjectKey;
use intake_core::preset::Protocol;
use intake_mail::oauth::OAuthClient;
use intake_mail::sasl::Mechanism;
use intake_mail::source::imap::{ImapAuth, ImapSettings, ImapSource, Tls};
use intake_mail::source::{Fetched, Listed, Listing, MailSource, PostAction, SourceError, Start};
use intake_mime::Reader;
use intake_store::{Keyring, Store};
use secrecy::SecretString;

use crate::config::{ChannelConfig, Config};
use crate::oauth::TokenService;
use crate::pipeline::{self, IngestOptions, Summary};

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

/// Connection settings for an IMAP (or POP3) channel, with a fresh access token for OAuth.
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
        proxy: {
            // `proxy = "env"`: the environment's proxy, read only because it was asked for.
            let (url, no_proxy) =
                intake_mail::http::resolve_proxy_env(c.proxy.as_deref(), &c.no_proxy);
            url.map(|url| intake_mail::net::ProxySettings { url, no_proxy })
        },
    })
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
    let after = parse_after(c.after.as_deref())?;
    let start: Start = c
        .start
        .as_deref()
        .unwrap_or("unread")
        .parse()
        .map_err(|e| anyhow::anyhow!("channel {}: {e}", c.name))?;
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

/// How a Graph channel keeps its access token fresh between rounds.
struct GraphAuth {
    tokens: TokenService,
    client: OAuthClient,
    mailbox: String,
}

/// The source of one channel, whatever its protocol.
enum Source {
    Imap(Box<ImapSource>),
    Pop3(Box<intake_mail::source::pop3::Pop3Mailbox>),
    Graph(Box<intake_mail::source::graph::GraphSource>, Box<GraphAuth>),
    Maildir(Box<crate::source::folder::MaildirSource>),
    Mbox(Box<crate::source::folder::MboxSource>),
}

macro_rules! each {
    ($self:expr, $s:ident => $e:expr) => {
        match $self {
            Source::Imap($s) => $e,
            Source::Pop3($s) => $e,
            Source::Graph($s, _) => $e,
            Source::Maildir($s) => $e,
            Source::Mbox($s) => $e,
        }
    };
}

impl MailSource for Source {
    async fn list(
        &mut self,
        checkpoint: Option<&str>,
        start: Start,
        limit: usize,
    ) -> Result<Listing, SourceError> {
        each!(self, s => s.list(checkpoint, start, limit).await)
    }

    async fn fetch(&mut self, items: &[Listed]) -> Result<Vec<Fetched>, SourceError> {
        each!(self, s => MailSource::fetch(&mut **s, items).await)
    }

    async fn acknowledge(
        &mut self,
        items: &[Listed],
        action: &PostAction,
    ) -> Result<(), SourceError> {
        each!(self, s => MailSource::acknowledge(&mut **s, items, action).await)
    }

    fn checkpoint_after(&self, item: &Listed) -> Option<String> {
        each!(self, s => s.checkpoint_after(item))
    }

    fn supports(&self, action: &PostAction) -> Result<(), SourceError> {
        each!(self, s => s.supports(action))
    }

    async fn finish(&mut self) -> Result<(), SourceError> {
        each!(self, s => s.finish().await)
    }

    async fn wait_for_change(
        &mut self,
        timeout: std::time::Duration,
        stop: impl std::future::Future<Output = ()> + Send,
    ) -> Result<bool, SourceError> {
        each!(self, s => s.wait_for_change(timeout, stop).await)
    }

    async fn close(self) {
        each!(self, s => (*s).close().await)
    }
}

impl Source {
    /// Before a round: a Graph channel takes a fresh access token (refreshed single-flight
    /// when it is about to expire; a no-op read otherwise). IMAP and POP3 authenticate once
    /// per session, which a failure or `finish` renews.
    async fn refresh(&mut self) -> anyhow::Result<()> {
        if let Source::Graph(src, auth) = self {
            let token = auth
                .tokens
                .access_token(&auth.client, &auth.mailbox, Protocol::Graph)
                .await?;
            src.set_token(token);
        }
        Ok(())
    }

    /// Where the channel reads, for the origin of each message in logs.
    fn origin(&self, c: &ChannelConfig) -> String {
        match self {
            Source::Maildir(_) | Source::Mbox(_) => c
                .path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            Source::Graph(src, _) => src.mailbox_url().to_string(),
            Source::Pop3(_) => format!("{}:pop3", c.host.clone().unwrap_or_default()),
            Source::Imap(_) => format!(
                "{}:{}",
                c.host.clone().unwrap_or_default(),
                c.folder.as_deref().unwrap_or("INBOX")
            ),
        }
    }
}

/// The `path` of a Maildir or mbox channel.
fn local_path(c: &ChannelConfig) -> anyhow::Result<std::path::PathBuf> {
    c.path
        .clone()
        .with_context(|| format!("channel {}: `path` is required", c.name))
}

fn unknown_protocol(c: &ChannelConfig, protocol: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "channel {}: protocol = {protocol:?}: use imap, pop3, graph, maildir or mbox",
        c.name
    )
}

/// Connect the channel's source (log in, select the folder).
async fn open(config: &Config, store: &Store, c: &ChannelConfig) -> anyhow::Result<Source> {
    match c.protocol.as_deref().unwrap_or("imap") {
        "imap" => {
            let s = settings(config, store, c).await?;
            Ok(Source::Imap(Box::new(ImapSource::connect(&s).await?)))
        }
        "pop3" => Ok(Source::Pop3(Box::new(
            intake_mail::source::pop3::Pop3Mailbox::new(pop3_settings(config, store, c).await?),
        ))),
        "graph" => open_graph(config, store, c).await,
        "maildir" => Ok(Source::Maildir(Box::new(
            crate::source::folder::MaildirSource::new(local_path(c)?)?,
        ))),
        "mbox" => Ok(Source::Mbox(Box::new(
            crate::source::folder::MboxSource::new(local_path(c)?),
        ))),
        other => Err(unknown_protocol(c, other)),
    }
}

/// POP3 connection settings: those of IMAP with the POP3 ports (995 implicit, 110 otherwise).
async fn pop3_settings(
    config: &Config,
    store: &Store,
    c: &ChannelConfig,
) -> anyhow::Result<intake_mail::source::pop3::Pop3Settings> {
    use intake_mail::source::pop3::{Pop3Settings, SaslForm};
    let imap = settings(config, store, c).await?;
    let port = c
        .port
        .unwrap_or(if imap.tls == Tls::Implicit { 995 } else { 110 });
    Ok(Pop3Settings {
        host: imap.host,
        port,
        tls: imap.tls,
        ca_pem: imap.ca_pem,
        auth: imap.auth,
        sasl_form: SaslForm::Auto,
        proxy: imap.proxy,
    })
}

/// The staged connection check of one channel (`intake doctor`): counts only, changes nothing.
pub async fn check(
    config: &Config,
    store: &Store,
    c: &ChannelConfig,
) -> intake_mail::check::Report {
    use intake_mail::check::{self, Counts, Report};
    let failed =
        |e: anyhow::Error| Report::default().fail("config", c.name.clone(), format!("{e:#}"), None);
    let ok_counts = |what: &str, counts: Counts| {
        let mut r = Report::new();
        r.counts = Some(counts);
        r.pass("counts", what, "counted on disk; nothing read");
        r
    };
    match c.protocol.as_deref().unwrap_or("imap") {
        "imap" => match settings(config, store, c).await {
            Ok(s) => check::check_imap(&s).await,
            Err(e) => failed(e),
        },
        "pop3" => match pop3_settings(config, store, c).await {
            Ok(s) => check::check_pop3(&s).await,
            Err(e) => failed(e),
        },
        "graph" => match open_graph(config, store, c).await {
            Ok(Source::Graph(mut src, _)) => {
                check::check_graph(&mut src, c.folder.as_deref().unwrap_or("inbox")).await
            }
            Ok(_) => failed(anyhow::anyhow!("not a Graph source")),
            Err(e) => failed(e),
        },
        "maildir" | "mbox" => {
            let counted = local_path(c).and_then(|path| {
                let counts = crate::source::folder::count(&path)?;
                Ok((path, counts))
            });
            match counted {
                Ok((path, counts)) => ok_counts(&path.display().to_string(), counts),
                Err(e) => failed(e),
            }
        }
        other => failed(unknown_protocol(c, other)),
    }
}

/// A Graph channel: the mailbox is addressed as `/users/{mailbox}`, which serves the signed-in
/// user's own and shared mailboxes alike; the Graph host follows the integration's cloud (G2).
async fn open_graph(config: &Config, store: &Store, c: &ChannelConfig) -> anyhow::Result<Source> {
    use intake_mail::source::graph::{GraphSettings, GraphSource};
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
    let (proxy, _) = intake_mail::http::resolve_proxy_env(c.proxy.as_deref(), &c.no_proxy);
    if proxy
        .as_deref()
        .is_some_and(|p| p.trim().starts_with("socks"))
    {
        bail!(
            "channel {}: Graph requests go through an HTTP(S) proxy, not SOCKS5 (socks5:// is for IMAP and POP3)",
            c.name
        );
    }
    let client = OAuthClient::new(&integration)?;
    let tokens = TokenService::new(
        store.clone(),
        Keyring::from_env_or_file(&config.secret_key_file())?,
    );
    let token = tokens
        .access_token(&client, &mailbox, Protocol::Graph)
        .await?;
    let src = GraphSource::new(
        GraphSettings {
            graph_url,
            mailbox: Some(mailbox.clone()),
            folder: c.folder.clone().unwrap_or_else(|| "inbox".into()),
            page_size: u32::try_from(c.batch.unwrap_or(100)).unwrap_or(100),
            http: intake_mail::http::HttpOptions {
                proxy: c.proxy.clone(),
                no_proxy: c.no_proxy.clone(),
                ..Default::default()
            },
        },
        token,
    )?;
    Ok(Source::Graph(
        Box::new(src),
        Box::new(GraphAuth {
            tokens,
            client,
            mailbox,
        }),
    ))
}

/// How many messages one listing hands out at most (RC15: bounded rounds).
const LIST_LIMIT: usize = 10_000;

/// Take everything new: rounds of list → (fetch → commit → post-action → checkpoint) per batch,
/// until the source has nothing more or `stop` says so (checked between batches: a batch is
/// always finished).
async fn drain<S: MailSource>(
    store: &Store,
    source: &mut S,
    origin: &str,
    ctx: &Ctx,
    summary: &mut Summary,
    stop: Option<&tokio::sync::watch::Receiver<bool>>,
) -> anyhow::Result<()> {
    let channel = &ctx.opts.channel;
    let stopped = || stop.is_some_and(|r| *r.borrow());
    source.supports(&ctx.after)?;
    // Durable before destructive: every post-action below follows a commit it depends on.
    anyhow::ensure!(
        store.durability() == intake_store::Durability::PowerLoss,
        "channel {channel}: the store is not power-loss durable, so no post-action may follow its commits (open it with Store::connect)"
    );
    loop {
        let checkpoint = store.checkpoint(channel).await?;
        let listing = source
            .list(checkpoint.as_deref(), ctx.start, LIST_LIMIT)
            .await?;
        let ids: Vec<String> = listing.items.iter().map(|i| i.identity.clone()).collect();
        let known = store.known_identities(channel, &ids).await?;
        summary.duplicate += known.len() as u64;
        let batches = ramped(&listing.items, ctx.opts.batch);
        let fetch_new = async |src: &mut S, batch: &[Listed]| {
            let todo: Vec<Listed> = batch
                .iter()
                .filter(|i| !known.contains(&i.identity))
                .cloned()
                .collect();
            src.fetch(&todo).await
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
                    (format!("{origin}/{key}"), f.identity, f.raw)
                })
                .collect();
            pipeline::prepare_fetched(ctx.reader.clone(), raw, ctx.opts.workers).await
        };
        // Four stages overlap: batch k commits (the single database writer) while batch k+1
        // is prepared (the worker threads) and, on the connection, batch k+2 is fetched and
        // batch k-1's post-action goes out.
        let mut next = match batches.first() {
            Some(b) => {
                let fetched = fetch_new(source, b).await?;
                Some(prepare(b, fetched).await?)
            }
            None => None,
        };
        let mut fetched_next = match batches.get(1) {
            Some(b) => Some(fetch_new(source, b).await?),
            None => None,
        };
        // The batch committed last, still to be acknowledged and checkpointed: that happens
        // while the next batch commits (it is committed already), off the critical path.
        let mut unsettled: Option<&[Listed]> = None;
        let mut interrupted = false;
        for (i, batch) in batches.iter().enumerate() {
            if stopped() {
                interrupted = true;
                break;
            }
            let prepared = next.take().unwrap_or_default();
            let commit = async {
                pipeline::commit(store, &ctx.opts, prepared, summary).await?;
                anyhow::Ok(())
            };
            let raw_next = fetched_next.take();
            let side = async {
                let prepare_next = async {
                    match (batches.get(i + 1), raw_next) {
                        (Some(b), Some(f)) => prepare(b, f).await.map(Some),
                        _ => Ok(None),
                    }
                };
                let connection = async {
                    let fetched = match batches.get(i + 2) {
                        Some(b) => Some(fetch_new(source, b).await?),
                        None => None,
                    };
                    if let Some(prev) = unsettled {
                        source.acknowledge(prev, &ctx.after).await?;
                    }
                    anyhow::Ok(fetched)
                };
                let (prepared, fetched) = tokio::join!(prepare_next, connection);
                anyhow::Ok((prepared?, fetched?))
            };
            let (committed, side) = tokio::join!(commit, side);
            committed?;
            (next, fetched_next) = side?;
            // The previous batch is acknowledged now; its checkpoint is written here, after
            // this batch's commit, so it never waits for the database writer.
            if let Some(prev) = unsettled {
                save_checkpoint(store, source, channel, prev).await?;
            }
            unsettled = Some(batch);
        }
        if let Some(prev) = unsettled {
            source.acknowledge(prev, &ctx.after).await?;
            save_checkpoint(store, source, channel, prev).await?;
        }
        if interrupted {
            return Ok(());
        }
        if let Some(cp) = &listing.checkpoint {
            store.set_checkpoint(channel, cp).await?;
        }
        if !listing.more {
            source.finish().await?;
            return Ok(());
        }
        if stopped() {
            return Ok(());
        }
    }
}

/// `items` in batches of at most `batch`, the first and the last a fifth of that: the stages
/// of the drain overlap sooner at the start and the final post-action is short at the end.
fn ramped(items: &[Listed], batch: usize) -> Vec<&[Listed]> {
    let batch = batch.max(1);
    let edge = (batch / 5).max(1);
    if items.len() <= batch {
        return items.chunks(batch).collect();
    }
    let (first, rest) = items.split_at(edge);
    let (middle, last) = rest.split_at(rest.len().saturating_sub(edge));
    std::iter::once(first)
        .chain(middle.chunks(batch))
        .chain(std::iter::once(last).filter(|l| !l.is_empty()))
        .collect()
}

/// The checkpoint after a committed and acknowledged batch, where the source has one per
/// message (IMAP).
async fn save_checkpoint<S: MailSource>(
    store: &Store,
    source: &mut S,
    channel: &str,
    batch: &[Listed],
) -> anyhow::Result<()> {
    // `&mut`: a shared reference held across the await would need the source to be `Sync`.
    if let Some(cp) = batch.last().and_then(|l| source.checkpoint_after(l)) {
        store.set_checkpoint(channel, &cp).await?;
    }
    Ok(())
}

/// This node's name in channel leases: set once per process.
pub fn node() -> &'static str {
    static NODE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NODE.get_or_init(intake_store::lease::node_id)
}

fn lease_ttl(config: &Config) -> std::time::Duration {
    std::time::Duration::from_secs(config.lease_seconds.unwrap_or(30).max(1))
}

/// Keep renewing this node's lease on `channel` every third of `ttl` until `shutdown` (if
/// any) turns true or the lease is lost; the returned receiver turns true then (a "halt" for
/// the channel's work). Abort the handle when the work ends.
fn keep_lease(
    store: &Store,
    channel: &str,
    ttl: std::time::Duration,
    shutdown: Option<tokio::sync::watch::Receiver<bool>>,
) -> (
    tokio::task::JoinHandle<()>,
    tokio::sync::watch::Receiver<bool>,
) {
    let (halt_tx, halt) = tokio::sync::watch::channel(false);
    let (store, name) = (store.clone(), channel.to_string());
    let handle = tokio::spawn(async move {
        let mut rx = shutdown;
        loop {
            let stop = async {
                match rx.as_mut() {
                    Some(r) => {
                        let _ = r.changed().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = tokio::time::sleep(ttl / 3) => {
                    if !matches!(store.renew_lease(&name, node(), ttl).await, Ok(true)) {
                        let _ = store
                            .log_event(
                                Some(&name),
                                "warn",
                                "lease_lost",
                                &format!("channel {name}: node {} lost its lease; stopping the channel here", node()),
                                serde_json::json!({"node": node()}),
                            )
                            .await;
                        let _ = halt_tx.send(true);
                        return;
                    }
                }
                () = stop => {
                    let _ = halt_tx.send(true);
                    return;
                }
            }
        }
    });
    (handle, halt)
}

/// Drain one channel once (`intake run --once`). The channel's lease is waited for up to its
/// time to live (so a run right after a crash takes over the dead process's lease); a channel
/// whose lease another live node keeps renewing is skipped with a log event (`Ok(None)`):
/// that node is processing it.
pub async fn run_once(
    config: &Config,
    store: &Store,
    c: &ChannelConfig,
) -> anyhow::Result<Option<Summary>> {
    let ttl = lease_ttl(config);
    let deadline = tokio::time::Instant::now() + ttl + std::time::Duration::from_secs(1);
    while !store.try_acquire_lease(&c.name, node(), ttl).await? {
        if tokio::time::Instant::now() >= deadline {
            let holder = store.lease_holder(&c.name).await?.map(|(h, _)| h);
            let msg = format!(
                "channel {} is being processed by node {}; skipped",
                c.name,
                holder.as_deref().unwrap_or("?")
            );
            store
                .log_event(
                    Some(&c.name),
                    "info",
                    "channel_skipped",
                    &msg,
                    serde_json::json!({"node": node(), "holder": holder}),
                )
                .await?;
            return Ok(None);
        }
        tokio::time::sleep((ttl / 3).min(std::time::Duration::from_millis(500))).await;
    }
    let (keeper, halt) = keep_lease(store, &c.name, ttl, None);
    let result = async {
        let ctx = ctx(config, store, c).await?;
        let mut source = open(config, store, c).await?;
        source.refresh().await?;
        let mut summary = Summary::default();
        let origin = source.origin(c);
        drain(store, &mut source, &origin, &ctx, &mut summary, Some(&halt)).await?;
        source.close().await;
        anyhow::Ok(summary)
    }
    .await;
    keeper.abort();
    store.release_lease(&c.name, node()).await?;
    result.map(Some)
}

/// Run one channel until `shutdown` turns true: take its lease (waiting while another node
/// holds it), then drain, wait for a change (IDLE, or a poll interval) and drain again. Any
/// failure (server restart, expired token, network) reconnects with a fresh token after an
/// exponential backoff (1 s … 60 s), logged in the mail log; a shutdown finishes the current
/// batch and logs out; a lost lease stops the channel on this node.
pub async fn run_forever(
    config: &Config,
    store: &Store,
    c: &ChannelConfig,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let ttl = lease_ttl(config);
    let mut backoff = std::time::Duration::from_secs(1);
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
        let (keeper, halt) = keep_lease(store, &c.name, ttl, Some(shutdown.clone()));
        let result = session(config, store, c, halt.clone()).await;
        keeper.abort();
        let lost = *halt.borrow() && !*shutdown.borrow();
        if let Err(e) = &result {
            let msg = format!("{e:#}");
            tracing::warn!(channel = %c.name, error = %msg, "channel failed; reconnecting");
            let _ = store
                .log_event(
                    Some(&c.name),
                    "error",
                    "channel_failed",
                    &msg,
                    serde_json::json!({"retry_in_seconds": backoff.as_secs(), "node": node()}),
                )
                .await;
        }
        if !lost {
            let _ = store.release_lease(&c.name, node()).await;
        }
        if result.is_err() {
            let mut rx = shutdown.clone();
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                _ = rx.changed() => {}
            }
            backoff = (backoff * 2).min(std::time::Duration::from_secs(60));
        } else {
            backoff = std::time::Duration::from_secs(1);
        }
    }
}

/// How long a channel waits between rounds: IMAP push is IDLE (re-issued after
/// `poll_seconds`, default 300 s, well before servers end an IDLE at ~30 min); other sources
/// in push mode poll briefly (default 15 s; Graph delta queries are cheap); poll mode waits
/// `poll_seconds` (default 60 s).
fn wait_time(c: &ChannelConfig) -> std::time::Duration {
    let poll = c.mode.as_deref() == Some("poll");
    let imap = matches!(c.protocol.as_deref(), None | Some("imap"));
    let default = match (poll, imap) {
        (true, _) => 60,
        (false, true) => 300,
        (false, false) => 15,
    };
    std::time::Duration::from_secs(c.poll_seconds.unwrap_or(default).max(1))
}

async fn session(
    config: &Config,
    store: &Store,
    c: &ChannelConfig,
    halt: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let ctx = ctx(config, store, c).await?;
    let mut source = open(config, store, c).await?;
    let origin = source.origin(c);
    let wait = wait_time(c);
    let idle = c.mode.as_deref() != Some("poll");
    loop {
        source.refresh().await?;
        let mut summary = Summary::default();
        drain(store, &mut source, &origin, &ctx, &mut summary, Some(&halt)).await?;
        if *halt.borrow() {
            source.close().await;
            return Ok(());
        }
        let mut rx = halt.clone();
        let stop = async move {
            let _ = rx.changed().await;
        };
        if idle {
            source.wait_for_change(wait, stop).await?;
        } else {
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = stop => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use intake_mail::source::Listed;

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
            let batches = super::ramped(&v, b);
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
}
