//! A real HTTP CONNECT proxy (Debian's tinyproxy) on 127.0.0.1 for the proxy tests (RC16),
//! installed by `scripts/testbed/tinyproxy.sh`. Its log tells which CONNECTs went through it.

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
