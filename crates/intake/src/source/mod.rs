//! Where raw messages come from when they are not on a mail server: `.eml` files, Maildir
//! folders and mbox files. [`local`] reads them for `intake ingest` (a one-shot import with its
//! own parallel read pipeline); [`folder`] makes a Maildir or mbox a [`MailSource`] channel for
//! `intake run`, next to the server sources in `intake_mail::source`.
//!
//! [`MailSource`]: intake_mail::source::MailSource

pub mod folder;
pub mod local;
