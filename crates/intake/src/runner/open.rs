//! Opening a channel's source from its typed settings: reads the secrets it needs (password,
//! CA file), takes a fresh access token for OAuth channels, connects (IMAP logs in and selects
//! the folder; POP3 connects per round) and wraps the result in [`Source`], one [`MailSource`]
//! over every protocol. Nothing here validates configuration: that happened at load
//! ([`crate::settings`]).

use intake_core::preset::Protocol as TokenProtocol;
use intake_core::secret::SecretRef;
use intake_mail::oauth::OAuthClient;
use intake_mail::source::imap::{ImapSettings, ImapSource};
use intake_mail::source::pop3::{Pop3Mailbox, Pop3Settings, SaslForm};
use intake_mail::source::{
    Fetched, Listed, Listing, MailAuth, MailSource, PostAction, SourceError, Start,
};
use intake_store::{Keyring, Store};
use secrecy::SecretString;

use super::RunError;
use crate::oauth::TokenService;
use crate::settings::{Auth, ChannelSettings, Graph, Server, Settings, SourceSettings};

/// How a Graph channel keeps its access token fresh between rounds.
pub struct GraphAuth {
    tokens: TokenService,
    client: OAuthClient,
    mailbox: String,
}

/// The source of one channel, whatever its protocol.
pub enum Source {
    Imap(Box<ImapSource>),
    Pop3(Box<Pop3Mailbox>),
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
    pub async fn refresh(&mut self) -> Result<(), RunError> {
        if let Source::Graph(src, auth) = self {
            let token = auth
                .tokens
                .access_token(&auth.client, &auth.mailbox, TokenProtocol::Graph)
                .await?;
            src.set_token(token);
        }
        Ok(())
    }
}

/// The token pre-flight before a connection: what does not keep the token from the
/// connection (identity ≠ mailbox, RC11/RC3; claim warnings) is logged as a warning. Wrong
/// audiences, scopes and clouds already failed in [`TokenService::access_token`].
async fn preflight(tokens: &TokenService, client: &OAuthClient, mailbox: &str, p: TokenProtocol) {
    match tokens.preflight_warnings(client, mailbox, p).await {
        Ok(found) => {
            for f in found {
                tracing::warn!(integration = %client.integration().name, mailbox, protocol = p.as_str(), "token pre-flight: {f}");
            }
        }
        Err(e) => tracing::debug!("token pre-flight skipped: {e}"),
    }
}

fn secret(what: &'static str, r: &SecretRef) -> Result<SecretString, RunError> {
    intake_mail::secret::resolve(r).map_err(|error| RunError::Secret { what, error })
}

fn tokens(settings: &Settings, store: &Store) -> Result<TokenService, RunError> {
    let keys = Keyring::from_env_or_file(&settings.config.secret_key_file())?;
    Ok(TokenService::new(store.clone(), keys))
}

/// Login and transport settings of an IMAP or POP3 server, with a fresh access token for OAuth.
pub async fn server_login(
    settings: &Settings,
    store: &Store,
    s: &Server,
    protocol: TokenProtocol,
) -> Result<
    (
        MailAuth,
        Option<Vec<u8>>,
        Option<intake_mail::net::ProxySettings>,
    ),
    RunError,
> {
    let auth = match &s.auth {
        Auth::OAuth {
            integration,
            mechanism,
        } => {
            let client = OAuthClient::new(settings.integration(integration)?)?;
            let service = tokens(settings, store)?;
            let token = service.access_token(&client, &s.mailbox, protocol).await?;
            preflight(&service, &client, &s.mailbox, protocol).await;
            MailAuth::OAuth {
                mechanism: *mechanism,
                user: s.mailbox.clone(),
                token,
            }
        }
        Auth::Password(r) => MailAuth::Password {
            user: s.mailbox.clone(),
            password: intake_mail::secret::resolve_password(r).map_err(|error| {
                RunError::Secret {
                    what: "auth",
                    error,
                }
            })?,
        },
    };
    let ca_pem = match &s.ca_file {
        Some(r) => Some(
            secrecy::ExposeSecret::expose_secret(&secret("ca_file", r)?)
                .as_bytes()
                .to_vec(),
        ),
        None => None,
    };
    // `proxy = "env"`: the environment's proxy, read only because it was asked for.
    let (url, no_proxy) = intake_mail::http::resolve_proxy_env(s.proxy.as_deref(), &s.no_proxy);
    let proxy = url.map(|url| intake_mail::net::ProxySettings { url, no_proxy });
    Ok((auth, ca_pem, proxy))
}

