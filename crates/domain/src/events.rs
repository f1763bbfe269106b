//! Messages the services hand each other over RabbitMQ, and the webhook
//! event types. Amounts travel as decimal strings, addresses in Base58.

use serde::{Deserialize, Serialize};

use crate::{TronAddress, TxId, UsdtAmount};

/// Routing key of [`PaymentDetected`] (chain-watcher → api).
pub const PAYMENT_DETECTED: &str = "payment.detected";
/// Routing key of [`CallbackDue`] (api → webhook-dispatcher).
pub const CALLBACK_DUE: &str = "callback.due";

/// What the chain says about a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransferState {
    /// Seen in a block that is not final yet.
    Detected,
    /// In a final block: it counts.
    Confirmed,
    /// Seen at the tip, then missing from the final block at its height.
    Dropped,
}

/// A USDT transfer to a watched address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentDetected {
    pub txid: TxId,
    /// With `txid`, the transfer's identity.
    pub log_index: u32,
    pub from: TronAddress,
    pub to: TronAddress,
    pub amount: UsdtAmount,
    pub block_number: u64,
    /// Block time, milliseconds since the Unix epoch.
    pub block_time_ms: i64,
    pub state: TransferState,
}

/// A webhook notification that must be delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallbackDue {
    pub delivery_id: String,
    pub payment_id: String,
    pub event_type: WebhookEvent,
}

/// Webhook event types. Payments created through the original
/// `/create_payment` receive `payment.completed` only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WebhookEvent {
    #[serde(rename = "payment.completed")]
    Completed,
    #[serde(rename = "payment.expired")]
    Expired,
    #[serde(rename = "payment.detected")]
    Detected,
    #[serde(rename = "payment.late")]
    Late,
}

impl WebhookEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "payment.completed",
            Self::Expired => "payment.expired",
            Self::Detected => "payment.detected",
            Self::Late => "payment.late",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Completed, Self::Expired, Self::Detected, Self::Late]
            .into_iter()
            .find(|event| event.as_str() == text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payment_detected_round_trips_with_exact_amounts() {
        let event = PaymentDetected {
            txid: TxId::parse(&"ab".repeat(32)).unwrap(),
            log_index: 2,
            from: TronAddress::parse("TWpZXLfsvVuQuJZLkdWNY7XY2teePqPpz7").unwrap(),
            to: TronAddress::parse("TBA6CypYJizwA9XdC7Ubgc5F1bxrQ7SqPt").unwrap(),
            amount: UsdtAmount::parse("532.079999").unwrap(),
            block_number: 30864600,
            block_time_ms: 1623056091000,
            state: TransferState::Confirmed,
        };
        let json = serde_json::to_string(&event).unwrap();
        assert!(json.contains(r#""amount":"532.079999""#), "{json}");
        assert!(json.contains(r#""state":"confirmed""#), "{json}");
        assert_eq!(serde_json::from_str::<PaymentDetected>(&json).unwrap(), event);
    }

    #[test]
    fn webhook_event_names() {
        for event in [
            WebhookEvent::Completed,
            WebhookEvent::Expired,
            WebhookEvent::Detected,
            WebhookEvent::Late,
        ] {
            assert_eq!(WebhookEvent::parse(event.as_str()), Some(event));
            assert_eq!(
                serde_json::to_string(&event).unwrap(),
                format!("\"{}\"", event.as_str())
            );
        }
        assert_eq!(WebhookEvent::parse("payment.paid"), None);
    }
}
