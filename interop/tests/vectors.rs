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
use sha2::{Digest, Sha256, Sha384};

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
        "type": signed_type_name::<P>(),
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

/// The name WIRE.md gives the signed type `Signed<P>`: the payload's name without
/// `Payload`, except the key directory, whose signed form has a name of its own.
fn signed_type_name<P>() -> &'static str {
    match std::any::type_name::<P>().rsplit("::").next().unwrap() {
        "KeyDirectory" => "SignedKeyDirectory",
        other => other.trim_end_matches("Payload"),
    }
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

/// Passes an RNG through and keeps every byte string drawn with `fill_bytes`.
struct RecordingRng<'a> {
    inner: &'a mut StdRng,
    draws: Vec<Vec<u8>>,
}

impl TryRng for RecordingRng<'_> {
    type Error = std::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(rand_core::Rng::next_u32(self.inner))
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        Ok(rand_core::Rng::next_u64(self.inner))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        rand_core::Rng::fill_bytes(self.inner, dst);
        self.draws.push(dst.to_vec());
        Ok(())
    }
}

impl TryCryptoRng for RecordingRng<'_> {}

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
    // Blinding draws the randomizer, then the PSS salt, then the blinding factor: the
    // order RFC 9474's vectors are replayed in below. The salt is recorded for the vector.
    let mut recording = RecordingRng {
        inner: rng,
        draws: Vec::new(),
    };
    let blinding = key.blind_message(&mut recording, &message_bytes).unwrap();
    assert_eq!(recording.draws[0], blinding.randomizer);
    let salt = recording.draws[1].clone();
    assert_eq!(salt.len(), 48);
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
        "salt": hex::encode(&salt),
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
    // Added after the vectors above, so their bytes (and the RNG draws that made them)
    // stay as they were.
    out.push((
        "statement-request",
        signed_vector(
            "Device 1 asks for its EUR statement from the start; statement.json answers it.",
            "device key",
            device,
            &statement_request,
        ),
    ));
    out.extend(more_requests_and_answers(&w, rng, &pending));
    out.extend(offline_exchange(&w, rng));
    out.extend(api_bodies(&w, rng, &blind_coin));
    out.extend(customer_outcomes(&w, rng, &certificate_request));
    out.extend(revocations(&w, rng));
    out.extend(merchant_money(&w, rng));
    out.extend(swaps(&w, rng, &blind_coin));
    out
}

