//! Supervision of a service's long-running tasks: the chain scanner, the
//! outbox relays, the consumers, the sweeps.
//!
//! A task that ends while no shutdown was asked for — by an error, by a
//! panic, or by simply returning — is a failure. The first one is kept in
//! [`TaskHealth`], so the service's `/health` answers 503 `unhealthy` naming
//! the task and why; the service's `run` then stops the other tasks and
//! returns the failure, so the process exits non-zero and the orchestrator
//! restarts it (a standby watcher takes the scanner role over meanwhile). A
//! replica that can no longer do its work must never look healthy.
//!
//! Loops retry what time can cure (the database or the broker down) for as
//! long as it takes. What it cannot (a missing table or column, a refused
//! privilege, a statement the database rejects) ends the task after
//! [`INCURABLE_TRIES`] tries in a row, counted by [`Incurable`].

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long a service whose task failed keeps answering `/health` (503,
/// naming the failure) before it exits, so that monitoring and an operator
/// see why it is restarted. A shutdown signal ends the wait early.
pub const FAILURE_GRACE: Duration = Duration::from_secs(5);

/// Failures in a row that retrying did not cure after which a loop gives up
/// and its task fails. A few, not one: a schema change being rolled out or
/// a connection that saw the old schema can fail a statement once.
pub const INCURABLE_TRIES: u32 = 5;

/// Why a supervised task ended before the service was asked to stop.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TaskFailure {
    /// The task's name as the service spawned it (`scanner`, `outbox relay`,
    /// …).
    pub task: String,
    /// `failed: <its error>`, `panicked: <the panic message>`, or `ended
    /// although no shutdown was asked for`.
    pub reason: String,
}

impl fmt::Display for TaskFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the {} task {}", self.task, self.reason)
    }
}

impl std::error::Error for TaskFailure {}

/// What a supervised task may return: `()` (ending is only normal after a
/// shutdown), or a `Result` whose `Err` is a failure in any case.
pub trait TaskOutcome {
    /// `Err` with the error's text (and its causes, for `anyhow`).
    fn into_result(self) -> Result<(), String>;
}

impl TaskOutcome for () {
    fn into_result(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: fmt::Display> TaskOutcome for Result<(), E> {
    fn into_result(self) -> Result<(), String> {
        self.map_err(|error| format!("{error:#}"))
    }
}

/// The first failure of a service's tasks, shared with its health endpoint.
#[derive(Debug)]
pub struct TaskHealth {
    failure: watch::Sender<Option<TaskFailure>>,
}

impl Default for TaskHealth {
    fn default() -> Self {
        Self {
            failure: watch::channel(None).0,
        }
    }
}

impl TaskHealth {
    /// The first failure, if a task failed: `/health` is then `unhealthy`.
    pub fn failure(&self) -> Option<TaskFailure> {
        self.failure.borrow().clone()
    }

    /// Records `failure` unless one was recorded before (the first one is the
    /// cause; what follows is usually its consequence). True if recorded.
    pub fn record(&self, failure: TaskFailure) -> bool {
        self.failure.send_if_modified(|current| {
            if current.is_some() {
                return false;
            }
            *current = Some(failure);
            true
        })
    }

    /// Resolves with the first failure, at once if there was one already.
    pub async fn failed(&self) -> TaskFailure {
        let mut receiver = self.failure.subscribe();
        // (The borrow `wait_for` returns must end before any other await.)
        let failure = receiver
            .wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|failure| failure.clone());
        match failure {
            Some(failure) => failure,
            // The sender lives in `self`, and a failure is never taken back.
            None => std::future::pending().await,
        }
    }
}

/// A service's supervised tasks and the flag that asks them to stop.
#[derive(Debug)]
pub struct Tasks {
    stop: watch::Sender<bool>,
    health: Arc<TaskHealth>,
    /// One per task: waits for it and records how it ended.
    watchers: Vec<JoinHandle<()>>,
}

impl Default for Tasks {
    fn default() -> Self {
        Self::new()
    }
}

impl Tasks {
    pub fn new() -> Self {
        Self {
            stop: watch::channel(false).0,
            health: Arc::new(TaskHealth::default()),
            watchers: Vec::new(),
        }
    }

    /// The flag every task watches: it turns true when the service stops
    /// ([`crate::stopped`] waits for it).
    pub fn shutdown(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// Resolves once the stop flag turns true: for a task that takes a
    /// future to stop on rather than the flag itself.
    pub fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut stop = self.shutdown();
        async move { crate::stopped(&mut stop).await }
    }

    /// What the health endpoint reads.
    pub fn health(&self) -> Arc<TaskHealth> {
        Arc::clone(&self.health)
    }

    /// Spawns `task` on the current runtime under `name` (shown by
    /// `/health` and in the exit message). Any end of it other than after
    /// the stop flag turned true — an `Err`, a panic, a return — is recorded
    /// as a failure and logged; an `Err` is a failure even while stopping.
    pub fn spawn<F>(&mut self, name: &str, task: F)
    where
        F: Future + Send + 'static,
        F::Output: TaskOutcome + Send + 'static,
    {
        let task = tokio::spawn(task);
        let name = name.to_owned();
        let stop = self.stop.subscribe();
        let health = Arc::clone(&self.health);
        self.watchers.push(tokio::spawn(async move {
            let reason = match task.await {
                Ok(outcome) => match outcome.into_result() {
                    // A dropped `Tasks` (a service that failed to start)
                    // stops its tasks as the flag does.
                    Ok(()) if *stop.borrow() || stop.has_changed().is_err() => return,
                    Ok(()) => "ended although no shutdown was asked for".to_owned(),
                    Err(error) => format!("failed: {error}"),
                },
                Err(error) if error.is_panic() => format!("panicked: {}", panic_message(error.into_panic())),
                // Cancelled: the runtime itself is going away.
                Err(_) => return,
            };
            let failure = TaskFailure { task: name, reason };
            tracing::error!(
                task = %failure.task,
                reason = %failure.reason,
                "a background task ended: the service is unhealthy and stops (exit status 1) so that it is restarted"
            );
            health.record(failure);
        }));
    }

