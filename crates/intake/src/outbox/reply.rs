//! A reply from a ticket — one code path for `intake reply` and `POST
//! /api/tickets/{key}/replies`: the mail goes from the ticket's channel's mailbox (or another
//! channel that sends) to the reporter (To) and the participants (Cc), never to the channel's
//! own addresses, with `Message-ID`, `In-Reply-To`, `References` and `[KEY]` in the subject so
//! the customer's answer threads back. It is recorded as an outgoing comment and enqueued in the
//! outbox in one transaction ([`Store::enqueue_reply`]); delivering it is the outbox's job.

use intake_mail::send::compose::{OutgoingAttachment, OutgoingMail};
use intake_store::outbox::NewReply;
use intake_store::{NewOutbox, OutboxKind, Store, StoreError};

use crate::settings::Settings;

/// A file to attach.
#[derive(Debug, Clone)]
pub struct ReplyFile {
    pub filename: String,
    pub content_type: String,
    pub data: Vec<u8>,
}

/// What was recorded and enqueued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueued {
    pub key: String,
    pub comment_id: i64,
    pub outbox_id: i64,
    pub message_id: String,
    /// To and Cc, without the channel's own addresses.
    pub recipients: Vec<String>,
}

/// Why a reply was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum ReplyError {
    #[error("there is no ticket {0}")]
    NoTicket(String),
    #[error("the reply is empty")]
    Empty,
    #[error("attachment {0:?}: {1}")]
    Attachment(String, String),
    #[error(
        "channel {0:?} cannot send mail: give it a [channel.send] table (docs/configuration.md)"
    )]
    CannotSend(String),
    #[error("{0} has no recipient besides the channel's own addresses")]
    NoRecipient(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the reply could not be encoded: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Record the reply to `key` as an outgoing comment and enqueue its mail (one transaction).
/// `channel`: send from this channel instead of the one the ticket came in on.
pub async fn enqueue(
    settings: &Settings,
    store: &Store,
    key: &str,
    body: &str,
    channel: Option<&str>,
    files: Vec<ReplyFile>,
) -> Result<Enqueued, ReplyError> {
    if body.trim().is_empty() {
        return Err(ReplyError::Empty);
    }
    let key = key.trim().to_ascii_uppercase();
    let ticket = store
        .ticket(&key)
        .await?
        .ok_or_else(|| ReplyError::NoTicket(key.clone()))?;
    let channel = channel.map_or_else(|| ticket.channel.clone(), str::to_string);
    let ch = settings
        .outbox
        .send
        .get(&channel)
        .ok_or_else(|| ReplyError::CannotSend(channel.clone()))?;
    let mut attachments = Vec::new();
    let mut stored = Vec::new();
    for f in files {
        let name = f.filename.trim().replace(['\r', '\n', '"', '/', '\\'], "_");
        if name.is_empty() {
            return Err(ReplyError::Attachment(
                f.filename,
                "give the file a name".into(),
            ));
        }
        let ctype = f.content_type.trim().to_ascii_lowercase();
        if ctype
            .split_once('/')
            .is_none_or(|(a, b)| a.is_empty() || b.is_empty())
            || ctype.contains(['\r', '\n', ';', '"'])
        {
            return Err(ReplyError::Attachment(
                name,
                format!("content type {ctype:?} is not type/subtype"),
            ));
        }
        let hash = {
            use sha2::{Digest, Sha256};
            Sha256::digest(&f.data)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        attachments.push(OutgoingAttachment {
            filename: name.clone(),
            content_type: ctype.clone(),
            hash: hash.clone(),
        });
        stored.push((name, ctype, hash, f.data));
    }
    let thread = store.thread_message_ids(&key).await?;
    let message_id = intake_store::apply::new_message_id("reply", &key, &ch.domain);
    let subject = if ticket.summary.contains(&format!("[{key}]")) {
        format!("Re: {}", ticket.summary)
    } else {
        format!("Re: [{key}] {}", ticket.summary)
    };
    let mail = OutgoingMail {
        from: ch.from.clone(),
        to: vec![ticket.reporter.clone()],
        cc: ticket.participants.clone(),
        subject,
        body: body.to_string(),
        message_id: message_id.clone(),
        in_reply_to: thread.last().cloned(),
        references: thread.iter().rev().take(20).rev().cloned().collect(),
        auto_submitted: false,
        attachments,
    };
    let recipients = super::mail::recipients(settings, &channel, ch, &mail);
    if recipients.is_empty() {
        return Err(ReplyError::NoRecipient(key));
    }
    let (comment_id, outbox_id) = store
        .enqueue_reply(&NewReply {
            ticket_key: key.clone(),
            author: ch.from.clone(),
            body: body.to_string(),
            attachments: stored,
            row: NewOutbox {
                kind: OutboxKind::Mail,
                target: channel.clone(),
                ticket_key: Some(key.clone()),
                event: "reply".into(),
                identity: message_id.clone(),
                message_id: Some(message_id.clone()),
                recipient: recipients.first().cloned(),
                payload: serde_json::to_string(&mail)?,
            },
        })
        .await?;
    Ok(Enqueued {
        key,
        comment_id,
        outbox_id,
        message_id,
        recipients,
    })
}