/// A swap (WIRE.md section 4.26): the blind coin of blind-coin.json (EUR 0.05) handed in
/// for new blind coins of 0.02, 0.02 and 0.01, the issuer's receipt that swapped it, and
/// its receipt refusing the same coin in another request as double spent; and a merchant
/// taking the coin payment of endorsed-coin-payment.json as coins.
fn swaps(w: &Specimens, rng: &mut StdRng, blind: &BlindCoin) -> Vec<(&'static str, Value)> {
    let issuer = &w.issuer;
    let eur = |minor_units| Amount::new(minor_units, Currency::EUR);
    let outputs: Vec<PendingCoin> = [2u64, 2, 1]
        .iter()
        .map(|v| PendingCoin::new(rng, &issuer.keyset, eur(*v)).unwrap())
        .collect();
    let request = SwapRequest {
        request_key: nonce(rng),
        coins: vec![Coin::Blind(blind.clone())],
        keyset_id: issuer.keyset.id(),
        outputs: outputs
            .iter()
            .map(|p| (p.amount().minor_units, p.blinded().clone()))
            .collect(),
    };
    let signatures: Vec<BlindSignature> = outputs
        .iter()
        .map(|p| {
            issuer
                .denomination_key(p.amount().minor_units)
                .unwrap()
                .sign_blinded(rng, p.blinded())
                .unwrap()
        })
        .collect();
    // Each signature finalizes into a valid new coin.
    for (p, signature) in outputs.iter().zip(&signatures) {
        let key = issuer.keyset.key_for(p.amount().minor_units).unwrap();
        let coin = p.finalize(key, signature).unwrap();
        Coin::Blind(coin).verify(w.directory(), NOW).unwrap();
    }
    let swapped = SwapReceipt::sign(
        SwapReceiptPayload {
            request_digest: codec::digest(&request).unwrap(),
            outcome: SwapOutcome::Swapped {
                keyset_id: issuer.keyset.id(),
                signatures,
            },
            answered_at: NOW,
        },
        &issuer.answer_signer,
        rng,
    )
    .unwrap();
    swapped.verify_for(&request, w.directory(), NOW).unwrap();
    let again = SwapRequest {
        request_key: nonce(rng),
        outputs: vec![(
            5,
            PendingCoin::new(rng, &issuer.keyset, eur(5))
                .unwrap()
                .blinded()
                .clone(),
        )],
        ..request.clone()
    };
    let later = NOW.saturating_add(std::time::Duration::from_secs(60));
    let double_spent = SwapReceipt::sign(
        SwapReceiptPayload {
            request_digest: codec::digest(&again).unwrap(),
            outcome: SwapOutcome::DoubleSpent {
                first_redeemed_at: NOW,
                coins: vec![blind.coin_id],
            },
            answered_at: later,
        },
        &issuer.answer_signer,
        rng,
    )
    .unwrap();
    double_spent
        .verify_for(&again, w.directory(), later)
        .unwrap();
    // A merchant takes the coin payment of endorsed-coin-payment.json as two new coins.
    let taken: Vec<PendingCoin> = [10u64, 5]
        .iter()
        .map(|v| PendingCoin::new(rng, &issuer.keyset, eur(*v)).unwrap())
        .collect();
    let merchant_request = MerchantSwapRequest::sign(
        MerchantSwapRequestPayload {
            merchant_id: w.merchant_payload().merchant_id,
            request_key: nonce(rng),
            payments: vec![w.endorsed.clone()],
            keyset_id: issuer.keyset.id(),
            outputs: taken
                .iter()
                .map(|p| (p.amount().minor_units, p.blinded().clone()))
                .collect(),
        },
        &w.merchant,
        rng,
    )
    .unwrap();
    merchant_request.verify(w.merchant_payload()).unwrap();
    let merchant_receipt = SwapReceipt::sign(
        SwapReceiptPayload {
            request_digest: codec::digest(&merchant_request).unwrap(),
            outcome: SwapOutcome::Swapped {
                keyset_id: issuer.keyset.id(),
                signatures: taken
                    .iter()
                    .map(|p| {
                        issuer
                            .denomination_key(p.amount().minor_units)
                            .unwrap()
                            .sign_blinded(rng, p.blinded())
                            .unwrap()
                    })
                    .collect(),
            },
            answered_at: NOW,
        },
        &issuer.answer_signer,
        rng,
    )
    .unwrap();
    merchant_receipt
        .verify_for_merchant(&merchant_request, w.directory(), NOW)
        .unwrap();
    // Device 1 swaps the identified coin of identified-coin.json for a blind coin.
    let account = w.account();
    let for_identified = PendingCoin::new(rng, &issuer.keyset, eur(5)).unwrap();
    let device_request = DeviceSwapRequest::sign(
        DeviceSwapRequestPayload {
            account_id: account.account_id,
            device_id: account.device_id,
            swap: SwapRequest {
                request_key: nonce(rng),
                coins: vec![Coin::Identified(w.identified_coin.clone())],
                keyset_id: issuer.keyset.id(),
                outputs: vec![(5, for_identified.blinded().clone())],
            },
            created_at: NOW,
            nonce: nonce(rng),
        },
        &w.device,
        rng,
    )
    .unwrap();
    device_request
        .verify_signature(&account.device_key)
        .unwrap();
    assert!(device_request.payload.swap.hands_in_identified());
    let answer_key = issuer.answer_signer.verifying_key();
    vec![
        (
            "device-swap-request",
            signed_vector(
                "POST /v1/device-swaps: device 1 swaps the identified coin of \
                 identified-coin.json (EUR 0.05, its account's holder) for a new blind coin \
                 of EUR 0.05. The answer is a SwapReceipt whose request_digest is \
                 codec::digest of payload.swap (the inner SwapRequest).",
                "device key",
                w.device.verifying_key(),
                &device_request,
            ),
        ),
        (
            "merchant-swap-request",
            signed_vector(
                "POST /v1/merchant-swaps: merchant 1 takes the coin payment of \
                 endorsed-coin-payment.json (EUR 0.15) as two new blind coins of EUR 0.10 and \
                 0.05 instead of account credit; merchant-swap-receipt.json answers it.",
                "merchant key",
                w.merchant.verifying_key(),
                &merchant_request,
            ),
        ),
        (
            "merchant-swap-receipt",
            signed_vector(
                "The issuer's receipt for merchant-swap-request.json: swapped, one blind \
                 signature per output.",
                "issuer answer key",
                answer_key,
                &merchant_receipt,
            ),
        ),
        (
            "swap-request",
            unsigned_vector(
                "SwapRequest",
                "POST /v1/swaps: the blind coin of blind-coin.json (EUR 0.05) for new blind \
                 coins of EUR 0.02, 0.02 and 0.01; swap-receipt.json answers it.",
                &request,
            ),
        ),
        (
            "swap-receipt",
            signed_vector(
                "The issuer's receipt for swap-request.json: swapped, one blind signature per \
                 output (each finalizes into a valid coin).",
                "issuer answer key",
                answer_key,
                &swapped,
            ),
        ),
        (
            "swap-request-again",
            unsigned_vector(
                "SwapRequest",
                "The same coin in another request (another key, one output of EUR 0.05), \
                 after swap-request.json was done; swap-receipt-double-spent.json answers \
                 it.",
                &again,
            ),
        ),
        (
            "swap-receipt-double-spent",
            signed_vector(
                "The issuer's receipt for swap-request-again.json: the coin was spent (by \
                 swap-request.json); nothing was claimed or signed.",
                "issuer answer key",
                answer_key,
                &double_spent,
            ),
        ),
    ]
}

/// The revocation list of `GET /v1/revocations` (WIRE.md section 4.23): a full list and
/// the delta from it to the next version, which a cache takes in that order.
fn revocations(w: &Specimens, rng: &mut StdRng) -> Vec<(&'static str, Value)> {
    let account = w.account();
    let merchant_id = w.merchant_payload().merchant_id;
    let grace_secs = 6 * 3600;
    let full = RevocationList::sign(
        RevocationListPayload {
            version: 3,
            base_version: 0,
            issued_at: NOW,
            grace_secs,
            // In the order of the items' encoding: variant index, then uuid bytes.
            entries: vec![
                RevocationEntry {
                    item: RevokedItem::Device(account.device_id),
                    listed_since: NOW,
                },
                RevocationEntry {
                    item: RevokedItem::Account(account.account_id),
                    listed_since: NOW,
                },
                RevocationEntry {
                    item: RevokedItem::Coin(w.identified_coin.payload.coin_id),
                    listed_since: NOW,
                },
            ],
            lifted: vec![],
        },
        &w.issuer.answer_signer,
        rng,
    )
    .unwrap();
    let later = NOW.saturating_add(std::time::Duration::from_secs(10));
    let delta = RevocationList::sign(
        RevocationListPayload {
            version: 4,
            base_version: 3,
            issued_at: later,
            grace_secs,
            entries: vec![RevocationEntry {
                item: RevokedItem::Merchant(merchant_id),
                listed_since: later,
            }],
            lifted: vec![RevokedItem::Account(account.account_id)],
        },
        &w.issuer.answer_signer,
        rng,
    )
    .unwrap();
    // The delta applies to the full list: a client holding version 3 reaches version 4.
    let mut cache = RevocationCache::new();
    cache.apply(&full, w.directory(), later).unwrap();
    cache.apply(&delta, w.directory(), later).unwrap();
    assert_eq!(cache.version(), 4);
    assert_eq!(cache.len(), 3);
    let answer_key = w.issuer.answer_signer.verifying_key();
    vec![
        (
            "revocation-list-full",
            signed_vector(
                "GET /v1/revocations: the full list of version 3 (base_version 0): device 1, \
                 its account (frozen) and the identified coin of identified-coin.json.",
                "issuer answer key",
                answer_key,
                &full,
            ),
        ),
        (
            "revocation-list-delta",
            signed_vector(
                "GET /v1/revocations?since=3: the delta from revocation-list-full.json to \
                 version 4: merchant 1 listed, device 1's account lifted (unfrozen).",
                "issuer answer key",
                answer_key,
                &delta,
            ),
        ),
    ]
}

