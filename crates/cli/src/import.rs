//! `tronpay db import`: loads an export written by `tronpay db export` or by
//! the original service's `db_manager.py export`.
//!
//! The file is read as a stream (a payment at a time) on a blocking thread
//! and inserted in batches; a payment whose id exists already is skipped, so
//! running the same import twice changes nothing. Amounts and times are read
//! from their JSON text, never through a float.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use anyhow::Context;
use bigdecimal::BigDecimal;
use chrono::NaiveDateTime;
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use tronpay_db::models::{DbStatus, PaymentRow};
use tronpay_db::{AsyncPgConnection, payments};
use tronpay_domain::amount::parse_decimal;
use tronpay_domain::{CallbackUrl, OrderId, PaymentId, PaymentStatus, TronAddress, UsdtAmount};

const BATCH: usize = 500;

/// What the reader thread reports at the end.
#[derive(Debug, Default)]
struct ReadSummary {
    declared_total: Option<u64>,
    read: u64,
    invalid: Vec<String>,
    bad_checksum: Vec<String>,
}

pub async fn run(mut conn: AsyncPgConnection, path: &Path, ttl_seconds: i64) -> anyhow::Result<()> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    println!("Importing payments from {}...", path.display());
    let (batches, mut incoming) = mpsc::channel::<Vec<PaymentRow>>(2);
    let source = path.display().to_string();
    let reader = tokio::task::spawn_blocking(move || read_export(BufReader::new(file), ttl_seconds, &batches));

    let mut inserted = 0usize;
    let mut offered = 0usize;
    while let Some(batch) = incoming.recv().await {
        offered += batch.len();
        inserted += payments::import(&mut conn, &batch, &source).await?.len();
    }
    let summary = reader.await.context("the import reader failed")??;

    let skipped = offered - inserted;
    println!("Imported {inserted} payments ({skipped} already present or conflicting with a pending order, skipped)");
    if let Some(declared) = summary.declared_total
        && declared != summary.read
    {
        println!(
            "warning: the file declares total_payments = {declared} but holds {} payments",
            summary.read
        );
    }
    if !summary.bad_checksum.is_empty() {
        println!(
            "warning: {} payments have a wallet address whose Base58Check checksum is wrong; they can never be paid: {}",
            summary.bad_checksum.len(),
            summary.bad_checksum.join(", ")
        );
    }
    if !summary.invalid.is_empty() {
        for problem in &summary.invalid {
            eprintln!("  not imported: {problem}");
        }
        anyhow::bail!(
            "{} payments in {} could not be imported (listed above)",
            summary.invalid.len(),
            path.display()
        );
    }
    Ok(())
}

/// Reads the export on the calling (blocking) thread, sending batches.
fn read_export(
    reader: impl std::io::Read,
    ttl_seconds: i64,
    batches: &mpsc::Sender<Vec<PaymentRow>>,
) -> anyhow::Result<ReadSummary> {
    let mut deserializer = serde_json::Deserializer::from_reader(reader);
    let summary = serde::Deserializer::deserialize_map(&mut deserializer, ExportVisitor { batches, ttl_seconds })
        .context("the file is not a payments export (expected a JSON object with a \"payments\" array)")?;
    deserializer.end().context("unexpected data after the export object")?;
    Ok(summary)
}

struct ExportVisitor<'a> {
    batches: &'a mpsc::Sender<Vec<PaymentRow>>,
    ttl_seconds: i64,
}

impl<'de> Visitor<'de> for ExportVisitor<'_> {
    type Value = ReadSummary;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an export object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ReadSummary, A::Error> {
        let mut summary = ReadSummary::default();
        let mut saw_payments = false;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "total_payments" => summary.declared_total = map.next_value::<Option<u64>>()?,
                "payments" => {
                    saw_payments = true;
                    map.next_value_seed(PaymentsSeed {
                        visitor: &self,
                        summary: &mut summary,
                    })?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if !saw_payments {
            return Err(serde::de::Error::missing_field("payments"));
        }
        Ok(summary)
    }
}

struct PaymentsSeed<'v, 'a> {
    visitor: &'v ExportVisitor<'a>,
    summary: &'v mut ReadSummary,
}

