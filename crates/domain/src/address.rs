//! TRON addresses.
//!
//! The text form is Base58Check: `0x41 ‖ 20 bytes ‖ first 4 bytes of
//! sha256(sha256(0x41 ‖ 20 bytes))`, 34 characters starting with `T`. The
//! canonical inner form is the 21 bytes `0x41 ‖ 20 bytes`; event logs carry
//! only the last 20 bytes (the EVM form).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Version byte of every mainnet (and testnet) TRON account address.
pub const ADDRESS_PREFIX: u8 = 0x41;

/// A TRON account address whose Base58Check checksum has been verified.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TronAddress([u8; 21]);

/// Why a text is not a TRON address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("a TRON address has 34 characters")]
    Length,
    #[error("a TRON address uses only Base58 characters (no 0, O, I or l)")]
    Alphabet,
    #[error("not a TRON account address (version byte is not 0x41)")]
    Version,
    #[error("the Base58Check checksum does not match (a mistyped character?)")]
    Checksum,
    #[error("expected 21 bytes starting with 0x41 or 20 bytes, as hex")]
    Hex,
}

impl TronAddress {
    /// Parses the Base58Check text form (`T…`, 34 characters), verifying the
    /// checksum.
    ///
    /// # Errors
    ///
    /// [`AddressError::Length`] unless 34 characters, [`AddressError::Alphabet`]
    /// for a character outside Base58, [`AddressError::Checksum`] when the
    /// checksum does not match, [`AddressError::Version`] when the payload is
    /// not `0x41` + 20 bytes.
    pub fn parse(text: &str) -> Result<Self, AddressError> {
        if text.len() != 34 {
            return Err(AddressError::Length);
        }
        // Room for `0x41 ‖ 20 bytes ‖ checksum`: a longer decoding is some
        // other kind of key and fails for want of room, a shorter one (a
        // leading `1`) has the wrong version byte.
        let mut raw = [0u8; 25];
        let len = bs58::decode(text)
            .with_check(Some(ADDRESS_PREFIX))
            .onto(&mut raw)
            .map_err(|error| match error {
                bs58::decode::Error::InvalidCharacter { .. } | bs58::decode::Error::NonAsciiCharacter { .. } => {
                    AddressError::Alphabet
                }
                bs58::decode::Error::InvalidChecksum { .. } => AddressError::Checksum,
                _ => AddressError::Version,
            })?;
        let bytes: [u8; 21] = raw
            .get(..len)
            .and_then(|payload| payload.try_into().ok())
            .ok_or(AddressError::Version)?;
        Ok(Self(bytes))
    }

    /// Builds an address from the 21-byte form (`41` + 20 bytes).
    pub fn from_bytes(bytes: [u8; 21]) -> Result<Self, AddressError> {
        if bytes[0] != ADDRESS_PREFIX {
            return Err(AddressError::Version);
        }
        Ok(Self(bytes))
    }

    /// Builds an address from the 20-byte EVM form found in event logs.
    pub fn from_evm_bytes(bytes: [u8; 20]) -> Self {
        let mut full = [0u8; 21];
        full[0] = ADDRESS_PREFIX;
        full[1..].copy_from_slice(&bytes);
        Self(full)
    }

    /// Parses hex, upper or lower case, with or without `0x`: 42 digits
    /// (`41…`, as java-tron prints addresses) or 40 digits (the EVM form, as
    /// in `log[].address` and topics).
    ///
    /// # Errors
    ///
    /// [`AddressError::Hex`] for another length or a non-hex digit,
    /// [`AddressError::Version`] when 21 bytes do not start with `0x41`.
    pub fn from_hex(hex: &str) -> Result<Self, AddressError> {
        let hex = hex.strip_prefix("0x").unwrap_or(hex);
        match hex.len() {
            42 => {
                let mut bytes = [0u8; 21];
                hex::decode_to_slice(hex, &mut bytes).map_err(|_| AddressError::Hex)?;
                Self::from_bytes(bytes)
            }
            40 => {
                let mut bytes = [0u8; 20];
                hex::decode_to_slice(hex, &mut bytes).map_err(|_| AddressError::Hex)?;
                Ok(Self::from_evm_bytes(bytes))
            }
            _ => Err(AddressError::Hex),
        }
    }

    /// The canonical 21-byte form.
    pub fn as_bytes(&self) -> &[u8; 21] {
        &self.0
    }

    /// The 21-byte form as 42 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The Base58Check text form (34 characters starting with `T`).
    pub fn to_base58(&self) -> String {
        bs58::encode(self.0).with_check().into_string()
    }
}

impl fmt::Display for TronAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base58())
    }
}

impl fmt::Debug for TronAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TronAddress({})", self.to_base58())
    }
}

impl FromStr for TronAddress {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<&str> for TronAddress {
    type Error = AddressError;

    fn try_from(value: &str) -> Result<Self, Self::Error> {
        Self::parse(value)
    }
}

impl Serialize for TronAddress {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_base58())
    }
}

