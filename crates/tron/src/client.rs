//! Calling TRON nodes: timeouts, classified failures, jittered backoff that
//! honours `Retry-After`, and failover across several node URLs.
//!
//! A node that answers but does not move is a fault too: each URL's head and
//! final block are remembered with the moment (by this process's clock) they
//! last changed, and one that has stayed put for longer than
//! [`NodeSettings::stall_after`] is answered with [`NodeError::Stalled`] and
//! left for the next URL — so a frozen node behind a load balancer is never
//! trusted for ever, and with a single node the watcher reports it instead of
//! showing a chain that looks current.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use serde::de::DeserializeOwned;
use url::Url;

use crate::types::{Block, TxInfo};

/// Where and how to reach the nodes. Its `Debug` shows whether an API key
/// is set, never the key.
#[derive(Clone)]
pub struct NodeSettings {
    /// One or more base URLs; on failure the next one is tried.
    pub urls: Vec<Url>,
    /// Sent as `TRON-PRO-API-KEY` (TronGrid).
    pub api_key: Option<String>,
    /// Limit per request.
    pub timeout: Duration,
    /// First retry delay; doubled per consecutive failure up to `max_backoff`.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// `NODE_STALL_SECONDS`: how long a node may keep answering with the
    /// same head (or final) block, by this process's clock, before it counts
    /// as stalled (mainnet makes a block every 3 s).
    pub stall_after: Duration,
}

impl fmt::Debug for NodeSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeSettings")
            .field("urls", &self.urls.iter().map(without_password).collect::<Vec<_>>())
            .field("api_key", &self.api_key.as_ref().map(|_| "…"))
            .field("timeout", &self.timeout)
            .field("min_backoff", &self.min_backoff)
            .field("max_backoff", &self.max_backoff)
            .field("stall_after", &self.stall_after)
            .finish()
    }
}

/// `url` as text, with `***` for a password in it.
fn without_password(url: &Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(Some("***"));
    }
    shown.into()
}

impl NodeSettings {
    /// Parses `TRON_NODE_URL` (comma-separated), naming the setting on error.
    pub fn parse_urls(text: &str) -> Result<Vec<Url>, String> {
        let urls: Vec<Url> = text
            .split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(|part| {
                Url::parse(part)
                    .ok()
                    .filter(|url| matches!(url.scheme(), "http" | "https") && url.host().is_some())
                    .ok_or_else(|| format!("TRON_NODE_URL: {part:?} is not an http(s) URL"))
            })
            .collect::<Result<_, _>>()?;
        if urls.is_empty() {
            return Err("TRON_NODE_URL is empty".into());
        }
        Ok(urls)
    }
}

/// A failed call, classified so the caller can log it and back off.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NodeError {
    #[error("{url}: no answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("{url}: {message}")]
    Transport { url: String, message: String },
    #[error("{url}: HTTP {status}")]
    Http {
        url: String,
        status: u16,
        retry_after: Option<Duration>,
    },
    #[error("{url}: the node reported an error: {message}")]
    Node { url: String, message: String },
    #[error("{url}: unexpected answer: {snippet}")]
    Garbage { url: String, snippet: String },
    #[error("{url}: the node does not have block {block} yet")]
    Missing { url: String, block: u64 },
    #[error("{url}: the node's {which} block has stayed at {block} for {seconds} s (NODE_STALL_SECONDS is {bound})")]
    Stalled {
        url: String,
        /// `head` or `final`.
        which: &'static str,
        block: u64,
        seconds: u64,
        bound: u64,
    },
}

impl NodeError {
    /// The delay the node asked for (`Retry-After` on 429 and 503).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Polls on a fallback node before the first URL is tried again.
const FALLBACK_POLLS: u64 = 10;

/// Head and final blocks remembered to tell an empty block from a missing
/// one without another call.
const KNOWN_BLOCKS: usize = 8;

/// Which of a node's moving blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Moving {
    Head,
    Final,
}

impl Moving {
    fn name(self) -> &'static str {
        match self {
            Self::Head => "head",
            Self::Final => "final",
        }
    }
}