impl<'de> DeserializeSeed<'de> for PaymentsSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for PaymentsSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of payments")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut batch = Vec::with_capacity(BATCH);
        while let Some(fields) = seq.next_element::<HashMap<String, Box<RawValue>>>()? {
            let index = self.summary.read;
            self.summary.read += 1;
            match to_row(&fields, self.visitor.ttl_seconds) {
                Ok(row) => {
                    if TronAddress::parse(&row.wallet_address).is_err() {
                        self.summary.bad_checksum.push(row.id.to_string());
                    }
                    batch.push(row);
                }
                Err(problem) => {
                    let id = fields
                        .get("id")
                        .and_then(|raw| serde_json::from_str::<String>(raw.get()).ok());
                    let id = id.map_or_else(|| "?".to_owned(), |id| format!("{id:?}"));
                    self.summary
                        .invalid
                        .push(format!("payments[{index}] (id {id}): {problem}"));
                }
            }
            if batch.len() == BATCH {
                send(self.visitor.batches, std::mem::take(&mut batch))?;
            }
        }
        if !batch.is_empty() {
            send(self.visitor.batches, batch)?;
        }
        Ok(())
    }
}

fn send<E: serde::de::Error>(batches: &mpsc::Sender<Vec<PaymentRow>>, batch: Vec<PaymentRow>) -> Result<(), E> {
    batches
        .blocking_send(batch)
        .map_err(|_| E::custom("the database side of the import stopped"))
}

