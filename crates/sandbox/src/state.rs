//! The state one sandbox shares between its HTTP workers and its block
//! timer, and the control operations on it (used by the control API and by
//! the in-process helpers of [`crate::RunningSandbox`] alike).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::web::Bytes;
use tronpay_domain::{TronAddress, TxId, UsdtAmount};

use crate::chain::{Addr, Block, Body, Chain, Hash, Params, TrafficSpec, hex, router_log_index};
use crate::faults::{FaultMode, FaultPlan, Faults};
use crate::render;

/// Most outputs one router transaction may have.
pub const MAX_OUTPUTS: usize = 1_000;
/// Most blocks one `mine` or `blocks` call may seal.
pub const MAX_BLOCKS_PER_CALL: u64 = 100_000;
/// Most random transfers per bulk block.
pub const MAX_TRANSFERS_PER_BLOCK: u32 = 10_000;
/// Longest stall a fault may ask for (10 minutes).
pub const MAX_STALL_MS: u64 = 600_000;

/// A control request that cannot be carried out; answered with HTTP 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ControlError(pub String);

impl ControlError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// One recipient of a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Output {
    pub to: TronAddress,
    pub amount: UsdtAmount,
}

/// A USDT transfer to put into the next block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferRequest {
    /// The payer; the sandbox's fixed payer ([`crate::default_payer`]) when absent.
    pub from: Option<TronAddress>,
    /// One output for a plain `transfer()`; for a router call, one or more.
    pub outputs: Vec<Output>,
    /// A router contract call (one Transfer log per output) rather than a
    /// direct call on the USDT contract.
    pub router: bool,
    /// A reverted call: `result: FAILED`, receipt `REVERT`, no logs.
    pub failed: bool,
    /// The caller of `transferFrom(from, to, amount)` on the USDT contract
    /// (it spends `from`'s allowance); the log is `Transfer(from, to, amount)`
    /// all the same. `None`: `from` calls `transfer(to, amount)` itself.
    pub spender: Option<TronAddress>,
}

impl TransferRequest {
    /// A plain successful USDT transfer from the default payer.
    pub fn new(to: TronAddress, amount: UsdtAmount) -> Self {
        Self {
            from: None,
            outputs: vec![Output { to, amount }],
            router: false,
            failed: false,
            spender: None,
        }
    }

    /// One router transaction paying several addresses.
    pub fn router(outputs: Vec<Output>) -> Self {
        Self {
            from: None,
            outputs,
            router: true,
            failed: false,
            spender: None,
        }
    }

    pub fn from(mut self, payer: TronAddress) -> Self {
        self.from = Some(payer);
        self
    }

    pub fn failed(mut self) -> Self {
        self.failed = true;
        self
    }

    /// Made by `spender` calling `transferFrom(from, to, amount)`.
    pub fn spent_by(mut self, spender: TronAddress) -> Self {
        self.spender = Some(spender);
        self
    }
}

/// Where a queued transfer will be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    pub txid: TxId,
    /// The block the transaction goes into (the next one).
    pub block: u64,
    /// Positions of its USDT Transfer logs in the transaction's `log` array
    /// (empty for a failed transfer).
    pub log_indexes: Vec<u32>,
}

/// Head and solid (final) heights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Heights {
    pub head: u64,
    pub solid: u64,
}

/// Random USDT traffic to seal at once.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GenerateRequest {
    /// Blocks to seal.
    pub count: u64,
    pub transfers_per_block: u32,
    /// Recipients to pick from uniformly; random addresses when empty.
    pub recipients: Vec<TronAddress>,
    /// A fixed amount; random when absent.
    pub amount: Option<UsdtAmount>,
}

/// The blocks `POST /sandbox/blocks` sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Generated {
    pub from: u64,
    pub to: u64,
    /// Random transfers in them (queued control transfers not counted).
    pub transfers: u64,
}

