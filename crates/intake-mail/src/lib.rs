//! Everything that talks to identity providers (and, with the connectors, to mail servers).
//!
//! - [`http`]: the one HTTP client setup (rustls, explicit proxies only, extra CA, no redirects)
//!   and the adapter that lets the `oauth2` crate run on reqwest 0.13;
//! - [`secret`]: resolving `env:` / `file:` / literal secret references;
//! - [`oauth`]: authorization code + PKCE, device code, client credentials (secret or
//!   certificate assertion), refresh; token-endpoint errors decoded into root causes;
//! - [`oauth::claims`]: who a token belongs to, read from its claims (diagnosis only);
//! - [`sasl`]: XOAUTH2 / OAUTHBEARER, keeping the server's error challenge;
//! - [`send`]: outgoing effects (webhook calls; mail and tracker calls as they land), each
//!   failure transient or permanent;
//! - [`source`]: mail servers behind one shape (IMAP, POP3, Graph); [`transport`] opens their
//!   connections (proxy, TLS, a deadline on every read and write), [`tls`] configures TLS.
//!
//! Storage (encrypted tokens, pending flows, refresh leases) is the store's; the `intake` crate
//! wires both together.

pub mod check;
pub mod http;
pub mod net;
pub mod oauth;
pub mod sasl;
pub mod secret;
pub mod send;
pub mod source;
pub mod tls;
pub mod transport;

/// Install the process-wide crypto providers (rustls and jsonwebtoken both use aws-lc-rs).
/// Idempotent; called by every constructor that needs them.
pub fn init_crypto() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    });
}
