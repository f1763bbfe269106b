//! Watch-only receiving addresses (PRODUCT §10, mode `xpub`): TRON
//! addresses derived from the account's extended public key, with no
//! private key anywhere.
//!
//! The merchant's wallet holds the keys of the BIP44 account
//! `m/44'/195'/0'` (coin type 195 is TRON); its extended public key (`xpub…`,
//! depth 3) lets tronpay derive the public keys of the receiving chain
//! `m/44'/195'/0'/0/i` by BIP32 public derivation (secp256k1, from the
//! `bip32` and `k256` crates), and each address as TRON makes it: the last
//! 20 bytes of the Keccak-256 (`sha3` crate) of the uncompressed public key
//! without its `0x04` byte, after the version byte `0x41`, in Base58Check.
//! No curve or hash arithmetic is written here.
//!
//! The last step, `…/0` → `…/0/i`, is once per payment, so it is put
//! together from the same crates' parts rather than `XPub::derive_child`:
//! bip32's own tweak (`PublicKey::derive_tweak`, the HMAC-SHA512 of
//! BIP32's CKDpub) and k256's point arithmetic, but with the generator
//! multiplied by k256's precomputed table (`mul_by_generator`) where bip32
//! uses the generic multiplication, and without the child's chain code and
//! fingerprint, which an address does not need. A unit test holds it to
//! `XPub::derive_child`, and `make test` to bip_utils.

use std::str::FromStr;

use bip32::{ChildNumber, PublicKey as _, XPub};
use k256::elliptic_curve::sec1::ToSec1Point;
use sha3::Digest;

use crate::TronAddress;

/// The path of the account key an `XPUB` must be (BIP44, TRON).
pub const ACCOUNT_PATH: &str = "m/44'/195'/0'";
/// The depth of that key in its tree.
const ACCOUNT_DEPTH: u8 = 3;
/// The largest index of a non-hardened child (BIP32).
pub const MAX_INDEX: u32 = (1 << 31) - 1;

/// Why an `XPUB` or a derivation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XpubError {
    /// An extended *private* key: tronpay never takes one.
    #[error(
        "this is an extended private key ({0}…): tronpay needs only the account's extended public key (xpub…) and must never hold a private key; export the xpub of m/44'/195'/0' instead"
    )]
    PrivateKey(String),
    #[error("not an extended public key (expected xpub… in Base58Check): {0}")]
    Invalid(String),
    #[error(
        "the extended public key has depth {0}; XPUB must be the account key at m/44'/195'/0' (depth 3), whose receiving addresses are …/0/i"
    )]
    NotAccountLevel(u8),
    #[error("index {0} is beyond the last non-hardened index {MAX_INDEX}")]
    IndexOutOfRange(u64),
    #[error("no address at index {0} (BIP32 skips an invalid child; use the next index)")]
    InvalidChild(u32),
}

/// An account's extended public key, ready to derive receiving addresses.
#[derive(Clone)]
pub struct AccountXpub {
    /// The receiving chain `…/0` (BIP44 `change = 0`).
    receiving: XPub,
    /// Names the account key in `free_derived_addresses.account` and
    /// `payments.derivation_account`: the first 8 bytes of the SHA-256 of its (compressed) public key, in hex.
    id: String,
}

impl std::fmt::Debug for AccountXpub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccountXpub(…)")
    }
}

impl AccountXpub {
    /// Parses an `xpub…` of depth 3 (the account key). Errors name what is
    /// wrong; an extended private key is refused without being parsed.
    pub fn parse(text: &str) -> Result<Self, XpubError> {
        let text = text.trim();
        if let Some(prefix) = ["xprv", "tprv", "yprv", "zprv", "Yprv", "Zprv", "uprv", "vprv"]
            .into_iter()
            .find(|prefix| text.starts_with(prefix))
        {
            return Err(XpubError::PrivateKey(prefix.to_owned()));
        }
        let account = XPub::from_str(text).map_err(|error| XpubError::Invalid(error.to_string()))?;
        let depth = account.attrs().depth;
        if depth != ACCOUNT_DEPTH {
            return Err(XpubError::NotAccountLevel(depth));
        }
        let receiving = account
            .derive_child(ChildNumber(0))
            .map_err(|error| XpubError::Invalid(error.to_string()))?;
        let digest = <sha2::Sha256 as sha2::Digest>::digest(account.to_bytes());
        Ok(Self {
            receiving,
            id: hex::encode(&digest[..8]),
        })
    }

