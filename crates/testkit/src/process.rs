//! The services as real processes, for tests that stop one with SIGTERM
//! like an orchestrator would, or kill it with SIGKILL like a crash.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A command for a service binary (`env!("CARGO_BIN_EXE_…")`) that reads no
/// `.env` or configuration file of the checkout: it runs in the temporary
/// directory, without `TRONPAY_CONFIG`.
pub fn service_command(binary: &str) -> Command {
    let mut command = Command::new(binary);
    command.current_dir(std::env::temp_dir()).env_remove("TRONPAY_CONFIG");
    command
}

/// Runs `command()` with each `(VARIABLE, value)` set and checks that the
/// binary refuses to start, naming the problem (`expected` is in its
/// stderr) without a panic.
pub fn assert_refused(command: impl Fn() -> Command, cases: &[(&str, &str, &str)]) {
    for (name, value, expected) in cases {
        let output = command().env(name, value).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{name}={value} was accepted");
        assert!(stderr.contains(expected), "{name}={value}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

/// One running service process. Its JSON log goes to `<dir>/<name>.log`.
pub struct ServiceProcess {
    pub name: String,
    pub port: u16,
    child: Child,
    log: PathBuf,
    /// Copies stderr into the log file; done once the process has exited.
    logger: Option<std::thread::JoinHandle<()>>,
}

impl ServiceProcess {
    /// Starts `program` with `args` and `env` in `dir`; see [`Self::spawn`].
    pub fn start(
        name: &str,
        program: &Path,
        args: &[&str],
        env: &[(&str, String)],
        dir: &Path,
        listening: &str,
    ) -> Self {
        let mut command = Command::new(program);
        command.args(args);
        for (key, value) in env {
            command.env(key, value);
        }
        Self::spawn(name, command, dir, listening)
    }

    /// Runs `command` in `dir` with JSON logs (no `TRONPAY_CONFIG`), its log
    /// going to `<dir>/<name>.log`, and waits for the log line `listening`
    /// that carries its port (`port`, or the port of `addr`).
    pub fn spawn(name: &str, mut command: Command, dir: &Path, listening: &str) -> Self {
        let log = dir.join(format!("{name}.log"));
        command
            .current_dir(dir)
            .env("LOG_FORMAT", "json")
            .env_remove("TRONPAY_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {name}: {error}"));
        let stderr = child.stderr.take().expect("piped stderr");
        let (port_tx, port_rx) = mpsc::channel();
        let mut file = std::fs::File::create(&log).expect("the log file");
        let wanted = listening.to_owned();
        let logger = std::thread::spawn(move || {
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
            logger: Some(logger),
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

    /// SIGTERM, as an orchestrator stops a pod; waits up to 40 s for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        self.terminate_within(Duration::from_secs(40))
    }

    /// SIGTERM; the process must exit within `limit` (else it is killed and
    /// the test fails).
    pub fn terminate_within(&mut self, limit: Duration) -> ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
        assert!(sent.success(), "SIGTERM to {}", self.name);
        self.exits_within(limit, "of SIGTERM")
    }

    /// Waits for the process to exit by itself (a service that gave up);
    /// it must within `limit` (else it is killed and the test fails).
    pub fn exited_within(&mut self, limit: Duration) -> ExitStatus {
        self.exits_within(limit, "without being asked to")
    }

    fn exits_within(&mut self, limit: Duration, why: &str) -> ExitStatus {
        let exited = crate::within_blocking(limit, || self.child.try_wait().expect("wait"));
        let Some(status) = exited else {
            self.kill();
            panic!(
                "{} did not stop within {limit:?} {why}:\n{}",
                self.name,
                tail(&self.log)
            );
        };
        // Its last lines (the goodbye) are in the log file now.
        if let Some(logger) = self.logger.take() {
            let _ = logger.join();
        }
        status
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

/// The last 30 lines of a log file.
pub fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
