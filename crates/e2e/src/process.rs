//! The services as real processes (the binaries `make test` builds), for
//! tests that kill one with SIGKILL or stop it with SIGTERM like an
//! orchestrator would.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub use tronpay_testkit::process::{ServiceProcess, tail};
use tronpay_testkit::within_blocking;

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
        Self::start_with(server, &[])
    }

    /// Started with some `[pgbouncer]` settings changed (e.g.
    /// `("default_pool_size", "1")`).
    pub fn start_with(server: &url::Url, settings: &[(&str, &str)]) -> Self {
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
        let mut config = format!(
            "[databases]\n* = host={host} port={server_port}\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\n\
             listen_port = {port}\nunix_socket_dir =\nauth_type = trust\nauth_file = {users}\n\
             pool_mode = transaction\nmax_prepared_statements = 200\ndefault_pool_size = 20\n\
             max_client_conn = 500\ntcp_keepalive = 1\ntcp_keepidle = 10\ntcp_keepintvl = 5\ntcp_keepcnt = 3\n",
            host = server.host_str().unwrap_or("127.0.0.1"),
            server_port = server.port().unwrap_or(5432),
            users = dir.path().join("users.txt").display(),
        );
        for (key, value) in settings {
            config = config
                .lines()
                .filter(|line| line.split('=').next().map(str::trim) != Some(*key))
                .map(|line| format!("{line}\n"))
                .collect();
            config.push_str(&format!("{key} = {value}\n"));
        }
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
        // Its own word that it listens: the port was free a moment ago, but
        // another server could have taken it since (PgBouncer then exits).
        let log = bouncer.dir.path().join("pgbouncer.log");
        let listening = format!("listening on 127.0.0.1:{port}");
        let up = within_blocking(Duration::from_secs(10), || {
            if let Ok(Some(status)) = bouncer.child.try_wait() {
                panic!("PgBouncer exited ({status}):\n{}", tail(&log));
            }
            std::fs::read_to_string(&log)
                .is_ok_and(|text| text.contains(&listening) && text.contains("process up"))
                .then_some(())
        });
        assert!(up.is_some(), "PgBouncer did not listen:\n{}", tail(&log));
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