/// The new head after a reorg.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Reorged {
    pub head: u64,
    pub solid: u64,
    pub block_id: String,
}

/// What the workers share.
pub(crate) struct Shared {
    pub params: Arc<Params>,
    chain: Mutex<Chain>,
    /// Where a frozen node stopped following the chain (see [`Self::freeze`]).
    frozen: Mutex<Option<Heights>>,
    faults: Mutex<Faults>,
    requests: Mutex<BTreeMap<String, u64>>,
    cache: Mutex<RenderCache>,
}

/// Poisoning only means another request panicked mid-update; the chain is
/// still consistent because every update is a single push or swap.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
}

fn addr20(address: &TronAddress) -> Addr {
    let mut addr = [0u8; 20];
    addr.copy_from_slice(&address.as_bytes()[1..]);
    addr
}

/// Base units of a transfer's amount: 0 is allowed, as the USDT contract
/// allows it (the address-poisoning transfers gateways must ignore).
fn units(amount: UsdtAmount) -> u64 {
    amount.base_units()
}

fn positive(amount: UsdtAmount) -> Result<u64, ControlError> {
    match amount.base_units() {
        0 => Err(ControlError::new("amount must be positive")),
        units => Ok(units),
    }
}

impl Shared {
    pub fn new(params: Arc<Params>, genesis_ms: i64) -> Self {
        Self {
            chain: Mutex::new(Chain::new(params.clone(), genesis_ms)),
            frozen: Mutex::new(None),
            params,
            faults: Mutex::new(Faults::default()),
            requests: Mutex::new(BTreeMap::new()),
            cache: Mutex::new(RenderCache::default()),
        }
    }

    pub fn with_chain<R>(&self, f: impl FnOnce(&Chain) -> R) -> R {
        f(&lock(&self.chain))
    }

    pub fn heights(&self) -> Heights {
        let chain = lock(&self.chain);
        Heights {
            head: chain.head(),
            solid: chain.solid(),
        }
    }

    pub fn submit(&self, request: &TransferRequest) -> Result<Submitted, ControlError> {
        if request.outputs.is_empty() {
            return Err(ControlError::new("a transfer needs a recipient"));
        }
        if !request.router && request.outputs.len() != 1 {
            return Err(ControlError::new("a plain transfer has exactly one recipient"));
        }
        if request.outputs.len() > MAX_OUTPUTS {
            return Err(ControlError::new(format!(
                "at most {MAX_OUTPUTS} outputs per transaction"
            )));
        }
        let outputs = request
            .outputs
            .iter()
            .map(|output| (addr20(&output.to), units(output.amount)))
            .collect::<Vec<_>>();
        let from = request.from.as_ref().map_or(self.params.payer, addr20);
        let failed = request.failed;
        let spender = request.spender.as_ref().map(addr20);
        if spender.is_some() && request.router {
            return Err(ControlError::new(
                "a spender calls transferFrom on the USDT contract; it cannot be combined with outputs",
            ));
        }
        let (body, log_indexes) = if request.router {
            let indexes = if failed {
                Vec::new()
            } else {
                (0..outputs.len()).map(router_log_index).collect()
            };
            (
                Body::Router {
                    from,
                    outputs: Arc::from(outputs),
                    failed,
                },
                indexes,
            )
        } else {
            let (to, amount) = outputs[0];
            (
                Body::Usdt {
                    from,
                    to,
                    amount,
                    spender,
                    failed,
                },
                if failed { Vec::new() } else { vec![0] },
            )
        };
        let (txid, block) = lock(&self.chain).queue(body);
        let txid = TxId::parse(&hex(&txid)).map_err(|error| ControlError::new(error.to_string()))?;
        tracing::debug!(%txid, block, "transfer queued");
        Ok(Submitted {
            txid,
            block,
            log_indexes,
        })
    }

