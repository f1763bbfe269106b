//! The simulated chain: blocks, their transactions, sealing, bulk traffic and
//! reorganisations.
//!
//! Pure data and rules: no I/O and no clock (callers pass the time), so the
//! same seed and the same calls give the same transaction ids. Blocks made in
//! bulk store only how to regenerate their traffic (a sequence key and two
//! counts), so 20,000 blocks of 200 transfers take a few megabytes; their
//! transactions are derived again from the seed whenever they are read.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use tronpay_domain::TronAddress;

/// An account or contract address in its 20-byte (EVM) form.
pub(crate) type Addr = [u8; 20];
/// A 32-byte transaction id or block id.
pub(crate) type Hash = [u8; 32];

/// Namespaces of the seeded generators, so that traffic, control transfers
/// and bulk-block counts never consume each other's numbers.
const CONTROL_STREAM: u64 = 0x636f_6e74_726f_6c00;
const TRAFFIC_STREAM: u64 = 0x7472_6166_6669_6300;
const BULK_STREAM: u64 = 0x6275_6c6b_0000_0000;

/// What a transaction does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Body {
    /// `transfer(to, amount)` called on the USDT contract by `from`, or
    /// `transferFrom(from, to, amount)` called by `spender`; either way one
    /// `Transfer(from, to, amount)` log (amount may be 0).
    Usdt {
        from: Addr,
        to: Addr,
        amount: u64,
        spender: Option<Addr>,
        failed: bool,
    },
    /// A call to the router contract, which moves USDT from `from` to every
    /// output (one Transfer log each, with a router event after the first).
    Router {
        from: Addr,
        outputs: Arc<[(Addr, u64)]>,
        failed: bool,
    },
    /// A plain TRX transfer: background noise without receipt result or logs.
    Trx { from: Addr, to: Addr, amount: u64 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tx {
    pub txid: Hash,
    pub body: Body,
}

impl Tx {
    /// Calls `f(log_index, from, to, amount)` for every USDT Transfer log the
    /// transaction emits (none when it failed).
    pub fn for_each_transfer(&self, mut f: impl FnMut(u32, &Addr, &Addr, u64)) {
        match &self.body {
            Body::Usdt {
                from,
                to,
                amount,
                failed: false,
                ..
            } => f(0, from, to, *amount),
            Body::Router {
                from,
                outputs,
                failed: false,
            } => {
                for (output, (to, amount)) in outputs.iter().enumerate() {
                    f(router_log_index(output), from, to, *amount);
                }
            }
            _ => {}
        }
    }
}

/// Position in the router transaction's `log` array of its `output`-th
/// transfer: the router emits an event of its own right after the first
/// transfer, so indexes are 0, 2, 3, … (exercising non-contiguous indexes).
pub(crate) fn router_log_index(output: usize) -> u32 {
    let output = u32::try_from(output).unwrap_or(u32::MAX - 1);
    if output == 0 { 0 } else { output.saturating_add(1) }
}

/// How a bulk block's random transfers are chosen.
#[derive(Debug, Default)]
pub(crate) struct TrafficSpec {
    /// Recipients to pick from uniformly; random addresses when empty.
    pub recipients: Vec<Addr>,
    /// A fixed amount in base units; random when absent.
    pub amount: Option<u64>,
}

/// The random traffic of a bulk block, stored as the recipe that derives it.
#[derive(Debug, Clone)]
pub(crate) struct Traffic {
    /// Sequence number of the first generated transaction; transaction `i` is
    /// derived from the seed and `key + i`.
    pub key: u64,
    /// USDT transfers first, then `noise` TRX transfers.
    pub transfers: u32,
    pub noise: u32,
    pub spec: Arc<TrafficSpec>,
    /// Indexes (within this traffic) that a reorg removed, sorted.
    pub dropped: Arc<[u32]>,
}

impl Traffic {
    fn len(&self) -> usize {
        usize::try_from(self.transfers + self.noise)
            .unwrap_or(usize::MAX)
            .saturating_sub(self.dropped.len())
    }
}

/// A sealed block. Cheap to clone: transactions sit behind `Arc`s.
#[derive(Debug, Clone)]
pub(crate) struct Block {
    pub number: u64,
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
    pub id: Hash,
    pub parent: Hash,
    /// Transactions queued through the control API; they come first.
    pub txs: Arc<[Tx]>,
    pub traffic: Option<Traffic>,
}

impl Block {
    pub fn tx_count(&self) -> usize {
        self.txs.len() + self.traffic.as_ref().map_or(0, Traffic::len)
    }

    /// Calls `f` for every transaction, in block order.
    pub fn for_each_tx(&self, params: &Params, mut f: impl FnMut(&Tx)) {
        for tx in self.txs.iter() {
            f(tx);
        }
        if let Some(traffic) = &self.traffic {
            let mut dropped = traffic.dropped.iter().peekable();
            for index in 0..traffic.transfers + traffic.noise {
                if dropped.next_if_eq(&&index).is_some() {
                    continue;
                }
                f(&params.derive(traffic, index));
            }
        }
    }
}

/// What never changes while a sandbox runs.
#[derive(Debug)]
pub(crate) struct Params {
    pub seed: u64,
    pub usdt: TronAddress,
    pub usdt20: Addr,
    /// The default payer of control transfers.
    pub payer: Addr,
    /// The multi-output router contract.
    pub router: Addr,
    /// Senders of bulk traffic (think exchange hot wallets).
    pub payers: Vec<Addr>,
    /// Block producers, taking turns.
    pub witnesses: Vec<Addr>,
    pub start_height: u64,
    pub solid_lag: u64,
    pub block_ms: u64,
}

impl Params {
    pub fn new(seed: u64, usdt: TronAddress, start_height: u64, solid_lag: u64, block_ms: u64) -> Self {
        let mut usdt20 = [0u8; 20];
        usdt20.copy_from_slice(&usdt.as_bytes()[1..]);
        Self {
            seed,
            usdt,
            usdt20,
            payer: named_address("tronpay-sandbox payer"),
            router: named_address("tronpay-sandbox router"),
            payers: (0..16)
                .map(|index| named_address(&format!("tronpay-sandbox exchange {index}")))
                .collect(),
            witnesses: (0..27)
                .map(|index| named_address(&format!("tronpay-sandbox witness {index}")))
                .collect(),
            start_height,
            solid_lag,
            block_ms,
        }
    }

    /// Time between blocks: `block_ms`, or TRON's 3 s in manual mode.
    pub fn spacing_ms(&self) -> i64 {
        if self.block_ms == 0 {
            3000
        } else {
            i64::try_from(self.block_ms).unwrap_or(3000)
        }
    }

    /// The producer of block `number`.
    pub fn witness(&self, number: u64) -> &Addr {
        let count = self.witnesses.len() as u64;
        &self.witnesses[usize::try_from(number % count).unwrap_or(0)]
    }

    /// Transaction `index` of a bulk block's traffic, always the same for the
    /// same seed and key.
    pub fn derive(&self, traffic: &Traffic, index: u32) -> Tx {
        let mut rng = fastrand::Rng::with_seed(mix(self.seed ^ TRAFFIC_STREAM, traffic.key + u64::from(index)));
        let txid = random_hash(&mut rng);
        let body = if index < traffic.transfers {
            let from = self.payers[rng.usize(..self.payers.len())];
            let recipients = &traffic.spec.recipients;
            let to = if recipients.is_empty() {
                random_addr(&mut rng)
            } else {
                recipients[rng.usize(..recipients.len())]
            };
            let amount = traffic.spec.amount.unwrap_or_else(|| random_amount(&mut rng));
            Body::Usdt {
                from,
                to,
                amount,
                spender: None,
                failed: false,
            }
        } else {
            Body::Trx {
                from: random_addr(&mut rng),
                to: random_addr(&mut rng),
                amount: rng.u64(1_000_000..=5_000_000_000),
            }
        };
        Tx { txid, body }
    }
}

/// Why a reorg was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ReorgError {
    #[error("depth must be at least 1")]
    ZeroDepth,
    #[error("only the {available} blocks above the solid height {solid} can be replaced, not {depth}")]
    TooDeep { depth: u64, available: u64, solid: u64 },
    #[error("transaction {0} is not in the blocks being replaced")]
    NotFound(String),
}

