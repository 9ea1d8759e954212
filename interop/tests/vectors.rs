//! Golden vectors: every token type built from the fixture keys with a seeded RNG, written
//! to `interop/vectors/*.json` with its exact encoding and signature. Regenerating them
//! must give the committed files byte for byte; a difference means the wire format
//! changed (bump the type's version, then `SCRIP_REGENERATE_VECTORS=1`).
//!
//! Also runs the RFC 9474 test vector of RSABSSA-SHA384-PSS-Randomized through scrip's own
//! blind-signature wrappers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_core::{TryCryptoRng, TryRng};
use rsa::pkcs8::EncodePrivateKey;
use rsa::BoxedUint;
use scrip_tokens::fixtures::{self, Specimens, NOW};
use scrip_tokens::hazmat::Rfc9474;
use scrip_tokens::*;
use serde::Serialize;
use serde_json::{json, Value};

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("vectors")
}

const PSS_SCHEME: &str = "RSASSA-PSS, SHA-256, MGF1-SHA-256, salt length 32";
const BLIND_SCHEME: &str = "RSABSSA-SHA384-PSS-Randomized (RFC 9474): RSASSA-PSS, SHA-384, \
                            MGF1-SHA-384, salt length 48, over randomizer || message";

/// A signed token's vector: its value, the bytes the signature covers, the signature, the
/// whole encoded object and the signer's public key.
fn signed_vector<P>(
    description: &str,
    signer_role: &str,
    signer: &VerifyingKey<P::Signer>,
    object: &Signed<P>,
) -> Value
where
    P: SignedPayload + Serialize,
{
    json!({
        "type": std::any::type_name::<P>().rsplit("::").next().unwrap().trim_end_matches("Payload"),
        "description": description,
        "scheme": PSS_SCHEME,
        "tag": P::SIGNED_TAG,
        "payload_tag": P::TAG,
        "version": P::VERSION,
        "signer_role": signer_role,
        "signer_spki_der": hex::encode(signer.public_key().to_spki_der()),
        "key_id": serde_json::to_value(object.key_id).unwrap(),
        "value": serde_json::to_value(object).unwrap(),
        "signed_bytes": hex::encode(object.signed_bytes().unwrap()),
        "signature": hex::encode(object.signature.as_bytes()),
        "encoded": hex::encode(object.to_bytes().unwrap()),
    })
}

fn unsigned_vector<T: Message>(name: &str, description: &str, value: &T) -> Value {
    json!({
        "type": name,
        "description": description,
        "scheme": "none (a container: the signed objects inside have their own vectors)",
        "tag": T::TAG,
        "version": T::VERSION,
        "value": serde_json::to_value(value).unwrap(),
        "encoded": hex::encode(codec::encode(value).unwrap()),
    })
}

fn nonce<const N: usize>(rng: &mut StdRng) -> [u8; N] {
    let mut bytes = [0u8; N];
    rand_core::Rng::fill_bytes(rng, &mut bytes);
    bytes
}