/// A merchant's statement, its payouts (one paid, one declined) and its refunds (to an
/// account, and by voucher) (WIRE.md sections 4.24 and 4.25).
fn merchant_money(w: &Specimens, rng: &mut StdRng) -> Vec<(&'static str, Value)> {
    let issuer = &w.issuer;
    let account = w.account();
    let merchant_id = w.merchant_payload().merchant_id;
    let merchant = w.merchant.verifying_key();
    let answer_key = issuer.answer_signer.verifying_key();
    let eur = |minor_units| Amount::new(minor_units, Currency::EUR);
    let paid_id = PayoutId::random(rng);
    let declined_id = PayoutId::random(rng);
    let refund_id = RefundId::random(rng);
    let voucher_refund_id = RefundId::random(rng);
    let record_payment = w.request.payload.request_id;
    let coin_payment = w.endorsed.payload.payment.request.payload.request_id;

    let statement_request = MerchantStatementRequest::sign(
        MerchantStatementRequestPayload {
            merchant_id,
            currency: Currency::EUR,
            after_seq: None,
            limit: 100,
            created_at: NOW,
            nonce: nonce(rng),
        },
        &w.merchant,
        rng,
    )
    .unwrap();
    let entry = |seq: u64, delta: i128, balance_after: i128, memo: String| StatementEntry {
        seq,
        at: NOW,
        delta,
        balance_after,
        memo,
    };
    let statement = MerchantStatement::sign(
        MerchantStatementPayload {
            merchant_id,
            request_digest: codec::digest(&statement_request).unwrap(),
            currency: Currency::EUR,
            balance: 265,
            entries: vec![
                entry(1, 1_250, 1_250, "withdrawal record".into()),
                entry(2, 15, 1_265, "coins redeemed".into()),
                entry(3, -500, 765, format!("payout {paid_id}")),
                entry(4, -200, 565, format!("payout {declined_id}")),
                entry(5, 200, 765, format!("payout {declined_id} declined")),
                entry(6, -500, 265, format!("refund {refund_id} to account")),
            ],
            answered_at: NOW,
        },
        &issuer.answer_signer,
        rng,
    )
    .unwrap();
    statement
        .verify_for(&statement_request, w.directory(), NOW)
        .unwrap();

    let payout_request = |payout_id, minor_units, rng: &mut StdRng| {
        PayoutRequest::sign(
            PayoutRequestPayload {
                merchant_id,
                payout_id,
                amount: eur(minor_units),
                created_at: NOW,
                nonce: nonce(rng),
            },
            &w.merchant,
            rng,
        )
        .unwrap()
    };
    let paid_request = payout_request(paid_id, 500, rng);
    let paid = PayoutReceipt::sign(
        PayoutReceiptPayload {
            merchant_id,
            payout_id: paid_id,
            request_digest: codec::digest(&paid_request).unwrap(),
            amount: eur(500),
            state: PayoutState::Paid {
                reference: format!("demo-{paid_id}"),
                paid_at: NOW,
            },
            answered_at: NOW,
        },
        &issuer.answer_signer,
        rng,
    )
    .unwrap();
    paid.verify_for(&paid_request, w.directory(), NOW).unwrap();
    let declined_request = payout_request(declined_id, 200, rng);
    let declined = PayoutReceipt::sign(
        PayoutReceiptPayload {
            merchant_id,
            payout_id: declined_id,
            request_digest: codec::digest(&declined_request).unwrap(),
            amount: eur(200),
            state: PayoutState::Declined {
                reason: "account closed".into(),
                declined_at: NOW,
            },
            answered_at: NOW,
        },
        &issuer.answer_signer,
        rng,
    )
    .unwrap();
    declined
        .verify_for(&declined_request, w.directory(), NOW)
        .unwrap();

    let refund_request = RefundRequest::sign(
        RefundRequestPayload {
            merchant_id,
            refund_id,
            request_id: record_payment,
            amount: eur(500),
            created_at: NOW,
            nonce: nonce(rng),
        },
        &w.merchant,
        rng,
    )
    .unwrap();
    refund_request.verify(w.merchant_payload()).unwrap();
    let refund_receipt = RefundReceipt::sign(
        RefundReceiptPayload {
            merchant_id,
            refund_id,
            request_id: record_payment,
            account_id: account.account_id,
            amount: eur(500),
            refunded_total: eur(500),
            refunded_at: NOW,
            request_digest: codec::digest(&refund_request).unwrap(),
            answered_at: NOW,
        },
        &issuer.answer_signer,
        rng,
    )
    .unwrap();
    refund_receipt
        .verify_for(&refund_request, w.directory(), NOW)
        .unwrap();
    let voucher = RefundVoucher::sign(
        RefundVoucherPayload {
            merchant_id,
            refund_id: voucher_refund_id,
            request_id: coin_payment,
            amount: eur(10),
            created_at: NOW,
        },
        &w.merchant,
        rng,
    )
    .unwrap();
    voucher.verify(w.merchant_payload()).unwrap();
    let refund_coin = PendingCoin::new(rng, &issuer.keyset, eur(10)).unwrap();
    let voucher_withdrawal = VoucherWithdrawalRequest {
        voucher: voucher.clone(),
        keyset_id: issuer.keyset.id(),
        coins: vec![(10, refund_coin.blinded().clone())],
    };

    vec![
        (
            "merchant-statement-request",
            signed_vector(
                "POST /v1/merchant-statements: merchant 1 asks for its EUR ledger from the \
                 start; merchant-statement.json answers it.",
                "merchant key",
                merchant,
                &statement_request,
            ),
        ),
        (
            "merchant-statement",
            signed_vector(
                "The issuer's answer to merchant-statement-request.json: credits for a record \
                 and coins, the payouts of payout-receipt-paid.json and \
                 payout-receipt-declined.json, and the refund of refund-receipt.json.",
                "issuer answer key",
                answer_key,
                &statement,
            ),
        ),
        (
            "payout-request",
            signed_vector(
                "POST /v1/payouts: merchant 1 asks for EUR 5.00 to its bank account on file; \
                 payout-receipt-paid.json answers it.",
                "merchant key",
                merchant,
                &paid_request,
            ),
        ),
        (
            "payout-receipt-paid",
            signed_vector(
                "The issuer's receipt for payout-request.json: paid, with the bank's reference.",
                "issuer answer key",
                answer_key,
                &paid,
            ),
        ),
        (
            "payout-request-declined",
            signed_vector(
                "POST /v1/payouts: merchant 1 asks for EUR 2.00 under another payout id; \
                 payout-receipt-declined.json answers it.",
                "merchant key",
                merchant,
                &declined_request,
            ),
        ),
        (
            "payout-receipt-declined",
            signed_vector(
                "The issuer's receipt for payout-request-declined.json: the bank declined, the \
                 amount is back on the merchant's balance.",
                "issuer answer key",
                answer_key,
                &declined,
            ),
        ),
        (
            "refund-request",
            signed_vector(
                "POST /v1/refunds: merchant 1 refunds EUR 5.00 of the record payment of \
                 payment-request.json to the paying account; refund-receipt.json answers it.",
                "merchant key",
                merchant,
                &refund_request,
            ),
        ),
        (
            "refund-receipt",
            signed_vector(
                "The issuer's receipt for refund-request.json: device 1's account credited.",
                "issuer answer key",
                answer_key,
                &refund_receipt,
            ),
        ),
        (
            "refund-voucher",
            signed_vector(
                "Merchant 1's voucher refunding EUR 0.10 of the coin payment of \
                 endorsed-coin-payment.json, handed to the customer offline (a bearer \
                 instrument).",
                "merchant key",
                merchant,
                &voucher,
            ),
        ),
        (
            "voucher-withdrawal-request",
            unsigned_vector(
                "VoucherWithdrawalRequest",
                "POST /v1/refund-withdrawals: refund-voucher.json and one blinded coin of EUR \
                 0.10 that adds up to its amount; answered with a BlindWithdrawalResponse.",
                &voucher_withdrawal,
            ),
        ),
    ]
}