/// Turns one exported payment into a row, or says what is wrong with it.
fn to_row(fields: &HashMap<String, Box<RawValue>>, ttl_seconds: i64) -> Result<PaymentRow, String> {
    let raw = |name: &str| {
        fields
            .get(name)
            .map(|value| value.get())
            .filter(|value| *value != "null")
    };
    // Every text is checked for control characters: PostgreSQL refuses NUL,
    // and one refused row must not fail the batch it travels in.
    let string = |name: &str| -> Result<Option<String>, String> {
        raw(name)
            .map(|value| match serde_json::from_str::<String>(value) {
                Ok(text) if text.chars().any(char::is_control) => Err(format!("{name} contains control characters")),
                Ok(text) => Ok(text),
                Err(_) => Err(format!("{name} is not a string")),
            })
            .transpose()
    };
    let required = |name: &str| string(name)?.ok_or_else(|| format!("{name} is missing"));
    let amount = |name: &str| -> Result<Option<UsdtAmount>, String> {
        raw(name)
            .map(|value| {
                let text = serde_json::from_str::<String>(value).unwrap_or_else(|_| value.to_owned());
                UsdtAmount::parse(&text).map_err(|error| format!("{name} {text}: {error}"))
            })
            .transpose()
    };
    let time = |name: &str| {
        raw(name)
            .map(|value| read_time(value).map_err(|error| format!("{name}: {error}")))
            .transpose()
    };
    let integer = |name: &str| -> Result<Option<i64>, String> {
        raw(name)
            .map(|value| value.parse::<i64>().map_err(|_| format!("{name} is not an integer")))
            .transpose()
    };

    let id = PaymentId::parse(&required("id")?).map_err(|_| "id must be 1 to 36 printable characters".to_owned())?;
    let status = required("status")?
        .parse::<PaymentStatus>()
        .map_err(|error| error.to_string())?;
    let wallet_address = required("wallet_address")?;
    if wallet_address.chars().count() > 34 {
        return Err("wallet_address is longer than 34 characters".into());
    }
    // A pending payment to an address that fails its checksum could never be
    // paid; a finished one is history and is kept (with a warning).
    if status == PaymentStatus::Pending && TronAddress::parse(&wallet_address).is_err() {
        return Err(format!(
            "wallet_address {wallet_address} is not a valid TRON address, so this pending payment could never be paid"
        ));
    }
    let order_id = OrderId::parse(&required("order_id")?).map_err(|error| error.to_string())?;
    let expected = amount("expected_amount_usdt")?.ok_or("expected_amount_usdt is missing")?;
    if expected == UsdtAmount::ZERO {
        return Err("expected_amount_usdt must be positive".into());
    }
    let transaction_hash = string("transaction_hash")?;
    if transaction_hash.as_ref().is_some_and(|hash| hash.len() > 64) {
        return Err("transaction_hash is longer than 64 characters".into());
    }
    let created_at = time("created_at")?.ok_or("created_at is missing")?;
    let callback_url = required("callback_url")
        .map_err(|_| "callback_url is missing (an export without internal fields cannot be imported)".to_owned())?;
    CallbackUrl::parse(&callback_url).map_err(|error| format!("callback_url {callback_url:?}: {error}"))?;
    let expires_at = match time("expires_at")? {
        Some(expires_at) => expires_at,
        None => chrono::TimeDelta::try_seconds(ttl_seconds)
            .and_then(|ttl| created_at.checked_add_signed(ttl))
            .ok_or("created_at is out of range")?,
    };
    let callback_attempts = integer("callback_attempts")?.unwrap_or(0);
    let callback_attempts = i32::try_from(callback_attempts)
        .ok()
        .filter(|attempts| *attempts >= 0)
        .ok_or("callback_attempts must be a non-negative 32-bit integer")?;
    let notify_events = match raw("notify_events") {
        None => Vec::new(),
        Some(value) => serde_json::from_str::<Vec<String>>(value)
            .ok()
            .filter(|events| {
                events.iter().all(|event| {
                    tronpay_domain::events::WebhookEvent::parse(event)
                        .is_some_and(|event| tronpay_domain::events::WebhookEvent::SUBSCRIBABLE.contains(&event))
                })
            })
            .ok_or("notify_events is not a list of webhook event names")?,
    };
    let callback_success = match raw("callback_success") {
        None => false,
        Some("true") => true,
        Some("false") => false,
        Some(_) => return Err("callback_success is not true or false".into()),
    };

    Ok(PaymentRow {
        id,
        wallet_address,
        expected_amount_usdt: expected.to_decimal(),
        callback_url,
        order_id: order_id.as_str().to_owned(),
        status: DbStatus(status),
        transaction_hash,
        received_amount_usdt: amount("received_amount_usdt")?.map(UsdtAmount::to_decimal),
        created_at,
        completed_at: time("completed_at")?,
        last_checked_timestamp: integer("last_checked_timestamp")?
            .unwrap_or_else(|| created_at.and_utc().timestamp_millis()),
        callback_attempts,
        last_callback_attempt: time("last_callback_attempt")?,
        callback_success,
        expires_at,
        notify_events,
        api_version: match integer("api_version")? {
            None => 0,
            Some(version @ 0..=1) => i16::try_from(version).unwrap_or(0),
            Some(_) => return Err("api_version must be 0 (the original API) or 1 (v1)".into()),
        },
        redirect_url: string("redirect_url")?,
        metadata_json: match raw("metadata") {
            None => None,
            Some(value) if value.trim_start().starts_with('{') => Some(value.to_owned()),
            Some(_) => return Err("metadata must be a JSON object".into()),
        },
        checkout_url: string("checkout_url")?,
        amount_to_pay: amount("amount_to_pay")?.map(UsdtAmount::to_decimal),
    })
}

