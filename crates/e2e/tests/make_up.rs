//! `make up` on a fresh checkout: the whole stack natively, the printed
//! trial pasted as printed (create a payment, pay it with one curl to the
//! sandbox), the signed webhook seen at the built-in receiver, and `make
//! down` leaving no process and no port behind.
//!
//! The binaries are the ones `make test` built (`TRONPAY_BIN_DIR`), so the
//! test does not spend minutes on a release build; everything else is the
//! script a newcomer runs.

// Integration tests: a failed step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use tronpay_e2e::process::workspace_binary;
use tronpay_e2e::{TestBus, TestDb, eventually};

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The files a fresh clone would have (tracked, plus new files not ignored).
fn copy_checkout(to: &Path) {
    let root = repository_root();
    let listed = Command::new("git")
        .args(["ls-files", "-z", "--cached", "--others", "--exclude-standard"])
        .current_dir(&root)
        .output()
        .unwrap();
    assert!(listed.status.success(), "git ls-files");
    for name in listed.stdout.split(|byte| *byte == 0).filter(|name| !name.is_empty()) {
        let name = std::str::from_utf8(name).unwrap();
        let source = root.join(name);
        if !source.is_file() {
            continue; // deleted in the working tree
        }
        let target = to.join(name);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(&source, &target).unwrap();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A checkout with `make` targets run in it; `make down` on drop, so a
/// failing test leaves nothing running.
struct Checkout {
    dir: tempfile::TempDir,
    env: Vec<(&'static str, String)>,
}

impl Checkout {
    fn make(&self, target: &str) -> Output {
        let mut command = Command::new("make");
        command
            .arg(target)
            .current_dir(self.dir.path())
            .env_remove("WEBHOOK_SECRET");
        for (key, value) in &self.env {
            command.env(key, value);
        }
        command.output().unwrap()
    }

    fn pids(&self) -> Vec<u32> {
        let run = self.dir.path().join(".local/run");
        std::fs::read_dir(run)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "pid"))
                    .map(|entry| std::fs::read_to_string(entry.path()).unwrap().trim().parse().unwrap())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        let _ = self.make("down");
    }
}

/// Runs one line the script printed, as a user pasting it would.
fn paste(line: &str) -> Value {
    let output = Command::new("bash").args(["-c", line]).output().unwrap();
    assert!(output.status.success(), "{line}: {}", text(&output));
    serde_json::from_slice(&output.stdout).unwrap_or_else(|_| panic!("{line} answered {}", text(&output)))
}

fn running(pid: u32) -> bool {
    // A zombie has exited; only its parent has not collected it yet.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| stat.rsplit(") ").next().is_some_and(|rest| !rest.starts_with('Z')))
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread")]
async fn make_up_runs_the_printed_trial_and_make_down_stops_everything() {
    let db = TestDb::new().await;
    let bus = TestBus::new();
    let dir = tempfile::tempdir().unwrap();
    copy_checkout(dir.path());
    let binaries = workspace_binary("tronpay").parent().unwrap().to_path_buf();
    let binds = [
        ("API_BIND", free_port()),
        ("SANDBOX_BIND", free_port()),
        ("WATCHER_BIND", free_port()),
        ("DISPATCHER_BIND", free_port()),
    ];
    let mut env: Vec<(&'static str, String)> = binds
        .iter()
        .map(|(name, port)| (*name, format!("127.0.0.1:{port}")))
        .collect();
    env.extend([
        ("UP_MODE", "native".to_owned()),
        ("TRONPAY_BIN_DIR", binaries.display().to_string()),
        ("DATABASE_URL", db.url().to_owned()),
        ("RABBITMQ_URL", bus.settings.rabbitmq_url.clone()),
        ("BUS_EXCHANGE", bus.settings.bus_exchange.clone()),
        ("BUS_QUEUE_PREFIX", bus.settings.bus_queue_prefix.clone()),
    ]);
    let checkout = Checkout { dir, env };

    let up = checkout.make("up");
    let printed = text(&up);
    assert!(up.status.success(), "make up failed:\n{printed}");
    for (name, port) in binds {
        assert!(
            printed.contains(&format!("127.0.0.1:{port}")),
            "{name} is printed:\n{printed}"
        );
    }
    let ps = String::from_utf8_lossy(&checkout.make("ps").stdout).into_owned();
    assert_eq!(ps.matches(" running ").count(), 4, "{ps}");

    // The trial, pasted exactly as printed.
    let lines: Vec<&str> = printed
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with("curl "))
        .collect();
    assert_eq!(lines.len(), 4, "the trial's curl lines:\n{printed}");
    let created = paste(lines[0]);
    assert_eq!(created["status"], "watching", "{created}");
    let payment_id = created["payment_id"].as_str().unwrap().to_owned();
    let paid = paste(lines[1]);
    assert!(paid["txid"].is_string(), "{paid}");
    let status_line = lines[2].replace("<payment_id>", &payment_id);
    let status = eventually(Duration::from_secs(60), "the trial payment to complete", || {
        let status = paste(&status_line);
        async move { (status["status"] == "completed").then_some(status) }
    })
    .await;
    assert_eq!(status["received_amount_usdt"], status["expected_amount_usdt"]);
    let webhooks = eventually(Duration::from_secs(60), "the webhook at the receiver", || {
        let listed = paste(lines[3]);
        async move { (listed["count"] == 1).then_some(listed) }
    })
    .await;
    let webhook = &webhooks["webhooks"][0];
    assert_eq!(webhook["verified"], true, "{webhook}");
    assert_eq!(webhook["body"]["payment_id"], payment_id.as_str());
    assert_eq!(webhook["body"]["status"], "completed");

    // The printed secret is the one in force (`tronpay webhooks secret`).
    let secret = printed
        .lines()
        .find_map(|line| line.trim().strip_prefix("webhook secret"))
        .map(str::trim)
        .expect("the secret is printed");
    let shown = Command::new(binaries.join("tronpay"))
        .args(["webhooks", "secret"])
        .env("DATABASE_URL", db.url())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&shown.stdout).lines().next(), Some(secret));

    // make down: every process gone, every port closed.
    let pids = checkout.pids();
    assert_eq!(pids.len(), 4);
    let down = checkout.make("down");
    assert!(down.status.success(), "{}", text(&down));
    for pid in pids {
        assert!(!running(pid), "pid {pid} still runs after make down");
    }
    for (name, port) in binds {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "{name} still listens after make down"
        );
    }
    let ps = String::from_utf8_lossy(&checkout.make("ps").stdout).into_owned();
    assert!(ps.contains("nothing started by make up"), "{ps}");
}
