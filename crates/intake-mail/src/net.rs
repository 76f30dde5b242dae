//! Opening TCP connections to mail servers, directly or through a proxy (RC16): HTTP CONNECT
//! (`http://`) or SOCKS5 (`socks5://`, `socks5h://`).
//!
//! Both handshakes are written here instead of pulling a crate. HTTP CONNECT (about 40 lines) is
//! one request and one status line; hyper-util's tunnel service would need a `Uri` and a
//! connector stack around it. SOCKS5 (RFC 1928, with RFC 1929 username/password) is a greeting,
//! an optional login and one CONNECT request of a few bytes each; `tokio-socks` 0.5 works but
//! brings stale dependencies for those few dozen lines, and hyper-util's SOCKS connector is again
//! a tower service over URIs. Both paths yield the raw `TcpStream` that TLS and the IMAP/POP3
//! clients need, and read exactly the proxy's bytes, never the server's.
//!
//! Through SOCKS the mail host is sent as a name (DOMAINNAME) for both `socks5://` and
//! `socks5h://`, so the proxy resolves it, as an HTTP proxy does; an IP literal is sent as an
//! address. Credentials in the URL are percent-decoded (`p%40ss` is `p@ss`) for both kinds, as
//! reqwest does with an `http://` proxy URL for Graph, and never appear in errors. `no_proxy`
//! entries match a host exactly, as a domain suffix (`.corp` or `corp` matches `mail.corp`), or
//! everything (`*`).

use std::net::IpAddr;

use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An explicit proxy for a mail connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxySettings {
    /// `http://[user:password@]host:port`, `socks5://[user:password@]host:port` or `socks5h://…`
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
    #[error(
        "invalid proxy URL {0:?}: use http://[user:password@]host:port or \
         socks5://[user:password@]host:port"
    )]
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

/// The proxy (`host:port`, for SOCKS too) a connection to `host` goes through, or `None` for a
/// direct one; an unparsable proxy URL is an error (for the doctor, RC16). The value stays a
/// plain `host:port` because the doctor resolves it; [`proxy_label`] names the kind as well.
pub fn route(host: &str, proxy: Option<&ProxySettings>) -> Result<Option<String>, NetError> {
    match proxy.filter(|p| !bypasses(host, &p.no_proxy)) {
        None => Ok(None),
        Some(p) => Ok(Some(parse_proxy(&p.url)?.addr())),
    }
}

/// The proxy as shown in messages: `host:port` for HTTP CONNECT, `socks5://host:port` for
/// SOCKS5 (`socks5h://…` as configured); the credentials never appear.
pub fn proxy_label(url: &str) -> Result<String, NetError> {
    Ok(parse_proxy(url)?.label())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Http,
    /// `socks5h` when true (the name is sent either way; kept for the label).
    Socks5 {
        h: bool,
    },
}

#[derive(Debug)]
struct ProxyUrl {
    kind: Kind,
    host: String,
    port: u16,
    /// Percent-decoded user and password (for SOCKS5 at most 255 bytes each, RFC 1929).
    login: Option<(String, String)>,
}

impl ProxyUrl {
    fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    fn label(&self) -> String {
        match self.kind {
            Kind::Http => self.addr(),
            Kind::Socks5 { h: false } => format!("socks5://{}", self.addr()),
            Kind::Socks5 { h: true } => format!("socks5h://{}", self.addr()),
        }
    }

    /// HTTP CONNECT: the `Proxy-Authorization: Basic` value.
    fn basic(&self) -> Option<String> {
        self.login
            .as_ref()
            .map(|(u, p)| base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}")))
    }
}

fn parse_proxy(url: &str) -> Result<ProxyUrl, NetError> {
    let bad = || NetError::BadProxy(redact(url));
    let (scheme, rest) = url.trim().split_once("://").ok_or_else(bad)?;
    let kind = match scheme.to_ascii_lowercase().as_str() {
        "http" => Kind::Http,
        "socks5" => Kind::Socks5 { h: false },
        "socks5h" => Kind::Socks5 { h: true },
        _ => return Err(bad()),
    };
    let rest = rest.trim_end_matches('/');
    let (userinfo, hostport) = match rest.rsplit_once('@') {
        Some((a, h)) => (Some(a), h),
        None => (None, rest),
    };
    let (host, port) = hostport.rsplit_once(':').ok_or_else(bad)?;
    let host = host.trim_matches(['[', ']']);
    if host.is_empty() {
        return Err(bad());
    }
    let login = match userinfo {
        None => None,
        Some(a) => {
            let (u, p) = a.split_once(':').unwrap_or((a, ""));
            let (u, p) = (
                percent_decode(u).ok_or_else(bad)?,
                percent_decode(p).ok_or_else(bad)?,
            );
            let socks = matches!(kind, Kind::Socks5 { .. });
            if socks && (u.is_empty() || u.len() > 255 || p.len() > 255) {
                return Err(bad());
            }
            Some((u, p))
        }
    };
    Ok(ProxyUrl {
        kind,
        host: host.to_string(),
        port: port.parse().map_err(|_| bad())?,
        login,
    })
}