/// A time as exported: epoch seconds (a number, rounded to microseconds) or
/// an ISO 8601 text in UTC (as Python's `default=str` would write it).
fn read_time(raw: &str) -> Result<NaiveDateTime, String> {
    if raw.starts_with('"') {
        let text: String = serde_json::from_str(raw).map_err(|error| error.to_string())?;
        let text = text.trim_end_matches('Z').replace(' ', "T");
        return NaiveDateTime::parse_from_str(&text, "%Y-%m-%dT%H:%M:%S%.f")
            .map_err(|_| format!("{text:?} is not an ISO 8601 time"));
    }
    let seconds = parse_decimal(raw).map_err(|_| format!("{raw} is not a number of seconds"))?;
    let micros = (seconds * BigDecimal::from(1_000_000))
        .with_scale_round(0, bigdecimal::RoundingMode::HalfEven)
        .to_string()
        .parse::<i64>()
        .map_err(|_| format!("{raw} is out of range"))?;
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|time| time.naive_utc())
        .ok_or_else(|| format!("{raw} is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(json: &str) -> HashMap<String, Box<RawValue>> {
        serde_json::from_str(json).unwrap()
    }

    /// A payment exactly as the original `db_manager.py export` writes it.
    const ORIGINAL: &str = r#"{
        "id": "0b6f7a6e-4a53-4a52-9a0e-1f7c1d2c6b11",
        "wallet_address": "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t",
        "expected_amount_usdt": 999999.999999,
        "order_id": "order-1",
        "status": "completed",
        "transaction_hash": "0af79242191c6728b79e858a36a4b5c65e4e52b9fcee4dc5af30eac57b6d0953",
        "received_amount_usdt": 999999.999999,
        "created_at": 1732000000.123456,
        "completed_at": 1732000100.5,
        "callback_url": "https://shop.example.com/hook",
        "last_checked_timestamp": 1732000100000,
        "callback_attempts": 1,
        "last_callback_attempt": 1732000100.6,
        "callback_success": true
    }"#;

    #[test]
    fn reads_the_original_format_exactly() {
        let row = to_row(&fields(ORIGINAL), 86_400).unwrap();
        assert_eq!(row.expected_amount_usdt.to_string(), "999999.999999");
        assert_eq!(row.received_amount_usdt.unwrap().to_string(), "999999.999999");
        assert_eq!(row.created_at.and_utc().timestamp_micros(), 1_732_000_000_123_456);
        assert_eq!(row.expires_at.and_utc().timestamp_micros(), 1_732_086_400_123_456);
        assert_eq!(row.status.0, PaymentStatus::Completed);
        assert!(row.callback_success);
    }

    #[test]
    fn says_what_is_wrong_with_a_row() {
        let without_url = ORIGINAL.replace(r#""callback_url": "https://shop.example.com/hook","#, "");
        assert!(to_row(&fields(&without_url), 60).unwrap_err().contains("callback_url"));
        let too_precise = ORIGINAL.replace(
            "\"expected_amount_usdt\": 999999.999999",
            "\"expected_amount_usdt\": 1.1234567",
        );
        assert!(
            to_row(&fields(&too_precise), 60)
                .unwrap_err()
                .contains("expected_amount_usdt")
        );
        let bad_status = ORIGINAL.replace("\"completed\"", "\"paid\"");
        assert!(to_row(&fields(&bad_status), 60).unwrap_err().contains("paid"));
        let nul = ORIGINAL.replace("\"order-1\"", "\"order\\u0000-1\"");
        assert!(
            to_row(&fields(&nul), 60)
                .unwrap_err()
                .contains("order_id contains control characters")
        );
        let bad_url = ORIGINAL.replace("https://shop.example.com/hook", "not a url");
        assert!(to_row(&fields(&bad_url), 60).unwrap_err().contains("callback_url"));
        let negative = ORIGINAL.replace("\"callback_attempts\": 1", "\"callback_attempts\": -5");
        assert!(
            to_row(&fields(&negative), 60)
                .unwrap_err()
                .contains("callback_attempts")
        );
        let empty_id = ORIGINAL.replace("0b6f7a6e-4a53-4a52-9a0e-1f7c1d2c6b11", "");
        assert!(to_row(&fields(&empty_id), 60).unwrap_err().contains("id must be"));
        let far_future = ORIGINAL.replace("1732000000.123456", "8210266876799");
        assert!(to_row(&fields(&far_future), 86_400).is_err());
    }

    #[test]
    fn a_pending_payment_needs_a_payable_address() {
        let typo = ORIGINAL.replace(
            "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t",
            "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6u",
        );
        assert!(
            to_row(&fields(&typo), 60).is_ok(),
            "a completed payment is history and is kept"
        );
        let pending = typo.replace("\"completed\"", "\"pending\"");
        assert!(
            to_row(&fields(&pending), 60)
                .unwrap_err()
                .contains("could never be paid")
        );
    }

    #[test]
    fn times_may_be_iso_text() {
        assert_eq!(
            read_time("\"2025-01-02T03:04:05.123456\"")
                .unwrap()
                .and_utc()
                .timestamp_micros(),
            1_735_787_045_123_456
        );
        assert_eq!(
            read_time("\"2025-01-02 03:04:05\"").unwrap().and_utc().timestamp(),
            1_735_787_045
        );
        assert!(read_time("\"yesterday\"").is_err());
    }
}