    /// Waits until `shutdown` resolves (`None`) or a task fails (that
    /// failure). The tasks keep running either way; [`Self::stop`] ends them.
    pub async fn until_failure_or(&self, shutdown: impl Future<Output = ()>) -> Option<TaskFailure> {
        tokio::select! {
            () = shutdown => None,
            failure = self.health.failed() => Some(failure),
        }
    }

    /// Turns the stop flag true and waits for every task to end; returns the
    /// first failure, whether it came before the stop or while stopping.
    pub async fn stop(self) -> Result<(), TaskFailure> {
        self.stop.send_replace(true);
        for watcher in self.watchers {
            let _ = watcher.await;
        }
        self.health.failure().map_or(Ok(()), Err)
    }
}

/// After a failure, waits [`FAILURE_GRACE`] from `failed_at` while the
/// health endpoint still answers, or until `shutdown` resolves.
pub async fn linger(failed_at: tokio::time::Instant, shutdown: impl Future<Output = ()>) {
    tokio::select! {
        () = tokio::time::sleep_until(failed_at + FAILURE_GRACE) => {}
        () = shutdown => {}
    }
}

/// The text of a panic's payload (`panic!` with a literal or a format).
fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(text) => *text,
        Err(payload) => payload
            .downcast_ref::<&str>()
            .map_or_else(|| "(no message)".to_owned(), |text| (*text).to_owned()),
    }
}

/// Counts the failures in a row of one loop that retrying cannot cure.
///
/// A curable failure (the database or the broker unavailable) is neither
/// counted nor does it reset the count: an outage in between does not cure
/// a missing table. Only a success does.
#[derive(Debug, Default)]
pub struct Incurable {
    in_a_row: u32,
}

impl Incurable {
    /// Records a failure; true when the loop should give up (the
    /// [`INCURABLE_TRIES`]th incurable one in a row).
    pub fn give_up(&mut self, curable: bool) -> bool {
        if !curable {
            self.in_a_row = self.in_a_row.saturating_add(1);
        }
        self.in_a_row >= INCURABLE_TRIES
    }

    /// Records a success: the count starts over.
    pub fn succeeded(&mut self) {
        self.in_a_row = 0;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    async fn boom(block: u64) {
        panic!("boom at block {block}");
    }

    #[tokio::test]
    async fn a_panicking_task_is_a_failure_named_with_its_message() {
        let mut tasks = Tasks::new();
        let health = tasks.health();
        let mut shutdown = tasks.shutdown();
        tasks.spawn("steady", async move { crate::stopped(&mut shutdown).await });
        tasks.spawn("scanner", boom(7));
        let failure = tasks.until_failure_or(std::future::pending()).await.unwrap();
        assert_eq!(failure.task, "scanner");
        assert_eq!(failure.reason, "panicked: boom at block 7");
        assert_eq!(health.failure(), Some(failure.clone()));
        assert_eq!(failure.to_string(), "the scanner task panicked: boom at block 7");
        assert_eq!(tasks.stop().await, Err(failure));
    }

    #[tokio::test]
    async fn an_error_or_an_early_return_is_a_failure_and_the_first_one_counts() {
        let mut tasks = Tasks::new();
        tasks.spawn("relay", async { Err::<(), _>("relation \"outbox\" does not exist") });
        let failure = tasks.health().failed().await;
        assert_eq!(failure.reason, "failed: relation \"outbox\" does not exist");
        tasks.spawn("sweep", async {});
        let health = tasks.health();
        assert_eq!(tasks.stop().await, Err(failure.clone()));
        assert_eq!(health.failure(), Some(failure), "the first failure is the one shown");

        let mut tasks = Tasks::new();
        tasks.spawn("sweep", async {});
        let failure = tasks.health().failed().await;
        assert_eq!(failure.reason, "ended although no shutdown was asked for");
    }

    #[tokio::test]
    async fn tasks_that_end_on_the_stop_flag_are_no_failure() {
        let mut tasks = Tasks::new();
        for name in ["relay", "consumer"] {
            let mut shutdown = tasks.shutdown();
            tasks.spawn(name, async move {
                crate::stopped(&mut shutdown).await;
                Ok::<(), String>(())
            });
        }
        let (signal, mut signalled) = watch::channel(false);
        signal.send_replace(true);
        let outcome = tasks
            .until_failure_or(async move { crate::stopped(&mut signalled).await })
            .await;
        assert_eq!(outcome, None);
        let health = tasks.health();
        assert_eq!(tasks.stop().await, Ok(()));
        assert_eq!(health.failure(), None);
    }

    #[test]
    fn only_incurable_failures_in_a_row_give_up() {
        let mut count = Incurable::default();
        for _ in 1..INCURABLE_TRIES {
            assert!(!count.give_up(false));
            assert!(!count.give_up(true), "an outage is neither counted nor a cure");
        }
        assert!(count.give_up(false));
        count.succeeded();
        assert!(!count.give_up(false));
    }
}