/// The URL with its credentials replaced by `***` (error messages never carry them).
pub fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_, hostport)) => format!("{scheme}://***@{hostport}"),
            None => url.to_string(),
        },
        None => match url.rsplit_once('@') {
            Some((_, hostport)) => format!("***@{hostport}"),
            None => url.to_string(),
        },
    }
}

/// `%XX` escapes of URL userinfo; `None` for a broken escape or a result that is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
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
    let label = u.label();
    let io = |e: std::io::Error| NetError::Connect {
        addr: format!("proxy {label}"),
        message: e.to_string(),
    };
    let mut s = TcpStream::connect((u.host.as_str(), u.port))
        .await
        .map_err(io)?;
    let refused = |status: String| NetError::Refused {
        proxy: label.clone(),
        target: target.clone(),
        status,
    };
    if let Kind::Socks5 { .. } = u.kind {
        return match socks5_handshake(&mut s, host, port, u.login.as_ref()).await {
            Ok(()) => Ok(s),
            Err(Socks5Fail::Io(e)) => Err(io(e)),
            Err(Socks5Fail::Refused(status)) => Err(refused(status)),
        };
    }
    let mut req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(a) = u.basic() {
        req.push_str(&format!("Proxy-Authorization: Basic {a}\r\n"));
    }
    req.push_str("\r\n");
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
        return Err(refused(status));
    }
    Ok(s)
}

enum Socks5Fail {
    Io(std::io::Error),
    Refused(String),
}

impl From<std::io::Error> for Socks5Fail {
    fn from(e: std::io::Error) -> Self {
        Socks5Fail::Io(e)
    }
}

/// RFC 1928 greeting: version 5 and the methods offered (no authentication, and
/// username/password when there are credentials).
fn socks5_greeting(with_login: bool) -> Vec<u8> {
    if with_login {
        vec![5, 2, 0x00, 0x02]
    } else {
        vec![5, 1, 0x00]
    }
}

/// RFC 1929 username/password request (lengths checked when the URL was parsed).
fn socks5_login(user: &str, password: &str) -> Vec<u8> {
    let mut r = vec![1, user.len() as u8];
    r.extend_from_slice(user.as_bytes());
    r.push(password.len() as u8);
    r.extend_from_slice(password.as_bytes());
    r
}

/// RFC 1928 CONNECT: an IP literal as IPv4/IPv6 address, anything else as DOMAINNAME.
fn socks5_connect_request(host: &str, port: u16) -> Result<Vec<u8>, String> {
    let mut r = vec![5, 1, 0];
    match host.trim_matches(['[', ']']).parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => {
            r.push(1);
            r.extend_from_slice(&a.octets());
        }
        Ok(IpAddr::V6(a)) => {
            r.push(4);
            r.extend_from_slice(&a.octets());
        }
        Err(_) => {
            let name = host.trim_end_matches('.');
            let len = u8::try_from(name.len())
                .ok()
                .filter(|&l| l > 0)
                .ok_or_else(|| format!("host name {host:?} cannot be sent through SOCKS5"))?;
            r.push(3);
            r.push(len);
            r.extend_from_slice(name.as_bytes());
        }
    }
    r.extend_from_slice(&port.to_be_bytes());
    Ok(r)
}

/// The meaning of an RFC 1928 reply code.
fn socks5_reply_text(code: u8) -> &'static str {
    match code {
        0x01 => "general SOCKS server failure",
        0x02 => "connection not allowed by ruleset",
        0x03 => "network unreachable",
        0x04 => "host unreachable",
        0x05 => "connection refused",
        0x06 => "TTL expired",
        0x07 => "command not supported",
        0x08 => "address type not supported",
        _ => "unassigned reply code",
    }
}

