//! Where raw messages come from. For now the local sources (`.eml` files, Maildir folders, mbox
//! files) that need no mail server; the server connectors (IMAP, POP3, Graph) join them here.

pub mod local;
