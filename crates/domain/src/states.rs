//! The states tronpay records, each an enum with exactly one string form —
//! the form stored in PostgreSQL (a checked text column), sent in JSON and
//! shown to the operator. `crates/db` maps every one of them to its column
//! in one place (`tronpay_db::states`).

use std::fmt;

/// A state with one string form: `as_str` and `FromStr` are inverse, and
/// [`Self::ALL`] lists every value (the database's check constraint holds
/// the same list; a test compares them).
pub trait Named: Copy + Eq + fmt::Debug + std::str::FromStr<Err = UnknownName> + 'static {
    /// What the value names, for messages (`transfer status`, …).
    const WHAT: &'static str;
    /// Every value, in declaration order.
    const ALL: &'static [Self];
    /// The one string form.
    fn as_str(self) -> &'static str;
}

/// A text that names no value of the state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {text:?}")]
pub struct UnknownName {
    pub what: &'static str,
    pub text: String,
}

/// Parses `text` as one of `T::ALL`.
pub fn parse_name<T: Named>(text: &str) -> Result<T, UnknownName> {
    T::ALL
        .iter()
        .copied()
        .find(|value| value.as_str() == text)
        .ok_or_else(|| UnknownName {
            what: T::WHAT,
            text: text.to_owned(),
        })
}

/// Defines a state enum with one string form per value ([`Named`]),
/// `FromStr`, `Display` and serde as that string.
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident ($what:literal) {
            $($(#[$variant_meta:meta])* $variant:ident = $text:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $($(#[$variant_meta])* $variant,)+
        }

        impl $crate::states::Named for $name {
            const WHAT: &'static str = $what;
            const ALL: &'static [Self] = &[$(Self::$variant,)+];

            fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                }
            }
        }

        impl $name {
            /// The one string form (see [`$crate::states::Named`]).
            pub fn as_str(self) -> &'static str {
                <Self as $crate::states::Named>::as_str(self)
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::states::UnknownName;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                $crate::states::parse_name(text)
            }
        }

        /// For database rows (`#[diesel(deserialize_as = String)]`).
        impl TryFrom<String> for $name {
            type Error = $crate::states::UnknownName;

            fn try_from(text: String) -> Result<Self, Self::Error> {
                text.parse()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

pub(crate) use named_enum;

named_enum! {
    /// What the chain says about a transfer (`transfers.status`, and the
    /// `state` of a `payment.detected` event).
    pub enum TransferState ("transfer state") {
        /// Seen in a block that is not final yet.
        Detected = "detected",
        /// In a final block: it counts.
        Confirmed = "confirmed",
        /// Seen at the tip, then missing from the final block at its height.
        Dropped = "dropped",
    }
}

named_enum! {
    /// How a final transfer was applied (`transfers.match_kind`).
    pub enum MatchKind ("match kind") {
        /// Paid a payment's whole amount.
        Exact = "exact",
        /// Credited to the address's only pending payment, still short.
        Partial = "partial",
        /// Credits before it plus this one make the amount exactly.
        Completing = "completing",
        /// The credits exceed the expected amount.
        Overpaid = "overpaid",
        /// Arrived after the payment's deadline.
        Late = "late",
        /// Paid nothing (several candidates, none, or before the payment).
        Unmatched = "unmatched",
        /// Zero or dust (`MIN_CREDIT_USDT`): never touches a payment.
        Ignored = "ignored",
        /// An unmatched or late transfer an operator credited to a payment
        /// (`POST /v1/transfers/{txid}/{log_index}/assign`).
        Assigned = "assigned",
    }
}

named_enum! {
    /// How a payment got its receiving address (PRODUCT §10;
    /// `payments.address_mode`, the `ADDRESS_MODE` setting).
    pub enum AddressMode ("address mode") {
        /// The merchant's own address, given with the payment.
        Given = "given",
        /// Derived from the account xpub, one per payment, never reused.
        Xpub = "xpub",
        /// Reserved from the imported pool while the payment needs it.
        Pool = "pool",
        /// The shared `RECEIVE_ADDRESS`, the amount raised to be unique.
        UniqueAmount = "unique_amount",
    }
}

named_enum! {
    /// Where a webhook delivery is (`webhook_deliveries.status`).
    pub enum DeliveryStatus ("delivery status") {
        /// Waiting for its next attempt (`next_attempt_at`).
        Pending = "pending",
        /// An attempt is in flight under a lease (`locked_until`).
        Sending = "sending",
        /// A 2xx answer arrived.
        Delivered = "delivered",
        /// Refused for good (410 Gone, a refused address, a bad URL).
        Failed = "failed",
        /// The retry schedule is used up; `tronpay webhooks retry` revives it.
        Dead = "dead",
    }
}

named_enum! {
    /// How one delivery attempt ended (`webhook_attempts.outcome`).
    pub enum AttemptOutcome ("attempt outcome") {
        Delivered = "delivered",
        /// Another attempt is scheduled.
        Retry = "retry",
        Failed = "failed",
        /// It was the last scheduled attempt.
        Dead = "dead",
    }
}

named_enum! {
    /// What a `payment_logs` row records (`payment_logs.event_type`).
    pub enum LogEvent ("payment log event") {
        Created = "created",
        /// Loaded by `tronpay db import`.
        Imported = "imported",
        /// A transfer seen at the tip, not final yet.
        Detected = "detected",
        /// A detected transfer missing from the final chain.
        Dropped = "dropped",
        Partial = "partial",
        Completed = "completed",
        Overpaid = "overpaid",
        Expired = "expired",
        /// Cancelled by the merchant (`POST /v1/payments/{id}/cancel`); the
        /// status is `failed` and the message holds the reason.
        Cancelled = "cancelled",
        /// An operator credited a transfer to it by hand.
        Assigned = "assigned",
        Late = "late",
        CallbackSent = "callback_sent",
        /// An attempt failed (another is scheduled, or the receiver refused
        /// for good).
        CallbackFailed = "callback_failed",
        /// The last scheduled attempt failed.
        CallbackDead = "callback_dead",
        /// An operator asked for another attempt (`tronpay webhooks retry`).
        CallbackRetry = "callback_retry",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trips<T: Named + serde::Serialize + serde::de::DeserializeOwned>() {
        for value in T::ALL {
            assert_eq!(value.as_str().parse::<T>(), Ok(*value));
            assert_eq!(serde_json::to_string(value).unwrap(), format!("\"{}\"", value.as_str()));
            assert_eq!(
                serde_json::from_str::<T>(&format!("\"{}\"", value.as_str())).unwrap(),
                *value
            );
        }
        let unknown = "nope".parse::<T>().unwrap_err();
        assert_eq!(unknown.to_string(), format!("unknown {} \"nope\"", T::WHAT));
        assert!(serde_json::from_str::<T>("\"Nope\"").is_err());
    }

    #[test]
    fn every_state_has_one_string_form() {
        round_trips::<TransferState>();
        round_trips::<MatchKind>();
        round_trips::<DeliveryStatus>();
        round_trips::<AttemptOutcome>();
        round_trips::<LogEvent>();
        round_trips::<crate::events::WebhookEvent>();
    }
}
