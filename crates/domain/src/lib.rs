//! Shared types and rules of tronpay.
//!
//! Every type here is built only through `parse`/`TryFrom`: holding a
//! [`TronAddress`], [`UsdtAmount`], [`OrderId`] or [`CallbackUrl`] means the value
//! was checked. Services depend on this crate; it depends on no service.

pub mod address;
pub mod amount;
pub mod api_key;
pub mod callback;
pub mod events;
pub mod ids;
pub mod matching;
pub mod operator;
pub mod payment;
pub mod retry;
pub mod signing;
pub mod states;
pub mod transfer;
pub mod wire;
pub mod xpub;

pub use address::{AddressError, TronAddress};
pub use amount::{AmountError, JsonAmount, UsdtAmount};
pub use api_key::{ApiKeyText, Scope};
pub use callback::{AddressPolicy, CallbackUrl, CallbackUrlError, NonPublicReason, classify_ip};
pub use ids::{DeliveryId, PaymentId, PaymentIdError};
pub use payment::{
    ExpectedAmountError, MAX_EXPECTED_AMOUNT, MIN_EXPECTED_AMOUNT, OrderId, OrderIdError, PAYMENT_TTL_RANGE,
    PaymentStatus, TxId, TxIdError, check_payment_ttl, expected_amount,
};
pub use retry::parse_retry_after;
pub use states::{AddressMode, AttemptOutcome, DeliveryStatus, LogEvent, MatchKind, Named, TransferState, UnknownName};
pub use transfer::{Transfer, TransferId};
