//! Reading `POST /create_payment` bodies.
//!
//! The checks run in the original service's order and answer with its texts.
//! Two of its quirks are kept on purpose, because integrations may rely on
//! them: a field counts as missing when it is absent *or falsy* (`null`, `""`,
//! `0`, `false`, `[]`, `{}`), and `{}` is "Invalid JSON or empty request
//! body". Amounts are read from the JSON text digit by digit; a decimal string
//! such as `"12.34"` is accepted as well (the original refused it, so no
//! working integration changes behaviour).

use std::collections::HashMap;

use bigdecimal::{BigDecimal, Zero};
use serde_json::value::RawValue;
use tronpay_domain::amount::parse_decimal;
use tronpay_domain::{CallbackUrl, OrderId, TronAddress, UsdtAmount, expected_amount};

use crate::error::{ApiError, text};

/// A valid create-payment request.
#[derive(Debug, Clone)]
pub struct CreatePaymentRequest {
    pub wallet_address: TronAddress,
    pub expected_amount: UsdtAmount,
    pub callback_url: CallbackUrl,
    pub order_id: OrderId,
}

const FIELDS: [&str; 4] = ["wallet_address", "expected_amount_usdt", "callback_url", "order_id"];

impl CreatePaymentRequest {
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let fields: HashMap<String, Box<RawValue>> =
            serde_json::from_slice(body).map_err(|_| ApiError::bad_request(text::INVALID_JSON))?;
        if fields.is_empty() {
            return Err(ApiError::bad_request(text::INVALID_JSON));
        }
        let field = |name: &str| fields.get(name).map(|raw| raw.get()).filter(|raw| !is_falsy(raw));
        let [Some(wallet_address), Some(amount), Some(callback_url), Some(order_id)] = FIELDS.map(field) else {
            return Err(ApiError::bad_request(text::MISSING_FIELDS));
        };

        let amount = read_amount(amount)
            .ok_or(tronpay_domain::ExpectedAmountError::NotPositive)
            .and_then(|value| expected_amount(&value))
            .map_err(|error| ApiError::bad_request(error.to_string()))?;
        let wallet_address = as_string(wallet_address)
            .and_then(|text| TronAddress::parse(&text).ok())
            .ok_or(ApiError::bad_request(text::INVALID_ADDRESS))?;
        let callback_url = as_string(callback_url)
            .and_then(|text| CallbackUrl::parse(&text).ok())
            .ok_or(ApiError::bad_request(text::INVALID_CALLBACK_URL))?;
        let order_id = as_string(order_id)
            .ok_or(tronpay_domain::OrderIdError::Empty)
            .and_then(|text| OrderId::parse(&text))
            .map_err(|error| ApiError::bad_request(error.to_string()))?;

        Ok(Self {
            wallet_address,
            expected_amount: amount,
            callback_url,
            order_id,
        })
    }
}

/// The exact value of a JSON number, or of a string holding one.
fn read_amount(raw: &str) -> Option<BigDecimal> {
    match raw.as_bytes().first()? {
        b'"' => parse_decimal(&as_string(raw)?).ok(),
        b'-' | b'0'..=b'9' => parse_decimal(raw).ok(),
        _ => None,
    }
}

/// The value of a JSON string (escapes decoded), or `None` for other types.
fn as_string(raw: &str) -> Option<String> {
    serde_json::from_str::<String>(raw).ok()
}

/// Python's truthiness of a JSON value, as the original's `all([...])` saw it.
fn is_falsy(raw: &str) -> bool {
    match raw.as_bytes().first() {
        Some(b'n') => true,           // null
        Some(b'f') => true,           // false
        Some(b'"') => raw.len() == 2, // ""
        Some(b'[' | b'{') => raw[1..raw.len() - 1].trim().is_empty(),
        Some(b'-' | b'0'..=b'9') => parse_decimal(raw).is_ok_and(|value| value.is_zero()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADDRESS: &str = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t";

    fn body(amount: &str) -> String {
        format!(
            r#"{{"wallet_address":"{ADDRESS}","expected_amount_usdt":{amount},"callback_url":"https://shop.example.com/hook","order_id":"o-1"}}"#
        )
    }

    fn error_of(body: &str) -> String {
        match CreatePaymentRequest::parse(body.as_bytes()) {
            Err(ApiError::BadRequest(text)) => text.into_owned(),
            other => panic!("expected a 400 for {body}, got {other:?}"),
        }
    }

    #[test]
    fn reads_amounts_from_their_text() {
        for (raw, units) in [
            ("12.34", 12_340_000),
            ("0.01", 10_000),
            ("999999.999999", 999_999_999_999),
            ("1e6", 1_000_000_000_000),
            (r#""12.34""#, 12_340_000),
        ] {
            let request = CreatePaymentRequest::parse(body(raw).as_bytes()).unwrap();
            assert_eq!(request.expected_amount.base_units(), units, "{raw}");
        }
    }

    #[test]
    fn falsy_fields_count_as_missing_like_the_original() {
        for falsy in ["null", "0", "0.0", "false", r#""""#, "[]", "{ }"] {
            assert_eq!(error_of(&body(falsy)), text::MISSING_FIELDS, "{falsy}");
        }
        assert_eq!(error_of(r#"{"wallet_address":"x"}"#), text::MISSING_FIELDS);
    }

    #[test]
    fn what_is_not_an_object_is_invalid_json() {
        for bad in ["", "{}", "[]", "[1]", "42", "\"text\"", "{\"a\":", "nul"] {
            assert_eq!(error_of(bad), text::INVALID_JSON, "{bad:?}");
        }
    }

    #[test]
    fn amounts_that_are_not_positive_numbers() {
        for bad in ["-5", "true", r#""abc""#, r#""1e""#, "[1]", r#"{"a":1}"#] {
            assert_eq!(
                error_of(&body(bad)),
                "expected_amount_usdt must be a positive number",
                "{bad}"
            );
        }
        assert_eq!(
            error_of(&body("12.3456789")),
            "expected_amount_usdt cannot have more than 6 decimal places"
        );
    }

    #[test]
    fn non_string_fields_get_their_field_error() {
        let request = |address: &str, url: &str, order: &str| {
            format!(
                r#"{{"wallet_address":{address},"expected_amount_usdt":5,"callback_url":{url},"order_id":{order}}}"#
            )
        };
        let url = r#""https://shop.example.com/h""#;
        let address = format!("\"{ADDRESS}\"");
        assert_eq!(error_of(&request("123", url, r#""o""#)), text::INVALID_ADDRESS);
        assert_eq!(
            error_of(&request(&address, "123", r#""o""#)),
            text::INVALID_CALLBACK_URL
        );
        assert_eq!(
            error_of(&request(&address, url, "42")),
            "order_id must be a non-empty string"
        );
        assert_eq!(
            error_of(&request(&address, url, r#""   ""#)),
            "order_id must be a non-empty string"
        );
    }
}
