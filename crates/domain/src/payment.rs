//! Payments: statuses, order ids, expected amounts and transaction ids.

use std::fmt;
use std::str::FromStr;

use bigdecimal::BigDecimal;
use serde::{Deserialize, Serialize};

use crate::amount::{AmountError, UsdtAmount};

/// The smallest amount a payment may expect: 0.01 USDT.
pub const MIN_EXPECTED_AMOUNT: UsdtAmount = UsdtAmount::from_base_units_const(10_000);
/// The largest amount a payment may expect: 1,000,000 USDT.
pub const MAX_EXPECTED_AMOUNT: UsdtAmount = UsdtAmount::from_base_units_const(1_000_000_000_000);

/// The lifecycle of a payment, stored as the `payment_status` enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PaymentStatus {
    /// Waiting for the money.
    Pending,
    /// Paid in full by final transfers.
    Completed,
    /// Cancelled (by the merchant or the operator); the reason is logged.
    Failed,
    /// Not paid in full before `expires_at`.
    Expired,
}

impl PaymentStatus {
    pub const ALL: [Self; 4] = [Self::Pending, Self::Completed, Self::Failed, Self::Expired];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Expired => "expired",
        }
    }

    /// A final status never changes again.
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Pending)
    }

    /// Whether a payment in this status may change to `next`: only a pending
    /// payment changes, and only to a final status, so a payment completes
    /// (or expires, or fails) at most once.
    pub fn can_become(self, next: Self) -> bool {
        self == Self::Pending && next.is_final()
    }
}

impl fmt::Display for PaymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A text that is not one of the four statuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown payment status {0:?} (expected pending, completed, failed or expired)")]
pub struct UnknownStatus(pub String);

impl FromStr for PaymentStatus {
    type Err = UnknownStatus;

    /// Accepts the lowercase names and, for imports from the original
    /// service's SQLAlchemy enum, the uppercase ones.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str().eq_ignore_ascii_case(text))
            .ok_or_else(|| UnknownStatus(text.to_owned()))
    }
}

/// Why an expected amount is refused; the order of the variants is the order
/// in which the original service checked them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ExpectedAmountError {
    #[error("expected_amount_usdt must be a positive number")]
    NotPositive,
    #[error("expected_amount_usdt must be at least 0.01 USDT")]
    TooSmall,
    #[error("expected_amount_usdt cannot exceed 1,000,000 USDT")]
    TooLarge,
    #[error("expected_amount_usdt cannot have more than 6 decimal places")]
    TooPrecise,
}

/// Checks an expected amount: positive, at least 0.01, at most 1,000,000, and
/// no more than 6 decimals (checked last, so that every value the original
/// service refused is refused with the same text).
pub fn expected_amount(value: &BigDecimal) -> Result<UsdtAmount, ExpectedAmountError> {
    if value.sign() != bigdecimal::num_bigint::Sign::Plus {
        return Err(ExpectedAmountError::NotPositive);
    }
    if *value < MIN_EXPECTED_AMOUNT.to_decimal() {
        return Err(ExpectedAmountError::TooSmall);
    }
    if *value > MAX_EXPECTED_AMOUNT.to_decimal() {
        return Err(ExpectedAmountError::TooLarge);
    }
    UsdtAmount::from_decimal(value).map_err(|error| match error {
        AmountError::TooPrecise => ExpectedAmountError::TooPrecise,
        // Range and sign were checked above.
        AmountError::NotANumber | AmountError::Negative | AmountError::OutOfRange => ExpectedAmountError::NotPositive,
    })
}

/// Accepted values of `PAYMENT_TTL_SECONDS`: a minute to a leap year.
pub const PAYMENT_TTL_RANGE: std::ops::RangeInclusive<i64> = 60..=366 * 24 * 60 * 60;

/// Checks a payment lifetime setting, naming it in the error.
pub fn check_payment_ttl(seconds: i64) -> Result<(), String> {
    if PAYMENT_TTL_RANGE.contains(&seconds) {
        Ok(())
    } else {
        Err(format!(
            "PAYMENT_TTL_SECONDS must be between {} and {} (366 days)",
            PAYMENT_TTL_RANGE.start(),
            PAYMENT_TTL_RANGE.end()
        ))
    }
}

/// Longest order id, in characters (`VARCHAR(100)`).
pub const MAX_ORDER_ID_CHARS: usize = 100;

/// The merchant's order reference: trimmed, non-empty, at most 100 characters.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OrderId(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OrderIdError {
    #[error("order_id must be a non-empty string")]
    Empty,
    #[error("order_id cannot exceed 100 characters")]
    TooLong,
    #[error("order_id cannot contain control characters")]
    ControlCharacter,
}

