//! `intake serve`: one long-running process serving the REST API ([`api`]), `/healthz`,
//! `/readyz`, `/metrics` ([`health`]), and running the channel workers of `intake run`
//! ([`crate::runner::fleet`]).
//!
//! - [`app`] builds the whole axum application: the one place where routes are registered
//!   (API routes through [`api::router`], so each is in the OpenAPI document).
//! - [`authorize`]: browser and device authorization flows (API and admin UI), state in the
//!   database.
//! - [`channel_test`]: a channel's doctor check from the API, whole or streamed stage by stage.
//! - [`auth`]: bearer tokens, sessions + CSRF, passwords, the login rate limit.
//! - [`live`]: integrations and channels kept in the database, imported from the file at start,
//!   validated like the file, reloaded on every node when they change.
//! - [`redact`]: secrets are write-only in answers and exports.
//! - [`alerts`]: the alert checks, their webhook, and the gauges of `/metrics`.
//! - Shutdown (SIGTERM / Ctrl-C): `/readyz` turns 503, the listener stops accepting, the
//!   channels finish their batch in hand within [`crate::cli::run::SHUTDOWN_GRACE`], their leases
//!   are released, and the process exits within 10 s.

pub mod alerts;
pub mod api;
pub mod auth;
pub mod authorize;
pub mod channel_test;
pub mod error;
pub mod health;
pub mod live;
pub mod redact;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use intake_store::Store;

use crate::settings::Settings;

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// What `intake serve` was started with.
#[derive(Debug, Clone)]
pub struct Options {
    pub listen: SocketAddr,
    /// The base URL browsers and identity providers reach this service at (redirect URIs,
    /// `Secure` cookies when https).
    pub public_url: url::Url,
    /// Serve `/metrics` without authentication.
    pub metrics_public: bool,
}

/// Shared by every request handler. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    /// The configuration (the database's integrations and channels, the file's other keys).
    pub live: Arc<live::Live>,
    pub options: Arc<Options>,
    /// False once shutdown has begun (`/readyz` answers 503).
    pub ready: Arc<AtomicBool>,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
}

impl AppState {
    pub fn new(store: Store, live: Arc<live::Live>, options: Options) -> Self {
        Self {
            store,
            live,
            options: Arc::new(options),
            ready: Arc::new(AtomicBool::new(true)),
            metrics: health::metrics_handle(),
        }
    }

    /// Whether cookies get `Secure` (the public URL is https).
    pub fn secure_cookies(&self) -> bool {
        self.options.public_url.scheme() == "https"
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}

/// The whole application: public routes (`/healthz`, `/readyz`, login), `/metrics`, and the
/// authenticated API. New routes are added in [`api::router`] (API) or here (non-API).
pub fn app(state: AppState) -> Router {
    let (api, _doc) = api::router(state.clone());
    Router::new()
        .merge(health::router(state.clone()))
        .merge(api)
        // The admin web UI's pages and assets (issue 13), behind the same sessions + CSRF.
        .merge(crate::web::router(state.clone()))
        .layer(
            tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer::new([
                axum::http::header::AUTHORIZATION,
                axum::http::header::COOKIE,
            ]),
        )
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            4 * 1024 * 1024,
        ))
        .layer(tower_http::catch_panic::CatchPanicLayer::new())
}

/// Serve until SIGTERM/Ctrl-C, with the channel workers. `file` is the configuration file in
/// use, if any: its integrations and channels are imported first.
pub async fn run(
    settings: Settings,
    file: Option<&std::path::Path>,
    store: Store,
    options: Options,
) -> anyhow::Result<std::process::ExitCode> {
    let live = live::Live::start(store.clone(), &settings, file).await?;
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", options.listen))?;
    let local = listener.local_addr()?;
    let mut options = options;
    if options.public_url.port() == Some(0) {
        // `--listen HOST:0` without `--public-url`: the redirect URI of a browser sign-in names
        // the port actually bound, not port 0.
        let _ = options.public_url.set_port(Some(local.port()));
    }
    let state = AppState::new(store.clone(), live.clone(), options);
    let _housekeeping = crate::housekeeping::start(&settings.config, &store).await;
    let (workers_stop, workers_rx) = tokio::sync::watch::channel(false);
    let checks = tokio::spawn(alerts::run(store.clone(), live.clone(), workers_rx.clone()));
    // The outbox is delivered on every node (rows are claimed with a lease).
    let outbox = tokio::spawn(crate::outbox::deliver_forever(
        {
            let live = live.clone();
            move || {
                let s = live.snapshot();
                (s.version, s.settings)
            }
        },
        store.clone(),
        workers_rx.clone(),
    ));
    let workers = tokio::spawn(live.clone().run(
        crate::runner::fleet::Fleet::new(store.clone()),
        crate::cli::run::SHUTDOWN_GRACE,
        workers_rx,
    ));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let app = app(state.clone());
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = stop_rx.await;
        })
        .await
    });
    tracing::info!(listen = %local, node = %crate::runner::node(), "intake serve listening");
    // The one line on standard output: scripts and tests read the address from it (logs go to
    // standard error).
    println!("listening on http://{local}");
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("stopping: finishing the current batches");
    state.ready.store(false, Ordering::SeqCst);
    let _ = stop_tx.send(());
    let _ = workers_stop.send(true);
    checks.abort();
    // The workers finish their batches within the grace period, then their leases are
    // released (bounded steps); a little margin for that.
    let _ = tokio::time::timeout(
        crate::cli::run::SHUTDOWN_GRACE + Duration::from_secs(2),
        workers,
    )
    .await;
    let _ = tokio::time::timeout(Duration::from_secs(1), outbox).await;
    // Requests in flight had the grace period too; whatever still runs is dropped.
    let _ = tokio::time::timeout(Duration::from_secs(1), server).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), store.close()).await;
    Ok(std::process::ExitCode::SUCCESS)
}