/// The chain and the transfers waiting for the next block.
pub(crate) struct Chain {
    params: Arc<Params>,
    /// `blocks[i]` has height `start_height + i`; never empty.
    blocks: Vec<Block>,
    pending: Vec<Tx>,
    control_rng: fastrand::Rng,
    bulk_rng: fastrand::Rng,
    next_key: u64,
    /// Bumped by every reorg so that replaced blocks get new ids.
    epoch: u64,
}

impl Chain {
    /// A chain holding only its first block, timestamped `genesis_ms`.
    pub fn new(params: Arc<Params>, genesis_ms: i64) -> Self {
        let number = params.start_height;
        let mut parent = [0u8; 32];
        parent[..8].copy_from_slice(&number.saturating_sub(1).to_be_bytes());
        let genesis = Block {
            number,
            timestamp: genesis_ms,
            id: block_id(params.seed, 0, number, genesis_ms, &parent, 0),
            parent,
            txs: Arc::from(Vec::new()),
            traffic: None,
        };
        Self {
            control_rng: fastrand::Rng::with_seed(mix(params.seed, CONTROL_STREAM)),
            bulk_rng: fastrand::Rng::with_seed(mix(params.seed, BULK_STREAM)),
            params,
            blocks: vec![genesis],
            pending: Vec::new(),
            next_key: 0,
            epoch: 0,
        }
    }