/// Device approval and enrollment, merchant registration, identified withdrawal, and the
/// blind withdrawal's answer.
fn more_requests_and_answers(
    w: &Specimens,
    rng: &mut StdRng,
    pending: &PendingCoin,
) -> Vec<(&'static str, Value)> {
    let issuer = &w.issuer;
    let account = w.account();
    let new_device = fixtures::device(2);
    let registration = DeviceRegistration::sign(
        DeviceRegistrationPayload {
            device_key: new_device.verifying_key().clone(),
            account_id: Some(account.account_id),
            created_at: NOW,
            nonce: nonce(rng),
        },
        &new_device,
        rng,
    )
    .unwrap();
    let approval = DeviceApproval::sign(
        DeviceApprovalPayload {
            account_id: account.account_id,
            approving_device: account.device_id,
            new_device_key: new_device.key_id(),
            created_at: NOW,
            nonce: nonce(rng),
        },
        &w.device,
        rng,
    )
    .unwrap();
    let enrollment = scrip_api::DeviceEnrollment {
        registration: registration.clone(),
        approval: approval.clone(),
    };
    let merchant_key = fixtures::merchant(2);
    let merchant_registration = MerchantRegistration::sign(
        MerchantRegistrationPayload {
            merchant_key: merchant_key.verifying_key().clone(),
            category: MerchantCategory::GROCERY,
            region: Region::new("DE-BY").unwrap(),
            created_at: NOW,
            nonce: nonce(rng),
        },
        &merchant_key,
        rng,
    )
    .unwrap();
    let identified_request = IdentifiedWithdrawalRequest::sign(
        IdentifiedWithdrawalRequestPayload {
            account_id: account.account_id,
            device_id: account.device_id,
            currency: Currency::EUR,
            amounts: vec![5, 10],
            idempotency_key: nonce(rng),
            created_at: NOW,
            nonce: nonce(rng),
        },
        &w.device,
        rng,
    )
    .unwrap();
    let holder = VirtualId::random(rng);
    let identified_coins = [5, 10]
        .into_iter()
        .map(|minor_units| {
            IdentifiedCoin::sign(
                IdentifiedCoinPayload {
                    coin_id: CoinId::random(rng),
                    amount: Amount::new(minor_units, Currency::EUR),
                    holder,
                    issued_at: NOW,
                },
                &issuer.identified_coin_issuer,
                rng,
            )
            .unwrap()
        })
        .collect();
    let blind_response = BlindWithdrawalResponse {
        keyset_id: issuer.keyset.id(),
        signatures: vec![issuer
            .denomination_key(10)
            .unwrap()
            .sign_blinded(rng, pending.blinded())
            .unwrap()],
    };
    // The answer finalizes into a valid coin: it answers blind-withdrawal-request.json.
    pending
        .clone()
        .finalize(
            issuer.keyset.key_for(10).unwrap(),
            &blind_response.signatures[0],
        )
        .unwrap()
        .verify(w.directory(), NOW)
        .unwrap();
    vec![
        (
            "device-approval",
            signed_vector(
                "Device 1 approves device 2's key for its account (inside device-enrollment.json).",
                "the approving device's key",
                w.device.verifying_key(),
                &approval,
            ),
        ),
        (
            "device-enrollment",
            unsigned_vector(
                "DeviceEnrollment",
                "POST /v1/devices: device 2's registration naming device 1's account, and device \
                 1's approval of device 2's key.",
                &enrollment,
            ),
        ),
        (
            "merchant-registration",
            signed_vector(
                "Merchant 2 presents its key, grocery (5411), DE-BY (self-signed).",
                "the registering merchant's own key",
                merchant_key.verifying_key(),
                &merchant_registration,
            ),
        ),
        (
            "identified-withdrawal-request",
            signed_vector(
                "Device 1 asks for two identified coins, EUR 0.05 and EUR 0.10.",
                "device key",
                w.device.verifying_key(),
                &identified_request,
            ),
        ),
        (
            "identified-withdrawal-response",
            unsigned_vector(
                "IdentifiedWithdrawalResponse",
                "The identified coins issued for identified-withdrawal-request.json, in the \
                 order of its amounts, both written to the account's virtual id.",
                &IdentifiedWithdrawalResponse {
                    coins: identified_coins,
                },
            ),
        ),
        (
            "blind-withdrawal-response",
            unsigned_vector(
                "BlindWithdrawalResponse",
                "The blind signature answering blind-withdrawal-request.json (one coin of EUR \
                 0.10).",
                &blind_response,
            ),
        ),
    ]
}

