//! Keys (addresses, payment ids) a background round found it cannot handle
//! — a corrupt row, a statement the database rejects — left out of later
//! rounds for a while ([`SKIP_FOR`]) instead of failing every round on them,
//! and tried again afterwards: a cause that went away (a full disk, an
//! operator's repair) delays the work, never loses it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long a key stays left out after a failure.
pub const SKIP_FOR: Duration = Duration::from_secs(600);

/// The keys left out, with when each was.
#[derive(Debug, Default)]
pub struct Skips {
    since: HashMap<String, Instant>,
}

impl Skips {
    /// Leaves `key` out of the rounds of the next [`SKIP_FOR`].
    pub fn skip(&mut self, key: impl Into<String>) {
        self.since.insert(key.into(), Instant::now());
    }

    /// The keys to leave out now (those skipped less than [`SKIP_FOR`] ago;
    /// older ones are forgotten and tried again).
    pub fn current(&mut self) -> Vec<String> {
        self.since.retain(|_, since| since.elapsed() < SKIP_FOR);
        self.since.keys().cloned().collect()
    }

    /// Whether `key` is left out now.
    pub fn contains(&self, key: &str) -> bool {
        self.since.get(key).is_some_and(|since| since.elapsed() < SKIP_FOR)
    }
}