    #[cfg(test)]
    pub fn params(&self) -> &Arc<Params> {
        &self.params
    }

    pub fn head(&self) -> u64 {
        self.head_block().number
    }

    /// Head minus the solid lag, never below the first block.
    pub fn solid(&self) -> u64 {
        self.head()
            .saturating_sub(self.params.solid_lag)
            .max(self.params.start_height)
    }

    pub fn head_block(&self) -> &Block {
        // `blocks` is never empty: `new` puts the first block in.
        &self.blocks[self.blocks.len() - 1]
    }

    pub fn block(&self, number: u64) -> Option<&Block> {
        let index = usize::try_from(number.checked_sub(self.params.start_height)?).ok()?;
        self.blocks.get(index)
    }

    /// Blocks `from..=to` (clamped to the chain), cloned.
    pub fn blocks(&self, from: u64, to: u64) -> Vec<Block> {
        let start = self.params.start_height;
        let low = usize::try_from(from.saturating_sub(start)).unwrap_or(usize::MAX);
        let high = usize::try_from(to.saturating_sub(start))
            .unwrap_or(usize::MAX)
            .saturating_add(1)
            .min(self.blocks.len());
        if to < start || low >= high {
            return Vec::new();
        }
        self.blocks[low..high].to_vec()
    }

    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Queues a transaction for the next block; returns its id and the
    /// number of that block.
    pub fn queue(&mut self, body: Body) -> (Hash, u64) {
        let txid = random_hash(&mut self.control_rng);
        self.pending.push(Tx { txid, body });
        (txid, self.head() + 1)
    }

    /// Seals `count` blocks now; queued transactions go into the first.
    pub fn mine(&mut self, count: u64, now_ms: i64) {
        for _ in 0..count {
            let timestamp = now_ms.max(self.head_block().timestamp + self.params.spacing_ms());
            let txs = std::mem::take(&mut self.pending);
            self.seal(timestamp, txs, None);
        }
    }