/// The offline messages between a merchant and a wallet (NFC, BLE, QR).
fn offline_exchange(w: &Specimens, rng: &mut StdRng) -> Vec<(&'static str, Value)> {
    let offer = MerchantOffer {
        request: w.request.clone(),
        merchant_certificate: w.merchant_cert.clone(),
    };
    let by_record = PaymentAnswer::ByRecord {
        record: w.record.clone(),
        account_certificate: w.account_cert.clone(),
        balance_certificate: w.balance_cert.clone(),
    };
    let by_coins = PaymentAnswer::ByCoins(w.coin_payment.clone());
    let rejection = PaymentRejection::sign(
        PaymentRejectionPayload {
            request_id: w.request.payload.request_id,
            answer_digest: codec::digest(&by_record).unwrap(),
            reason: RejectReason {
                code: ReasonCode::ExposureLimit,
                message: "the terminal's unsettled total is reached".into(),
            },
            rejected_at: NOW,
        },
        &w.merchant,
        rng,
    )
    .unwrap();
    vec![
        (
            "merchant-offer",
            unsigned_vector(
                "MerchantOffer",
                "Merchant 1 offers payment-request.json with its certificate.",
                &offer,
            ),
        ),
        (
            "payment-answer-record",
            unsigned_vector(
                "PaymentAnswer",
                "Device 1 answers the offer by record (variant 0 ByRecord): withdrawal-record.json \
                 with its account and balance certificates.",
                &by_record,
            ),
        ),
        (
            "payment-answer-coins",
            unsigned_vector(
                "PaymentAnswer",
                "A wallet answers a EUR 0.15 request with coins (variant 1 ByCoins): the coin \
                 payment of coin-payment.json.",
                &by_coins,
            ),
        ),
        (
            "payment-receipt",
            unsigned_vector(
                "PaymentReceipt",
                "Merchant 1's receipt for a payment by coins (variant 1 Coins): \
                 endorsed-coin-payment.json.",
                &PaymentReceipt::Coins(w.endorsed.clone()),
            ),
        ),
        (
            "payment-rejection",
            signed_vector(
                "Merchant 1 refuses payment-answer-record.json (answer_digest = SHA-256 of its \
                 encoded) with exposure_limit.",
                "merchant key",
                w.merchant.verifying_key(),
                &rejection,
            ),
        ),
        (
            "merchant-reply-receipt",
            unsigned_vector(
                "MerchantReply",
                "Merchant 1 accepts payment-answer-record.json (variant 0 Receipt, receipt variant \
                 0 Record): countersigned-record.json.",
                &MerchantReply::Receipt(PaymentReceipt::Record(w.countersigned.clone())),
            ),
        ),
        (
            "merchant-reply-rejection",
            unsigned_vector(
                "MerchantReply",
                "Merchant 1 refuses payment-answer-record.json (variant 1 Rejection): \
                 payment-rejection.json.",
                &MerchantReply::Rejection(rejection),
            ),
        ),
    ]
}

/// What a customer learns of its payments (issue 17): the answer to a certificate request
/// on `POST /v2/balance-certificates`, whose hand-ins are answered like a sync, and the
/// state of a coin payment by its receipt.
fn customer_outcomes(
    w: &Specimens,
    rng: &mut StdRng,
    certificate_request: &BalanceCertificateRequest,
) -> Vec<(&'static str, Value)> {
    use scrip_api::*;
    let account = w.account();
    let hand_ins = SyncReport::sign(
        SyncReportPayload {
            account_id: account.account_id,
            device_id: account.device_id,
            request_digest: codec::digest(certificate_request).unwrap(),
            records: vec![RedemptionOutcome::AlreadyAccepted {
                first_accepted_at: NOW,
            }],
            confirmations_recorded: 1,
            answered_at: NOW,
        },
        &w.issuer.answer_signer,
        rng,
    )
    .unwrap();
    vec![
        (
            "balance-certificate-answer",
            api_body(
                "BalanceCertificateAnswer",
                "POST /v2/balance-certificates answers balance-certificate-request.json: \
                 balance-certificate.json and a SyncReport (signed by the issuer answer key) \
                 answering its one record and one confirmation.",
                &BalanceCertificateAnswer {
                    certificate: w.balance_cert.clone(),
                    hand_ins,
                },
            ),
        ),
        (
            "coin-payment-state",
            api_body(
                "CoinPaymentState",
                "POST /v1/coin-payments/state with endorsed-coin-payment.json: merchant 1 \
                 redeemed exactly that payment.",
                &CoinPaymentState {
                    request_id: w.endorsed.payload.payment.request.payload.request_id,
                    merchant_id: w.endorsed.payload.merchant_id,
                    state: CoinPaymentStatus::Settled { settled_at: NOW },
                },
            ),
        ),
    ]
}

fn api_body<T: Message>(name: &str, description: &str, value: &T) -> Value {
    let mut vector = unsigned_vector(name, description, value);
    vector["scheme"] =
        json!("none (an HTTP body; the signed objects inside have their own vectors)");
    vector
}