impl OrderId {
    /// Trims surrounding whitespace; the length limit applies to the text as
    /// sent, as the original service did.
    pub fn parse(text: &str) -> Result<Self, OrderIdError> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(OrderIdError::Empty);
        }
        if text.chars().count() > MAX_ORDER_ID_CHARS {
            return Err(OrderIdError::TooLong);
        }
        // PostgreSQL text cannot hold NUL, and other control characters in a
        // reference only cause trouble in logs and receivers.
        if trimmed.chars().any(char::is_control) {
            return Err(OrderIdError::ControlCharacter);
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OrderId({:?})", self.0)
    }
}

/// A TRON transaction id: 32 bytes as 64 lowercase hex digits.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxId(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a transaction id is 64 hex digits")]
pub struct TxIdError;

impl TxId {
    pub fn parse(text: &str) -> Result<Self, TxIdError> {
        let text = text.strip_prefix("0x").unwrap_or(text);
        if text.len() != 64 || !text.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return Err(TxIdError);
        }
        Ok(Self(text.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Serialize for TxId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TxId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for TxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TxId({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amount::parse_decimal;

    fn check(text: &str) -> Result<String, ExpectedAmountError> {
        expected_amount(&parse_decimal(text).unwrap()).map(|amount| amount.to_string())
    }

    #[test]
    fn expected_amount_bounds_are_inclusive_and_exact() {
        assert_eq!(check("0.01"), Ok("0.01".into()));
        assert_eq!(check("1000000"), Ok("1000000".into()));
        assert_eq!(check("999999.999999"), Ok("999999.999999".into()));
        assert_eq!(check("12.34"), Ok("12.34".into()));
        assert_eq!(check("0.009999"), Err(ExpectedAmountError::TooSmall));
        assert_eq!(check("1000000.000001"), Err(ExpectedAmountError::TooLarge));
    }

    #[test]
    fn expected_amount_errors_come_in_the_original_order() {
        assert_eq!(check("0"), Err(ExpectedAmountError::NotPositive));
        assert_eq!(check("-5"), Err(ExpectedAmountError::NotPositive));
        assert_eq!(check("-0.0000001"), Err(ExpectedAmountError::NotPositive));
        // Below the minimum wins over too many decimals, as in the original.
        assert_eq!(check("0.0000001"), Err(ExpectedAmountError::TooSmall));
        assert_eq!(check("1e-999999"), Err(ExpectedAmountError::TooSmall));
        assert_eq!(check("1e999999"), Err(ExpectedAmountError::TooLarge));
        assert_eq!(check("12.3456789"), Err(ExpectedAmountError::TooPrecise));
        assert_eq!(check("12.3400000"), Ok("12.34".into()));
    }

    #[test]
    fn order_ids_are_trimmed_and_bounded() {
        assert_eq!(OrderId::parse("  order-42 ").unwrap().as_str(), "order-42");
        assert_eq!(OrderId::parse(""), Err(OrderIdError::Empty));
        assert_eq!(OrderId::parse(" \t "), Err(OrderIdError::Empty));
        assert!(OrderId::parse(&"x".repeat(100)).is_ok());
        assert_eq!(OrderId::parse(&"x".repeat(101)), Err(OrderIdError::TooLong));
        // Characters, not bytes: 100 Cyrillic letters are 200 bytes.
        assert!(OrderId::parse(&"ж".repeat(100)).is_ok());
        assert_eq!(OrderId::parse("a\0b"), Err(OrderIdError::ControlCharacter));
    }

    #[test]
    fn statuses_round_trip_through_text() {
        for status in PaymentStatus::ALL {
            assert_eq!(status.as_str().parse::<PaymentStatus>().unwrap(), status);
            assert_eq!(status.as_str().to_uppercase().parse::<PaymentStatus>().unwrap(), status);
        }
        assert!("paid".parse::<PaymentStatus>().is_err());
        assert!(!PaymentStatus::Pending.is_final());
        for next in [PaymentStatus::Completed, PaymentStatus::Expired, PaymentStatus::Failed] {
            assert!(PaymentStatus::Pending.can_become(next));
            for from in [PaymentStatus::Completed, PaymentStatus::Expired, PaymentStatus::Failed] {
                assert!(!from.can_become(next), "{from} must never become {next}");
                assert!(!from.can_become(PaymentStatus::Pending));
            }
        }
        assert!(!PaymentStatus::Pending.can_become(PaymentStatus::Pending));
        assert!(PaymentStatus::Expired.is_final());
        assert_eq!(
            serde_json::to_string(&PaymentStatus::Completed).unwrap(),
            "\"completed\""
        );
    }

    #[test]
    fn transaction_ids_are_normalised() {
        let id = "0AF79242191C6728B79E858A36A4B5C65E4E52B9FCEE4DC5AF30EAC57B6D0953";
        assert_eq!(TxId::parse(id).unwrap().as_str(), id.to_ascii_lowercase());
        assert!(TxId::parse("abc").is_err());
        assert!(TxId::parse(&"g".repeat(64)).is_err());
    }
}
