//! Messages the services hand each other over RabbitMQ, and the webhook
//! event types. Amounts travel as decimal strings, addresses in Base58.

use serde::{Deserialize, Serialize};

use crate::{DeliveryId, PaymentId, Transfer};

/// Routing key of [`PaymentDetected`] (chain-watcher → api).
pub const PAYMENT_DETECTED: &str = "payment.detected";
/// Routing key of [`CallbackDue`] (api → webhook-dispatcher).
pub const CALLBACK_DUE: &str = "callback.due";

pub use crate::states::TransferState;

/// A USDT transfer to a watched address and what the chain says of it. On
/// the wire the transfer's fields are flat (`txid`, `log_index`, `from`,
/// `to`, `amount`, `block_number`, `block_time_ms`, `state`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentDetected {
    #[serde(flatten)]
    pub transfer: Transfer,
    pub state: TransferState,
}

/// A webhook notification that must be delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallbackDue {
    pub delivery_id: DeliveryId,
    pub payment_id: PaymentId,
    pub event_type: WebhookEvent,
}

crate::states::named_enum! {
    /// Webhook event types (`webhook_deliveries.event_type`, the `event`
    /// of a webhook body, `payments.notify_events`). Payments created
    /// through the original `/create_payment` receive `payment.completed`
    /// only.
    pub enum WebhookEvent ("webhook event") {
        Completed = "payment.completed",
        Expired = "payment.expired",
        Detected = "payment.detected",
        Late = "payment.late",
        /// Credited, still short of the amount (v1).
        PartiallyPaid = "payment.partially_paid",
        /// Cancelled by the merchant (v1).
        Cancelled = "payment.cancelled",
        /// A test webhook (`POST /v1/payments/{id}/test-webhook`); never
        /// subscribed to.
        Ping = "ping",
    }
}

impl WebhookEvent {
    /// The events a payment may ask for in `notify_events` (all but `ping`;
    /// completion is always sent).
    pub const SUBSCRIBABLE: [Self; 6] = [
        Self::Detected,
        Self::PartiallyPaid,
        Self::Completed,
        Self::Expired,
        Self::Cancelled,
        Self::Late,
    ];
}

impl WebhookEvent {
    /// The event named `text`, if any.
    pub fn parse(text: &str) -> Option<Self> {
        text.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payment_detected_round_trips_with_exact_amounts() {
        use crate::{TransferId, TronAddress, TxId, UsdtAmount};
        let event = PaymentDetected {
            transfer: Transfer {
                id: TransferId {
                    txid: TxId::parse(&"ab".repeat(32)).unwrap(),
                    log_index: 2,
                },
                from: TronAddress::parse("TWpZXLfsvVuQuJZLkdWNY7XY2teePqPpz7").unwrap(),
                to: TronAddress::parse("TBA6CypYJizwA9XdC7Ubgc5F1bxrQ7SqPt").unwrap(),
                amount: UsdtAmount::parse("532.079999").unwrap(),
                block_number: 30864600,
                block_time_ms: 1623056091000,
            },
            state: TransferState::Confirmed,
        };
        let json = serde_json::to_string(&event).unwrap();
        // The wire shape of issue 3's messages: flat fields.
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "txid": "ab".repeat(32), "log_index": 2, "from": "TWpZXLfsvVuQuJZLkdWNY7XY2teePqPpz7",
                "to": "TBA6CypYJizwA9XdC7Ubgc5F1bxrQ7SqPt", "amount": "532.079999", "block_number": 30864600,
                "block_time_ms": 1623056091000_i64, "state": "confirmed"
            })
        );
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