    pub fn mine(&self, count: u64) -> Result<Heights, ControlError> {
        if !(1..=MAX_BLOCKS_PER_CALL).contains(&count) {
            return Err(ControlError::new(format!(
                "count must be between 1 and {MAX_BLOCKS_PER_CALL}"
            )));
        }
        let mut chain = lock(&self.chain);
        chain.mine(count, now_ms());
        Ok(Heights {
            head: chain.head(),
            solid: chain.solid(),
        })
    }

    pub fn generate(&self, request: &GenerateRequest) -> Result<Generated, ControlError> {
        if !(1..=MAX_BLOCKS_PER_CALL).contains(&request.count) {
            return Err(ControlError::new(format!(
                "count must be between 1 and {MAX_BLOCKS_PER_CALL}"
            )));
        }
        if request.transfers_per_block > MAX_TRANSFERS_PER_BLOCK {
            return Err(ControlError::new(format!(
                "transfers_per_block must be at most {MAX_TRANSFERS_PER_BLOCK}"
            )));
        }
        let amount = request.amount.map(positive).transpose()?;
        let spec = Arc::new(TrafficSpec {
            recipients: request.recipients.iter().map(addr20).collect(),
            amount,
        });
        let (from, to) = lock(&self.chain).generate(request.count, request.transfers_per_block, spec, now_ms());
        tracing::debug!(from, to, "bulk blocks sealed");
        Ok(Generated {
            from,
            to,
            transfers: request.count * u64::from(request.transfers_per_block),
        })
    }

    pub fn reorg(&self, depth: u64, drop: &[TxId]) -> Result<Reorged, ControlError> {
        let drop: Vec<Hash> = drop.iter().map(txid_bytes).collect();
        let mut chain = lock(&self.chain);
        chain
            .reorg(depth, &drop)
            .map_err(|error| ControlError::new(error.to_string()))?;
        tracing::info!(depth, dropped = drop.len(), head = chain.head(), "reorg");
        Ok(Reorged {
            head: chain.head(),
            solid: chain.solid(),
            block_id: hex(&chain.head_block().id),
        })
    }

    pub fn set_faults(&self, plan: FaultPlan) -> Result<(), ControlError> {
        if plan.stall_ms > MAX_STALL_MS {
            return Err(ControlError::new(format!("stall_ms must be at most {MAX_STALL_MS}")));
        }
        if plan.count == Some(0) && plan.mode != FaultMode::None {
            return Err(ControlError::new("count must be at least 1"));
        }
        lock(&self.faults).set(plan);
        tracing::info!(mode = plan.mode.as_str(), count = ?plan.count, "faults set");
        Ok(())
    }

    /// Counts a node request and returns the fault that applies to it.
    pub fn node_request(&self, route: &str) -> Option<FaultPlan> {
        *lock(&self.requests).entry(route.to_owned()).or_default() += 1;
        lock(&self.faults).take()
    }

    /// Freezes the node where it is (`true`): from now on it answers
    /// `getnowblock` and `walletsolidity/getnowblock` with the blocks it has,
    /// and has no block above them (`{}` and `[]`), while the chain goes on
    /// being made — a node that stopped syncing but still answers.
    /// `false` lets it catch up at once. Returns the heights it shows.
    pub fn freeze(&self, frozen: bool) -> Heights {
        let current = self.heights();
        let mut slot = lock(&self.frozen);
        *slot = match (frozen, *slot) {
            (true, Some(already)) => Some(already),
            (true, None) => Some(current),
            (false, _) => None,
        };
        tracing::info!(frozen, "node frozen state set");
        slot.unwrap_or(current)
    }

    /// The head and solid heights this node shows: the chain's, or where it
    /// was frozen.
    fn visible(&self, chain: &Chain) -> Heights {
        lock(&self.frozen).unwrap_or(Heights {
            head: chain.head(),
            solid: chain.solid(),
        })
    }

