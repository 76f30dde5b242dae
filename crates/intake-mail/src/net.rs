//! Opening TCP connections to mail servers, directly or through an HTTP CONNECT proxy (RC16).
//!
//! The CONNECT handshake is written here (about 40 lines) instead of pulling hyper-util's tunnel
//! service: it is one request and one status line, and the raw `TcpStream` it yields is what
//! TLS and the IMAP/POP3 clients need. `no_proxy` entries match a host exactly, as a domain
//! suffix (`.corp` or `corp` matches `mail.corp`), or everything (`*`).

use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An explicit proxy for a mail connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxySettings {
    /// `http://[user:password@]host:port`
    pub url: String,
    pub no_proxy: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("cannot connect to {addr}: {message}")]
    Connect { addr: String, message: String },
    #[error("proxy {proxy} refused CONNECT {target}: {status}")]
    Refused {
        proxy: String,
        target: String,
        status: String,
    },
    #[error("invalid proxy URL {0:?}: use http://[user:password@]host:port")]
    BadProxy(String),
}

/// Whether `host` bypasses the proxy.
pub fn bypasses(host: &str, no_proxy: &[String]) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    no_proxy
        .iter()
        .map(|n| n.trim().to_ascii_lowercase())
        .any(|n| {
            n == "*" || n == host || {
                let suffix = n.trim_start_matches('.');
                !suffix.is_empty() && host.ends_with(&format!(".{suffix}"))
            }
        })
}

/// The proxy (`host:port`) a connection to `host` goes through, or `None` for a direct one;
/// an unparsable proxy URL is an error (for the doctor, RC16).
pub fn route(host: &str, proxy: Option<&ProxySettings>) -> Result<Option<String>, NetError> {
    match proxy.filter(|p| !bypasses(host, &p.no_proxy)) {
        None => Ok(None),
        Some(p) => {
            let u = parse_proxy(&p.url)?;
            Ok(Some(format!("{}:{}", u.host, u.port)))
        }
    }
}

struct ProxyUrl {
    host: String,
    port: u16,
    auth: Option<String>,
}

fn parse_proxy(url: &str) -> Result<ProxyUrl, NetError> {
    let bad = || NetError::BadProxy(url.to_string());
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(bad)?
        .trim_end_matches('/');
    let (auth, hostport) = match rest.rsplit_once('@') {
        Some((a, h)) => (Some(base64::engine::general_purpose::STANDARD.encode(a)), h),
        None => (None, rest),
    };
    let (host, port) = hostport.rsplit_once(':').ok_or_else(bad)?;
    Ok(ProxyUrl {
        host: host.trim_matches(['[', ']']).to_string(),
        port: port.parse().map_err(|_| bad())?,
        auth,
    })
}

/// A TCP connection to `host:port`, through `proxy` unless `no_proxy` exempts the host.
pub async fn connect(
    host: &str,
    port: u16,
    proxy: Option<&ProxySettings>,
) -> Result<TcpStream, NetError> {
    let target = format!("{host}:{port}");
    let Some(p) = proxy.filter(|p| !bypasses(host, &p.no_proxy)) else {
        return TcpStream::connect((host, port))
            .await
            .map_err(|e| NetError::Connect {
                addr: target,
                message: e.to_string(),
            });
    };
    let u = parse_proxy(&p.url)?;
    let proxy_addr = format!("{}:{}", u.host, u.port);
    let mut s = TcpStream::connect((u.host.as_str(), u.port))
        .await
        .map_err(|e| NetError::Connect {
            addr: format!("proxy {proxy_addr}"),
            message: e.to_string(),
        })?;
    let mut req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(a) = &u.auth {
        req.push_str(&format!("Proxy-Authorization: Basic {a}\r\n"));
    }
    req.push_str("\r\n");
    let io = |e: std::io::Error| NetError::Connect {
        addr: format!("proxy {proxy_addr}"),
        message: e.to_string(),
    };
    s.write_all(req.as_bytes()).await.map_err(io)?;
    // Read the response head byte by byte: nothing after it may be consumed (it is the server's).
    let mut head = Vec::with_capacity(256);
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 16 * 1024 {
        if s.read(&mut b).await.map_err(io)? == 0 {
            break;
        }
        head.push(b[0]);
    }
    let status = String::from_utf8_lossy(&head)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(NetError::Refused {
            proxy: proxy_addr,
            target,
            status,
        });
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_proxy_matches_hosts_and_domain_suffixes() {
        let n = vec![".corp".to_string(), "mail.example.com".into()];
        assert!(bypasses("imap.corp", &n));
        assert!(bypasses("MAIL.example.com", &n));
        assert!(!bypasses("outlook.office365.com", &n));
        assert!(!bypasses("corpx.com", &n));
        assert!(bypasses("anything", &["*".into()]));
    }

    #[test]
    fn proxy_urls_parse_with_and_without_credentials() {
        let p = parse_proxy("http://u:p@127.0.0.1:3128").unwrap();
        assert_eq!(
            (p.host.as_str(), p.port, p.auth.as_deref()),
            ("127.0.0.1", 3128, Some("dTpw"))
        );
        assert!(parse_proxy("socks5://x:1").is_err());
    }
}
