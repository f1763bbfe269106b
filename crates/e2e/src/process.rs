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