/// The blind coin of the vectors, made step by step so the intermediate values of the
/// withdrawal (blinded message, blind signature, unblinding secret) are in the vector.
fn blind_coin_vector(w: &Specimens, rng: &mut StdRng) -> (BlindCoin, Value) {
    let keyset = &w.issuer.keyset;
    let amount = Amount::new(5, Currency::EUR);
    let key = keyset.key_for(5).unwrap();
    let message = BlindCoinMessage {
        coin_id: CoinId::random(rng),
        amount,
        keyset_id: keyset.id(),
        key_id: key.key_id(),
    };
    let message_bytes = codec::encode(&message).unwrap();
    let blinding = key.blind_message(rng, &message_bytes).unwrap();
    let blind_signature = w
        .issuer
        .denomination_key(5)
        .unwrap()
        .sign_blinded(rng, &blinding.blinded)
        .unwrap();
    let signature = key
        .finalize_message(&blind_signature, &blinding, &message_bytes)
        .unwrap();
    let coin = BlindCoin {
        coin_id: message.coin_id,
        amount,
        keyset_id: message.keyset_id,
        key_id: message.key_id,
        randomizer: blinding.randomizer,
        signature,
    };
    let prepared = [blinding.randomizer.as_slice(), &message_bytes].concat();
    let vector = json!({
        "type": "BlindCoin",
        "description": "A blind coin worth EUR 0.05, withdrawn step by step. `encoded` is the \
                        coin as a `Coin` (enum variant 0 = Blind). The signature verifies \
                        as RSASSA-PSS-SHA384 over `prepared_message` under `signer_spki_der`.",
        "scheme": BLIND_SCHEME,
        "tag": <Coin as Message>::TAG,
        "message_tag": BlindCoinMessage::TAG,
        "version": <Coin as Message>::VERSION,
        "signer_role": "denomination key (5 minor units) of the keyset",
        "signer_spki_der": hex::encode(key.public_key().to_spki_der()),
        "rfc9474_spki_der": hex::encode(key.to_rfc9474_spki().unwrap()),
        "key_id": serde_json::to_value(key.key_id()).unwrap(),
        "keyset_id": serde_json::to_value(keyset.id()).unwrap(),
        "message": hex::encode(&message_bytes),
        "randomizer": hex::encode(blinding.randomizer),
        "prepared_message": hex::encode(&prepared),
        "blinded_message": hex::encode(&blinding.blinded.0),
        "blind_signature": hex::encode(&blind_signature.0),
        "unblinding_secret": hex::encode(blinding.secret()),
        "signature": hex::encode(coin.signature.as_bytes()),
        "value": serde_json::to_value(Coin::Blind(coin.clone())).unwrap(),
        "encoded": hex::encode(codec::encode(&Coin::Blind(coin.clone())).unwrap()),
    });
    (coin, vector)
}

