//! The services as real processes (the binaries `make test` builds), for
//! tests that kill one with SIGKILL or stop it with SIGTERM like an
//! orchestrator would.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A binary of this workspace, next to the test binaries (target/<profile>/):
/// `make test` (`cargo nextest run --workspace`) builds every binary first.
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary lives in target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the workspace's binaries first (make test does)",
        path.display()
    );
    path
}

/// One running service process. Its JSON log goes to `<dir>/<name>.log`.
pub struct ServiceProcess {
    pub name: String,
    pub port: u16,
    child: Child,
    log: PathBuf,
}

impl ServiceProcess {
    /// Starts `binary` with `env` (plus `LOG_FORMAT=json`) in `dir` and waits
    /// for the log line `listening` that carries its port (`port`, or the
    /// port of `addr`).
    pub fn start(name: &str, binary: &str, args: &[&str], env: &[(&str, String)], dir: &Path, listening: &str) -> Self {
        let log = dir.join(format!("{name}.log"));
        let mut command = Command::new(workspace_binary(binary));
        command
            .args(args)
            .current_dir(dir)
            .env("LOG_FORMAT", "json")
            .env_remove("TRONPAY_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {binary}: {error}"));
        let stderr = child.stderr.take().expect("piped stderr");
        let (port_tx, port_rx) = mpsc::channel();
        let mut file = std::fs::File::create(&log).expect("the log file");
        let wanted = listening.to_owned();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = writeln!(file, "{line}");
                let event: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                if event["message"] == wanted.as_str() {
                    let port = event["port"].as_u64().or_else(|| {
                        event["addr"]
                            .as_str()
                            .and_then(|addr| addr.rsplit(':').next())
                            .and_then(|port| port.parse().ok())
                    });
                    let _ = port_tx.send(port);
                }
            }
        });
        let port = match port_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Some(port)) => u16::try_from(port).expect("a port"),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{name} did not log '{listening}':\n{}", tail(&log));
            }
        };
        Self {
            name: name.to_owned(),
            port,
            child,
            log,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no chance to finish anything, as in a crash or an OOM kill.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, as an orchestrator stops a pod; waits for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
        assert!(sent.success(), "SIGTERM to {}", self.name);
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            if started.elapsed() > Duration::from_secs(40) {
                self.kill();
                panic!(
                    "{} did not stop within 40 s of SIGTERM:\n{}",
                    self.name,
                    tail(&self.log)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Its whole log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The end of its log, for failure messages.
    pub fn log_tail(&self) -> String {
        tail(&self.log)
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.kill();
        }
    }
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// PgBouncer in transaction mode in front of the test server: every
/// transaction may land on a different server connection, so anything that
/// relies on session state (session advisory locks, `SET`) breaks behind it.
/// The binary is `TRONPAY_PGBOUNCER` (`make test` builds PgBouncer 1.24; the
/// services need ≥ 1.21 for prepared statements), else `pgbouncer` on PATH.
pub struct PgBouncer {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl PgBouncer {
    pub fn start(server: &url::Url) -> Self {
        let binary = std::env::var("TRONPAY_PGBOUNCER").unwrap_or_else(|_| "pgbouncer".into());
        let dir = tempfile::tempdir().expect("a temporary directory");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let user = if server.username().is_empty() {
            "postgres"
        } else {
            server.username()
        };
        std::fs::write(dir.path().join("users.txt"), format!("\"{user}\" \"\"\n")).expect("users.txt");
        let config = format!(
            "[databases]\n* = host={host} port={server_port}\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\n\
             listen_port = {port}\nunix_socket_dir =\nauth_type = trust\nauth_file = {users}\n\
             pool_mode = transaction\nmax_prepared_statements = 200\ndefault_pool_size = 20\n\
             max_client_conn = 500\ntcp_keepalive = 1\ntcp_keepidle = 10\ntcp_keepintvl = 5\ntcp_keepcnt = 3\n",
            host = server.host_str().unwrap_or("127.0.0.1"),
            server_port = server.port().unwrap_or(5432),
            users = dir.path().join("users.txt").display(),
        );
        let ini = dir.path().join("pgbouncer.ini");
        std::fs::write(&ini, config).expect("pgbouncer.ini");
        let log = std::fs::File::create(dir.path().join("pgbouncer.log")).expect("the log file");
        let mut command = Command::new(&binary);
        command.arg(&ini).stdout(Stdio::null()).stderr(log);
        // PgBouncer refuses to run as root: it drops to `nobody`, who must
        // be able to read its files.
        if is_root() {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
            command.args(["--user", "nobody"]);
        }
        let child = command.spawn().unwrap_or_else(|error| {
            panic!("cannot start PgBouncer ({binary}): {error}; `make test` builds it (or set TRONPAY_PGBOUNCER)")
        });
        let mut bouncer = Self { child, port, dir };
        let started = Instant::now();
        // Its own word that it listens: the port was free a moment ago, but
        // another server could have taken it since (PgBouncer then exits).
        let log = bouncer.dir.path().join("pgbouncer.log");
        let listening = format!("listening on 127.0.0.1:{port}");
        while !std::fs::read_to_string(&log).is_ok_and(|text| text.contains(&listening) && text.contains("process up"))
        {
            if let Ok(Some(status)) = bouncer.child.try_wait() {
                panic!("PgBouncer exited ({status}):\n{}", tail(&log));
            }
            assert!(started.elapsed() < Duration::from_secs(10), "PgBouncer did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        bouncer
    }

    /// `database_url` with PgBouncer in place of the server.
    pub fn url_for(&self, database_url: &str) -> String {
        let mut url = url::Url::parse(database_url).expect("a database URL");
        url.set_host(Some("127.0.0.1")).expect("a host");
        url.set_port(Some(self.port)).expect("a port");
        url.to_string()
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|status| {
            status
                .lines()
                .any(|line| line.starts_with("Uid:") && line.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
