//! Finding a sent mail's copy in the sending mailbox: how a mail whose send was interrupted
//! after its final step (no answer seen, or a crash before the outcome was recorded) is told
//! apart from one that never went out. SMTP and Graph have no two-phase commit; what they have
//! is the provider's copy in the mailbox's Sent folder: Exchange Online stores mail submitted
//! over SMTP AUTH in Sent Items, Gmail files mail sent through smtp.gmail.com in Sent Mail, and
//! Graph `sendMail` saves to Sent Items by default (docs/decisions.md, with the sources).
//!
//! - IMAP: [`crate::source::imap::ImapSource::find_in_sent`] — the folder with the `\Sent`
//!   special-use attribute, `UID SEARCH HEADER Message-ID "<id>"`;
//! - Graph: [`crate::send::graph::find_in_sent_items`] — `mailFolders/sentitems/messages` with
//!   `$filter=internetMessageId eq '<id>'`.
//!
//! The caller (the `intake` crate's `outbox::mail`) decides what a miss means: a provider may
//! file the copy a moment after it answered, so a miss counts only once the look-up has been
//! repeated until a bounded wait after the interrupted attempt has passed.

/// What a look-up in the Sent folder found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SentCopy {
    /// A message with this Message-ID is in the Sent folder: it went out.
    Found,
    /// Not there (yet).
    Missing,
    /// There is no way to look: the mailbox has no folder marked `\Sent`, or the channel has
    /// no mailbox access (POP3, Maildir, mbox). A send can then only be repeated blindly.
    CannotLook,
}
