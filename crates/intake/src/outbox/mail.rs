//! Sending a `mail` row of the outbox from its channel's mailbox: over SMTP submission
//! (`intake_mail::send::smtp`, XOAUTH2 with a token for the SMTP audience, or a password) or
//! Microsoft Graph `sendMail` (`intake_mail::send::graph`, the MIME message as sent, so the
//! Message-ID, the threading headers and the own-mail mark are the same on both transports).
//! The channel's own addresses are never recipients.
//!
//! Exactly once across a crash: [`send`] marks the row in flight right before the final step,
//! and a row found in flight is looked up in the mailbox's Sent folder before it is sent again
//! ([`sent_copy`]); see `intake_mail::send::sent` and docs/decisions.md.

use intake_core::preset::Protocol as TokenProtocol;
use intake_mail::send::compose::{self, OutgoingMail};
use intake_mail::send::sent::SentCopy;
use intake_mail::send::smtp::{SmtpAuth, SmtpClient, SmtpSettings};
use intake_mail::send::{Outcome, SendError};
use intake_mail::source::imap::ImapSource;
use intake_store::{OutboxItem, Store, now};
use secrecy::ExposeSecret;

use super::config::{ChannelSend, SendTransport};
use crate::oauth::TokenService;
use crate::settings::{Auth, Settings, SourceSettings};

/// The recipients of `m` minus the channel's own addresses (its rules' `addresses`, its
/// mailbox and its From address).
pub fn recipients(
    settings: &Settings,
    channel: &str,
    ch: &ChannelSend,
    m: &OutgoingMail,
) -> Vec<String> {
    let own: Vec<String> = settings
        .channel(channel)
        .map(|c| c.rules.addresses.clone())
        .unwrap_or_default()
        .into_iter()
        .chain([ch.from.clone(), ch.login.clone()])
        .map(|a| a.to_lowercase())
        .collect();
    m.recipients()
        .into_iter()
        .filter(|r| !own.contains(&r.to_lowercase()))
        .collect()
}

fn permanent(e: impl std::fmt::Display) -> SendError {
    SendError::Permanent(e.to_string())
}

/// The mail of `row` as bytes, with the own-mail mark under `sent_key`.
pub async fn render(
    store: &Store,
    row: &OutboxItem,
    sent_key: &[u8],
) -> Result<(OutgoingMail, Vec<u8>), SendError> {
    let m: OutgoingMail = serde_json::from_str(&row.payload)
        .map_err(|e| permanent(format!("outbox row {}: unreadable mail: {e}", row.id)))?;
    let mut files = Vec::with_capacity(m.attachments.len());
    for a in &m.attachments {
        let data = store
            .blob(&a.hash)
            .await
            .map_err(|e| SendError::transient(e.to_string()))?
            .ok_or_else(|| permanent(format!("attachment {} is not in the store", a.filename)))?;
        files.push((a, data));
    }
    let mark = intake_mime::loops::sent_header_value(sent_key, &m.message_id);
    let raw = compose::render(&m, now(), &mark, &files);
    Ok((m, raw))
}

/// What a mail row's note says when its interrupted send was found in the Sent folder.
pub const FOUND_IN_SENT: &str =
    "found in the Sent folder after an interrupted send: not sent again";