    /// Names this account key (16 hex digits), the same for every
    /// spelling of it.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The address at `m/44'/195'/0'/0/index`.
    pub fn address(&self, index: u32) -> Result<TronAddress, XpubError> {
        if index > MAX_INDEX {
            return Err(XpubError::IndexOutOfRange(u64::from(index)));
        }
        let parent = self.receiving.public_key();
        // CKDpub: I = HMAC-SHA512(chain code, parent ‖ index); the child is
        // parent + I_L·G, invalid when I_L ≥ n or the sum is the identity.
        let (tweak, _chain_code) = parent
            .derive_tweak(&self.receiving.attrs().chain_code, ChildNumber(index))
            .map_err(|_| XpubError::InvalidChild(index))?;
        let tweak = Option::<k256::NonZeroScalar>::from(k256::NonZeroScalar::from_repr(tweak.into()))
            .ok_or(XpubError::InvalidChild(index))?;
        let child = k256::PublicKey::from(parent).to_projective() + k256::ProjectivePoint::mul_by_generator(&tweak);
        let child = k256::PublicKey::from_affine(child.to_affine()).map_err(|_| XpubError::InvalidChild(index))?;
        Ok(tron_address(&child))
    }

    /// The derivation path of the address at `index`.
    pub fn path(index: u32) -> String {
        format!("{ACCOUNT_PATH}/0/{index}")
    }
}

/// The TRON address of a public key: Keccak-256 of its uncompressed
/// point without the `0x04` byte (X ‖ Y), last 20 bytes, version `0x41`.
fn tron_address(key: &k256::PublicKey) -> TronAddress {
    let point = key.to_sec1_point(false);
    let hash = sha3::Keccak256::digest(&point.as_bytes()[1..]);
    let mut evm = [0u8; 20];
    evm.copy_from_slice(&hash[12..]);
    TronAddress::from_evm_bytes(evm)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The account key of the BIP39 test mnemonic `abandon … about` (no
    /// passphrase) at m/44'/195'/0', as bip_utils exports it.
    const ABANDON_XPUB: &str = "xpub6D1AabNHCupeiLM65ZR9UStMhJ1vCpyV4XbZdyhMZBiJXALQtmn9p42VTQckoHVn8WNqS7dqnJokZHAHcHGoaQgmv8D45oNUKx6DZMNZBCd";

    #[test]
    fn the_first_address_of_the_test_mnemonic_is_the_one_wallets_show() {
        let account = AccountXpub::parse(ABANDON_XPUB).unwrap();
        assert_eq!(
            account.address(0).unwrap().to_base58(),
            "TUEZSdKsoDHQMeZwihtdoBiN46zxhGWYdH"
        );
        assert_eq!(AccountXpub::path(7), "m/44'/195'/0'/0/7");
    }

    #[test]
    fn private_keys_and_other_depths_are_refused_with_a_reason() {
        let xprv = "xprv9s21ZrQH143K3QTDL4LXw2F7HEK3wJUD2nW2nRk4stbPy6cq3jPPqjiChkVvvNKmPGJxWUtg6LnF5kejMRNNU3TGtRBeJgk33yuGBxrMPHi";
        assert_eq!(
            AccountXpub::parse(xprv).unwrap_err(),
            XpubError::PrivateKey("xprv".into())
        );
        // The master public key of the same mnemonic: depth 0.
        let master = "xpub661MyMwAqRbcFkPHucMnrGNzDwb6teAX1RbKQmqtEF8kK3Z7LZ59qafCjB9eCRLiTVG3uxBxgKvRgbubRhqSKXnGGb1aoaqLrpMBDrVxga8";
        assert_eq!(AccountXpub::parse(master).unwrap_err(), XpubError::NotAccountLevel(0));
        assert!(matches!(AccountXpub::parse("xpub123"), Err(XpubError::Invalid(_))));
        let account = AccountXpub::parse(ABANDON_XPUB).unwrap();
        assert_eq!(
            account.address(1 << 31).unwrap_err(),
            XpubError::IndexOutOfRange(1 << 31)
        );
    }

    /// The derivation with k256's generator table gives what bip32's
    /// `XPub::derive_child` gives, at small and large indexes.
    #[test]
    fn the_fast_derivation_is_bip32s() {
        let account = AccountXpub::parse(ABANDON_XPUB).unwrap();
        for index in (0..200).chain([1_000_003, MAX_INDEX - 1, MAX_INDEX]) {
            let child = account.receiving.derive_child(ChildNumber(index)).unwrap();
            let expected = tron_address(&k256::PublicKey::from(child.public_key()));
            assert_eq!(account.address(index).unwrap(), expected, "index {index}");
        }
    }
}