/// A block height one node reported, and when it last changed.
#[derive(Debug, Clone, Copy)]
struct Seen {
    number: u64,
    since: Instant,
}

/// What one node URL last showed of the chain's progress.
#[derive(Debug, Default, Clone, Copy)]
struct Progress {
    head: Option<Seen>,
    final_block: Option<Seen>,
}

impl Progress {
    fn slot(&mut self, which: Moving) -> &mut Option<Seen> {
        match which {
            Moving::Head => &mut self.head,
            Moving::Final => &mut self.final_block,
        }
    }
}

/// A client for one or more TRON nodes, safe to share between tasks.
pub struct NodeClient {
    http: reqwest::Client,
    settings: NodeSettings,
    current: AtomicUsize,
    /// Successful head polls since the client left the first URL; after a
    /// few it goes back to it (a node that is merely behind never fails).
    polls_on_fallback: AtomicU64,
    calls: AtomicU64,
    last_error: Mutex<Option<(String, SystemTime)>>,
    /// Per URL (same order as the settings), for stall detection.
    progress: Mutex<Vec<Progress>>,
    /// `(height, transaction count, which)` of the head and final blocks
    /// read lately, newest last.
    known_blocks: Mutex<VecDeque<(u64, usize, Moving)>>,
}

impl NodeClient {
    pub fn new(settings: NodeSettings) -> Result<Self, String> {
        // One process-wide TLS provider; a second install attempt is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(key) = &settings.api_key {
            let value = reqwest::header::HeaderValue::from_str(key)
                .map_err(|_| "TRONGRID_API_KEY contains characters not allowed in a header".to_owned())?;
            headers.insert("TRON-PRO-API-KEY", value);
        }
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(5)))
            .default_headers(headers)
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(32)
            .build()
            .map_err(|error| format!("cannot build the HTTP client: {error}"))?;
        Ok(Self {
            http,
            progress: Mutex::new(vec![Progress::default(); settings.urls.len()]),
            settings,
            current: AtomicUsize::new(0),
            polls_on_fallback: AtomicU64::new(0),
            calls: AtomicU64::new(0),
            last_error: Mutex::new(None),
            known_blocks: Mutex::new(VecDeque::with_capacity(KNOWN_BLOCKS)),
        })
    }

    /// Requests sent so far (for the calls-per-block figure).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// The most recent failure and when it happened.
    pub fn last_error(&self) -> Option<(String, SystemTime)> {
        self.last_error.lock().map(|guard| guard.clone()).unwrap_or(None)
    }

    /// `POST /wallet/getnowblock`: the head block. Fails with
    /// [`NodeError::Stalled`] when this node's head has not moved for longer
    /// than [`NodeSettings::stall_after`], and with [`NodeError::Node`]
    /// (the node's own text) on an HTTP-200 `{"Error": …}`.
    pub async fn now_block(&self) -> Result<Block, NodeError> {
        self.fall_back_home();
        self.moving_block("wallet/getnowblock", Moving::Head).await
    }

    /// After [`FALLBACK_POLLS`] polls on a fallback node, the first URL is
    /// tried again.
    fn fall_back_home(&self) {
        if self
            .current
            .load(Ordering::Relaxed)
            .is_multiple_of(self.settings.urls.len())
        {
            self.polls_on_fallback.store(0, Ordering::Relaxed);
        } else if self.polls_on_fallback.fetch_add(1, Ordering::Relaxed) + 1 >= FALLBACK_POLLS {
            self.polls_on_fallback.store(0, Ordering::Relaxed);
            self.current.store(0, Ordering::Relaxed);
        }
    }

    /// `POST /walletsolidity/getnowblock`: the latest solidified (final)
    /// block; fails as [`Self::now_block`] does.
    pub async fn solid_block(&self) -> Result<Block, NodeError> {
        self.fall_back_home();
        self.moving_block("walletsolidity/getnowblock", Moving::Final).await
    }

    /// Reads the head or final block from the current node, checks that it
    /// is a block and that the node is not stalled, and remembers whether
    /// it was empty.
    async fn moving_block(&self, path: &str, which: Moving) -> Result<Block, NodeError> {
        let index = self.current_index();
        let block = self.post_at(index, path, serde_json::json!({})).await;
        let block = self.require_block(index, block)?;
        let number = block.number().unwrap_or(0);
        self.check_progress(index, which, number)?;
        if let Ok(mut known) = self.known_blocks.lock() {
            if known.len() == KNOWN_BLOCKS {
                known.pop_front();
            }
            known.push_back((number, block.transactions.len(), which));
        }
        Ok(block)
    }

    /// Records `number` as what node `index` shows for `which`; an error
    /// once it has shown the same height for longer than the stall bound.
    fn check_progress(&self, index: usize, which: Moving, number: u64) -> Result<(), NodeError> {
        let now = Instant::now();
        let unchanged_for = {
            let Ok(mut progress) = self.progress.lock() else {
                return Ok(());
            };
            let Some(slot) = progress.get_mut(index).map(|node| node.slot(which)) else {
                return Ok(());
            };
            match slot {
                Some(seen) if seen.number == number => now.duration_since(seen.since),
                _ => {
                    *slot = Some(Seen { number, since: now });
                    return Ok(());
                }
            }
        };
        if unchanged_for <= self.settings.stall_after {
            return Ok(());
        }
        let error = NodeError::Stalled {
            url: self.url_at(index).to_string(),
            which: which.name(),
            block: number,
            seconds: unchanged_for.as_secs(),
            bound: self.settings.stall_after.as_secs(),
        };
        self.failed(&error);
        Err(error)
    }

    /// `POST /wallet/getblockbynum`; `None` when the node has no such block.
    pub async fn block_by_num(&self, number: u64) -> Result<Option<Block>, NodeError> {
        let index = self.current_index();
        let block: Block = self
            .post_at(index, "wallet/getblockbynum", serde_json::json!({ "num": number }))
            .await?;
        if let Some(message) = block.error_text() {
            let error = NodeError::Node {
                url: self.url_at(index).to_string(),
                message,
            };
            self.failed(&error);
            return Err(error);
        }
        Ok(block.number().is_some().then_some(block))
    }

    /// Whether a block read lately was block `number`, with no transaction:
    /// a final block only, or (`at_tip`) a head block too.
    fn known_empty(&self, number: u64, at_tip: bool) -> bool {
        self.known_blocks
            .lock()
            .map(|known| {
                known
                    .iter()
                    .any(|&(height, count, which)| height == number && count == 0 && (at_tip || which == Moving::Final))
            })
            .unwrap_or(false)
    }

    /// `POST /wallet/gettransactioninfobyblocknum`: every receipt and event
    /// log of a final block in a single call (`[]` for an empty block). An
    /// empty answer is taken as an empty block only when the final block
    /// just polled says so, or the block itself (read) does: a block at a
    /// final height cannot change.
    pub async fn tx_infos(&self, number: u64) -> Result<Vec<TxInfo>, NodeError> {
        self.receipts(number, false).await
    }

    /// As [`Self::tx_infos`], for a block above the final height (early
    /// detection): the head block just polled also tells an empty block from
    /// a missing one. A reorganisation could replace that block, but what is
    /// found at the tip only announces a transfer; the final block decides.
    pub async fn tip_tx_infos(&self, number: u64) -> Result<Vec<TxInfo>, NodeError> {
        self.receipts(number, true).await
    }

    async fn receipts(&self, number: u64, at_tip: bool) -> Result<Vec<TxInfo>, NodeError> {
        let infos: Vec<TxInfo> = self
            .post(
                "wallet/gettransactioninfobyblocknum",
                serde_json::json!({ "num": number }),
            )
            .await?;
        self.check_receipts(number, infos, at_tip).await
    }

    /// Rejects receipts that cannot be trusted to be the whole block; the
    /// node that gave them is then left for the next one.
    async fn check_receipts(&self, number: u64, infos: Vec<TxInfo>, at_tip: bool) -> Result<Vec<TxInfo>, NodeError> {
        // A node must answer for the block asked, with one block time.
        let garbage = |snippet: String| {
            let error = NodeError::Garbage {
                url: self.current_url().to_string(),
                snippet,
            };
            self.failed(&error);
            error
        };
        if let Some(other) = infos.iter().find(|info| info.block_number != number) {
            return Err(garbage(format!(
                "asked for block {number}, got a receipt of block {}",
                other.block_number
            )));
        }
        if let Some(first) = infos.first()
            && (first.block_timestamp <= 0 || infos.iter().any(|info| info.block_timestamp != first.block_timestamp))
        {
            return Err(garbage(format!(
                "the receipts of block {number} do not carry one positive block time"
            )));
        }
        // A node answers `[]` both for an empty block and for a block it does
        // not have (one behind the others, behind a load balancer). Only a
        // block that exists with no transaction is empty: the final (or, at
        // the tip, the head) block just polled may already say so; otherwise
        // the block is read.
        if infos.is_empty() && !self.known_empty(number, at_tip) {
            match self.block_by_num(number).await? {
                Some(block) if block.number() != Some(number) => {
                    return Err(garbage(format!(
                        "asked for block {number}, got block {:?}",
                        block.number()
                    )));
                }
                Some(block) if block.transactions.is_empty() => {}
                Some(block) => {
                    return Err(garbage(format!(
                        "block {number} has {} transactions but the node returned no receipts",
                        block.transactions.len()
                    )));
                }
                None => {
                    let error = NodeError::Missing {
                        url: self.current_url().to_string(),
                        block: number,
                    };
                    self.failed(&error);
                    return Err(error);
                }
            }
        }
        Ok(infos)
    }

    /// A block, or the node's own error text (`{"Error": …}`), or garbage
    /// when it has no header; node `index` is left on failure.
    fn require_block(&self, index: usize, block: Result<Block, NodeError>) -> Result<Block, NodeError> {
        let block = block?;
        let url = || self.url_at(index).to_string();
        let error = match (block.error_text(), block.number()) {
            (None, Some(_)) => return Ok(block),
            (Some(message), _) => NodeError::Node { url: url(), message },
            (None, None) => NodeError::Garbage {
                url: url(),
                snippet: "a block without a header".into(),
            },
        };
        self.failed(&error);
        Err(error)
    }

    fn current_index(&self) -> usize {
        self.current.load(Ordering::Relaxed) % self.settings.urls.len()
    }

    fn url_at(&self, index: usize) -> &Url {
        let urls = &self.settings.urls;
        &urls[index % urls.len()]
    }

    fn current_url(&self) -> &Url {
        self.url_at(self.current_index())
    }

    /// One attempt against the current node; on failure the next call goes
    /// to the next node.
    async fn post<T: DeserializeOwned>(&self, path: &str, body: serde_json::Value) -> Result<T, NodeError> {
        self.post_at(self.current_index(), path, body).await
    }

    /// One attempt against node `index`; on failure the next call goes to
    /// the next node.
    async fn post_at<T: DeserializeOwned>(
        &self,
        index: usize,
        path: &str,
        body: serde_json::Value,
    ) -> Result<T, NodeError> {
        let base = self.url_at(index).clone();
        let started = std::time::Instant::now();
        let outcome = self.post_to(&base, path, body).await;
        if let Err(error) = &outcome {
            self.failed(error);
        }
        // `tronpay_node_requests_total{endpoint, outcome}` and
        // `tronpay_node_request_duration_seconds{endpoint}`: the endpoint is
        // one of this client's fixed paths, the outcome `ok` or the kind of
        // failure.
        let kind = match &outcome {
            Ok(_) => "ok",
            Err(NodeError::Timeout { .. }) => "timeout",
            Err(NodeError::Transport { .. }) => "transport",
            Err(NodeError::Http { status: 429, .. }) => "rate_limited",
            Err(NodeError::Http { .. }) => "http_error",
            Err(NodeError::Garbage { .. }) => "garbage",
            Err(_) => "node_error",
        };
        metrics::counter!("tronpay_node_requests_total", "endpoint" => path.to_owned(), "outcome" => kind).increment(1);
        metrics::histogram!("tronpay_node_request_duration_seconds", "endpoint" => path.to_owned())
            .record(started.elapsed().as_secs_f64());
        outcome
    }

    /// Records a failure and moves on to the next node.
    fn failed(&self, error: &NodeError) {
        if self.settings.urls.len() > 1 {
            self.current.fetch_add(1, Ordering::Relaxed);
        }
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some((error.to_string(), SystemTime::now()));
        }
    }

    async fn post_to<T: DeserializeOwned>(
        &self,
        base: &Url,
        path: &str,
        body: serde_json::Value,
    ) -> Result<T, NodeError> {
        let url = base.join(path).map_err(|error| NodeError::Transport {
            url: base.to_string(),
            message: error.to_string(),
        })?;
        let shown = url.to_string();
        self.calls.fetch_add(1, Ordering::Relaxed);
        let response = self
            .http
            .post(url)
            .json(&body)
            .send()
            .await
            .map_err(|error| self.unanswered(&shown, &error))?;
        let status = response.status();
        if !status.is_success() {
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| tronpay_domain::parse_retry_after(value, SystemTime::now()));
            return Err(NodeError::Http {
                url: shown,
                status: status.as_u16(),
                retry_after,
            });
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|error| self.unanswered(&shown, &error))?;
        match serde_json::from_slice::<T>(&bytes) {
            Ok(value) => Ok(value),
            Err(_) => Err(classify_body(&shown, &bytes)),
        }
    }

    /// A request to `url` that got no (whole) answer: no answer within the
    /// timeout, or a connection, TLS or body error.
    fn unanswered(&self, url: &str, error: &reqwest::Error) -> NodeError {
        if error.is_timeout() {
            NodeError::Timeout {
                url: url.to_owned(),
                timeout: self.settings.timeout,
            }
        } else {
            NodeError::Transport {
                url: url.to_owned(),
                message: error.to_string(),
            }
        }
    }

    /// The delay before retrying after `failures` consecutive failures (0
    /// for the first retry): `min_backoff` doubled per failure up to
    /// `max_backoff`, jittered between half that step and the step
    /// ([`tronpay_domain::retry::backoff`]); but at least what the node asked
    /// for with `Retry-After`, up to four times `max_backoff`.
    pub fn backoff(&self, failures: u32, error: &NodeError) -> Duration {
        let jittered = tronpay_domain::retry::backoff(self.settings.min_backoff, self.settings.max_backoff, failures);
        match error.retry_after() {
            Some(asked) => jittered.max(asked.min(self.settings.max_backoff * 4)),
            None => jittered,
        }
    }
}

