//! `intake serve [--listen ADDR] [--public-url URL] [--metrics-public]`: the long-running
//! service (REST API, health, metrics, channel workers). See `serve/mod.rs`.

use std::net::SocketAddr;
use std::process::ExitCode;

use crate::serve::{DEFAULT_LISTEN, Options};
use crate::settings::Settings;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (behind a reverse proxy with TLS: docs/deploy.md).
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_LISTEN, env = "INTAKE_LISTEN")]
    pub listen: SocketAddr,
    /// Base URL browsers and identity providers reach this service at, e.g.
    /// https://intake.example.com (redirect URIs; cookies are Secure when it is https).
    /// Default: http://ADDR of --listen.
    #[arg(long, value_name = "URL", env = "INTAKE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Serve /metrics without authentication (for a Prometheus on a trusted network).
    #[arg(long)]
    pub metrics_public: bool,
}

pub async fn run(
    settings: &Settings,
    file: Option<&std::path::Path>,
    db: &str,
    a: ServeArgs,
) -> anyhow::Result<ExitCode> {
    let public_url = match &a.public_url {
        Some(u) => parse_public_url(u)?,
        None => url::Url::parse(&format!("http://{}", a.listen))?,
    };
    let store = intake_store::Store::connect(db).await?;
    let options = Options {
        listen: a.listen,
        public_url,
        metrics_public: a.metrics_public,
    };
    // The file in use: --config, else ./intake.toml when present (as Config::load).
    let default = std::path::Path::new("intake.toml");
    let file = file.or_else(|| default.exists().then_some(default));
    crate::serve::run(settings.clone(), file, store, options).await
}

/// `--public-url`: an absolute http(s) URL without query or fragment.
pub fn parse_public_url(u: &str) -> anyhow::Result<url::Url> {
    let url = url::Url::parse(u.trim()).map_err(|e| {
        anyhow::anyhow!("--public-url {u:?}: {e}: use e.g. https://intake.example.com")
    })?;
    anyhow::ensure!(
        matches!(url.scheme(), "http" | "https") && url.host().is_some(),
        "--public-url {u:?}: use an http:// or https:// URL with a host"
    );
    anyhow::ensure!(
        url.query().is_none() && url.fragment().is_none() && url.username().is_empty(),
        "--public-url {u:?}: a base URL has no user, query or fragment"
    );
    Ok(url)
}
