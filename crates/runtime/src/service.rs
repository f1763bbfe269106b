//! The skeleton every tronpay service runs in, the same for the API, the
//! chain watcher and the webhook dispatcher: a thin `main` ([`main`]: the
//! command line, the layered settings, logging, the exit status) and a
//! started service ([`Running`]: its supervised tasks beside its HTTP
//! server, stopped in one order on SIGTERM and in another after a failure).

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::ExitCode;

use actix_web::dev::ServerHandle;
use tokio::task::JoinHandle;

use crate::supervise::{self, TaskFailure, TaskOutcome, Tasks};
use crate::{ConfigError, LogSettings, Settings, init_logging};

/// How a service binary presents itself on the command line.
#[derive(Debug, Clone, Copy)]
pub struct Binary {
    /// `tronpay-api`: the command's name, and the prefix of its exit message.
    pub name: &'static str,
    /// One line for `--help`.
    pub about: &'static str,
    /// The setting `--bind` overrides (`BIND`, `WATCHER_BIND`, …).
    pub bind_setting: &'static str,
}

impl Binary {
    /// `name`, `about`, `bind_setting` (for the `const` each service keeps).
    pub const fn new(name: &'static str, about: &'static str, bind_setting: &'static str) -> Self {
        Self {
            name,
            about,
            bind_setting,
        }
    }
}

/// What a service's `run` waits for: SIGINT or SIGTERM ([`crate::shutdown_signal`]).
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A service binary's whole `main`: reads `--config` and `--bind`, layers the
/// settings (`--bind` above its variable), sets up logging, reads the
/// service's configuration with `load` and runs `run` with it until SIGTERM,
/// on a multi-thread runtime. The exit status is 0 when `run` returns `Ok`;
/// otherwise 1, with `<name>: <the error and its causes>` on stderr (a bad
/// setting, a failed task).
pub fn main<C, F, Fut, E>(binary: &Binary, load: fn(&Settings) -> Result<C, ConfigError>, run: F) -> ExitCode
where
    F: FnOnce(C, Shutdown) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: fmt::Display + From<ConfigError>,
{
    let matches = clap::Command::new(binary.name)
        .version(env!("CARGO_PKG_VERSION"))
        .about(binary.about)
        .arg(
            clap::Arg::new("config")
                .long("config")
                .value_name("FILE")
                .value_parser(clap::value_parser!(PathBuf))
                .help("TOML configuration file (or TRONPAY_CONFIG); environment variables override it"),
        )
        .arg(
            clap::Arg::new("bind")
                .long("bind")
                .value_name("ADDRESS")
                .help(format!("Address to listen on (overrides {})", binary.bind_setting)),
        )
        .get_matches();
    let config = matches.get_one::<PathBuf>("config").cloned();
    let bind = matches.get_one::<String>("bind").cloned();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => return crate::exit_code(binary.name, Err(format!("cannot start: {error}"))),
    };
    let outcome = runtime.block_on(async {
        let settings =
            Settings::load(config.as_deref())?.with_override(&binary.bind_setting.to_ascii_lowercase(), bind)?;
        init_logging(&settings.get::<LogSettings>()?);
        run(load(&settings)?, Box::pin(crate::shutdown_signal())).await
    });
    crate::exit_code(binary.name, outcome)
}

/// What a service's HTTP server is there for, which decides the order in
/// which a shutdown stops things.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serving {
    /// The service's own work (the API): on SIGTERM the server finishes the
    /// requests in flight first, then the tasks publish what they committed.
    Requests,
    /// Only `/health`: it keeps answering until the tasks have finished.
    Health,
}