impl<'de> Deserialize<'de> for TronAddress {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Base58 ↔ hex vectors from `../shared/testdata/tron/README.md`.
    const VALID: &[(&str, &str)] = &[
        (
            "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t",
            "41a614f803b6fd780986a42c78ec9c7f77e6ded13c",
        ),
        (
            "TBREsCfBdPyD612xZnwvGPux7osbXvtzLh",
            "410fe47f49fd91f0edb7fa2b94a3c45d9c2231709c",
        ),
        (
            "TLrPF5aTqtqLxFo1Y69jpQvZ2T4ydkX9pC",
            "41775f057150b85086f456aac88fd52ba8e35db282",
        ),
        (
            "TMuA6YqfCeX8EhbfYEg5y7S4DqzSJireY9",
            "4182dd6b9966724ae2fdc79b416c7588da67ff1b35",
        ),
        (
            "T9yD14Nj9j7xAB4dbGeiX9h8unkKHxuWwb",
            "410000000000000000000000000000000000000000",
        ),
        (
            "TPX6HK2NRN4XKRX1JAhbC827bm7gMmy5w1",
            "4194a15629b2b2bbd3a5453e6d6696b2875278633b",
        ),
        (
            "TMVQGm1qAQYVdetCeGRRkTWYYrLXuHK2HC",
            "417e5f4552091a69125d5dfcb7b8c2659029395bdf",
        ),
        (
            "TWpZXLfsvVuQuJZLkdWNY7XY2teePqPpz7",
            "41e4b8075df69297bc24cc4bbaf48cd17206e1f62c",
        ),
        (
            "TBA6CypYJizwA9XdC7Ubgc5F1bxrQ7SqPt",
            "410d0707963952f2fba59dd06f2b425ace40b492fe",
        ),
    ];

    #[test]
    fn known_vectors_round_trip_between_base58_and_hex() {
        for (base58, hex) in VALID {
            let parsed = TronAddress::parse(base58).unwrap();
            assert_eq!(parsed.to_hex(), *hex, "{base58}");
            assert_eq!(parsed.to_base58(), *base58);
            assert_eq!(TronAddress::from_hex(hex).unwrap(), parsed);
            assert_eq!(TronAddress::from_hex(&hex[2..]).unwrap(), parsed);
        }
    }

    #[test]
    fn addresses_derived_from_private_keys_are_valid() {
        for text in [
            "TJRyWwFs9wTFGZg3JbrVriFbNfCug5tDeC",
            "THRF3GuPnvvPzKoaT8pJex5XHmo8NNbCb3",
            "TQLCsShbQNXMTVCjprY64qZmEA4rBarpQp",
            "TYPG8VeuoVAh2hP7Vfw6ww7vK98nvXXXUG",
        ] {
            assert_eq!(TronAddress::parse(text).unwrap().to_string(), text);
        }
    }

    #[test]
    fn invalid_vectors_are_rejected_with_their_reason() {
        assert_eq!(
            TronAddress::parse("TYPG8VeuoVAh2hP7Vfw6ww7vK98nvXXXUs"),
            Err(AddressError::Checksum)
        );
        assert_eq!(
            TronAddress::parse("TCy1P7aRqvcgrY2BwbrV4aZ8ujfUCsy8kI"),
            Err(AddressError::Alphabet)
        );
        assert_eq!(
            TronAddress::parse("TCy1P7aRqvcgrY2BwbrV4aZ8ujfUCsy8krA"),
            Err(AddressError::Length)
        );
        assert_eq!(TronAddress::parse(""), Err(AddressError::Length));
    }

    #[test]
    fn every_single_character_typo_is_caught() {
        let good = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t";
        let alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
        for position in 1..good.len() {
            for replacement in alphabet.chars() {
                let mut typo: Vec<char> = good.chars().collect();
                if typo[position] == replacement {
                    continue;
                }
                typo[position] = replacement;
                let typo: String = typo.into_iter().collect();
                assert!(TronAddress::parse(&typo).is_err(), "{typo} was accepted");
            }
        }
    }

    #[test]
    fn a_bitcoin_style_address_of_the_right_length_is_not_tron() {
        // Valid Base58Check, 34 characters, but version byte 0x00.
        assert!(TronAddress::parse("1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2").is_err());
    }

    #[test]
    fn a_good_checksum_over_another_payload_is_a_version_error() {
        // Another version byte under a valid checksum: only the kind is wrong.
        let other_version = bs58::encode([0x42; 21]).with_check().into_string();
        assert_eq!(other_version.len(), 34, "{other_version}");
        assert_eq!(TronAddress::parse(&other_version), Err(AddressError::Version));
        // Non-ASCII text of the right byte length is not Base58.
        assert_eq!(
            TronAddress::parse("TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLjé"),
            Err(AddressError::Alphabet)
        );
    }

    #[test]
    fn hex_forms_are_checked() {
        assert_eq!(
            TronAddress::from_hex("42a614f803b6fd780986a42c78ec9c7f77e6ded13c"),
            Err(AddressError::Version)
        );
        assert_eq!(TronAddress::from_hex("zz"), Err(AddressError::Hex));
        let upper = TronAddress::from_hex("0x41A614F803B6FD780986A42C78EC9C7F77E6DED13C").unwrap();
        assert_eq!(upper.to_hex(), "41a614f803b6fd780986a42c78ec9c7f77e6ded13c");
        assert_eq!(
            TronAddress::from_hex("41a614f803b6fd780986a42c78ec9c7f77e6ded1zz"),
            Err(AddressError::Hex)
        );
    }

    #[test]
    fn serde_uses_the_base58_form_and_checks_it() {
        let address = TronAddress::parse("TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t").unwrap();
        let json = serde_json::to_string(&address).unwrap();
        assert_eq!(json, "\"TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t\"");
        assert_eq!(serde_json::from_str::<TronAddress>(&json).unwrap(), address);
        assert!(serde_json::from_str::<TronAddress>("\"TYPG8VeuoVAh2hP7Vfw6ww7vK98nvXXXUs\"").is_err());
    }
}
