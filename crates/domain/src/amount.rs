//! Exact USDT amounts.
//!
//! USDT on TRON has 6 decimals. An amount is held as an integer count of base
//! units (1 USDT = 1,000,000); text is parsed digit by digit, never through a
//! binary float, and more than 6 decimals is an error rather than a rounding.

use std::fmt;
use std::str::FromStr;

use bigdecimal::num_bigint::BigInt;
use bigdecimal::{BigDecimal, Signed};

/// Decimals of the USDT TRC-20 token.
pub const USDT_DECIMALS: u32 = 6;
const UNITS_PER_USDT: i64 = 1_000_000;
/// The largest value a `NUMERIC(18,6)` column holds, in base units.
const MAX_UNITS: i64 = 999_999_999_999_999_999;

/// A non-negative USDT amount with at most 6 decimals.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct UsdtAmount(i64);

/// Why a value is not a USDT amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("not a decimal number")]
    NotANumber,
    #[error("an amount cannot be negative")]
    Negative,
    #[error("USDT has 6 decimal places; more are not accepted")]
    TooPrecise,
    #[error("the amount does not fit NUMERIC(18,6)")]
    OutOfRange,
}

impl UsdtAmount {
    pub const ZERO: Self = Self(0);

    /// For constants; `units` must not exceed `NUMERIC(18,6)`.
    pub(crate) const fn from_base_units_const(units: i64) -> Self {
        Self(units)
    }

    /// An amount of `units` millionths of a USDT (the token's base unit).
    pub fn from_base_units(units: u64) -> Result<Self, AmountError> {
        i64::try_from(units)
            .ok()
            .filter(|units| *units <= MAX_UNITS)
            .map(Self)
            .ok_or(AmountError::OutOfRange)
    }

    /// Base units (millionths of a USDT).
    pub fn base_units(self) -> u64 {
        // The invariant keeps the value non-negative.
        self.0.unsigned_abs()
    }

    /// Parses a decimal text such as `12.34`, `1e2` or `0.000001`.
    pub fn parse(text: &str) -> Result<Self, AmountError> {
        Self::from_decimal(&parse_decimal(text)?)
    }

    /// Converts an exact decimal, refusing more than 6 decimals.
    pub fn from_decimal(value: &BigDecimal) -> Result<Self, AmountError> {
        if value.sign() == bigdecimal::num_bigint::Sign::Minus {
            return Err(AmountError::Negative);
        }
        let (digits, scale) = value.normalized().into_bigint_and_exponent();
        if scale > i64::from(USDT_DECIMALS) {
            return Err(AmountError::TooPrecise);
        }
        // Bound the size before scaling, so a huge value cannot grow.
        if digits.bits() > 128 || scale < -18 {
            return Err(AmountError::OutOfRange);
        }
        let shift = u32::try_from(i64::from(USDT_DECIMALS) - scale).map_err(|_| AmountError::OutOfRange)?;
        let units = digits * BigInt::from(10u8).pow(shift);
        i64::try_from(units)
            .ok()
            .filter(|units| *units <= MAX_UNITS)
            .map(Self)
            .ok_or(AmountError::OutOfRange)
    }

    /// The exact decimal value, scale 6 (as stored in `NUMERIC(18,6)`).
    pub fn to_decimal(self) -> BigDecimal {
        BigDecimal::new(BigInt::from(self.0), i64::from(USDT_DECIMALS))
    }

    pub fn checked_add(self, other: Self) -> Option<Self> {
        self.0.checked_add(other.0).filter(|sum| *sum <= MAX_UNITS).map(Self)
    }

    /// `self - other`, or `None` when `other` is larger.
    pub fn checked_sub(self, other: Self) -> Option<Self> {
        self.0.checked_sub(other.0).filter(|rest| *rest >= 0).map(Self)
    }

    /// The value as a JSON number text, the way the original Python service
    /// printed its floats (`12.34`, `1000000.0`) but exact.
    pub fn to_json_number(self) -> String {
        let text = self.to_string();
        if text.contains('.') { text } else { text + ".0" }
    }
}

impl fmt::Display for UsdtAmount {
    /// The shortest exact text: `12.34`, `0.000001`, `1000000`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.0 / UNITS_PER_USDT;
        let fraction = self.0 % UNITS_PER_USDT;
        if fraction == 0 {
            return write!(f, "{whole}");
        }
        let fraction = format!("{fraction:06}");
        write!(f, "{whole}.{}", fraction.trim_end_matches('0'))
    }
}

impl fmt::Debug for UsdtAmount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UsdtAmount({self})")
    }
}