    pub fn status(&self) -> serde_json::Value {
        let (heights, pending) = {
            let chain = lock(&self.chain);
            (
                Heights {
                    head: chain.head(),
                    solid: chain.solid(),
                },
                chain.pending(),
            )
        };
        serde_json::json!({
            "head": heights.head,
            "solid": heights.solid,
            "start_height": self.params.start_height,
            "block_ms": self.params.block_ms,
            "solid_lag": self.params.solid_lag,
            "seed": self.params.seed,
            "pending_transfers": pending,
            "usdt_contract": self.params.usdt.to_base58(),
            "payer": TronAddress::from_evm_bytes(self.params.payer).to_base58(),
            "router": TronAddress::from_evm_bytes(self.params.router).to_base58(),
            "requests": *lock(&self.requests),
            "faults": lock(&self.faults).describe(),
            "frozen": *lock(&self.frozen),
        })
    }

    /// The JSON of block `number` if it exists and, with `solid_only`, is final.
    pub fn block_json(&self, number: Option<u64>, solid_only: bool) -> Option<Bytes> {
        let block = {
            let chain = lock(&self.chain);
            let visible = self.visible(&chain);
            let number = number.unwrap_or(if solid_only { visible.solid } else { visible.head });
            if number > visible.head || (solid_only && number > visible.solid) {
                return None;
            }
            chain.block(number)?.clone()
        };
        Some(self.rendered(Kind::Block, &block))
    }

    /// The `gettransactioninfobyblocknum` JSON: `[]` for a block the node
    /// does not have (or, with `solid_only`, that is not final yet).
    pub fn infos_json(&self, number: u64, solid_only: bool) -> Bytes {
        let block = {
            let chain = lock(&self.chain);
            let visible = self.visible(&chain);
            if number > visible.head || (solid_only && number > visible.solid) {
                return Bytes::from_static(b"[]");
            }
            match chain.block(number) {
                Some(block) => block.clone(),
                None => return Bytes::from_static(b"[]"),
            }
        };
        self.rendered(Kind::Infos, &block)
    }

    /// Rendered outside the chain lock; recent blocks are kept, since a
    /// watcher polls the head and a benchmark may read blocks twice.
    fn rendered(&self, kind: Kind, block: &Block) -> Bytes {
        let key = (kind, block.number, block.id);
        if let Some(bytes) = lock(&self.cache).get(&key) {
            return bytes;
        }
        let text = match kind {
            Kind::Block => render::block(&self.params, block),
            Kind::Infos => render::tx_infos(&self.params, block),
        };
        let bytes = Bytes::from(text);
        lock(&self.cache).insert(key, bytes.clone());
        bytes
    }
}

fn txid_bytes(txid: &TxId) -> Hash {
    let mut hash = [0u8; 32];
    // A `TxId` is 64 hex digits by construction, so this cannot fail; if it
    // did, the zero hash matches no transaction.
    if ::hex::decode_to_slice(txid.as_str(), &mut hash).is_err() {
        return [0u8; 32];
    }
    hash
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Block,
    Infos,
}

type CacheKey = (Kind, u64, Hash);

/// Rendered JSON of recent blocks, oldest evicted first.
#[derive(Default)]
struct RenderCache {
    entries: HashMap<CacheKey, Bytes>,
    order: VecDeque<CacheKey>,
    bytes: usize,
}

impl RenderCache {
    const MAX_BYTES: usize = 64 << 20;

    fn get(&self, key: &CacheKey) -> Option<Bytes> {
        self.entries.get(key).cloned()
    }

    fn insert(&mut self, key: CacheKey, value: Bytes) {
        if value.len() > Self::MAX_BYTES / 4 || self.entries.contains_key(&key) {
            return;
        }
        self.bytes += value.len();
        self.entries.insert(key, value);
        self.order.push_back(key);
        while self.bytes > Self::MAX_BYTES {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some(evicted) = self.entries.remove(&oldest) {
                self.bytes -= evicted.len();
            }
        }
    }
}
