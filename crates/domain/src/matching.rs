//! Which payment a final transfer pays (PRODUCT §4, "Matching").
//!
//! A transfer to address A in a block whose time lies within
//! `[created_at, expires_at]` of a pending payment on A completes the oldest
//! such payment whose outstanding amount equals it exactly. Failing that, if
//! exactly one such payment exists, the transfer is credited to it (a partial
//! payment, completing it once the credits reach the expected amount, an
//! overpayment recorded as such). A transfer after a payment's deadline is
//! late for it. Anything else is unmatched. The function is pure; the API
//! applies its decision in one transaction with the payments locked.
//!
//! Zero and dust are never payments. Anyone can make a successful USDT
//! `Transfer` of 0 (or of a millionth) to any address — address poisoning —
//! so a transfer of 0 never touches a payment, and one below
//! [`MatchRules::min_credit`] (`MIN_CREDIT_USDT`) is neither a partial credit,
//! nor late, nor detected: both are ignored (recorded for the operator only).
//! The one exception is a small transfer that pays *exactly* the rest of a
//! payment (its outstanding amount after earlier credits): that is the
//! buyer finishing a payment, and it completes it.

use crate::{MIN_EXPECTED_AMOUNT, MatchKind, PaymentId, PaymentStatus, UsdtAmount};

/// The configurable part of matching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatchRules {
    /// `MIN_CREDIT_USDT` (default 0.01, the smallest amount a payment may
    /// expect): a transfer below it never credits, never makes a payment
    /// late and is never shown as detected, unless it is exactly a
    /// payment's outstanding amount. At least one base unit (0.000001).
    pub min_credit: UsdtAmount,
}

impl Default for MatchRules {
    fn default() -> Self {
        Self {
            min_credit: MIN_EXPECTED_AMOUNT,
        }
    }
}

/// Why a transfer was ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IgnoreReason {
    /// A transfer of 0 USDT (address-poisoning spam).
    ZeroValue,
    /// Below `MIN_CREDIT_USDT` and not the exact rest of a payment.
    Dust { min_credit: UsdtAmount },
}

impl std::fmt::Display for IgnoreReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ZeroValue => f.write_str("a transfer of 0 USDT never pays anything"),
            Self::Dust { min_credit } => write!(f, "below MIN_CREDIT_USDT ({min_credit} USDT)"),
        }
    }
}

/// A payment on the transfer's address, as matching sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: PaymentId,
    pub status: PaymentStatus,
    /// Milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    pub expected: UsdtAmount,
    /// Credited by earlier (partial) transfers.
    pub credited: UsdtAmount,
    /// Its address is shared with strangers (`ADDRESS_MODE=unique_amount`):
    /// only a transfer of exactly what it is owed counts for it, never a
    /// partial credit or a late transfer of another amount.
    pub exact_only: bool,
}

impl Candidate {
    fn accepts_at(&self, block_time_ms: i64) -> bool {
        self.status == PaymentStatus::Pending && (self.created_at_ms..=self.expires_at_ms).contains(&block_time_ms)
    }

    fn outstanding(&self) -> Option<UsdtAmount> {
        self.expected.checked_sub(self.credited)
    }
}

/// How a transfer completes a payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    /// The transfer is the whole outstanding amount of a payment with no
    /// earlier credits.
    Exact,
    /// Earlier partial credits plus this transfer make the amount exactly.
    Completing,
    /// The credits exceed the expected amount.
    Overpaid { excess: UsdtAmount },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The payment is paid in full; `received` is its total credited amount.
    Complete {
        payment_id: PaymentId,
        received: UsdtAmount,
        completion: Completion,
    },
    /// Credited, still short of the expected amount.
    Partial {
        payment_id: PaymentId,
        received: UsdtAmount,
    },
    /// Arrived after the payment's deadline: recorded, the payment stays (or
    /// becomes) expired.
    Late {
        payment_id: PaymentId,
    },
    /// Zero or dust: kept for the operator as ignored, no payment touched.
    Ignored(IgnoreReason),
    Unmatched,
}

