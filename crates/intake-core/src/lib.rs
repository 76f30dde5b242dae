//! Domain types and contracts shared by every Intake crate.
//!
//! This crate has no I/O and no async runtime. It holds:
//! - [`ids`]: `ProjectKey` and `TicketKey` (`HELP-12`), parsed and displayed one way everywhere;
//! - [`model`]: what the MIME mapping produces (`Prepared`, `MailDraft`, `AttachmentDraft`) and what the
//!   store records for it (`Outcome`);
//! - [`rules`]: a channel's handler rules (own addresses, Reply-To policy, limits, loop guard);
//! - [`token`]: OAuth token sets (secrets wrapped so they never print) and the identity a token
//!   belongs to;
//! - [`diagnosis`]: the closed list of known root causes (RC1–RC16, G1, G2) with title and fix,
//!   and [`Finding`]s that point at them;
//! - [`preset`]: providers, Microsoft clouds, protocols, grants; per-cloud endpoints and the
//!   computed scopes;
//! - [`secret`]: `env:VAR` / `file:PATH` / literal secret references that never print a literal;
//! - [`expiry`]: `YYYY-MM-DD` dates and the 30/14/3-day client-secret expiry warnings (RC14);
//! - [`integration`]: the `[[integration]]` table and its resolution into endpoints and scopes;
//! - [`lint`]: integration lint (RC1, RC8, RC9, G1, G2, RC14, RC16) and token/mailbox checks
//!   (RC1, G1, G2, RC9, RC3, RC11);
//! - [`aadsts`]: token-endpoint errors (AADSTS codes, Google, OAuth `error` values) decoded into a
//!   root cause, an action kind and a fix.
//!
//! The other crates: `intake-mime` (raw bytes → `Prepared`, pure and synchronous), `intake-store`
//! (SQLite/PostgreSQL; applies a `Prepared` and its ledger row in one transaction) and `intake`
//! (the binary: configuration, sources, the ingest pipeline).

pub mod aadsts;
pub mod catalogue;
pub mod diagnosis;
pub mod expiry;
pub mod ids;
pub mod integration;
pub mod lint;
pub mod model;
pub mod preset;
pub mod rules;
pub mod secret;
pub mod token;

pub use aadsts::{Diagnosis, ErrorKind, TokenEndpointError, classify};
pub use diagnosis::{Diagnosed, Finding, Level, OwnCode, RootCause, Severity};
pub use expiry::{
    ExpiryStage, ExpiryWarning, days_from_civil, expiry_warning, parse_date_to_unix_days,
    parse_date_to_unix_seconds,
};
pub use ids::{KeyError, ProjectKey, TicketKey};
pub use integration::{ClientCredential, IntegrationConfig, ResolvedIntegration};
pub use lint::{
    check_identity_matches_mailbox, check_token_for_protocol, lint_integration, lint_integrations,
};
pub use model::{
    AttachmentDraft, Envelope, IgnoreReason, KeptHtml, MailDraft, Outcome, Prepared, PreparedKind,
    QuarantineReason,
};
pub use preset::{
    Cloud, Endpoints, Grant, Protocol, Provider, google_endpoints, microsoft_endpoints, scopes,
};
pub use rules::{ChannelRules, LoopGuard, ReplyPolicy, ReplyToPolicy};
pub use secret::{SecretRef, SecretRefError};
pub use token::{TokenIdentity, TokenSet};
