//! Domain types and contracts shared by every Intake crate.
//!
//! This crate has no I/O and no async runtime. It holds:
//! - [`ids`]: `ProjectKey` and `TicketKey` (`HELP-12`), parsed and displayed one way everywhere;
//! - [`model`]: what the MIME mapping produces (`Prepared`, `MailDraft`, `AttachmentDraft`) and what the
//!   store records for it (`Outcome`);
//! - [`rules`]: a channel's handler rules (own addresses, Reply-To policy, limits, loop guard);
//! - [`token`]: OAuth token sets (secrets wrapped so they never print) and the identity a token
//!   belongs to.
//!
//! The other crates: `intake-mime` (raw bytes → `Prepared`, pure and synchronous), `intake-store`
//! (SQLite/PostgreSQL; applies a `Prepared` and its ledger row in one transaction) and `intake`
//! (the binary: configuration, sources, the ingest pipeline).

pub mod ids;
pub mod model;
pub mod rules;
pub mod token;

pub use ids::{KeyError, ProjectKey, TicketKey};
pub use model::{
    AttachmentDraft, Envelope, IgnoreReason, MailDraft, Outcome, Prepared, PreparedKind,
    QuarantineReason,
};
pub use rules::{ChannelRules, LoopGuard, ReplyToPolicy};