impl Decision {
    /// The payment it concerns, if any.
    pub fn payment_id(&self) -> Option<&PaymentId> {
        match self {
            Self::Complete { payment_id, .. } | Self::Partial { payment_id, .. } | Self::Late { payment_id } => {
                Some(payment_id)
            }
            Self::Ignored(_) | Self::Unmatched => None,
        }
    }

    /// How the transfer is recorded (`transfers.match_kind`).
    pub fn match_kind(&self) -> MatchKind {
        match self {
            Self::Complete {
                completion: Completion::Exact,
                ..
            } => MatchKind::Exact,
            Self::Complete {
                completion: Completion::Completing,
                ..
            } => MatchKind::Completing,
            Self::Complete {
                completion: Completion::Overpaid { .. },
                ..
            } => MatchKind::Overpaid,
            Self::Partial { .. } => MatchKind::Partial,
            Self::Late { .. } => MatchKind::Late,
            Self::Ignored(_) => MatchKind::Ignored,
            Self::Unmatched => MatchKind::Unmatched,
        }
    }
}

/// Decides what a final transfer of `amount` at `block_time_ms` pays, given
/// the payments on its address in `(created_at, id)` order.
pub fn decide(amount: UsdtAmount, block_time_ms: i64, candidates: &[Candidate], rules: &MatchRules) -> Decision {
    if amount == UsdtAmount::ZERO {
        return Decision::Ignored(IgnoreReason::ZeroValue);
    }
    let eligible: Vec<&Candidate> = candidates
        .iter()
        .filter(|candidate| candidate.accepts_at(block_time_ms))
        .collect();

    if let Some(exact) = eligible
        .iter()
        .find(|candidate| candidate.outstanding() == Some(amount))
    {
        let completion = if exact.credited == UsdtAmount::ZERO {
            Completion::Exact
        } else {
            Completion::Completing
        };
        return Decision::Complete {
            payment_id: exact.id.clone(),
            received: exact.expected,
            completion,
        };
    }

    if amount < rules.min_credit {
        return Decision::Ignored(IgnoreReason::Dust {
            min_credit: rules.min_credit,
        });
    }

    // On a shared address only exact amounts count: a late transfer of
    // exactly what an ended payment was owed is that payment's…
    let late_exact = candidates
        .iter()
        .filter(|candidate| {
            candidate.exact_only
                && matches!(candidate.status, PaymentStatus::Pending | PaymentStatus::Expired)
                && candidate.created_at_ms <= block_time_ms
                && candidate.expires_at_ms < block_time_ms
                && candidate.outstanding() == Some(amount)
        })
        .max_by_key(|candidate| candidate.expires_at_ms);
    if let Some(late) = late_exact {
        return Decision::Late {
            payment_id: late.id.clone(),
        };
    }

    if let [single] = eligible.as_slice()
        && !single.exact_only
    {
        let Some(received) = single.credited.checked_add(amount) else {
            return Decision::Unmatched;
        };
        return match received.checked_sub(single.expected) {
            None => Decision::Partial {
                payment_id: single.id.clone(),
                received,
            },
            Some(UsdtAmount::ZERO) => Decision::Complete {
                payment_id: single.id.clone(),
                received,
                completion: Completion::Completing,
            },
            Some(excess) => Decision::Complete {
                payment_id: single.id.clone(),
                received,
                completion: Completion::Overpaid { excess },
            },
        };
    }

    if eligible.is_empty() {
        // Late for the payment whose deadline passed most recently before the
        // transfer (and which existed when it was made).
        let late = candidates
            .iter()
            .filter(|candidate| {
                // …and any other amount is for the operator.
                !candidate.exact_only
                    && matches!(candidate.status, PaymentStatus::Pending | PaymentStatus::Expired)
                    && candidate.created_at_ms <= block_time_ms
                    && candidate.expires_at_ms < block_time_ms
            })
            .max_by_key(|candidate| candidate.expires_at_ms);
        if let Some(late) = late {
            return Decision::Late {
                payment_id: late.id.clone(),
            };
        }
    }
    Decision::Unmatched
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usdt(text: &str) -> UsdtAmount {
        UsdtAmount::parse(text).unwrap()
    }

    fn id(text: &str) -> PaymentId {
        PaymentId::parse(text).unwrap()
    }

    fn pending(name: &str, created: i64, expected: &str) -> Candidate {
        Candidate {
            id: id(name),
            status: PaymentStatus::Pending,
            created_at_ms: created,
            expires_at_ms: created + 1_000,
            expected: usdt(expected),
            credited: UsdtAmount::ZERO,
            exact_only: false,
        }
    }

    #[test]
    fn an_exact_transfer_completes_the_oldest_matching_payment() {
        let candidates = [pending("old", 100, "10"), pending("new", 200, "10")];
        assert_eq!(
            decide(usdt("10"), 300, &candidates, &MatchRules::default()),
            Decision::Complete {
                payment_id: id("old"),
                received: usdt("10"),
                completion: Completion::Exact
            }
        );
        let after_first = [
            Candidate {
                status: PaymentStatus::Completed,
                ..candidates[0].clone()
            },
            candidates[1].clone(),
        ];
        assert_eq!(
            decide(usdt("10"), 300, &after_first, &MatchRules::default()),
            Decision::Complete {
                payment_id: id("new"),
                received: usdt("10"),
                completion: Completion::Exact
            }
        );
    }

    #[test]
    fn exact_amounts_win_over_age() {
        let candidates = [pending("old", 100, "10"), pending("new", 200, "12.5")];
        assert_eq!(
            decide(usdt("12.5"), 300, &candidates, &MatchRules::default()),
            Decision::Complete {
                payment_id: id("new"),
                received: usdt("12.5"),
                completion: Completion::Exact
            }
        );
    }

    #[test]
    fn a_single_pending_payment_takes_partial_credits() {
        let one = [pending("p", 100, "10")];
        assert_eq!(
            decide(usdt("4"), 300, &one, &MatchRules::default()),
            Decision::Partial {
                payment_id: id("p"),
                received: usdt("4")
            }
        );
        let credited = [Candidate {
            credited: usdt("4"),
            exact_only: false,
            ..one[0].clone()
        }];
        assert_eq!(
            decide(usdt("6"), 300, &credited, &MatchRules::default()),
            Decision::Complete {
                payment_id: id("p"),
                received: usdt("10"),
                completion: Completion::Completing
            }
        );
        assert_eq!(
            decide(usdt("7"), 300, &credited, &MatchRules::default()),
            Decision::Complete {
                payment_id: id("p"),
                received: usdt("11"),
                completion: Completion::Overpaid { excess: usdt("1") }
            }
        );
    }

    #[test]
    fn an_overpayment_of_a_single_payment_completes_it_as_overpaid() {
        assert_eq!(
            decide(usdt("15"), 300, &[pending("p", 100, "10")], &MatchRules::default()),
            Decision::Complete {
                payment_id: id("p"),
                received: usdt("15"),
                completion: Completion::Overpaid { excess: usdt("5") }
            }
        );
    }

    #[test]
    fn without_an_exact_match_several_pending_payments_leave_it_unmatched() {
        let candidates = [pending("a", 100, "10"), pending("b", 200, "20")];
        assert_eq!(
            decide(usdt("5"), 300, &candidates, &MatchRules::default()),
            Decision::Unmatched
        );
    }

    #[test]
    fn a_transfer_older_than_the_payment_is_ignored() {
        assert_eq!(
            decide(usdt("10"), 99, &[pending("p", 100, "10")], &MatchRules::default()),
            Decision::Unmatched
        );
    }

    #[test]
    fn a_transfer_after_the_deadline_is_late() {
        let candidates = [pending("p", 100, "10")];
        assert_eq!(
            decide(usdt("10"), 1_101, &candidates, &MatchRules::default()),
            Decision::Late { payment_id: id("p") }
        );
        let expired = [Candidate {
            status: PaymentStatus::Expired,
            ..candidates[0].clone()
        }];
        assert_eq!(
            decide(usdt("10"), 5_000, &expired, &MatchRules::default()),
            Decision::Late { payment_id: id("p") }
        );
        // The deadline itself still counts.
        assert!(matches!(
            decide(usdt("10"), 1_100, &candidates, &MatchRules::default()),
            Decision::Complete { .. }
        ));
    }

    #[test]
    fn finished_payments_take_nothing() {
        for status in [PaymentStatus::Completed, PaymentStatus::Failed] {
            let done = [Candidate {
                status,
                ..pending("p", 100, "10")
            }];
            assert_eq!(
                decide(usdt("10"), 300, &done, &MatchRules::default()),
                Decision::Unmatched
            );
            assert_eq!(
                decide(usdt("10"), 5_000, &done, &MatchRules::default()),
                Decision::Unmatched
            );
        }
    }

    #[test]
    fn a_transfer_of_zero_never_touches_a_payment() {
        let rules = MatchRules::default();
        let ignored = Decision::Ignored(IgnoreReason::ZeroValue);
        // Not a partial credit of the only payment, not late, not unmatched.
        assert_eq!(
            decide(UsdtAmount::ZERO, 300, &[pending("p", 100, "30")], &rules),
            ignored
        );
        assert_eq!(
            decide(UsdtAmount::ZERO, 5_000, &[pending("p", 100, "30")], &rules),
            ignored
        );
        assert_eq!(decide(UsdtAmount::ZERO, 300, &[], &rules), ignored);
        // Not even with a minimum of one base unit.
        let lowest = MatchRules {
            min_credit: usdt("0.000001"),
        };
        assert_eq!(
            decide(UsdtAmount::ZERO, 300, &[pending("p", 100, "30")], &lowest),
            ignored
        );
    }

    #[test]
    fn dust_is_ignored_unless_it_is_exactly_the_rest_of_a_payment() {
        let rules = MatchRules::default();
        let dust = Decision::Ignored(IgnoreReason::Dust {
            min_credit: usdt("0.01"),
        });
        let one = [pending("p", 100, "30")];
        assert_eq!(decide(usdt("0.000001"), 300, &one, &rules), dust);
        assert_eq!(decide(usdt("0.009999"), 300, &one, &rules), dust);
        // After the deadline it is not a late payment either, and with no
        // payment at all it is not worth an unmatched record.
        assert_eq!(decide(usdt("0.000001"), 5_000, &one, &rules), dust);
        assert_eq!(decide(usdt("0.000001"), 300, &[], &rules), dust);
        // At the minimum it is a partial payment again.
        assert_eq!(
            decide(usdt("0.01"), 300, &one, &rules),
            Decision::Partial {
                payment_id: id("p"),
                received: usdt("0.01")
            }
        );
        // The buyer finishing a payment with a small rest completes it.
        let nearly = [Candidate {
            credited: usdt("29.995"),
            exact_only: false,
            ..one[0].clone()
        }];
        assert_eq!(
            decide(usdt("0.005"), 300, &nearly, &rules),
            Decision::Complete {
                payment_id: id("p"),
                received: usdt("30"),
                completion: Completion::Completing
            }
        );
        assert_eq!(decide(usdt("0.004"), 300, &nearly, &rules), dust);
        // The minimum is configurable.
        let strict = MatchRules { min_credit: usdt("1") };
        assert_eq!(
            decide(usdt("0.5"), 300, &one, &strict),
            Decision::Ignored(IgnoreReason::Dust { min_credit: usdt("1") })
        );
    }

    #[test]
    fn on_a_shared_address_only_exact_amounts_count() {
        let shared = |candidate: Candidate| Candidate {
            exact_only: true,
            ..candidate
        };
        let rules = MatchRules::default();
        // One open payment owed 10.01: 10 is not its amount, so not a
        // partial credit to it (it may be a stranger's).
        let open = [shared(pending("open", 100, "10.01"))];
        assert_eq!(decide(usdt("10"), 500, &open, &rules), Decision::Unmatched);
        assert!(matches!(
            decide(usdt("10.01"), 500, &open, &rules),
            Decision::Complete { .. }
        ));
        // An ended payment owed exactly 10 takes a late 10; another amount
        // late is nobody's.
        let ended = Candidate {
            status: PaymentStatus::Expired,
            ..shared(pending("ended", 100, "10"))
        };
        let both = [ended, shared(pending("open", 1_500, "10.01"))];
        assert_eq!(
            decide(usdt("10"), 1_600, &both, &rules),
            Decision::Late {
                payment_id: id("ended")
            }
        );
        assert_eq!(decide(usdt("7"), 1_600, &both, &rules), Decision::Unmatched);
    }
}
