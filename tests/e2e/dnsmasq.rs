//! A real DNS server on loopback for the discovery tests and benchmarks:
//! Debian's dnsmasq (installed by `scripts/test`), answering from files the
//! caller rewrites. Only the standard library and tempfile, so the
//! benchmarks can share it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A dnsmasq answering on `127.0.0.1:port` from files it reads: `hosts`
/// (A records, read again on SIGHUP) and `conf` (SRV records and other
/// options, read at start only). Its records have TTL 0 unless `conf`
/// sets `local-ttl`.
pub struct Dnsmasq {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Dnsmasq {
    /// Starts dnsmasq with `hosts` as its hosts file and `conf` (dnsmasq
    /// options, one a line) as its config file.
    pub fn start(hosts: &str, conf: &str) -> Dnsmasq {
        let dir = tempfile::tempdir().unwrap();
        // dnsmasq started as root reads its files as `nobody`.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut dnsmasq = Dnsmasq {
            port: 0,
            child: None,
            dir,
        };
        dnsmasq.set_hosts(hosts);
        dnsmasq.restart(conf);
        dnsmasq
    }

    fn program() -> PathBuf {
        for candidate in ["/usr/sbin/dnsmasq", "/usr/bin/dnsmasq"] {
            if std::path::Path::new(candidate).exists() {
                return candidate.into();
            }
        }
        panic!(
            "the discovery tests need dnsmasq, and it is not installed: scripts/test installs it \
             as root (apt-get install dnsmasq-base)"
        );
    }

    fn hosts(&self) -> PathBuf {
        self.dir.path().join("hosts")
    }

    /// Rewrites the hosts file (`ip name` lines) and has dnsmasq read it
    /// again.
    pub fn set_hosts(&self, hosts: &str) {
        let temporary = self.dir.path().join("hosts.new");
        std::fs::write(&temporary, hosts).unwrap();
        std::fs::rename(&temporary, self.hosts()).unwrap();
        if let Some(child) = &self.child {
            let status = Command::new("kill")
                .args(["-HUP", &child.id().to_string()])
                .status()
                .unwrap();
            assert!(status.success());
        }
    }

    /// Stops dnsmasq (if it runs) and starts it again with `conf`, on the
    /// same port once it has one.
    pub fn restart(&mut self, conf: &str) {
        self.kill();
        let conf_file = self.dir.path().join("dnsmasq.conf");
        let ttl = if conf.contains("local-ttl=") {
            ""
        } else {
            "local-ttl=0\n"
        };
        std::fs::write(&conf_file, format!("{ttl}{conf}")).unwrap();
        for _ in 0..20 {
            let port = if self.port != 0 {
                self.port
            } else {
                std::net::UdpSocket::bind("127.0.0.1:0")
                    .unwrap()
                    .local_addr()
                    .unwrap()
                    .port()
            };
            let mut child = Command::new(Self::program())
                .arg("--no-daemon")
                .arg(format!("--port={port}"))
                .args([
                    "--listen-address=127.0.0.1",
                    "--bind-interfaces",
                    "--no-resolv",
                    "--no-hosts",
                    "--pid-file=",
                ])
                .arg(format!("--addn-hosts={}", self.hosts().display()))
                .arg(format!("--log-facility={}", self.log().display()))
                .arg(format!("--conf-file={}", conf_file.display()))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start dnsmasq");
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    self.port = port;
                    self.child = Some(child);
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("dnsmasq did not start");
    }

    /// Stops dnsmasq at once: it answers no more questions.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Its process id, for its CPU time (the discovery benchmark's).
    #[allow(dead_code)]
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("dnsmasq runs").id()
    }

    pub fn resolver(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("dnsmasq.log")
    }

    /// Questions answered so far, from the statistics dnsmasq logs on
    /// SIGUSR1.
    pub fn questions(&self) -> u64 {
        let child = self.child.as_ref().expect("dnsmasq runs");
        let before = std::fs::read_to_string(self.log())
            .unwrap_or_default()
            .len();
        let status = Command::new("kill")
            .args(["-USR1", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let needle = "queries answered locally ";
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let text = std::fs::read_to_string(self.log()).unwrap_or_default();
            let count = text[before.min(text.len())..].lines().find_map(|line| {
                let at = line.find(needle)? + needle.len();
                line[at..]
                    .split(|c: char| !c.is_ascii_digit())
                    .next()?
                    .parse()
                    .ok()
            });
            if let Some(count) = count {
                return count;
            }
            assert!(
                Instant::now() < deadline,
                "no statistics from dnsmasq: {text}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        self.kill();
    }
}