impl FromStr for UsdtAmount {
    type Err = AmountError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl serde::Serialize for UsdtAmount {
    /// Amounts travel as decimal strings in tronpay's own messages so that no
    /// consumer ever reads them through a float.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for UsdtAmount {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Serializes an amount as a JSON *number* with its exact digits (`12.34`,
/// `1000000.0`), as the original API and webhook bodies carry amounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonAmount(pub UsdtAmount);

impl serde::Serialize for JsonAmount {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // A raw value keeps the digits: going through f64 would not.
        serde_json::value::RawValue::from_string(self.0.to_json_number())
            .map_err(serde::ser::Error::custom)?
            .serialize(serializer)
    }
}

/// Exponents beyond this are clamped: the value is then far outside any
/// range an amount is compared with, and clamping keeps a hostile `1e999999999`
/// from allocating a huge integer.
const EXPONENT_CLAMP: i64 = 64;

/// Parses the text of a JSON number (`-12.5`, `0.01`, `1E+3`) into an exact
/// decimal. Leading `+`, hex, `NaN` and `Infinity` are not numbers here.
pub fn parse_decimal(text: &str) -> Result<BigDecimal, AmountError> {
    let bytes = text.as_bytes();
    let mut position = 0;
    let negative = bytes.first() == Some(&b'-');
    if negative {
        position += 1;
    }
    let integer_start = position;
    while position < bytes.len() && bytes[position].is_ascii_digit() {
        position += 1;
    }
    let integer = &text[integer_start..position];
    let mut fraction = "";
    if bytes.get(position) == Some(&b'.') {
        position += 1;
        let fraction_start = position;
        while position < bytes.len() && bytes[position].is_ascii_digit() {
            position += 1;
        }
        fraction = &text[fraction_start..position];
        if fraction.is_empty() {
            return Err(AmountError::NotANumber);
        }
    }
    if integer.is_empty() {
        return Err(AmountError::NotANumber);
    }
    let mut exponent: i64 = 0;
    if matches!(bytes.get(position), Some(b'e' | b'E')) {
        position += 1;
        let exponent_negative = match bytes.get(position) {
            Some(b'-') => {
                position += 1;
                true
            }
            Some(b'+') => {
                position += 1;
                false
            }
            _ => false,
        };
        let exponent_start = position;
        while position < bytes.len() && bytes[position].is_ascii_digit() {
            // Saturate: anything past the clamp behaves the same.
            exponent = (exponent * 10 + i64::from(bytes[position] - b'0')).min(1_000_000);
            position += 1;
        }
        if position == exponent_start {
            return Err(AmountError::NotANumber);
        }
        if exponent_negative {
            exponent = -exponent;
        }
    }
    if position != bytes.len() {
        return Err(AmountError::NotANumber);
    }
    let digits = format!("{integer}{fraction}");
    let significant = digits.trim_start_matches('0');
    if significant.is_empty() {
        return Ok(BigDecimal::from(0));
    }
    let mut mantissa: BigInt = significant.parse().map_err(|_| AmountError::NotANumber)?;
    if negative {
        mantissa = -mantissa;
    }
    let fraction_len = i64::try_from(fraction.len()).map_err(|_| AmountError::NotANumber)?;
    let scale = fraction_len - exponent;
    let magnitude = i64::try_from(significant.len()).map_err(|_| AmountError::NotANumber)? - scale;
    // Clamp values that are astronomically large or small to a representative
    // with the same sign: comparisons with 0.01 or 1,000,000 stay correct and
    // a TooPrecise/OutOfRange verdict still comes out of `from_decimal`.
    if magnitude > EXPONENT_CLAMP {
        return Ok(BigDecimal::new(mantissa.signum(), -EXPONENT_CLAMP));
    }
    if magnitude < -EXPONENT_CLAMP {
        return Ok(BigDecimal::new(mantissa.signum(), EXPONENT_CLAMP));
    }
    Ok(BigDecimal::new(mantissa, scale))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amount(text: &str) -> UsdtAmount {
        UsdtAmount::parse(text).unwrap()
    }

    #[test]
    fn parses_exactly_without_floats() {
        assert_eq!(amount("12.34").base_units(), 12_340_000);
        assert_eq!(amount("0.01").base_units(), 10_000);
        assert_eq!(amount("0.000001").base_units(), 1);
        assert_eq!(amount("999999.999999").base_units(), 999_999_999_999);
        assert_eq!(amount("1000000").base_units(), 1_000_000_000_000);
        // 0.1 + 0.2 style values that floats get wrong.
        assert_eq!(amount("0.3").base_units(), 300_000);
        assert_eq!(amount("532.079999").base_units(), 532_079_999);
    }

    #[test]
    fn accepts_json_number_spellings() {
        assert_eq!(amount("1e2").base_units(), 100_000_000);
        assert_eq!(amount("1.5E+1").base_units(), 15_000_000);
        assert_eq!(amount("1234e-2").base_units(), 12_340_000);
        assert_eq!(amount("12.340000000").base_units(), 12_340_000);
        assert_eq!(amount("0").base_units(), 0);
        assert_eq!(amount("-0").base_units(), 0);
        assert_eq!(amount("00012.5").base_units(), 12_500_000);
    }

    #[test]
    fn rejects_more_than_six_decimals_instead_of_rounding() {
        assert_eq!(UsdtAmount::parse("0.0000001"), Err(AmountError::TooPrecise));
        assert_eq!(UsdtAmount::parse("12.3456789"), Err(AmountError::TooPrecise));
        assert_eq!(UsdtAmount::parse("1e-7"), Err(AmountError::TooPrecise));
        assert_eq!(UsdtAmount::parse("1e-999999999"), Err(AmountError::TooPrecise));
    }

    #[test]
    fn rejects_what_is_not_a_number() {
        for text in [
            "", "-", ".5", "5.", "abc", "1,5", "NaN", "Infinity", "0x10", "+1", "1e", "1e+", " 1", "1 ", "١٢",
        ] {
            assert_eq!(UsdtAmount::parse(text), Err(AmountError::NotANumber), "{text:?}");
        }
    }

    #[test]
    fn rejects_negative_and_oversized_values() {
        assert_eq!(UsdtAmount::parse("-1"), Err(AmountError::Negative));
        assert_eq!(UsdtAmount::parse("-1e999999"), Err(AmountError::Negative));
        assert_eq!(UsdtAmount::parse("1000000000000"), Err(AmountError::OutOfRange));
        assert_eq!(UsdtAmount::parse("1e999999999999"), Err(AmountError::OutOfRange));
        assert_eq!(amount("999999999999.999999").base_units(), 999_999_999_999_999_999);
    }

    #[test]
    fn displays_the_shortest_exact_text() {
        assert_eq!(amount("12.340").to_string(), "12.34");
        assert_eq!(amount("1000000").to_string(), "1000000");
        assert_eq!(amount("0.000001").to_string(), "0.000001");
        assert_eq!(amount("1000000").to_json_number(), "1000000.0");
        assert_eq!(amount("12.34").to_json_number(), "12.34");
        assert_eq!(UsdtAmount::ZERO.to_json_number(), "0.0");
    }

    #[test]
    fn converts_to_and_from_numeric_columns() {
        let value = amount("999999.999999");
        assert_eq!(value.to_decimal().to_string(), "999999.999999");
        assert_eq!(UsdtAmount::from_decimal(&value.to_decimal()).unwrap(), value);
        let stored: BigDecimal = "12.340000".parse().unwrap();
        assert_eq!(UsdtAmount::from_decimal(&stored).unwrap(), amount("12.34"));
    }

    #[test]
    fn arithmetic_is_checked() {
        assert_eq!(amount("1").checked_sub(amount("2")), None);
        assert_eq!(amount("2").checked_sub(amount("0.5")), Some(amount("1.5")));
        assert_eq!(amount("999999999999").checked_add(amount("1")), None);
        assert_eq!(UsdtAmount::from_base_units(u64::MAX), Err(AmountError::OutOfRange));
    }

    #[test]
    fn json_amounts_are_exact_numbers() {
        #[derive(serde::Serialize)]
        struct Body {
            amount: JsonAmount,
        }
        let body = Body {
            amount: JsonAmount(amount("999999.999999")),
        };
        assert_eq!(serde_json::to_string(&body).unwrap(), r#"{"amount":999999.999999}"#);
        let body = Body {
            amount: JsonAmount(amount("0.1")),
        };
        assert_eq!(serde_json::to_string(&body).unwrap(), r#"{"amount":0.1}"#);
    }

    #[test]
    fn serde_uses_decimal_strings() {
        let value = amount("12.34");
        assert_eq!(serde_json::to_string(&value).unwrap(), "\"12.34\"");
        assert_eq!(serde_json::from_str::<UsdtAmount>("\"12.34\"").unwrap(), value);
        assert!(serde_json::from_str::<UsdtAmount>("\"12.3456789\"").is_err());
    }
}