/// The channel's network deadlines (`timeout_seconds` sets them all; else intake-mail's
/// defaults) and its message size limit (checked before download).
fn limits(c: &ChannelSettings) -> (intake_mail::transport::Timeouts, Option<u64>) {
    (
        c.timeout
            .map(intake_mail::transport::Timeouts::uniform)
            .unwrap_or_default(),
        Some(c.rules.max_message_bytes),
    )
}

/// IMAP connection settings of a channel.
pub async fn imap_settings(
    settings: &Settings,
    store: &Store,
    c: &ChannelSettings,
    s: &Server,
) -> Result<ImapSettings, RunError> {
    let (timeouts, max_message_bytes) = limits(c);
    let (auth, ca_pem, proxy) = server_login(settings, store, s, TokenProtocol::Imap).await?;
    Ok(ImapSettings {
        host: s.host.clone(),
        port: s.port,
        tls: s.tls,
        ca_pem,
        auth,
        folder: s.folder.clone(),
        proxy,
        timeouts,
        max_message_bytes,
    })
}

/// POP3 connection settings of a channel.
pub async fn pop3_settings(
    settings: &Settings,
    store: &Store,
    c: &ChannelSettings,
    s: &Server,
) -> Result<Pop3Settings, RunError> {
    let (timeouts, max_message_bytes) = limits(c);
    // POP3 asks for its own scopes (POP.AccessAsUser.All on Microsoft); the token is stored
    // under the same resource as IMAP's (Exchange Online).
    let (auth, ca_pem, proxy) = server_login(settings, store, s, TokenProtocol::Pop3).await?;
    Ok(Pop3Settings {
        host: s.host.clone(),
        port: s.port,
        tls: s.tls,
        ca_pem,
        auth,
        sasl_form: SaslForm::Auto,
        proxy,
        timeouts,
        max_message_bytes,
    })
}

/// A Graph channel: the mailbox is addressed as `/users/{mailbox}`, which serves the signed-in
/// user's own and shared mailboxes alike; the Graph host follows the integration's cloud (G2).
pub async fn open_graph(
    settings: &Settings,
    store: &Store,
    c: &ChannelSettings,
    g: &Graph,
) -> Result<Source, RunError> {
    let batch = c.batch;
    let (timeouts, max_message_bytes) = limits(c);
    use intake_mail::source::graph::{GraphSettings, GraphSource};
    let client = OAuthClient::new(settings.integration(&g.integration)?)?;
    let tokens = tokens(settings, store)?;
    let token = tokens
        .access_token(&client, &g.mailbox, TokenProtocol::Graph)
        .await?;
    preflight(&tokens, &client, &g.mailbox, TokenProtocol::Graph).await;
    let ca_pem = match &g.ca_file {
        Some(r) => Some(
            secrecy::ExposeSecret::expose_secret(&secret("ca_file", r)?)
                .as_bytes()
                .to_vec(),
        ),
        None => None,
    };
    let src = GraphSource::new(
        GraphSettings {
            graph_url: g.graph_url.clone(),
            mailbox: Some(g.mailbox.clone()),
            folder: g.folder.clone(),
            page_size: u32::try_from(batch).unwrap_or(100),
            http: intake_mail::http::HttpOptions {
                proxy: g.proxy.clone(),
                no_proxy: g.no_proxy.clone(),
                ca_pem,
                timeouts,
                ..Default::default()
            },
            max_message_bytes,
        },
        token,
    )
    .map_err(|e| RunError::Source {
        stage: super::Stage::Connect,
        error: e.into(),
    })?;
    Ok(Source::Graph(
        Box::new(src),
        Box::new(GraphAuth {
            tokens,
            client,
            mailbox: g.mailbox.clone(),
        }),
    ))
}

/// Connect the channel's source (log in, select the folder).
pub async fn open(
    settings: &Settings,
    store: &Store,
    c: &ChannelSettings,
) -> Result<Source, RunError> {
    let connect = |error| RunError::Source {
        stage: super::Stage::Connect,
        error,
    };
    Ok(match &c.source {
        SourceSettings::Imap(s) => {
            let s = imap_settings(settings, store, c, s).await?;
            Source::Imap(Box::new(ImapSource::connect(&s).await.map_err(connect)?))
        }
        SourceSettings::Pop3(s) => Source::Pop3(Box::new(Pop3Mailbox::new(
            pop3_settings(settings, store, c, s).await?,
        ))),
        SourceSettings::Graph(g) => open_graph(settings, store, c, g).await?,
        SourceSettings::Maildir(path) => Source::Maildir(Box::new(
            crate::source::folder::MaildirSource::new(path.clone()).map_err(connect)?,
        )),
        SourceSettings::Mbox(path) => Source::Mbox(Box::new(
            crate::source::folder::MboxSource::new(path.clone()),
        )),
    })
}