/// The HTTP API's bodies that are not tokens (`scrip/api/<name>/v1`, WIRE.md section 5.3).
fn api_bodies(w: &Specimens, rng: &mut StdRng, blind: &BlindCoin) -> Vec<(&'static str, Value)> {
    use scrip_api::*;
    let account = w.account();
    let merchant_id = w.merchant_payload().merchant_id;
    let later = NOW.saturating_add(std::time::Duration::from_secs(3600));
    let reissued = IdentifiedCoin::sign(
        IdentifiedCoinPayload {
            coin_id: CoinId::random(rng),
            amount: Amount::new(5, Currency::EUR),
            holder: VirtualId::random(rng),
            issued_at: later,
        },
        &w.issuer.identified_coin_issuer,
        rng,
    )
    .unwrap();
    let frozen = FrozenAccount {
        account_id: account.account_id,
        frozen_at: NOW,
        reason: "card reported stolen".into(),
    };
    let double_spend = FraudLogItem {
        key: "00000000000000000001".into(),
        entry: FraudEntry {
            at: NOW,
            kind: FraudKind::DoubleSpend {
                merchant: merchant_id,
                coins: vec![w.identified_coin.payload.coin_id],
                first_redeemed_at: NOW,
                holders: vec![CoinHolder {
                    coin_id: w.identified_coin.payload.coin_id,
                    virtual_id: w.identified_coin.payload.holder,
                    account_id: Some(account.account_id),
                    revoked: false,
                }],
            },
        },
    };
    vec![
        ("account-opened-body", api_body("AccountOpenedBody", "POST /v1/accounts answers: device 1's account, its virtual id and account-certificate.json.", &AccountOpenedBody {
                    account_id: account.account_id,
                    device_id: account.device_id,
                    virtual_id: w.identified_coin.payload.holder,
                    certificate: w.account_cert.clone(),
                })),
        ("coin-state", api_body("CoinState", "GET /v1/coins/{spend_id} for the coin of blind-coin.json after its redemption.", &CoinState {
                    spend_id: Coin::Blind(blind.clone()).spend_id().unwrap(),
                    state: CoinStatus::Redeemed { redeemed_at: NOW },
                })),
        ("done", api_body("Done", "The answer of POST /v1/deposit-confirmations, GET /healthz and GET /readyz.", &Done { ok: true })),
        ("error-body", api_body("ErrorBody", "Every refusal (JSON only on the wire): here 401 stale_request.", &ErrorBody {
                    code: ReasonCode::StaleRequest,
                    message: "created_at is outside the allowed clock skew".into(),
                })),
        ("root-key", api_body("RootKey", "GET /v1/root-key: the root key of signed-key-directory.json.", &RootKey {
                    key: w.issuer.directory_root.verifying_key().clone(),
                })),
        ("device-revoked", api_body("DeviceRevoked", "POST /v1/devices/{device_id}/revoke answers.", &DeviceRevoked {
                    device_id: account.device_id,
                    revoked_at: NOW,
                })),
        ("reissue-request", api_body("ReissueRequest", "POST /v1/devices/{device_id}/reissue: reissue the lost device's identified coins to another device.", &ReissueRequest {
                    to: DeviceId::random(rng),
                })),
        ("reissued-coins", api_body("ReissuedCoins", "The replacement identified coins of a reissue.", &ReissuedCoins {
                    coins: vec![reissued],
                })),
        ("operator-reason", api_body("OperatorReason", "The body of POST /v1/accounts/{account_id}/freeze, .../unfreeze and /v1/merchants/{merchant_id}/revoke.", &OperatorReason {
                    reason: "card reported stolen".into(),
                })),
        ("frozen-account", api_body("FrozenAccount", "POST /v1/accounts/{account_id}/freeze answers.", &frozen)),
        ("frozen-accounts-page", api_body("FrozenAccountsPage", "GET /v1/frozen-accounts: one frozen account.", &FrozenAccountsPage {
                    accounts: vec![frozen.clone()],
                })),
        ("account-unfrozen", api_body("AccountUnfrozen", "POST /v1/accounts/{account_id}/unfreeze answers.", &AccountUnfrozen {
                    account_id: account.account_id,
                    frozen_at: NOW,
                    frozen_reason: "card reported stolen".into(),
                    unfrozen_at: later,
                    reason: "card found".into(),
                })),
        ("merchant-revoked", api_body("MerchantRevoked", "POST /v1/merchants/{merchant_id}/revoke answers.", &MerchantRevoked {
                    merchant_id,
                    revoked_at: NOW,
                    reason: "terminal stolen".into(),
                })),
        ("fraud-log-page", api_body("FraudLogPage", "GET /v1/fraud-log: one double spend of the identified coin of identified-coin.json.", &FraudLogPage {
                    entries: vec![double_spend],
                })),
    ]
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

fn hex_field_at(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap()).unwrap()
}

