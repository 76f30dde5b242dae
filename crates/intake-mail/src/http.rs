//! The HTTP client for identity providers (and later Graph): rustls, no redirects (an OAuth
//! endpoint that redirects is misconfigured, and following redirects invites SSRF), environment
//! proxies ignored unless configured (RC16: the proxy an administrator sets is the one used, with
//! its no-proxy list), and an optional extra trusted CA.
//!
//! [`send`] adapts reqwest 0.13 to the `oauth2` crate (whose own adapter targets reqwest 0.12).
//!
//! Bounds: connecting has [`Timeouts::connect`], every read of a response (head or body chunk)
//! [`Timeouts::command`] (reqwest's per-read timeout, so a large download that keeps flowing
//! is never cut); an optional total [`HttpOptions::timeout`] on top. Bodies are read with
//! [`read_capped`]: token answers at most [`TOKEN_BODY_CAP`].

use std::time::Duration;

use reqwest::{NoProxy, Proxy};

use crate::transport::Timeouts;

/// The largest token-endpoint answer read (a token response is a few KiB).
pub const TOKEN_BODY_CAP: u64 = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("invalid proxy {0:?}: {1}")]
    Proxy(String, String),
    #[error("cannot read CA file: {0}")]
    Ca(String),
    #[error("HTTP client: {0}")]
    Build(String),
    #[error("HTTP request to {url} failed: {message}")]
    Request { url: String, message: String },
    #[error("the answer from {url} is larger than {cap} bytes; not read further")]
    TooLarge { url: String, cap: u64 },
}

/// A failed request in words an administrator can act on: reqwest's own message ("error
/// sending request") followed by its causes (connection refused, the proxy's answer, the TLS
/// alert or certificate problem), and, for a certificate the client refused, what that means
/// (docs/troubleshooting.md, RC7 and RC16). URLs are left out (they may carry credentials).
pub fn explain(e: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        let text = if parts.is_empty() {
            e.without_url_text()
        } else {
            err.to_string()
        };
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = err.source();
    }
    let mut out = parts.join(": ");
    if let Some(hint) = certificate_hint(&out) {
        out.push_str(" — ");
        out.push_str(hint);
    }
    out
}

trait WithoutUrlText {
    fn without_url_text(&self) -> String;
}

impl WithoutUrlText for reqwest::Error {
    fn without_url_text(&self) -> String {
        let mut s = self.to_string();
        if let Some(url) = self.url() {
            s = s.replace(&format!(" for url ({url})"), "");
            s = s.replace(url.as_str(), "");
        }
        s
    }
}

/// What a TLS certificate failure means, from rustls' words (also used for IMAP/POP3 TLS).
pub fn certificate_hint(text: &str) -> Option<&'static str> {
    let t = text.to_ascii_lowercase();
    if t.contains("notvalidforname") || t.contains("not valid for name") {
        Some(
            "the server's certificate is not valid for this host name: connect to the name the \
             certificate was issued for, or fix the certificate",
        )
    } else if t.contains("unknownissuer") || t.contains("unknown issuer") {
        Some(
            "the certificate is signed by an authority this machine does not trust: a \
             TLS-inspecting proxy or a private CA; set ca_file to its CA certificate (PEM)",
        )
    } else if t.contains("expired") && t.contains("certificate") {
        Some("the server's certificate has expired (or this machine's clock is wrong)")
    } else if t.contains("notvalidyet") {
        Some("the server's certificate is not valid yet (check this machine's clock)")
    } else if t.contains("badsignature") || t.contains("invalid peer certificate") {
        Some("the server's certificate was refused; check ca_file and the host name")
    } else {
        None
    }
}

