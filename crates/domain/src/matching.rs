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

use crate::{PaymentStatus, UsdtAmount};

/// A payment on the transfer's address, as matching sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: String,
    pub status: PaymentStatus,
    /// Milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    pub expected: UsdtAmount,
    /// Credited by earlier (partial) transfers.
    pub credited: UsdtAmount,
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
        payment_id: String,
        received: UsdtAmount,
        completion: Completion,
    },
    /// Credited, still short of the expected amount.
    Partial {
        payment_id: String,
        received: UsdtAmount,
    },
    /// Arrived after the payment's deadline: recorded, the payment stays (or
    /// becomes) expired.
    Late {
        payment_id: String,
    },
    Unmatched,
}

/// Decides what a final transfer of `amount` at `block_time_ms` pays, given
/// the payments on its address in `(created_at, id)` order.
pub fn decide(amount: UsdtAmount, block_time_ms: i64, candidates: &[Candidate]) -> Decision {
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

    if let [single] = eligible.as_slice() {
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
                matches!(candidate.status, PaymentStatus::Pending | PaymentStatus::Expired)
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

    fn pending(id: &str, created: i64, expected: &str) -> Candidate {
        Candidate {
            id: id.into(),
            status: PaymentStatus::Pending,
            created_at_ms: created,
            expires_at_ms: created + 1_000,
            expected: usdt(expected),
            credited: UsdtAmount::ZERO,
        }
    }

    #[test]
    fn an_exact_transfer_completes_the_oldest_matching_payment() {
        let candidates = [pending("old", 100, "10"), pending("new", 200, "10")];
        assert_eq!(
            decide(usdt("10"), 300, &candidates),
            Decision::Complete {
                payment_id: "old".into(),
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
            decide(usdt("10"), 300, &after_first),
            Decision::Complete {
                payment_id: "new".into(),
                received: usdt("10"),
                completion: Completion::Exact
            }
        );
    }

    #[test]
    fn exact_amounts_win_over_age() {
        let candidates = [pending("old", 100, "10"), pending("new", 200, "12.5")];
        assert_eq!(
            decide(usdt("12.5"), 300, &candidates),
            Decision::Complete {
                payment_id: "new".into(),
                received: usdt("12.5"),
                completion: Completion::Exact
            }
        );
    }

    #[test]
    fn a_single_pending_payment_takes_partial_credits() {
        let one = [pending("p", 100, "10")];
        assert_eq!(
            decide(usdt("4"), 300, &one),
            Decision::Partial {
                payment_id: "p".into(),
                received: usdt("4")
            }
        );
        let credited = [Candidate {
            credited: usdt("4"),
            ..one[0].clone()
        }];
        assert_eq!(
            decide(usdt("6"), 300, &credited),
            Decision::Complete {
                payment_id: "p".into(),
                received: usdt("10"),
                completion: Completion::Completing
            }
        );
        assert_eq!(
            decide(usdt("7"), 300, &credited),
            Decision::Complete {
                payment_id: "p".into(),
                received: usdt("11"),
                completion: Completion::Overpaid { excess: usdt("1") }
            }
        );
    }

    #[test]
    fn an_overpayment_of_a_single_payment_completes_it_as_overpaid() {
        assert_eq!(
            decide(usdt("15"), 300, &[pending("p", 100, "10")]),
            Decision::Complete {
                payment_id: "p".into(),
                received: usdt("15"),
                completion: Completion::Overpaid { excess: usdt("5") }
            }
        );
    }

    #[test]
    fn without_an_exact_match_several_pending_payments_leave_it_unmatched() {
        let candidates = [pending("a", 100, "10"), pending("b", 200, "20")];
        assert_eq!(decide(usdt("5"), 300, &candidates), Decision::Unmatched);
    }

    #[test]
    fn a_transfer_older_than_the_payment_is_ignored() {
        assert_eq!(decide(usdt("10"), 99, &[pending("p", 100, "10")]), Decision::Unmatched);
    }

    #[test]
    fn a_transfer_after_the_deadline_is_late() {
        let candidates = [pending("p", 100, "10")];
        assert_eq!(
            decide(usdt("10"), 1_101, &candidates),
            Decision::Late { payment_id: "p".into() }
        );
        let expired = [Candidate {
            status: PaymentStatus::Expired,
            ..candidates[0].clone()
        }];
        assert_eq!(
            decide(usdt("10"), 5_000, &expired),
            Decision::Late { payment_id: "p".into() }
        );
        // The deadline itself still counts.
        assert!(matches!(
            decide(usdt("10"), 1_100, &candidates),
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
            assert_eq!(decide(usdt("10"), 300, &done), Decision::Unmatched);
            assert_eq!(decide(usdt("10"), 5_000, &done), Decision::Unmatched);
        }
    }
}