/// Send `row` through its channel's transport, exactly once where the channel can look into
/// its mailbox's Sent folder:
/// 1. a row found in flight (an earlier try reached its final step and no outcome was
///    recorded) is first looked up by its Message-ID in the Sent folder ([`sent_copy`]); found
///    → sent, nothing goes out; missing (also after the bounded wait) → sent again; no way to
///    look → sent again (at least once, said by the doctor and in docs/decisions.md);
/// 2. right before the final step (the end of SMTP `DATA`, the Graph POST) the row is marked
///    in flight, durably, under `owner`'s lease ([`Store::outbox_in_flight`]);
/// 3. a refusal of the final step clears the mark (nothing went out); no answer keeps it.
pub async fn send(
    settings: &Settings,
    store: &Store,
    row: &OutboxItem,
    sent_key: &[u8],
    owner: &str,
) -> Result<Option<String>, SendError> {
    let ch = settings.outbox.send.get(&row.target).ok_or_else(|| {
        permanent(format!(
            "channel {:?} cannot send mail: it has no [channel.send] (retry the row after adding it)",
            row.target
        ))
    })?;
    let (m, raw) = render(store, row, sent_key).await?;
    let to = recipients(settings, &row.target, ch, &m);
    if to.is_empty() {
        return Err(permanent(
            "no recipient is left once the channel's own addresses are taken out",
        ));
    }
    if let Some(at) = row.in_flight_at {
        match sent_copy(settings, store, &row.target, ch, &m.message_id, at).await? {
            SentCopy::Found => {
                tracing::info!(id = row.id, message_id = %m.message_id, "an interrupted send had gone out (its copy is in the Sent folder); not sending it again");
                return Ok(Some(FOUND_IN_SENT.into()));
            }
            SentCopy::Missing => {
                tracing::info!(id = row.id, message_id = %m.message_id, "an interrupted send is not in the Sent folder; sending it again");
            }
            SentCopy::CannotLook => {
                tracing::warn!(id = row.id, message_id = %m.message_id, channel = %row.target, "an interrupted send may have gone out, and this channel cannot look into its Sent folder; sending it again (the receiver may get it twice)");
            }
        }
    }
    let in_flight = || async {
        match store.outbox_in_flight(row.id, owner).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(SendError::transient(
                "the row's claim lapsed before the send; another node has it",
            )),
            Err(e) => Err(SendError::transient(e.to_string())),
        }
    };
    let not_sent = |e: SendError| async {
        // Nothing went out: the next try need not look first.
        if let Err(x) = store.outbox_not_in_flight(row.id, owner).await {
            tracing::warn!(id = row.id, error = %x, "could not clear the in-flight mark");
        }
        e
    };
    let unknown = |e: SendError| {
        let message = format!(
            "{e} — no answer to the final step, the mail may have gone out: the next try looks for it in the Sent folder first"
        );
        match e {
            SendError::Transient { retry_after, .. } => SendError::Transient {
                message,
                retry_after,
            },
            SendError::Permanent(_) => SendError::transient(message),
        }
    };
    match &ch.transport {
        SendTransport::Smtp { .. } => {
            let s = smtp_settings(settings, store, ch).await?;
            let mut c = SmtpClient::connect(&s).await?;
            c.begin(&ch.from, &to).await?;
            in_flight().await?;
            match c.finish(&raw).await {
                Ok(()) => {
                    c.quit().await;
                    Ok(None)
                }
                Err((e, Outcome::NotSent)) => Err(not_sent(e.into()).await),
                Err((e, Outcome::Unknown)) => Err(unknown(e.into())),
            }
        }
        SendTransport::Graph {
            integration,
            graph_url,
        } => {
            let token = token(
                settings,
                store,
                integration,
                &ch.login,
                TokenProtocol::Graph,
            )
            .await?;
            let client = intake_mail::http::client(&intake_mail::http::HttpOptions {
                timeouts: ch.timeouts,
                ..Default::default()
            })
            .map_err(permanent)?;
            in_flight().await?;
            match intake_mail::send::graph::send_mime(&client, graph_url, &ch.login, &token, &raw)
                .await
            {
                Ok(()) => Ok(None),
                Err((e, Outcome::NotSent)) => Err(not_sent(e).await),
                Err((e, Outcome::Unknown)) => Err(unknown(e)),
            }
        }
    }
}

/// How a channel can look into its mailbox's Sent folder: over its IMAP source, its Graph
/// source, or the Graph transport's token; `None` for a channel without mailbox access (POP3,
/// Maildir, mbox sources sending over SMTP).
pub fn sent_access(settings: &Settings, channel: &str, ch: &ChannelSend) -> Option<&'static str> {
    match (settings.channel(channel).map(|c| &c.source), &ch.transport) {
        (Some(SourceSettings::Imap(_)), _) => Some("IMAP"),
        (Some(SourceSettings::Graph(_)), _) | (_, SendTransport::Graph { .. }) => Some("Graph"),
        _ => None,
    }
}

/// Look for the mail `message_id`, whose send was interrupted at `attempted_at`, in the Sent
/// folder; while it is missing, look again every 2 s until `sent_copy_wait` after the attempt
/// has passed (a provider may file its copy a moment after its answer). A look-up that fails
/// is a transient error: the row is tried again later, never sent blindly because a server
/// was down.
pub async fn sent_copy(
    settings: &Settings,
    store: &Store,
    channel: &str,
    ch: &ChannelSend,
    message_id: &str,
    attempted_at: i64,
) -> Result<SentCopy, SendError> {
    let deadline = attempted_at.saturating_add(ch.sent_copy_wait.as_secs() as i64);
    loop {
        let found = look_once(settings, store, channel, ch, message_id).await?;
        let left = deadline - now();
        if found != SentCopy::Missing || left <= 0 {
            return Ok(found);
        }
        tokio::time::sleep(std::time::Duration::from_secs(left.clamp(1, 2) as u64)).await;
    }
}