/// Decodes the committed bytes as `T`, checks the decoded value's JSON matches the
/// vector's `value` and that it re-encodes to the same bytes.
fn check_unsigned<T: Message + Serialize + serde::de::DeserializeOwned>(name: &str) {
    let v = load(name);
    let encoded = hex_field(&v, "encoded");
    let object: T = codec::decode(&encoded).unwrap();
    assert_eq!(serde_json::to_value(&object).unwrap(), v["value"], "{name}");
    assert_eq!(codec::encode(&object).unwrap(), encoded, "{name}");
    assert_eq!(v["tag"], T::TAG, "{name}");
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

    check_signed::<StatementRequestPayload>("statement-request");
    check_signed::<DeviceApprovalPayload>("device-approval");
    check_signed::<MerchantRegistrationPayload>("merchant-registration");
    check_signed::<IdentifiedWithdrawalRequestPayload>("identified-withdrawal-request");
    check_signed::<PaymentRejectionPayload>("payment-rejection");
    check_unsigned::<MerchantOffer>("merchant-offer");
    check_unsigned::<PaymentAnswer>("payment-answer-record");
    check_unsigned::<PaymentAnswer>("payment-answer-coins");
    check_unsigned::<PaymentReceipt>("payment-receipt");
    check_unsigned::<MerchantReply>("merchant-reply-receipt");
    check_unsigned::<MerchantReply>("merchant-reply-rejection");
    check_unsigned::<BlindWithdrawalResponse>("blind-withdrawal-response");
    check_unsigned::<IdentifiedWithdrawalResponse>("identified-withdrawal-response");
    check_unsigned::<scrip_api::DeviceEnrollment>("device-enrollment");
    check_unsigned::<scrip_api::AccountOpenedBody>("account-opened-body");
    check_unsigned::<scrip_api::CoinState>("coin-state");
    check_unsigned::<scrip_api::Done>("done");
    check_unsigned::<scrip_api::ErrorBody>("error-body");
    check_unsigned::<scrip_api::RootKey>("root-key");
    check_unsigned::<scrip_api::DeviceRevoked>("device-revoked");
    check_unsigned::<scrip_api::ReissueRequest>("reissue-request");
    check_unsigned::<scrip_api::ReissuedCoins>("reissued-coins");
    check_unsigned::<scrip_api::OperatorReason>("operator-reason");
    check_unsigned::<scrip_api::FrozenAccount>("frozen-account");
    check_unsigned::<scrip_api::FrozenAccountsPage>("frozen-accounts-page");
    check_unsigned::<scrip_api::AccountUnfrozen>("account-unfrozen");
    check_unsigned::<scrip_api::MerchantRevoked>("merchant-revoked");
    check_unsigned::<scrip_api::FraudLogPage>("fraud-log-page");
    check_unsigned::<scrip_api::BalanceCertificateAnswer>("balance-certificate-answer");
    check_unsigned::<scrip_api::CoinPaymentState>("coin-payment-state");
    check_signed::<RevocationListPayload>("revocation-list-full");
    check_signed::<RevocationListPayload>("revocation-list-delta");
    check_signed::<MerchantStatementRequestPayload>("merchant-statement-request");
    check_signed::<MerchantStatementPayload>("merchant-statement");
    check_signed::<PayoutRequestPayload>("payout-request");
    check_signed::<PayoutReceiptPayload>("payout-receipt-paid");
    check_signed::<PayoutRequestPayload>("payout-request-declined");
    check_signed::<PayoutReceiptPayload>("payout-receipt-declined");
    check_signed::<RefundRequestPayload>("refund-request");
    check_signed::<RefundReceiptPayload>("refund-receipt");
    check_signed::<RefundVoucherPayload>("refund-voucher");
    check_unsigned::<VoucherWithdrawalRequest>("voucher-withdrawal-request");
    check_unsigned::<SwapRequest>("swap-request");
    check_unsigned::<SwapRequest>("swap-request-again");
    check_signed::<SwapReceiptPayload>("swap-receipt");
    check_signed::<SwapReceiptPayload>("swap-receipt-double-spent");
    check_signed::<MerchantSwapRequestPayload>("merchant-swap-request");
    check_signed::<SwapReceiptPayload>("merchant-swap-receipt");
    check_signed::<DeviceSwapRequestPayload>("device-swap-request");

    // The answers name what they answer: statement.json the statement request, the
    // rejection the answer by record, the approval the enrolled key.
    let digest_of = |name: &str| hex::encode(Sha256::digest(hex_field(&load(name), "encoded")));
    assert_eq!(
        load("statement")["value"]["payload"]["request_digest"],
        digest_of("statement-request")
    );
    assert_eq!(
        load("balance-certificate-answer")["value"]["hand_ins"]["payload"]["request_digest"],
        digest_of("balance-certificate-request")
    );
    assert_eq!(
        load("payment-rejection")["value"]["payload"]["answer_digest"],
        digest_of("payment-answer-record")
    );
    for (answer, request) in [
        ("merchant-statement", "merchant-statement-request"),
        ("payout-receipt-paid", "payout-request"),
        ("payout-receipt-declined", "payout-request-declined"),
        ("refund-receipt", "refund-request"),
        ("swap-receipt", "swap-request"),
        ("swap-receipt-double-spent", "swap-request-again"),
        ("merchant-swap-receipt", "merchant-swap-request"),
    ] {
        assert_eq!(
            load(answer)["value"]["payload"]["request_digest"],
            digest_of(request),
            "{answer} does not name {request}"
        );
    }
    assert_eq!(
        load("voucher-withdrawal-request")["value"]["voucher"],
        load("refund-voucher")["value"]
    );
    // The committed answers pass the checks a merchant makes before acting on them.
    let directory =
        codec::decode::<SignedKeyDirectory>(&hex_field(&load("signed-key-directory"), "encoded"))
            .unwrap()
            .payload;
    let signed = |name: &str| hex_field(&load(name), "encoded");
    codec::decode::<MerchantStatement>(&signed("merchant-statement"))
        .unwrap()
        .verify_for(
            &codec::decode(&signed("merchant-statement-request")).unwrap(),
            &directory,
            NOW,
        )
        .unwrap();
    codec::decode::<PayoutReceipt>(&signed("payout-receipt-declined"))
        .unwrap()
        .verify_for(
            &codec::decode(&signed("payout-request-declined")).unwrap(),
            &directory,
            NOW,
        )
        .unwrap();
    codec::decode::<RefundReceipt>(&signed("refund-receipt"))
        .unwrap()
        .verify_for(
            &codec::decode(&signed("refund-request")).unwrap(),
            &directory,
            NOW,
        )
        .unwrap();
    codec::decode::<SwapReceipt>(&signed("swap-receipt"))
        .unwrap()
        .verify_for(
            &codec::decode(&signed("swap-request")).unwrap(),
            &directory,
            NOW,
        )
        .unwrap();
    let mut cache = RevocationCache::new();
    for list in ["revocation-list-full", "revocation-list-delta"] {
        cache
            .apply(
                &codec::decode(&signed(list)).unwrap(),
                &directory,
                NOW.saturating_add(std::time::Duration::from_secs(10)),
            )
            .unwrap();
    }
    assert_eq!(cache.version(), 4);
    let enrollment = load("device-enrollment");
    let registration_key =
        hex_field_at(&enrollment["value"]["registration"]["payload"]["device_key"]);
    assert_eq!(
        enrollment["value"]["approval"]["payload"]["new_device_key"],
        hex::encode(Sha256::digest(&registration_key))
    );
    assert_eq!(
        enrollment["value"]["approval"],
        load("device-approval")["value"]
    );

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
    // The salt recorded at blinding is the one inside the signature: the PSS encoding of
    // the prepared message with that salt is what the signature opens to.
    let opened = key_open(&key, coin.signature.as_bytes());
    assert_eq!(
        opened,
        pss_sha384_encode(&prepared, &hex_field(&v, "salt"), opened.len())
    );
    let mut other_randomizer = coin.randomizer;
    other_randomizer[0] ^= 1;
    assert_eq!(
        key.verify_message(&coin.signature, other_randomizer, &prepared[32..]),
        Err(Error::BadSignature)
    );
}