    /// Seals `count` blocks of `transfers` random USDT transfers each plus a
    /// little TRX noise; queued transactions go into the first. Returns the
    /// first and last block numbers.
    pub fn generate(&mut self, count: u64, transfers: u32, spec: Arc<TrafficSpec>, now_ms: i64) -> (u64, u64) {
        let spacing = self.params.spacing_ms();
        // Continue at block spacing, but never start in the past: payments
        // created just before must not see their transfer dated before them.
        let mut timestamp = now_ms.max(self.head_block().timestamp + spacing);
        let first = self.head() + 1;
        self.blocks.reserve(usize::try_from(count).unwrap_or(0));
        for _ in 0..count {
            let noise = self.bulk_rng.u32(1..=transfers / 20 + 1);
            let traffic = Traffic {
                key: self.next_key,
                transfers,
                noise,
                spec: spec.clone(),
                dropped: Arc::from(Vec::new()),
            };
            self.next_key += u64::from(transfers) + u64::from(noise);
            let txs = std::mem::take(&mut self.pending);
            self.seal(timestamp, txs, Some(traffic));
            timestamp += spacing;
        }
        (first, self.head())
    }

    /// Replaces the last `depth` blocks (all above the solid height) by
    /// blocks of the same heights with new ids and timestamps, holding the
    /// same transactions minus `drop`.
    pub fn reorg(&mut self, depth: u64, drop: &[Hash]) -> Result<(), ReorgError> {
        let available = self.head() - self.solid();
        if depth == 0 {
            return Err(ReorgError::ZeroDepth);
        }
        if depth > available {
            return Err(ReorgError::TooDeep {
                depth,
                available,
                solid: self.solid(),
            });
        }
        let depth_usize = usize::try_from(depth).unwrap_or(usize::MAX);
        let first = self.blocks.len() - depth_usize;
        let mut found = vec![false; drop.len()];
        let mut replaced: Vec<Block> = self.blocks[first..].to_vec();
        for block in &mut replaced {
            let kept: Vec<Tx> = block
                .txs
                .iter()
                .filter(|tx| !mark(drop, &mut found, &tx.txid))
                .cloned()
                .collect();
            if kept.len() != block.txs.len() {
                block.txs = Arc::from(kept);
            }
            if let Some(traffic) = &mut block.traffic {
                let mut dropped: Vec<u32> = traffic.dropped.to_vec();
                for index in 0..traffic.transfers + traffic.noise {
                    if dropped.binary_search(&index).is_err()
                        && mark(drop, &mut found, &self.params.derive(traffic, index).txid)
                    {
                        dropped.push(index);
                    }
                }
                dropped.sort_unstable();
                traffic.dropped = Arc::from(dropped);
            }
        }
        if let Some(missing) = found.iter().position(|found| !found) {
            return Err(ReorgError::NotFound(hex(&drop[missing])));
        }
        self.epoch += 1;
        let mut parent = self.blocks[first - 1].id;
        for block in &mut replaced {
            // A competing fork's block: same height, its own time and id.
            block.timestamp += 1;
            block.parent = parent;
            block.id = block_id(
                self.params.seed,
                self.epoch,
                block.number,
                block.timestamp,
                &parent,
                block.tx_count(),
            );
            parent = block.id;
        }
        self.blocks.truncate(first);
        self.blocks.extend(replaced);
        Ok(())
    }

    fn seal(&mut self, timestamp: i64, txs: Vec<Tx>, traffic: Option<Traffic>) {
        let head = self.head_block();
        let number = head.number + 1;
        let parent = head.id;
        let mut block = Block {
            number,
            timestamp,
            id: [0; 32],
            parent,
            txs: Arc::from(txs),
            traffic,
        };
        block.id = block_id(
            self.params.seed,
            self.epoch,
            number,
            timestamp,
            &parent,
            block.tx_count(),
        );
        self.blocks.push(block);
    }
}

/// Marks `txid` as found if it is one of `drop`; true when it is.
fn mark(drop: &[Hash], found: &mut [bool], txid: &Hash) -> bool {
    match drop.iter().position(|candidate| candidate == txid) {
        Some(position) => {
            found[position] = true;
            true
        }
        None => false,
    }
}

