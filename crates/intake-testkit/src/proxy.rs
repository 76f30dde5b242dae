//! Real proxies on 127.0.0.1 for the proxy tests (RC16): an HTTP CONNECT proxy (Debian's
//! tinyproxy, `scripts/testbed/tinyproxy.sh`) and a SOCKS5 proxy (Debian's microsocks,
//! `scripts/testbed/microsocks.sh`). Their logs tell which tunnels went through them.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running tinyproxy; dropping it stops the process.
#[derive(Debug)]
pub struct TinyProxy {
    pub port: u16,
    pub url: String,
    log: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

impl TinyProxy {
    /// Start one, or `None` (with a message) when tinyproxy is not installed; panics instead when
    /// `INTAKE_REQUIRE_PROXY=1`.
    pub fn start_or_skip(test: &str) -> Option<TinyProxy> {
        let required = std::env::var("INTAKE_REQUIRE_PROXY").is_ok_and(|v| v == "1");
        match Self::start() {
            Ok(p) => Some(p),
            Err(e) if required => panic!("{test}: tinyproxy is required: {e}"),
            Err(e) => {
                println!("SKIPPED: {test}: {e}");
                None
            }
        }
    }

    pub fn start() -> Result<TinyProxy, String> {
        let bin = ["/usr/bin/tinyproxy", "/usr/sbin/tinyproxy"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .ok_or("tinyproxy is not installed (run scripts/testbed/tinyproxy.sh install)")?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let log = dir.path().join("tinyproxy.log");
        let conf = dir.path().join("tinyproxy.conf");
        // No ConnectPort line: CONNECT to any port is allowed (the mail ports are not 443).
        std::fs::write(
            &conf,
            format!(
                "Port {port}\nListen 127.0.0.1\nTimeout 60\nLogFile \"{}\"\nLogLevel Info\nMaxClients 20\nAllow 127.0.0.1\nDisableViaHeader Yes\nPidFile \"{}\"\n",
                log.display(),
                dir.path().join("tinyproxy.pid").display()
            ),
        )
        .map_err(|e| e.to_string())?;
        let child = Command::new(bin)
            .args(["-d", "-c"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err(format!("tinyproxy did not listen on {port}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(TinyProxy {
            port,
            url: format!("http://127.0.0.1:{port}"),
            log,
            child,
            _dir: dir,
        })
    }

    /// The proxy's log (CONNECT lines name each tunnelled host:port).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for TinyProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real SOCKS5 proxy (Debian's microsocks) on 127.0.0.1 for the SOCKS tests (RC16), installed
/// by `scripts/testbed/microsocks.sh`. Its log (stderr) has one `connected to HOST:PORT` line per
/// tunnel it opened.
#[derive(Debug)]
pub struct MicroSocks {
    pub port: u16,
    /// `socks5://[user:password@]127.0.0.1:PORT` (user and password percent-encoded)
    pub url: String,
    log: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

impl MicroSocks {
    /// Start one (with username/password authentication when `login` is given), or `None` (with
    /// a message) when microsocks is not installed; panics instead when `INTAKE_REQUIRE_SOCKS=1`.
    pub fn start_or_skip(test: &str, login: Option<(&str, &str)>) -> Option<MicroSocks> {
        let required = std::env::var("INTAKE_REQUIRE_SOCKS").is_ok_and(|v| v == "1");
        match Self::start(login) {
            Ok(p) => Some(p),
            Err(e) if required => panic!("{test}: microsocks is required: {e}"),
            Err(e) => {
                println!("SKIPPED: {test}: {e}");
                None
            }
        }
    }

    pub fn start(login: Option<(&str, &str)>) -> Result<MicroSocks, String> {
        let bin = ["/usr/bin/microsocks", "/usr/local/bin/microsocks"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .ok_or("microsocks is not installed (run scripts/testbed/microsocks.sh install)")?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let log = dir.path().join("microsocks.log");
        let mut cmd = Command::new(bin);
        cmd.args(["-i", "127.0.0.1", "-p", &port.to_string()]);
        if let Some((user, password)) = login {
            cmd.args(["-u", user, "-P", password]);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).map_err(|e| e.to_string())?)
            .spawn()
            .map_err(|e| e.to_string())?;
        let mut running = MicroSocks {
            port,
            url: match login {
                Some((u, p)) => format!(
                    "socks5://{}:{}@127.0.0.1:{port}",
                    percent_encode(u),
                    percent_encode(p)
                ),
                None => format!("socks5://127.0.0.1:{port}"),
            },
            log,
            child,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = running.child.try_wait() {
                return Err(format!("microsocks exited ({status}): {}", running.log()));
            }
            if Instant::now() > deadline {
                return Err(format!("microsocks did not listen on {port}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(running)
    }

    /// The proxy's log: `client[N] 127.0.0.1: connected to HOST:PORT` per opened tunnel.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for MicroSocks {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Everything but RFC 3986 unreserved characters as `%XX` (for URL userinfo).
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