/// Every vector, by file name. Deterministic: fixture keys, seeded RNGs, fixed times.
fn generate() -> Vec<(&'static str, Value)> {
    let w = Specimens::new(&mut StdRng::seed_from_u64(42));
    let rng = &mut StdRng::seed_from_u64(7);
    let issuer = &w.issuer;
    let device = w.device.verifying_key();
    let merchant = w.merchant.verifying_key();
    let account = w.account();

    let mut out = vec![
        (
            "account-certificate",
            signed_vector(
                "The issuer binds device 1's key to an account.",
                "issuer account-certificate key",
                issuer.account_certifier.verifying_key(),
                &w.account_cert,
            ),
        ),
        (
            "merchant-certificate",
            signed_vector(
                "The issuer certifies merchant 1 (grocery, DE).",
                "issuer merchant-certificate key",
                issuer.merchant_certifier.verifying_key(),
                &w.merchant_cert,
            ),
        ),
        (
            "balance-certificate",
            signed_vector(
                "Up to EUR 50.00 offline, 10 payments, EUR 20.00 per payment, grocery in DE.",
                "issuer balance-certificate key",
                issuer.balance_certifier.verifying_key(),
                &w.balance_cert,
            ),
        ),
        (
            "payment-request",
            signed_vector(
                "Merchant 1 asks for EUR 12.50.",
                "merchant key",
                merchant,
                &w.request,
            ),
        ),
        (
            "withdrawal-record",
            signed_vector(
                "Device 1 pays the request under the balance certificate (sequence 1).",
                "device key",
                device,
                &w.record,
            ),
        ),
        (
            "countersigned-record",
            signed_vector(
                "Merchant 1's receipt over the device-signed record.",
                "merchant key",
                merchant,
                &w.countersigned,
            ),
        ),
        (
            "deposit-request",
            signed_vector(
                "Device 1 asks to deposit EUR 100.00.",
                "device key",
                device,
                &w.deposit_request,
            ),
        ),
        (
            "deposit-record",
            signed_vector(
                "The issuer's record of the credited deposit.",
                "issuer deposit key",
                issuer.deposit_issuer.verifying_key(),
                &w.deposit_record,
            ),
        ),
        (
            "deposit-confirmation",
            signed_vector(
                "Device 1 confirms it holds the deposit record.",
                "device key",
                device,
                &w.deposit_confirmation,
            ),
        ),
        (
            "identified-coin",
            signed_vector(
                "An identified coin worth EUR 0.05 (issuer-chosen id, holder virtual id).",
                "issuer identified-coin key",
                issuer.identified_coin_issuer.verifying_key(),
                &w.identified_coin,
            ),
        ),
        (
            "endorsed-coin-payment",
            signed_vector(
                "Merchant 1's endorsement of a payment of EUR 0.15 in a blind and an identified coin.",
                "merchant key",
                merchant,
                &w.endorsed,
            ),
        ),
        (
            "signed-key-directory",
            signed_vector(
                "The issuer's key directory, signed by its root key.",
                "issuer root key",
                issuer.directory_root.verifying_key(),
                &issuer.signed_directory(rng),
            ),
        ),
        (
            "coin-payment",
            unsigned_vector(
                "CoinPayment",
                "A payment request and the coins that pay it (blind, then identified).",
                &w.coin_payment,
            ),
        ),
    ];

    let (blind_coin, blind_vector) = blind_coin_vector(&w, rng);
    out.push(("blind-coin", blind_vector));

    // Requests a device or merchant sends the issuer over HTTP.
    let registration = DeviceRegistration::sign(
        DeviceRegistrationPayload {
            device_key: fixtures::device(2).verifying_key().clone(),
            account_id: None,
            created_at: NOW,
            nonce: nonce(rng),
        },
        &fixtures::device(2),
        rng,
    )
    .unwrap();
    out.push((
        "device-registration",
        signed_vector(
            "Device 2 opens a new account (self-signed).",
            "the registering device's own key",
            fixtures::device(2).verifying_key(),
            &registration,
        ),
    ));
    let certificate_request = BalanceCertificateRequest::sign(
        BalanceCertificateRequestPayload {
            account_id: account.account_id,
            device_id: account.device_id,
            currency: Currency::EUR,
            requested_amount: Some(5_000),
            max_payments: Some(10),
            per_payment_cap: Some(2_000),
            lock: LockRules::default(),
            unsent_records: vec![w.record.clone()],
            deposit_confirmations: vec![w.deposit_confirmation.clone()],
            created_at: NOW,
            nonce: nonce(rng),
        },
        &w.device,
        rng,
    )
    .unwrap();
    out.push((
        "balance-certificate-request",
        signed_vector(
            "Device 1 asks for a certificate of EUR 50.00, uploading one record and one confirmation.",
            "device key",
            device,
            &certificate_request,
        ),
    ));
    let pending = PendingCoin::new(rng, &issuer.keyset, Amount::new(10, Currency::EUR)).unwrap();
    let withdrawal = BlindWithdrawalRequest::sign(
        BlindWithdrawalRequestPayload {
            account_id: account.account_id,
            device_id: account.device_id,
            keyset_id: issuer.keyset.id(),
            coins: vec![(10, pending.blinded().clone())],
            idempotency_key: nonce(rng),
            created_at: NOW,
            nonce: nonce(rng),
        },
        &w.device,
        rng,
    )
    .unwrap();
    out.push((
        "blind-withdrawal-request",
        signed_vector(
            "Device 1 asks for one blind coin worth EUR 0.10.",
            "device key",
            device,
            &withdrawal,
        ),
    ));
    let batch = RedemptionBatch::sign(
        RedemptionBatchPayload {
            merchant_id: w.merchant_payload().merchant_id,
            items: vec![
                RedemptionItem::Record(w.countersigned.clone()),
                RedemptionItem::Coins(w.endorsed.clone()),
            ],
            created_at: NOW,
            nonce: nonce(rng),
        },
        &w.merchant,
        rng,
    )
    .unwrap();
    out.push((
        "redemption-batch",
        signed_vector(
            "Merchant 1 redeems the countersigned record and the endorsed coin payment.",
            "merchant key",
            merchant,
            &batch,
        ),
    ));
    // The issuer's signed answers, each naming the request it answers by digest.
    let report = RedemptionReport::sign(
        RedemptionReportPayload {
            merchant_id: w.merchant_payload().merchant_id,
            batch_digest: codec::digest(&batch).unwrap(),
            outcomes: vec![
                RedemptionOutcome::Accepted {
                    credited: w.request.payload.amount,
                },
                RedemptionOutcome::Accepted {
                    credited: w.coin_payment.total().unwrap(),
                },
            ],
            answered_at: NOW,
        },
        &issuer.answer_signer,
        rng,
    )
    .unwrap();
    out.push((
        "redemption-report",
        signed_vector(
            "The issuer's answer to the redemption batch: both items accepted.",
            "issuer answer key",
            issuer.answer_signer.verifying_key(),
            &report,
        ),
    ));
    let sync = SyncRequest::sign(
        SyncRequestPayload {
            account_id: account.account_id,
            device_id: account.device_id,
            unsent_records: vec![w.record.clone()],
            deposit_confirmations: Vec::new(),
            created_at: NOW,
            nonce: nonce(rng),
        },
        &w.device,
        rng,
    )
    .unwrap();
    out.push((
        "sync-request",
        signed_vector(
            "Device 1 hands in its copy of the withdrawal record.",
            "device key",
            device,
            &sync,
        ),
    ));
    let sync_report = SyncReport::sign(
        SyncReportPayload {
            account_id: account.account_id,
            device_id: account.device_id,
            request_digest: codec::digest(&sync).unwrap(),
            records: vec![RedemptionOutcome::AlreadyAccepted {
                first_accepted_at: NOW,
            }],
            confirmations_recorded: 0,
            answered_at: NOW,
        },
        &issuer.answer_signer,
        rng,
    )
    .unwrap();
    out.push((
        "sync-report",
        signed_vector(
            "The issuer's answer to the sync: the merchant's copy came first.",
            "issuer answer key",
            issuer.answer_signer.verifying_key(),
            &sync_report,
        ),
    ));
    let statement_request = StatementRequest::sign(
        StatementRequestPayload {
            account_id: account.account_id,
            device_id: account.device_id,
            currency: Currency::EUR,
            after_seq: None,
            limit: 100,
            created_at: NOW,
            nonce: nonce(rng),
        },
        &w.device,
        rng,
    )
    .unwrap();
    let statement = Statement::sign(
        StatementPayload {
            account_id: account.account_id,
            request_digest: codec::digest(&statement_request).unwrap(),
            currency: Currency::EUR,
            balance: 8_750,
            entries: vec![
                StatementEntry {
                    seq: 1,
                    at: NOW,
                    delta: 10_000,
                    balance_after: 10_000,
                    memo: "deposit".into(),
                },
                StatementEntry {
                    seq: 2,
                    at: NOW,
                    delta: -1_250,
                    balance_after: 8_750,
                    memo: "withdrawal record".into(),
                },
            ],
            answered_at: NOW,
        },
        &issuer.answer_signer,
        rng,
    )
    .unwrap();
    out.push((
        "statement",
        signed_vector(
            "The issuer's statement for device 1's account in EUR.",
            "issuer answer key",
            issuer.answer_signer.verifying_key(),
            &statement,
        ),
    ));
    out.push(("coin-spend-ids", spend_ids_vector(&blind_coin, &w)));
    // The blind coin above must be a valid coin of the directory.
    blind_coin.verify(w.directory(), NOW).unwrap();
    out
}

