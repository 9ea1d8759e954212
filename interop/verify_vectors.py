#!/usr/bin/env python3
"""Verifies scrip's golden vectors with Python's `cryptography` package, an implementation
independent of the Rust code that produced them.

For every vector in the directory (default: interop/vectors next to this script):
- the key id is SHA-256 of the signer's SubjectPublicKeyInfo DER;
- the envelope: `encoded` starts with `tag || 0x00 || version (u16 LE)`, and for signed
  types `signed_bytes` starts with `payload_tag || 0x00 || version`;
- RSA-PSS vectors: the signature verifies over `signed_bytes` (SHA-256, MGF1-SHA-256,
  salt 32), and fails with one bit of the message flipped;
- blind coins: `prepared_message == randomizer || message`, and the signature verifies
  as RSASSA-PSS (SHA-384, MGF1-SHA-384, salt 48) over it, under both the rsaEncryption
  and the RFC 9474 id-RSASSA-PSS encodings of the key; `salt` is the salt inside the
  signature (recovered by EMSA-PSS decoding `s^e mod n`);
- rfc9474.json: the RFC's RSABSSA-SHA384-PSS-Randomized signature verifies over
  `input_msg` under (n, e), and opens (`s^e mod n`) to `encoded_msg`, the EMSA-PSS
  encoding of `input_msg` with `salt`;
- digests that link vectors: each answer names the request vector it answers, the
  rejection the answer it refuses, the confirmation the deposit record, the approval the
  enrolled key; the voucher withdrawal carries refund-voucher.json and the revocation
  delta names the full list's version as its base;
- coin-spend-ids.json: each spend id is SHA-256(tag || 0x00 || variant || key id ||
  signed bytes), and the signed bytes are those of blind-coin.json (`prepared_message`)
  and identified-coin.json (`signed_bytes`).

Exits 1 on the first failure; prints one summary line otherwise.
"""

import hashlib
import json
import pathlib
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key

PSS_SHA256 = (padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256())
PSS_SHA384 = (padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48), hashes.SHA384())


def fail(name, why):
    print(f"FAIL {name}: {why}")
    sys.exit(1)


def header(tag, version):
    return tag.encode("ascii") + b"\x00" + version.to_bytes(2, "little")


def verifies(key, signature, message, scheme):
    try:
        key.verify(signature, message, scheme[0], scheme[1])
        return True
    except InvalidSignature:
        return False