/// As in java-tron, a block id starts with the block height (8 bytes, big
/// endian); the rest is a hash of the block's contents.
fn block_id(seed: u64, epoch: u64, number: u64, timestamp: i64, parent: &Hash, tx_count: usize) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update(seed.to_le_bytes());
    hasher.update(epoch.to_le_bytes());
    hasher.update(number.to_le_bytes());
    hasher.update(timestamp.to_le_bytes());
    hasher.update(parent);
    hasher.update((tx_count as u64).to_le_bytes());
    let mut id = [0u8; 32];
    id.copy_from_slice(&hasher.finalize());
    id[..8].copy_from_slice(&number.to_be_bytes());
    id
}

/// A fixed address named by a text (the same in every sandbox).
pub(crate) fn named_address(name: &str) -> Addr {
    let digest = Sha256::digest(name.as_bytes());
    let mut addr = [0u8; 20];
    addr.copy_from_slice(&digest[..20]);
    addr
}

pub(crate) fn random_hash(rng: &mut fastrand::Rng) -> Hash {
    let mut hash = [0u8; 32];
    rng.fill(&mut hash);
    hash
}

fn random_addr(rng: &mut fastrand::Rng) -> Addr {
    let mut addr = [0u8; 20];
    rng.fill(&mut addr);
    addr
}

/// A plausible payment: mostly whole or cent amounts, sometimes all six
/// decimals, from 0.01 to 5,000 USDT.
fn random_amount(rng: &mut fastrand::Rng) -> u64 {
    let whole = rng.u64(0..5000);
    let cents = rng.u64(1..100);
    let micro = if rng.u8(..4) == 0 { rng.u64(0..10_000) } else { 0 };
    whole * 1_000_000 + cents * 10_000 + micro
}

/// splitmix64: turns (seed, counter) pairs into well-spread generator seeds.
pub(crate) fn mix(seed: u64, value: u64) -> u64 {
    let mut z = seed ^ value.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    ::hex::encode(bytes)
}