/// What the issuer claims each coin under: SHA-256 of the domain tag, a zero byte, the
/// variant byte, the signing key's id and the exact bytes that key signed.
fn spend_ids_vector(blind: &BlindCoin, w: &Specimens) -> Value {
    let coins = [
        Coin::Blind(blind.clone()),
        Coin::Identified(w.identified_coin.clone()),
    ];
    json!({
        "type": "CoinSpendId",
        "description": "Spend ids of the blind coin of blind-coin.json and the identified \
                        coin of identified-coin.json: SHA-256(tag || 0x00 || variant || key_id \
                        || signed_bytes), variant 0 blind (signed bytes: randomizer || coin \
                        message), 1 identified (signed bytes: the encoded payload).",
        "tag": SPEND_ID_TAG,
        "coins": coins.iter().map(|coin| json!({
            "variant": match coin.variant() {
                CoinVariant::Blind => 0,
                CoinVariant::Identified => 1,
            },
            "coin_id": serde_json::to_value(coin.id()).unwrap(),
            "key_id": serde_json::to_value(coin.key_id()).unwrap(),
            "signed_bytes": hex::encode(coin.signed_bytes().unwrap()),
            "spend_id": coin.spend_id().unwrap().to_hex(),
        })).collect::<Vec<_>>(),
    })
}