async fn socks5_handshake(
    s: &mut TcpStream,
    host: &str,
    port: u16,
    login: Option<&(String, String)>,
) -> Result<(), Socks5Fail> {
    let request = socks5_connect_request(host, port).map_err(Socks5Fail::Refused)?;
    s.write_all(&socks5_greeting(login.is_some())).await?;
    let mut m = [0u8; 2];
    s.read_exact(&mut m).await?;
    if m[0] != 5 {
        return Err(Socks5Fail::Refused(format!(
            "not a SOCKS5 proxy (it answered version byte 0x{:02x})",
            m[0]
        )));
    }
    match (m[1], login) {
        (0x00, _) => {}
        (0x02, Some((user, password))) => {
            s.write_all(&socks5_login(user, password)).await?;
            let mut a = [0u8; 2];
            s.read_exact(&mut a).await?;
            if a[1] != 0 {
                return Err(Socks5Fail::Refused(format!(
                    "SOCKS5 username/password authentication failed (status 0x{:02x}): \
                     check the user and password in the proxy URL",
                    a[1]
                )));
            }
        }
        (0xff, None) => {
            return Err(Socks5Fail::Refused(
                "no acceptable SOCKS5 authentication method: the proxy wants credentials \
                 (socks5://user:password@host:port)"
                    .into(),
            ));
        }
        (0xff, Some(_)) => {
            return Err(Socks5Fail::Refused(
                "no acceptable SOCKS5 authentication method (neither none nor username/password)"
                    .into(),
            ));
        }
        (other, _) => {
            return Err(Socks5Fail::Refused(format!(
                "SOCKS5 proxy chose authentication method 0x{other:02x}, which was not offered"
            )));
        }
    }
    s.write_all(&request).await?;
    let mut head = [0u8; 4];
    s.read_exact(&mut head).await?;
    if head[0] != 5 {
        return Err(Socks5Fail::Refused(format!(
            "not a SOCKS5 reply (version byte 0x{:02x})",
            head[0]
        )));
    }
    if head[1] != 0 {
        return Err(Socks5Fail::Refused(format!(
            "SOCKS5 reply 0x{:02x}: {}",
            head[1],
            socks5_reply_text(head[1])
        )));
    }
    // Skip the bound address and port exactly: what follows is the mail server's.
    let rest = match head[3] {
        1 => 4 + 2,
        4 => 16 + 2,
        3 => {
            let mut l = [0u8; 1];
            s.read_exact(&mut l).await?;
            usize::from(l[0]) + 2
        }
        t => {
            return Err(Socks5Fail::Refused(format!(
                "SOCKS5 reply with unknown address type 0x{t:02x}"
            )));
        }
    };
    let mut bound = vec![0u8; rest];
    s.read_exact(&mut bound).await?;
    Ok(())
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
            (p.host.as_str(), p.port, p.basic().as_deref()),
            ("127.0.0.1", 3128, Some("dTpw"))
        );
        // Percent-decoded like reqwest does for the same URL (Graph): `u:p@s` → dTpwQHM=.
        let p = parse_proxy("http://u:p%40s@proxy:3128").unwrap();
        assert_eq!(p.basic().as_deref(), Some("dTpwQHM="));
        assert_eq!(parse_proxy("http://proxy:3128").unwrap().basic(), None);
        assert_eq!(p.kind, Kind::Http);
        assert!(parse_proxy("socks4://x:1").is_err());
        assert!(parse_proxy("ftp://x:1").is_err());
        assert!(parse_proxy("127.0.0.1:3128").is_err());
    }

    #[test]
    fn socks5_urls_parse_with_decoded_credentials() {
        let p = parse_proxy("socks5://user:p%40ss%3Aw@127.0.0.1:1080/").unwrap();
        assert_eq!(p.kind, Kind::Socks5 { h: false });
        assert_eq!((p.host.as_str(), p.port), ("127.0.0.1", 1080));
        assert_eq!(p.login, Some(("user".into(), "p@ss:w".into())));
        assert_eq!(p.label(), "socks5://127.0.0.1:1080");

        let p = parse_proxy("SOCKS5H://[::1]:9050").unwrap();
        assert_eq!(p.kind, Kind::Socks5 { h: true });
        assert_eq!((p.host.as_str(), p.login.is_none()), ("::1", true));
        assert_eq!(p.addr(), "[::1]:9050");
        assert_eq!(p.label(), "socks5h://[::1]:9050");

        assert!(parse_proxy("socks5://u:%zz@h:1").is_err(), "broken escape");
        let e = parse_proxy("socks5://user:secret@h")
            .unwrap_err()
            .to_string();
        assert!(e.contains("socks5://***@h") && !e.contains("secret"), "{e}");
        assert!(parse_proxy("socks5://h").is_err(), "no port");
        assert!(parse_proxy("socks5://h:99999").is_err());
        assert!(parse_proxy(&format!("socks5://{}:p@h:1", "u".repeat(256))).is_err());
        assert_eq!(percent_decode("a%2Fb+c").as_deref(), Some("a/b+c"));
    }

    #[test]
    fn route_names_the_proxy_address_and_label_its_kind() {
        let p = ProxySettings {
            url: "socks5://u:secret@127.0.0.1:1080".into(),
            no_proxy: vec![".corp".into()],
        };
        assert_eq!(
            route("imap.example.com", Some(&p)).unwrap().as_deref(),
            Some("127.0.0.1:1080")
        );
        assert_eq!(route("mail.corp", Some(&p)).unwrap(), None);
        assert_eq!(proxy_label(&p.url).unwrap(), "socks5://127.0.0.1:1080");
        assert_eq!(proxy_label("http://a:b@proxy:3128").unwrap(), "proxy:3128");
        assert!(
            route(
                "x",
                Some(&ProxySettings {
                    url: "socks5://x".into(),
                    no_proxy: vec![]
                })
            )
            .is_err()
        );
    }

    #[test]
    fn socks5_request_bytes() {
        assert_eq!(socks5_greeting(false), [5, 1, 0]);
        assert_eq!(socks5_greeting(true), [5, 2, 0, 2]);
        assert_eq!(socks5_login("u", "pw"), [1, 1, b'u', 2, b'p', b'w']);
        assert_eq!(socks5_login("u", ""), [1, 1, b'u', 0]);
        // A name goes as DOMAINNAME (ATYP 3) for the proxy to resolve; port big-endian.
        let mut name = vec![5, 1, 0, 3, 21];
        name.extend_from_slice(b"outlook.office365.com");
        name.extend_from_slice(&[0x03, 0xe1]);
        assert_eq!(
            socks5_connect_request("outlook.office365.com", 993).unwrap(),
            name
        );
        assert_eq!(
            socks5_connect_request("imap.example.com.", 143).unwrap()[4],
            16,
            "trailing dot dropped"
        );
        // IP literals as addresses (ATYP 1 and 4).
        assert_eq!(
            socks5_connect_request("127.0.0.1", 995).unwrap(),
            [5, 1, 0, 1, 127, 0, 0, 1, 0x03, 0xe3]
        );
        let v6 = socks5_connect_request("[::1]", 110).unwrap();
        assert_eq!(
            (v6[3], v6.len(), v6[19], &v6[20..]),
            (4, 22, 1, &[0u8, 110][..])
        );
        assert!(socks5_connect_request(&"a".repeat(256), 1).is_err());
    }

    #[test]
    fn socks5_reply_codes_have_their_meanings() {
        assert_eq!(socks5_reply_text(5), "connection refused");
        assert_eq!(socks5_reply_text(4), "host unreachable");
        assert_eq!(socks5_reply_text(2), "connection not allowed by ruleset");
        assert_eq!(socks5_reply_text(0x42), "unassigned reply code");
    }

    /// A scripted SOCKS5 server on loopback: it checks each request byte for byte and answers
    /// with `reply` to the CONNECT, then greets as the mail server would.
    async fn scripted(reply: Vec<u8>) -> (u16, tokio::task::JoinHandle<()>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let (mut c, _) = l.accept().await.unwrap();
            let mut b = [0u8; 4];
            c.read_exact(&mut b).await.unwrap();
            assert_eq!(b, [5, 2, 0, 2]);
            c.write_all(&[5, 2]).await.unwrap();
            let mut b = [0u8; 9];
            c.read_exact(&mut b).await.unwrap();
            assert_eq!(&b, b"\x01\x04user\x02p@");
            c.write_all(&[1, 0]).await.unwrap();
            let mut b = [0u8; 5 + 9 + 2];
            c.read_exact(&mut b).await.unwrap();
            assert_eq!(&b, b"\x05\x01\x00\x03\x09mail.test\x03\xe1");
            c.write_all(&reply).await.unwrap();
            c.write_all(b"* OK ready\r\n").await.unwrap();
        });
        (port, task)
    }

    #[tokio::test]
    async fn socks5_handshake_leaves_the_servers_bytes_and_reports_reply_codes() {
        let (port, task) = scripted(vec![5, 0, 0, 3, 3, b'a', b'b', b'c', 0, 7]).await;
        let p = ProxySettings {
            url: format!("socks5h://user:p%40@127.0.0.1:{port}"),
            no_proxy: vec![],
        };
        let mut s = connect("mail.test", 993, Some(&p)).await.unwrap();
        let mut greeting = [0u8; 12];
        s.read_exact(&mut greeting).await.unwrap();
        assert_eq!(
            &greeting, b"* OK ready\r\n",
            "bound address skipped exactly"
        );
        task.await.unwrap();

        let (port, task) = scripted(vec![5, 5, 0, 1, 0, 0, 0, 0, 0, 0]).await;
        let p = ProxySettings {
            url: format!("socks5://user:p%40@127.0.0.1:{port}"),
            no_proxy: vec![],
        };
        let err = connect("mail.test", 993, Some(&p)).await.unwrap_err();
        assert!(matches!(err, NetError::Refused { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!(
                "proxy socks5://127.0.0.1:{port} refused CONNECT mail.test:993: \
                 SOCKS5 reply 0x05: connection refused"
            )
        );
        task.await.unwrap();
    }
}