/// Appends the lowercase hex of `bytes` to `out`. The render paths call this
/// for every id, address and word of a block, so the digits go through a
/// stack buffer instead of a `String` per call.
pub(crate) fn push_hex(out: &mut String, bytes: &[u8]) {
    let mut digits = [0u8; 128];
    out.reserve(bytes.len() * 2);
    for chunk in bytes.chunks(digits.len() / 2) {
        let digits = &mut digits[..chunk.len() * 2];
        // Neither can fail: the buffer is twice the chunk, and hex is ASCII.
        if ::hex::encode_to_slice(chunk, digits).is_ok()
            && let Ok(text) = std::str::from_utf8(digits)
        {
            out.push_str(text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(lag: u64) -> Chain {
        let usdt = TronAddress::parse("TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t").unwrap();
        Chain::new(Arc::new(Params::new(7, usdt, 1000, lag, 0)), 1_700_000_000_000)
    }

    fn usdt(to: u8, amount: u64) -> Body {
        Body::Usdt {
            from: [1; 20],
            to: [to; 20],
            amount,
            spender: None,
            failed: false,
        }
    }

    #[test]
    fn push_hex_appends_lowercase_digits_across_its_buffer() {
        let mut out = String::from("0x");
        push_hex(&mut out, &[0x00, 0x0f, 0xa0, 0xff]);
        assert_eq!(out, "0x000fa0ff");
        // Longer than the stack buffer holds at once (a revert message).
        let long: Vec<u8> = (0..=255).collect();
        let mut out = String::new();
        push_hex(&mut out, &long);
        assert_eq!(out, hex(&long));
        assert_eq!(&out[..6], "000102");
        assert_eq!(&out[out.len() - 4..], "feff");
        assert_eq!(hex(&[]), "");
    }

    #[test]
    fn blocks_link_and_ids_start_with_the_height() {
        let mut chain = chain(2);
        chain.mine(3, 0);
        assert_eq!((chain.head(), chain.solid()), (1003, 1001));
        for number in 1001..=1003 {
            let block = chain.block(number).unwrap();
            assert_eq!(block.id[..8], number.to_be_bytes());
            assert_eq!(block.parent, chain.block(number - 1).unwrap().id);
            assert_eq!(block.timestamp, chain.block(number - 1).unwrap().timestamp + 3000);
        }
        assert!(chain.block(999).is_none() && chain.block(1004).is_none());
    }

    #[test]
    fn queued_transfers_land_in_the_promised_block() {
        let mut chain = chain(0);
        let (txid, number) = chain.queue(usdt(2, 5));
        chain.mine(2, 0);
        let block = chain.block(number).unwrap();
        assert_eq!(block.txs.len(), 1);
        assert_eq!(block.txs[0].txid, txid);
        assert_eq!(chain.block(number + 1).unwrap().tx_count(), 0);
    }

    #[test]
    fn bulk_traffic_is_derived_the_same_way_every_time() {
        let mut chain = chain(0);
        let spec = Arc::new(TrafficSpec {
            recipients: vec![[9; 20]],
            amount: Some(1_500_000),
        });
        let (first, last) = chain.generate(3, 50, spec, 0);
        assert_eq!(last - first, 2);
        let block = chain.block(first).unwrap().clone();
        let mut once = Vec::new();
        block.for_each_tx(chain.params(), |tx| once.push(tx.clone()));
        let mut again = Vec::new();
        block.for_each_tx(chain.params(), |tx| again.push(tx.clone()));
        assert_eq!(once, again);
        assert_eq!(once.len(), block.tx_count());
        let transfers: Vec<_> = once
            .iter()
            .filter(|tx| matches!(tx.body, Body::Usdt { to, amount: 1_500_000, .. } if to == [9; 20]))
            .collect();
        assert_eq!(transfers.len(), 50);
        assert!(once.iter().any(|tx| matches!(tx.body, Body::Trx { .. })));
    }

    #[test]
    fn a_reorg_replaces_ids_and_drops_transactions() {
        let mut chain = chain(5);
        chain.mine(10, 0);
        let (kept, _) = chain.queue(usdt(2, 1));
        let (dropped, _) = chain.queue(usdt(3, 1));
        chain.generate(2, 10, Arc::new(TrafficSpec::default()), 0);
        let bulk = chain.block(chain.head()).unwrap().clone();
        let mut bulk_txids = Vec::new();
        bulk.for_each_tx(chain.params(), |tx| bulk_txids.push(tx.txid));
        let old_head = chain.head_block().id;

        assert_eq!(chain.reorg(0, &[]), Err(ReorgError::ZeroDepth));
        assert!(matches!(chain.reorg(6, &[]), Err(ReorgError::TooDeep { .. })));
        assert!(matches!(chain.reorg(1, &[dropped]), Err(ReorgError::NotFound(_))));

        chain.reorg(2, &[dropped, bulk_txids[3]]).unwrap();
        assert_ne!(chain.head_block().id, old_head);
        let first = chain.block(chain.head() - 1).unwrap();
        assert_eq!(first.txs.iter().map(|tx| tx.txid).collect::<Vec<_>>(), vec![kept]);
        assert_eq!(first.parent, chain.block(chain.head() - 2).unwrap().id);
        let mut after = Vec::new();
        chain.head_block().for_each_tx(chain.params(), |tx| after.push(tx.txid));
        assert_eq!(after.len(), bulk_txids.len() - 1);
        assert!(!after.contains(&bulk_txids[3]));
        assert_eq!(chain.head_block().tx_count(), after.len());
    }

    #[test]
    fn router_log_indexes_skip_the_router_event() {
        assert_eq!((0..4).map(router_log_index).collect::<Vec<_>>(), vec![0, 2, 3, 4]);
    }
}