fn pretty(value: &Value) -> String {
    let mut s = serde_json::to_string_pretty(value).unwrap();
    s.push('\n');
    s
}

#[test]
fn vectors_regenerate_byte_for_byte() {
    let regenerate = std::env::var_os("SCRIP_REGENERATE_VECTORS").is_some();
    let dir = vectors_dir();
    let mut differences = Vec::new();
    for (name, vector) in generate() {
        let path = dir.join(format!("{name}.json"));
        let fresh = pretty(&vector);
        if regenerate {
            std::fs::write(&path, &fresh).unwrap();
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(committed) if committed == fresh => {}
            Ok(_) => differences.push(format!("{name}: differs")),
            Err(e) => differences.push(format!("{name}: {e}")),
        }
    }
    assert!(
        differences.is_empty(),
        "golden vectors changed: {differences:?} (if intended: bump the version, then \
         SCRIP_REGENERATE_VECTORS=1 cargo test -p scrip-interop --release --test vectors)"
    );
}

fn load(name: &str) -> Value {
    let text = std::fs::read_to_string(vectors_dir().join(format!("{name}.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn hex_field(v: &Value, field: &str) -> Vec<u8> {
    hex::decode(
        v[field]
            .as_str()
            .unwrap_or_else(|| panic!("{field} missing")),
    )
    .unwrap()
}

/// Decodes the committed bytes as `Signed<P>`, checks the decoded value's JSON matches the
/// vector's `value`, its signed bytes match `signed_bytes`, and the signature verifies
/// under `signer_spki_der`, and that a one-byte change of the signed bytes fails.
fn check_signed<P: SignedPayload + Serialize>(name: &str) {
    let v = load(name);
    let object: Signed<P> = codec::decode(&hex_field(&v, "encoded")).unwrap();
    assert_eq!(serde_json::to_value(&object).unwrap(), v["value"], "{name}");
    assert_eq!(
        object.signed_bytes().unwrap(),
        hex_field(&v, "signed_bytes")
    );
    let key = VerifyingKey::<P::Signer>::from_spki_der(&hex_field(&v, "signer_spki_der")).unwrap();
    assert_eq!(serde_json::to_value(key.key_id()).unwrap(), v["key_id"]);
    object.verify_signature(&key).unwrap();
    let mut tampered: Signed<P> = codec::decode(&hex_field(&v, "encoded")).unwrap();
    tampered.signature.0[7] ^= 1;
    assert!(
        matches!(tampered.verify_signature(&key), Err(Error::BadSignature)),
        "{name}: a changed signature verified"
    );
}

#[test]
fn committed_vectors_decode_and_verify() {
    check_signed::<AccountCertificatePayload>("account-certificate");
    check_signed::<MerchantCertificatePayload>("merchant-certificate");
    check_signed::<BalanceCertificatePayload>("balance-certificate");
    check_signed::<PaymentRequestPayload>("payment-request");
    check_signed::<WithdrawalRecordPayload>("withdrawal-record");
    check_signed::<CountersignedRecordPayload>("countersigned-record");
    check_signed::<DepositRequestPayload>("deposit-request");
    check_signed::<DepositRecordPayload>("deposit-record");
    check_signed::<DepositConfirmationPayload>("deposit-confirmation");
    check_signed::<IdentifiedCoinPayload>("identified-coin");
    check_signed::<EndorsedCoinPaymentPayload>("endorsed-coin-payment");
    check_signed::<KeyDirectory>("signed-key-directory");
    check_signed::<DeviceRegistrationPayload>("device-registration");
    check_signed::<BalanceCertificateRequestPayload>("balance-certificate-request");
    check_signed::<BlindWithdrawalRequestPayload>("blind-withdrawal-request");
    check_signed::<RedemptionBatchPayload>("redemption-batch");
    check_signed::<RedemptionReportPayload>("redemption-report");
    check_signed::<SyncRequestPayload>("sync-request");
    check_signed::<SyncReportPayload>("sync-report");
    check_signed::<StatementPayload>("statement");

    // Spend ids: recomputed from the committed coins.
    let ids = load("coin-spend-ids");
    let coins = [
        Coin::Blind(
            match codec::decode::<Coin>(&hex_field(&load("blind-coin"), "encoded")).unwrap() {
                Coin::Blind(coin) => coin,
                other => panic!("not a blind coin: {other:?}"),
            },
        ),
        Coin::Identified(
            codec::decode::<IdentifiedCoin>(&hex_field(&load("identified-coin"), "encoded"))
                .unwrap(),
        ),
    ];
    for (coin, v) in coins.iter().zip(ids["coins"].as_array().unwrap()) {
        assert_eq!(coin.spend_id().unwrap().to_hex(), v["spend_id"]);
        assert_eq!(hex::encode(coin.signed_bytes().unwrap()), v["signed_bytes"]);
    }

    let payment = load("coin-payment");
    let decoded: CoinPayment = codec::decode(&hex_field(&payment, "encoded")).unwrap();
    assert_eq!(serde_json::to_value(&decoded).unwrap(), payment["value"]);

    let v = load("blind-coin");
    let coin = match codec::decode::<Coin>(&hex_field(&v, "encoded")).unwrap() {
        Coin::Blind(coin) => coin,
        other => panic!("not a blind coin: {other:?}"),
    };
    let key = DenominationVerifyingKey::from_spki_der(&hex_field(&v, "signer_spki_der")).unwrap();
    coin.verify_signature(&key).unwrap();
    assert_eq!(
        codec::encode(&coin.message()).unwrap(),
        hex_field(&v, "message")
    );
    let prepared = hex_field(&v, "prepared_message");
    assert_eq!(&prepared[..32], coin.randomizer.as_slice());
    assert_eq!(&prepared[32..], hex_field(&v, "message").as_slice());
    key.verify_message(&coin.signature, coin.randomizer, &prepared[32..])
        .unwrap();
    let mut other_randomizer = coin.randomizer;
    other_randomizer[0] ^= 1;
    assert_eq!(
        key.verify_message(&coin.signature, other_randomizer, &prepared[32..]),
        Err(Error::BadSignature)
    );
}

/// Hands out the given byte strings in order: RFC 9474's fixed randomness.
struct ScriptedRandomness(Vec<Vec<u8>>);

impl TryRng for ScriptedRandomness {
    type Error = std::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        unreachable!("blinding asks for whole byte strings")
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        unreachable!("blinding asks for whole byte strings")
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        let mut next = self.0.remove(0);
        next.resize(dst.len(), 0);
        dst.copy_from_slice(&next);
        Ok(())
    }
}

impl TryCryptoRng for ScriptedRandomness {}

fn rfc_hex(v: &Value, field: &str) -> Vec<u8> {
    let s = v[field].as_str().unwrap();
    hex::decode(s.strip_prefix("0x").unwrap_or(s)).unwrap()
}

fn big(v: &Value, field: &str) -> BoxedUint {
    BoxedUint::from_be_slice_vartime(&rfc_hex(v, field))
}

#[test]
fn rfc9474_vector_passes_through_our_wrappers() {
    let text = std::fs::read_to_string(vectors_dir().join("rfc9474.json")).unwrap();
    let all: Vec<Value> = serde_json::from_str(&text).unwrap();
    // scrip uses the randomized PSS variant only; the other three are other protocols.
    let v = all
        .iter()
        .find(|v| v["name"] == "RSABSSA-SHA384-PSS-Randomized")
        .unwrap();
    let (n, e, d) = (big(v, "n"), big(v, "e"), big(v, "d"));
    let primes = vec![big(v, "p"), big(v, "q")];
    let secret = rsa::RsaPrivateKey::from_components(n.clone(), e, d, primes).unwrap();
    let der = secret.to_pkcs8_der().unwrap();
    let signing = DenominationSigningKey::from_der(der.as_bytes()).unwrap();
    let key = signing.verifying_key();

    // The RFC's randomness: message prefix, salt, then the blinding factor r (the inverse
    // of `inv` mod n), which the library reads as little-endian bytes.
    let r = big(v, "inv")
        .invert_mod(&n.to_nz().unwrap())
        .into_option()
        .unwrap();
    let mut scripted = ScriptedRandomness(vec![
        rfc_hex(v, "msg_prefix"),
        rfc_hex(v, "salt"),
        r.to_le_bytes().to_vec(),
    ]);
    let msg = rfc_hex(v, "msg");
    let blinding = key.blind_message(&mut scripted, &msg).unwrap();
    assert_eq!(blinding.randomizer.as_slice(), rfc_hex(v, "msg_prefix"));
    assert_eq!(blinding.secret(), rfc_hex(v, "inv"));
    assert_eq!(blinding.blinded.0, rfc_hex(v, "blinded_msg"));

    let blind_signature = signing
        .sign_blinded(&mut StdRng::seed_from_u64(1), &blinding.blinded)
        .unwrap();
    assert_eq!(blind_signature.0, rfc_hex(v, "blind_sig"));

    let signature = key
        .finalize_message(&blind_signature, &blinding, &msg)
        .unwrap();
    assert_eq!(signature.as_bytes(), rfc_hex(v, "sig"));
    key.verify_message(&signature, blinding.randomizer, &msg)
        .unwrap();
    assert_eq!(
        rfc_hex(v, "input_msg"),
        [blinding.randomizer.as_slice(), &msg].concat()
    );
    let mut other = msg.clone();
    other[0] ^= 1;
    assert_eq!(
        key.verify_message(&signature, blinding.randomizer, &other),
        Err(Error::BadSignature)
    );
}

#[test]
fn every_vector_file_is_generated_or_rfc() {
    // A stale file left behind after a type is renamed would still be checked by the
    // independent verifiers and mislead readers.
    let generated: Vec<String> = generate()
        .into_iter()
        .map(|(name, _)| format!("{name}.json"))
        .collect();
    for entry in std::fs::read_dir(vectors_dir()).unwrap() {
        let file = entry.unwrap().file_name().into_string().unwrap();
        if file.ends_with(".json") && file != "rfc9474.json" {
            assert!(generated.contains(&file), "{file} is not generated");
        }
    }
}