/// Why a service stopped other than by a shutdown signal.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// One of its supervised tasks ended (see [`supervise`]).
    #[error(transparent)]
    Task(#[from] TaskFailure),
    /// Nothing stops the server but [`Running::run_until`]: it failed.
    #[error("the HTTP server stopped by itself")]
    ServerEnded,
    #[error("the HTTP server failed")]
    ServerFailed(#[source] std::io::Error),
    #[error("the HTTP server panicked")]
    ServerPanicked(#[source] tokio::task::JoinError),
}

/// Work left to finish after the tasks have stopped and before the server
/// stops (the dispatcher's attempts still in flight).
type Finish = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A started service: its tasks run, its HTTP server serves.
pub struct Running {
    name: &'static str,
    serving: Serving,
    port: u16,
    tasks: Tasks,
    http: ServerHandle,
    server: JoinHandle<std::io::Result<()>>,
    finish: Option<Finish>,
}

impl Running {
    /// The service `name` (`tronpay-api`, for its log lines) with its
    /// supervised `tasks` and its bound HTTP server: `port`, `http` to stop
    /// it, and `server`, the server itself, spawned here on the current
    /// runtime.
    pub fn new<S>(name: &'static str, serving: Serving, tasks: Tasks, port: u16, http: ServerHandle, server: S) -> Self
    where
        S: Future<Output = std::io::Result<()>> + Send + 'static,
    {
        Self {
            name,
            serving,
            port,
            tasks,
            http,
            server: tokio::spawn(server),
            finish: None,
        }
    }

    /// `finish` runs once the tasks have stopped, before the server stops.
    pub fn finishing(mut self, finish: impl Future<Output = ()> + Send + 'static) -> Self {
        self.finish = Some(Box::pin(finish));
        self
    }

    /// The HTTP server's port (the one bound when the bind setting asks for
    /// port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Supervises one more task with the service's own (see
    /// [`Tasks::spawn`]): its failure fails the service.
    pub fn spawn<F>(&mut self, name: &str, task: F)
    where
        F: Future + Send + 'static,
        F::Output: TaskOutcome + Send + 'static,
    {
        self.tasks.spawn(name, task);
    }

    /// Runs until `shutdown` resolves, then stops in order ([`Serving`]) and
    /// returns `Ok` once the tasks finished what they hold (a watcher the
    /// block in hand, a relay what was committed). If a task fails first,
    /// `/health` answers 503 naming it, the other tasks stop, the server
    /// keeps answering for [`supervise::FAILURE_GRACE`], and the failure is
    /// returned; likewise if the server itself ends.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> Result<(), Failure> {
        let Self {
            name,
            serving,
            tasks,
            http,
            mut server,
            finish,
            ..
        } = self;
        let finish = async move {
            if let Some(finish) = finish {
                finish.await;
            }
        };
        tokio::pin!(shutdown);
        let failure = tokio::select! {
            failure = tasks.until_failure_or(shutdown.as_mut()) => failure,
            served = &mut server => {
                let _ = tasks.stop().await;
                finish.await;
                return Err(match served {
                    Ok(Ok(())) => Failure::ServerEnded,
                    Ok(Err(error)) => Failure::ServerFailed(error),
                    Err(error) => Failure::ServerPanicked(error),
                });
            }
        };
        let failed_at = tokio::time::Instant::now();
        let outcome = match (failure, serving) {
            (None, Serving::Requests) => {
                tracing::info!("shutdown signal received; finishing the requests in flight, then the work in hand");
                http.stop(true).await;
                let _ = server.await;
                let outcome = tasks.stop().await;
                finish.await;
                outcome
            }
            (None, Serving::Health) => {
                tracing::info!("shutdown signal received; finishing the work in hand");
                let outcome = tasks.stop().await;
                finish.await;
                http.stop(true).await;
                let _ = server.await;
                outcome
            }
            (Some(_), _) => {
                let outcome = tasks.stop().await;
                finish.await;
                // `shutdown` has not resolved yet (it may not be polled
                // again once it has).
                supervise::linger(failed_at, shutdown.as_mut()).await;
                http.stop(true).await;
                let _ = server.await;
                outcome
            }
        };
        tracing::info!("{name} stopped");
        Ok(outcome?)
    }
}
