"""Reference TRON addresses from bip_utils (PyPI), independent of tronpay.

Prints JSON: a list of {"mnemonic", "xpub", "addresses"} where xpub is the
BIP44 account key m/44'/195'/0' and addresses are m/44'/195'/0'/0/0..19.
The mnemonics are the BIP39 test mnemonic and a few made from fixed entropy
(one with a passphrase), so the run is the same everywhere.
"""
import hashlib
import json

from bip_utils import Bip39MnemonicGenerator, Bip39SeedGenerator, Bip44, Bip44Changes, Bip44Coins

CASES = [("abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about", "")]
for n, words in enumerate([16, 20, 24, 32]):
    entropy = hashlib.sha256(f"tronpay-xpub-{n}".encode()).digest()[:words]
    CASES.append((str(Bip39MnemonicGenerator().FromEntropy(entropy)), "TREZOR" if n == 1 else ""))

out = []
for mnemonic, passphrase in CASES:
    seed = Bip39SeedGenerator(mnemonic).Generate(passphrase)
    account = Bip44.FromSeed(seed, Bip44Coins.TRON).Purpose().Coin().Account(0)
    chain = account.Change(Bip44Changes.CHAIN_EXT)
    out.append(
        {
            "mnemonic": mnemonic,
            "xpub": account.PublicKey().ToExtended(),
            "addresses": [chain.AddressIndex(i).PublicKey().ToAddress() for i in range(20)],
        }
    )
print(json.dumps(out))