/// What a blind signature opens to under the key (`s^e mod n`): the PSS-encoded message
/// (RFC 8017 EM, `emLen` = modulus length in bytes for the key sizes scrip uses).
fn key_open(key: &DenominationVerifyingKey, signature: &[u8]) -> Vec<u8> {
    use rsa::pkcs8::DecodePublicKey;
    use rsa::traits::PublicKeyParts;
    let public = rsa::RsaPublicKey::from_public_key_der(key.public_key().to_spki_der()).unwrap();
    let n = public.n();
    let em_len = (n.bits() as usize - 1).div_ceil(8);
    let s = BoxedUint::from_be_slice(signature, n.bits_precision()).unwrap();
    let opened = rsa::hazmat::rsa_encrypt(&public, &s).unwrap().to_be_bytes();
    opened[opened.len() - em_len..].to_vec()
}

/// EMSA-PSS-ENCODE (RFC 8017 section 9.1.1) with SHA-384, MGF1-SHA-384 and the given salt,
/// for a modulus of `8 * em_len` bits (so `emBits = 8 * em_len - 1`).
fn pss_sha384_encode(message: &[u8], salt: &[u8], em_len: usize) -> Vec<u8> {
    let m_hash = Sha384::digest(message);
    let h = Sha384::digest([&[0u8; 8][..], &m_hash, salt].concat());
    let mut db = vec![0u8; em_len - salt.len() - h.len() - 2];
    db.push(1);
    db.extend_from_slice(salt);
    let mut mask = Vec::new();
    for counter in 0u32.. {
        if mask.len() >= db.len() {
            break;
        }
        mask.extend_from_slice(&Sha384::digest([&h[..], &counter.to_be_bytes()].concat()));
    }
    let mut em: Vec<u8> = db.iter().zip(&mask).map(|(d, m)| d ^ m).collect();
    em[0] &= 0x7f;
    em.extend_from_slice(&h);
    em.push(0xbc);
    em
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
    // `encoded_msg` is the PSS encoding of `input_msg` with the RFC's salt, and what the
    // signature opens to.
    let encoded_msg = rfc_hex(v, "encoded_msg");
    assert_eq!(key_open(key, signature.as_bytes()), encoded_msg);
    assert_eq!(
        pss_sha384_encode(
            &rfc_hex(v, "input_msg"),
            &rfc_hex(v, "salt"),
            encoded_msg.len()
        ),
        encoded_msg
    );
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

/// Every type WIRE.md lists with a tag (sections 2.2, 2.3 and 5.3): its first backticked
/// name and its tag (the signed-object tag for signed types).
fn wire_md_types() -> Vec<(String, String)> {
    let wire =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("WIRE.md")).unwrap();
    let mut types = Vec::new();
    for line in wire.lines().filter(|l| l.starts_with("| `")) {
        let ticked: Vec<&str> = line.split('`').skip(1).step_by(2).collect();
        let tags: Vec<&str> = ticked
            .iter()
            .copied()
            .filter(|t| t.starts_with("scrip/") && t.ends_with("/v1"))
            .collect();
        let Some(first_tag) = tags.first() else {
            continue;
        };
        let tag = tags
            .iter()
            .find(|t| t.starts_with("scrip/signed/"))
            .unwrap_or(first_tag);
        types.push((ticked[0].to_owned(), (*tag).to_owned()));
    }
    types
}

#[test]
fn every_type_has_one_name_in_wire_md_and_the_vectors() {
    let listed = wire_md_types();
    assert!(
        listed.len() >= 50,
        "WIRE.md tag tables not found: {listed:?}"
    );
    let vectors: Vec<(String, String, String)> = generate()
        .into_iter()
        .filter(|(_, v)| v.get("version").is_some())
        .map(|(file, v)| {
            (
                file.to_owned(),
                v["type"].as_str().unwrap().to_owned(),
                v["tag"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    // Each vector's type is a type WIRE.md lists, under the vector's tag.
    for (file, name, tag) in &vectors {
        let named = listed.iter().any(|(n, t)| n == name && t == tag)
            // A blind coin is sent as a `Coin` (WIRE.md: "a `BlindCoin` has no tag").
            || (name == "BlindCoin" && listed.iter().any(|(n, t)| n == "Coin" && t == tag));
        assert!(
            named,
            "{file}.json: type {name} with tag {tag} is not in WIRE.md's tables"
        );
    }
    // Each type WIRE.md lists has a vector, except what is never sent on its own.
    let not_sent = [
        "BlindCoinMessage", // inside blind-coin.json (`message`, `message_tag`)
        "Coin",             // blind-coin.json and coin-payment.json hold coins
        "PendingCoin",      // wallet-local
        "KeysetIdInput",    // hashed into a keyset id
        "RevocationCache",  // wallet- and terminal-local
    ];
    let missing: Vec<&(String, String)> = listed
        .iter()
        .filter(|(name, tag)| {
            !not_sent.contains(&name.as_str())
                && !vectors.iter().any(|(_, n, t)| n == name && t == tag)
        })
        .collect();
    assert!(
        missing.is_empty(),
        "WIRE.md lists types without a golden vector (add one to generate() in \
         interop/tests/vectors.rs): {missing:?}"
    );
}
