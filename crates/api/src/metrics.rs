//! The API's business series (PRODUCT §12), counted after the transaction
//! that made the change committed, so a rolled-back change is never counted:
//! `tronpay_payments_created_total{mode}`, `tronpay_payments_completed_total`,
//! `tronpay_payments_expired_total`, `tronpay_payments_cancelled_total` and
//! `tronpay_transfers_matched_total{kind}` (a final transfer applied: `exact`,
//! `partial`, `completing`, `overpaid`, `late`, `unmatched`, `ignored`,
//! `assigned`). Each replica counts what it applied; sum them.

use tronpay_domain::MatchKind;

/// A payment was created with an address chosen in `mode` (`given`,
/// `xpub`, `pool`, `unique_amount`).
pub fn created(mode: &'static str) {
    metrics::counter!("tronpay_payments_created_total", "mode" => mode).increment(1);
}

/// A payment was cancelled (API or dashboard).
pub fn cancelled() {
    metrics::counter!("tronpay_payments_cancelled_total").increment(1);
}

/// `count` payments expired.
pub fn expired(count: usize) {
    metrics::counter!("tronpay_payments_expired_total").increment(count as u64);
}

/// What one matching transaction did, recorded once it committed.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// The match kind of each final transfer applied.
    pub(crate) matched: Vec<MatchKind>,
    /// Payments completed.
    pub(crate) completed: u64,
    /// Payments expired (a late transfer found its payment still pending).
    pub(crate) expired: u64,
}

impl Tally {
    /// Counts what the committed transaction did.
    pub(crate) fn record(&self) {
        for kind in &self.matched {
            metrics::counter!("tronpay_transfers_matched_total", "kind" => kind.as_str()).increment(1);
        }
        if self.completed > 0 {
            metrics::counter!("tronpay_payments_completed_total").increment(self.completed);
        }
        if self.expired > 0 {
            metrics::counter!("tronpay_payments_expired_total").increment(self.expired);
        }
    }
}