async fn look_once(
    settings: &Settings,
    store: &Store,
    channel: &str,
    ch: &ChannelSend,
    message_id: &str,
) -> Result<SentCopy, SendError> {
    let lookup = |e: &dyn std::fmt::Display| {
        SendError::transient(format!(
            "looking for the interrupted send in the Sent folder: {e}"
        ))
    };
    let c = settings.channel(channel);
    match (c.map(|c| (c, &c.source)), &ch.transport) {
        (Some((c, SourceSettings::Imap(s))), _) => {
            let s = crate::runner::open::imap_settings(settings, store, c, s)
                .await
                .map_err(|e| lookup(&e))?;
            let mut src = ImapSource::connect(&s).await.map_err(|e| lookup(&e))?;
            let found = src.find_in_sent(message_id).await;
            let _ = src.logout().await;
            match found.map_err(|e| lookup(&e))? {
                Some(true) => Ok(SentCopy::Found),
                Some(false) => Ok(SentCopy::Missing),
                None => {
                    tracing::warn!(channel, "the mailbox has no folder marked \\Sent");
                    Ok(SentCopy::CannotLook)
                }
            }
        }
        (Some((_, SourceSettings::Graph(g))), _) => {
            let ca_pem = match &g.ca_file {
                Some(r) => Some(
                    intake_mail::secret::resolve(r)
                        .map_err(permanent)?
                        .expose_secret()
                        .as_bytes()
                        .to_vec(),
                ),
                None => None,
            };
            let client = intake_mail::http::client(&intake_mail::http::HttpOptions {
                proxy: g.proxy.clone(),
                no_proxy: g.no_proxy.clone(),
                ca_pem,
                timeouts: ch.timeouts,
                ..Default::default()
            })
            .map_err(permanent)?;
            graph_look(
                settings,
                store,
                &client,
                &g.integration,
                &g.graph_url,
                &g.mailbox,
                message_id,
            )
            .await
        }
        (
            _,
            SendTransport::Graph {
                integration,
                graph_url,
            },
        ) => {
            let client = intake_mail::http::client(&intake_mail::http::HttpOptions {
                timeouts: ch.timeouts,
                ..Default::default()
            })
            .map_err(permanent)?;
            graph_look(
                settings,
                store,
                &client,
                integration,
                graph_url,
                &ch.login,
                message_id,
            )
            .await
        }
        _ => Ok(SentCopy::CannotLook),
    }
}

async fn graph_look(
    settings: &Settings,
    store: &Store,
    client: &reqwest::Client,
    integration: &str,
    graph_url: &str,
    mailbox: &str,
    message_id: &str,
) -> Result<SentCopy, SendError> {
    let token = token(settings, store, integration, mailbox, TokenProtocol::Graph).await?;
    match intake_mail::send::graph::find_in_sent_items(
        client, graph_url, mailbox, &token, message_id,
    )
    .await
    {
        Ok(true) => Ok(SentCopy::Found),
        Ok(false) => Ok(SentCopy::Missing),
        // Refused for good (no Mail.Read on the mailbox, …): there is no way to look.
        Err(SendError::Permanent(e)) => {
            tracing::warn!(mailbox, error = %e, "cannot look into Sent Items");
            Ok(SentCopy::CannotLook)
        }
        Err(e) => Err(SendError::transient(format!(
            "looking for the interrupted send in Sent Items: {e}"
        ))),
    }
}

async fn token(
    settings: &Settings,
    store: &Store,
    integration: &str,
    mailbox: &str,
    protocol: TokenProtocol,
) -> Result<secrecy::SecretString, SendError> {
    let client =
        intake_mail::oauth::OAuthClient::new(settings.integration(integration).map_err(permanent)?)
            .map_err(permanent)?;
    let keys = intake_store::Keyring::from_env_or_file(&settings.config.secret_key_file())
        .map_err(permanent)?;
    // A token that cannot be had now (the provider is down, the grant needs re-authorizing) is
    // retried: once it is fixed, the mail goes.
    TokenService::new(store.clone(), keys)
        .access_token(&client, mailbox, protocol)
        .await
        .map_err(|e| SendError::transient(format!("token for {mailbox}: {e}")))
}

/// The SMTP settings of a channel, with a fresh token for OAuth.
pub async fn smtp_settings(
    settings: &Settings,
    store: &Store,
    ch: &ChannelSend,
) -> Result<SmtpSettings, SendError> {
    let SendTransport::Smtp {
        host,
        port,
        tls,
        auth,
        ca_file,
        proxy,
        no_proxy,
    } = &ch.transport
    else {
        return Err(permanent("not an SMTP channel"));
    };
    let auth = match auth {
        Auth::OAuth { integration, .. } => SmtpAuth::XOAuth2 {
            user: ch.login.clone(),
            token: token(settings, store, integration, &ch.login, TokenProtocol::Smtp).await?,
        },
        Auth::Password(r) => SmtpAuth::Password {
            user: ch.login.clone(),
            password: intake_mail::secret::resolve(r).map_err(permanent)?,
        },
    };
    let ca_pem = match ca_file {
        Some(r) => Some(
            intake_mail::secret::resolve(r)
                .map_err(permanent)?
                .expose_secret()
                .as_bytes()
                .to_vec(),
        ),
        None => None,
    };
    let (url, no_proxy) = intake_mail::http::resolve_proxy_env(proxy.as_deref(), no_proxy);
    Ok(SmtpSettings {
        host: host.clone(),
        port: *port,
        tls: *tls,
        ca_pem,
        auth,
        proxy: url.map(|url| intake_mail::net::ProxySettings { url, no_proxy }),
        timeouts: ch.timeouts,
        hello: ch.domain.clone(),
    })
}