/// What an unparseable 200 answer was: java-tron's `{"Error": …}`, or text
/// such as "lack of computing resources".
fn classify_body(url: &str, bytes: &[u8]) -> NodeError {
    if let Ok(serde_json::Value::Object(object)) = serde_json::from_slice::<serde_json::Value>(bytes)
        && let Some(message) = object.get("Error").or_else(|| object.get("error"))
    {
        return NodeError::Node {
            url: url.to_owned(),
            message: message.as_str().map_or_else(|| message.to_string(), str::to_owned),
        };
    }
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
    NodeError::Garbage {
        url: url.to_owned(),
        snippet: if text.trim().is_empty() {
            "an empty body".into()
        } else {
            text
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_urls_are_checked() {
        assert_eq!(
            NodeSettings::parse_urls("https://api.trongrid.io, http://127.0.0.1:8090")
                .unwrap()
                .len(),
            2
        );
        assert!(NodeSettings::parse_urls("").unwrap_err().contains("TRON_NODE_URL"));
        assert!(
            NodeSettings::parse_urls("ftp://x")
                .unwrap_err()
                .contains("TRON_NODE_URL")
        );
    }

    #[test]
    fn answers_that_are_not_data_are_classified() {
        assert!(matches!(
            classify_body("u", br#"{"Error":"class org.tron.core.exception.BadItemException"}"#),
            NodeError::Node { .. }
        ));
        assert!(matches!(
            classify_body("u", b"lack of computing resources"),
            NodeError::Garbage { .. }
        ));
        assert!(matches!(classify_body("u", b""), NodeError::Garbage { .. }));
    }

    fn client(urls: &str, stall_after: Duration) -> NodeClient {
        NodeClient::new(NodeSettings {
            urls: NodeSettings::parse_urls(urls).unwrap(),
            api_key: None,
            timeout: Duration::from_secs(1),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            stall_after,
        })
        .unwrap()
    }

    #[test]
    fn a_node_whose_block_does_not_move_is_stalled_and_left() {
        let nodes = client("http://127.0.0.1:1,http://127.0.0.1:2", Duration::ZERO);
        assert!(nodes.check_progress(0, Moving::Head, 5).is_ok(), "first sight");
        std::thread::sleep(Duration::from_millis(5));
        let stalled = nodes.check_progress(0, Moving::Head, 5).unwrap_err();
        assert!(
            matches!(
                stalled,
                NodeError::Stalled {
                    which: "head",
                    block: 5,
                    ..
                }
            ),
            "{stalled:?}"
        );
        assert!(stalled.to_string().contains("NODE_STALL_SECONDS"), "{stalled}");
        // The client moved on to the second node, which is judged on its own.
        assert_eq!(nodes.current_index(), 1);
        assert!(nodes.check_progress(1, Moving::Head, 5).is_ok());
        // Head and final block are watched apart; any change is progress.
        assert!(nodes.check_progress(0, Moving::Final, 3).is_ok());
        assert!(nodes.check_progress(0, Moving::Head, 6).is_ok());

        // Within the bound the same block is fine.
        let patient = client("http://127.0.0.1:1", Duration::from_secs(3600));
        for _ in 0..3 {
            assert!(patient.check_progress(0, Moving::Final, 9).is_ok());
        }
    }

    #[test]
    fn debug_never_shows_the_api_key_or_a_url_password() {
        let settings = NodeSettings {
            urls: NodeSettings::parse_urls("https://node:hunter2@tron.example/,https://api.trongrid.io").unwrap(),
            api_key: Some("3f6a9c1e-secret-key".into()),
            timeout: Duration::from_secs(1),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            stall_after: Duration::from_secs(30),
        };
        let shown = format!("{settings:?}");
        assert!(!shown.contains("3f6a9c1e"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("api_key: Some(\"…\")"), "{shown}");
        assert!(shown.contains("https://node:***@tron.example/"), "{shown}");
        assert!(shown.contains("https://api.trongrid.io/"), "{shown}");
        let without = NodeSettings {
            api_key: None,
            ..settings
        };
        assert!(format!("{without:?}").contains("api_key: None"));
    }

    #[test]
    fn backoff_grows_is_jittered_and_honours_retry_after() {
        let client = client("http://127.0.0.1:1", Duration::from_secs(30));
        let error = NodeError::Garbage {
            url: "u".into(),
            snippet: "x".into(),
        };
        for failures in 0..30 {
            let delay = client.backoff(failures, &error);
            assert!(delay <= Duration::from_secs(5), "{delay:?}");
        }
        let first = client.backoff(0, &error);
        assert!(
            first >= Duration::from_millis(50) && first <= Duration::from_millis(100),
            "{first:?}"
        );
        let late = client.backoff(29, &error);
        assert!(late >= Duration::from_millis(2500), "{late:?}");
        let limited = |seconds| NodeError::Http {
            url: "u".into(),
            status: 429,
            retry_after: Some(Duration::from_secs(seconds)),
        };
        assert!(client.backoff(0, &limited(3)) >= Duration::from_secs(3));
        // A node asking for more than four times the cap gets the four.
        assert_eq!(client.backoff(0, &limited(3600)), Duration::from_secs(20));
    }
}
