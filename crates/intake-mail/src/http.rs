//! The HTTP client for identity providers (and later Graph): rustls, no redirects (an OAuth
//! endpoint that redirects is misconfigured, and following redirects invites SSRF), environment
//! proxies ignored unless configured (RC16: the proxy an administrator sets is the one used, with
//! its no-proxy list), and an optional extra trusted CA.
//!
//! [`send`] adapts reqwest 0.13 to the `oauth2` crate (whose own adapter targets reqwest 0.12).

use std::time::Duration;

use reqwest::{NoProxy, Proxy};

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
}

/// Options for [`client`].
#[derive(Debug, Clone, Default)]
pub struct HttpOptions {
    pub proxy: Option<String>,
    pub no_proxy: Vec<String>,
    /// PEM bytes of extra trusted CA certificates.
    pub ca_pem: Option<Vec<u8>>,
    pub timeout: Option<Duration>,
}

/// Build a client with the given options.
pub fn client(o: &HttpOptions) -> Result<reqwest::Client, HttpError> {
    crate::init_crypto();
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(o.timeout.unwrap_or(Duration::from_secs(30)))
        .user_agent(concat!("intake/", env!("CARGO_PKG_VERSION")));
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
        message: e.without_url().to_string(),
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
    let body = resp.bytes().await.map_err(err)?.to_vec();
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