/// Read a response body of at most `cap` bytes: `Err(n)` with the bytes counted when it is
/// larger (the declared `Content-Length` or what arrived before the cap), without reading on.
pub async fn read_capped(
    mut resp: reqwest::Response,
    cap: u64,
) -> Result<Result<Vec<u8>, u64>, reqwest::Error> {
    if let Some(len) = resp.content_length()
        && len > cap
    {
        return Ok(Err(len));
    }
    let mut out = Vec::with_capacity(resp.content_length().unwrap_or(0) as usize);
    while let Some(chunk) = resp.chunk().await? {
        let total = out.len() as u64 + chunk.len() as u64;
        if total > cap {
            return Ok(Err(total));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Ok(out))
}

/// Options for [`client`].
#[derive(Debug, Clone, Default)]
pub struct HttpOptions {
    pub proxy: Option<String>,
    pub no_proxy: Vec<String>,
    /// PEM bytes of extra trusted CA certificates.
    pub ca_pem: Option<Vec<u8>>,
    /// A bound on the whole request (none by default: [`Timeouts`] bound each step).
    pub timeout: Option<Duration>,
    /// Connect (`connect`) and per-read (`command`) deadlines.
    pub timeouts: Timeouts,
}

/// `proxy = "env"` asks for the environment's proxy — and only then is the environment read
/// (RC16: a proxy variable left in a service's environment never silently reroutes mail or
/// tokens). The proxy is `HTTPS_PROXY`, else `ALL_PROXY`, else `HTTP_PROXY` (lower-case names
/// too); `NO_PROXY` entries join the configured `no_proxy`. `get` reads one variable.
pub fn resolve_proxy(
    proxy: Option<&str>,
    no_proxy: &[String],
    get: impl Fn(&str) -> Option<String>,
) -> (Option<String>, Vec<String>) {
    if proxy.map(str::trim) != Some("env") {
        return (proxy.map(str::to_string), no_proxy.to_vec());
    }
    let var = |name: &str| {
        get(name)
            .or_else(|| get(&name.to_ascii_lowercase()))
            .filter(|v| !v.trim().is_empty())
    };
    let url = var("HTTPS_PROXY")
        .or_else(|| var("ALL_PROXY"))
        .or_else(|| var("HTTP_PROXY"));
    let mut exceptions = no_proxy.to_vec();
    if let Some(n) = var("NO_PROXY") {
        exceptions.extend(
            n.split(',')
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .map(str::to_string),
        );
    }
    (url, exceptions)
}

/// [`resolve_proxy`] on the process environment.
pub fn resolve_proxy_env(
    proxy: Option<&str>,
    no_proxy: &[String],
) -> (Option<String>, Vec<String>) {
    resolve_proxy(proxy, no_proxy, |k| std::env::var(k).ok())
}

/// Build a client with the given options.
pub fn client(o: &HttpOptions) -> Result<reqwest::Client, HttpError> {
    crate::init_crypto();
    let (proxy, no_proxy) = resolve_proxy_env(o.proxy.as_deref(), &o.no_proxy);
    let o = &HttpOptions {
        proxy,
        no_proxy,
        ..o.clone()
    };
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(o.timeouts.connect)
        .read_timeout(o.timeouts.command)
        .user_agent(concat!("intake/", env!("CARGO_PKG_VERSION")));
    if let Some(t) = o.timeout {
        b = b.timeout(t);
    }
    if let Some(p) = &o.proxy {
        let proxy = Proxy::all(p)
            .map_err(|e| HttpError::Proxy(p.clone(), e.to_string()))?
            .no_proxy(NoProxy::from_string(&o.no_proxy.join(",")));
        b = b.proxy(proxy);
    }
    if let Some(pem) = &o.ca_pem {
        for cert in
            reqwest::Certificate::from_pem_bundle(pem).map_err(|e| HttpError::Ca(e.to_string()))?
        {
            b = b.add_root_certificate(cert);
        }
    }
    b.build().map_err(|e| HttpError::Build(e.to_string()))
}

/// Run one `oauth2` request on reqwest.
pub async fn send(
    client: &reqwest::Client,
    req: oauth2::HttpRequest,
) -> Result<oauth2::HttpResponse, HttpError> {
    let (parts, body) = req.into_parts();
    let url = parts.uri.to_string();
    let err = |e: reqwest::Error| HttpError::Request {
        url: url.clone(),
        message: explain(&e),
    };
    let resp = client
        .request(parts.method, &url)
        .headers(parts.headers)
        .body(body)
        .send()
        .await
        .map_err(err)?;
    let mut builder = http::Response::builder().status(resp.status());
    for (k, v) in resp.headers() {
        builder = builder.header(k, v);
    }
    let body = read_capped(resp, TOKEN_BODY_CAP)
        .await
        .map_err(err)?
        .map_err(|_| HttpError::TooLarge {
            url: url.clone(),
            cap: TOKEN_BODY_CAP,
        })?;
    builder.body(body).map_err(|e| HttpError::Request {
        url: url.clone(),
        message: e.to_string(),
    })
}

/// The `oauth2` crate's HTTP client on reqwest, as a type (a closure borrowing the client makes
/// the request futures non-`Send` for spawned tasks: rustc's higher-ranked lifetime limits).
#[derive(Debug, Clone)]
pub struct OAuthHttp(pub reqwest::Client);

impl<'c> oauth2::AsyncHttpClient<'c> for OAuthHttp {
    type Error = HttpError;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<oauth2::HttpResponse, HttpError>> + Send + 'c>,
    >;

    fn call(&'c self, request: oauth2::HttpRequest) -> Self::Future {
        Box::pin(send(&self.0, request))
    }
}

#[cfg(test)]
mod tests {
    use super::{certificate_hint, resolve_proxy};

    /// rustls' words for a refused certificate become what it means (wrong host, unknown CA,
    /// expired); other failures get no certificate hint.
    #[test]
    fn certificate_problems_are_named() {
        let name = "invalid peer certificate: NotValidForName";
        assert!(
            certificate_hint(name)
                .unwrap()
                .contains("not valid for this host name")
        );
        let ca = "invalid peer certificate: UnknownIssuer";
        assert!(certificate_hint(ca).unwrap().contains("ca_file"));
        let old = "invalid peer certificate: Expired certificate";
        assert!(certificate_hint(old).unwrap().contains("expired"));
        assert!(certificate_hint("tcp connect error: Connection refused").is_none());
    }

    #[test]
    fn the_environment_is_read_only_when_asked_for() {
        let env = |k: &str| match k {
            "HTTPS_PROXY" => Some("http://env-proxy:3128".to_string()),
            "no_proxy" => Some("localhost, .corp".to_string()),
            _ => None,
        };
        assert_eq!(resolve_proxy(None, &[], env), (None, vec![]));
        assert_eq!(
            resolve_proxy(Some("http://p:1"), &["x".into()], env),
            (Some("http://p:1".into()), vec!["x".to_string()])
        );
        assert_eq!(
            resolve_proxy(Some("env"), &["x".into()], env),
            (
                Some("http://env-proxy:3128".into()),
                vec!["x".to_string(), "localhost".into(), ".corp".into()]
            )
        );
        let lower = |k: &str| (k == "all_proxy").then(|| "socks5://s:1080".to_string());
        assert_eq!(
            resolve_proxy(Some("env"), &[], lower).0.as_deref(),
            Some("socks5://s:1080")
        );
        assert_eq!(resolve_proxy(Some("env"), &[], |_| None), (None, vec![]));
    }
}
