//! Provider presets: which hosts, endpoints and scopes an integration uses.
//!
//! One `cloud` setting drives the login host, the mail hosts, the Graph root and the scopes
//! together (RC9, G2), and scopes are computed from provider + cloud + protocol + grant (RC1).
//! Every value comes from docs/troubleshooting.md ("Hosts and endpoints", "Scopes");
//! where that document marks a disagreement, the default it recommends is used and noted at the
//! constant.
//!
//! - [`cloud`]: the [`Provider`], [`Cloud`], [`Protocol`] and [`Grant`] enums, per-cloud hosts
//!   and [`Endpoints`] ([`microsoft_endpoints`], [`google_endpoints`]);
//! - [`scopes`](mod@scopes): the scope list for one provider/cloud/protocol/grant ([`scopes()`]) and the scope
//!   parsing the lint uses;
//! - `hosts`: which cloud a Microsoft host name belongs to (for the mixed-cloud lint and token
//!   checks).

pub mod cloud;
pub(crate) mod hosts;
pub mod scopes;

pub use cloud::{
    Cloud, Endpoints, Grant, Protocol, Provider, google_endpoints, microsoft_endpoints,
};
pub use scopes::scopes;