def check_signature(name, key, signature, message, scheme):
    if not verifies(key, signature, message, scheme):
        fail(name, "signature does not verify")
    flipped = bytearray(message)
    flipped[len(flipped) // 2] ^= 0x01
    if verifies(key, signature, bytes(flipped), scheme):
        fail(name, "signature verifies over a changed message")


def mgf1_sha384(seed, length):
    out = b""
    counter = 0
    while len(out) < length:
        out += hashlib.sha384(seed + counter.to_bytes(4, "big")).digest()
        counter += 1
    return out[:length]


def pss_sha384_salt(name, n, e, signature, message):
    """EMSA-PSS-VERIFY (RFC 8017 9.1.2) by hand: returns the salt inside the signature."""
    em_bits = n.bit_length() - 1
    em_len = (em_bits + 7) // 8
    em = pow(int.from_bytes(signature, "big"), e, n).to_bytes(em_len, "big")
    if em[-1] != 0xBC:
        fail(name, "PSS trailer is not 0xbc")
    masked, h = em[: em_len - 49], em[em_len - 49 : -1]
    db = bytearray(a ^ b for a, b in zip(masked, mgf1_sha384(h, len(masked))))
    db[0] &= 0xFF >> (8 * em_len - em_bits)
    salt = bytes(db[-48:])
    if any(db[: -49]) or db[-49] != 1:
        fail(name, "PSS padding is not zeros || 0x01 || salt")
    if hashlib.sha384(b"\0" * 8 + hashlib.sha384(message).digest() + salt).digest() != h:
        fail(name, "PSS hash does not match")
    return salt, em


def sha256_of(directory, name):
    return hashlib.sha256(bytes.fromhex(json.loads((directory / f"{name}.json").read_text())["encoded"])).hexdigest()


def check_links(directory):
    def payload(name):
        return json.loads((directory / f"{name}.json").read_text())["value"]["payload"]

    links = [
        ("redemption-report", payload("redemption-report")["batch_digest"], sha256_of(directory, "redemption-batch")),
        ("sync-report", payload("sync-report")["request_digest"], sha256_of(directory, "sync-request")),
        ("statement", payload("statement")["request_digest"], sha256_of(directory, "statement-request")),
        ("payment-rejection", payload("payment-rejection")["answer_digest"], sha256_of(directory, "payment-answer-record")),
        ("deposit-confirmation", payload("deposit-confirmation")["deposit_record_digest"], sha256_of(directory, "deposit-record")),
        ("merchant-statement", payload("merchant-statement")["request_digest"], sha256_of(directory, "merchant-statement-request")),
        ("payout-receipt-paid", payload("payout-receipt-paid")["request_digest"], sha256_of(directory, "payout-request")),
        ("payout-receipt-declined", payload("payout-receipt-declined")["request_digest"], sha256_of(directory, "payout-request-declined")),
        ("refund-receipt", payload("refund-receipt")["request_digest"], sha256_of(directory, "refund-request")),
        ("swap-receipt", payload("swap-receipt")["request_digest"], sha256_of(directory, "swap-request")),
        ("swap-receipt-double-spent", payload("swap-receipt-double-spent")["request_digest"], sha256_of(directory, "swap-request-again")),
        ("merchant-swap-receipt", payload("merchant-swap-receipt")["request_digest"], sha256_of(directory, "merchant-swap-request")),
    ]
    # A voucher withdrawal carries the voucher the merchant signed, unchanged.
    withdrawal = json.loads((directory / "voucher-withdrawal-request.json").read_text())["value"]
    voucher = json.loads((directory / "refund-voucher.json").read_text())
    links.append(("voucher-withdrawal-request", withdrawal["voucher"], voucher["value"]))
    # A delta names the version of the full list it applies to.
    full = payload("revocation-list-full")
    delta = payload("revocation-list-delta")
    links.append(("revocation-list-delta", delta["base_version"], full["version"] if full["base_version"] == 0 else None))
    enrollment = json.loads((directory / "device-enrollment.json").read_text())["value"]
    links.append((
        "device-enrollment",
        enrollment["approval"]["payload"]["new_device_key"],
        hashlib.sha256(bytes.fromhex(enrollment["registration"]["payload"]["device_key"])).hexdigest(),
    ))
    for name, named, actual in links:
        if named != actual:
            fail(name, "does not name the vector it answers by SHA-256 of its encoded bytes")
    return len(links)


def main():
    directory = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else pathlib.Path(__file__).parent / "vectors"
    checked = 0
    for path in sorted(directory.glob("*.json")):
        name = path.stem
        vector = json.loads(path.read_text())
        if name == "rfc9474":
            for case in vector:
                if case["name"] != "RSABSSA-SHA384-PSS-Randomized":
                    continue
                n, e = int(case["n"], 16), int(case["e"], 16)
                key = rsa.RSAPublicNumbers(e, n).public_key()
                signature, message = bytes.fromhex(case["sig"]), bytes.fromhex(case["input_msg"])
                check_signature("rfc9474", key, signature, message, PSS_SHA384)
                salt, em = pss_sha384_salt("rfc9474", n, e, signature, message)
                if salt.hex() != case["salt"] or em.hex() != case["encoded_msg"]:
                    fail("rfc9474", "salt or encoded_msg is not what the signature opens to")
                checked += 1
            continue

        if name == "coin-spend-ids":
            coins = {0: json.loads((directory / "blind-coin.json").read_text())["prepared_message"],
                     1: json.loads((directory / "identified-coin.json").read_text())["signed_bytes"]}
            for coin in vector["coins"]:
                signed = bytes.fromhex(coin["signed_bytes"])
                if signed.hex() != coins[coin["variant"]]:
                    fail(name, "signed bytes are not those of the coin's own vector")
                digest = hashlib.sha256(
                    vector["tag"].encode("ascii") + b"\x00" + bytes([coin["variant"]])
                    + bytes.fromhex(coin["key_id"]) + signed
                ).hexdigest()
                if digest != coin["spend_id"]:
                    fail(name, "spend id is not SHA-256(tag || 0 || variant || key id || signed bytes)")
                checked += 1
            continue

        encoded = bytes.fromhex(vector["encoded"])
        if not encoded.startswith(header(vector["tag"], vector["version"])):
            fail(name, "encoded bytes do not start with tag || 0x00 || version")
        if "signer_spki_der" not in vector:
            continue
        spki = bytes.fromhex(vector["signer_spki_der"])
        if hashlib.sha256(spki).hexdigest() != vector["key_id"]:
            fail(name, "key id is not SHA-256 of the SPKI DER")
        key = load_der_public_key(spki)
        signature = bytes.fromhex(vector["signature"])

        if vector["type"] == "BlindCoin":
            message = bytes.fromhex(vector["message"])
            prepared = bytes.fromhex(vector["prepared_message"])
            if prepared != bytes.fromhex(vector["randomizer"]) + message:
                fail(name, "prepared message is not randomizer || message")
            if not message.startswith(header(vector["message_tag"], vector["version"])):
                fail(name, "coin message does not start with its tag")
            check_signature(name, key, signature, prepared, PSS_SHA384)
            rfc_key = load_der_public_key(bytes.fromhex(vector["rfc9474_spki_der"]))
            if rfc_key.public_numbers() != key.public_numbers():
                fail(name, "RFC 9474 SPKI names another key")
            check_signature(name + " (RFC 9474 SPKI)", rfc_key, signature, prepared, PSS_SHA384)
            numbers = key.public_numbers()
            salt, _ = pss_sha384_salt(name, numbers.n, numbers.e, signature, prepared)
            if salt.hex() != vector["salt"]:
                fail(name, "salt is not the one inside the signature")
        else:
            signed = bytes.fromhex(vector["signed_bytes"])
            if not signed.startswith(header(vector["payload_tag"], vector["version"])):
                fail(name, "signed bytes do not start with the payload tag")
            body = signed[len(header(vector["payload_tag"], vector["version"])):]
            if not encoded[len(header(vector["tag"], vector["version"])):].startswith(body):
                fail(name, "the encoded object does not start with the signed payload's body")
            check_signature(name, key, signature, signed, PSS_SHA256)
        checked += 1
    if checked == 0:
        fail(str(directory), "no vectors found")
    checked += check_links(directory)
    print(f"python cryptography {__import__('cryptography').__version__}: {checked} vectors verified")


if __name__ == "__main__":
    main()
