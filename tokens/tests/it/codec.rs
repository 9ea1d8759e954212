//! The canonical codec: every type round-trips (binary and JSON); hostile bytes are
//! rejected with a precise error and never panic.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::fmt::Debug;

use common::*;
use proptest::prelude::*;
use scrip_tokens::*;

fn roundtrip<T: Message + PartialEq + Debug>(value: &T) -> Vec<u8> {
    let bytes = codec::encode(value).unwrap();
    assert_eq!(&codec::decode::<T>(&bytes).unwrap(), value, "{}", T::TAG);
    let json = serde_json::to_string(value).unwrap();
    assert_eq!(
        &serde_json::from_str::<T>(&json).unwrap(),
        value,
        "{} JSON",
        T::TAG
    );
    // The encoding is a function of the value: encoding again gives the same bytes.
    assert_eq!(codec::encode(value).unwrap(), bytes);
    bytes
}

#[test]
fn every_type_roundtrips() {
    let w = world();
    roundtrip(&w.account_cert);
    roundtrip(&w.account_cert.payload);
    roundtrip(&w.merchant_cert);
    roundtrip(&w.merchant_cert.payload);
    roundtrip(&w.balance_cert);
    roundtrip(&w.balance_cert.payload);
    roundtrip(&w.request);
    roundtrip(&w.record);
    roundtrip(&w.countersigned);
    roundtrip(&w.deposit_request);
    roundtrip(&w.deposit_record);
    roundtrip(&w.deposit_confirmation);
    roundtrip(&Coin::Blind(w.blind_coin.clone()));
    roundtrip(&Coin::Identified(w.identified_coin.clone()));
    roundtrip(&w.identified_coin);
    roundtrip(&w.blind_coin.message());
    roundtrip(&w.coin_payment);
    roundtrip(&w.endorsed);
    roundtrip(w.directory());
    let mut rng = rng(1);
    let pending = PendingCoin::new(&mut rng, &w.issuer.keyset, eur(5)).unwrap();
    roundtrip(&pending);

    // Refunds.
    let shop = fixtures::merchant(1);
    let refund = RefundRequestPayload {
        merchant_id: w.merchant_cert.payload.merchant_id,
        refund_id: RefundId::random(&mut rng),
        request_id: w.request.payload.request_id,
        amount: eur(5),
        created_at: fixtures::NOW,
        nonce: [7; 16],
    };
    roundtrip(&refund);
    let refund = RefundRequest::sign(refund, &shop, &mut rng).unwrap();
    roundtrip(&refund);
    let voucher = RefundVoucherPayload {
        merchant_id: refund.payload.merchant_id,
        refund_id: refund.payload.refund_id,
        request_id: refund.payload.request_id,
        amount: eur(5),
        created_at: fixtures::NOW,
    };
    roundtrip(&voucher);
    let voucher = RefundVoucher::sign(voucher, &shop, &mut rng).unwrap();
    roundtrip(&voucher);
    roundtrip(&VoucherWithdrawalRequest {
        voucher,
        keyset_id: w.issuer.keyset.id(),
        coins: vec![(5, pending.blinded().clone())],
    });
    let receipt = RefundReceiptPayload {
        merchant_id: refund.payload.merchant_id,
        refund_id: refund.payload.refund_id,
        request_id: refund.payload.request_id,
        account_id: w.account_cert.payload.account_id,
        amount: eur(5),
        refunded_total: eur(5),
        refunded_at: fixtures::NOW,
        request_digest: codec::digest(&refund).unwrap(),
        answered_at: fixtures::NOW,
    };
    roundtrip(&receipt);
}

#[test]
fn the_header_is_tag_nul_version() {
    let w = world();
    let bytes = codec::encode(&w.record).unwrap();
    let tag = WithdrawalRecord::TAG.as_bytes();
    assert_eq!(&bytes[..tag.len()], tag);
    assert_eq!(bytes[tag.len()], 0);
    assert_eq!(&bytes[tag.len() + 1..tag.len() + 3], &1u16.to_le_bytes());
    // Signed bytes are the payload's encoding, whose tag is the payload type's.
    let signed = w.record.signed_bytes().unwrap();
    assert!(signed.starts_with(b"scrip/withdrawal-record/v1\0\x01\x00"));
}

#[test]
fn unknown_versions_are_refused_not_misread() {
    let w = world();
    let mut bytes = codec::encode(&w.balance_cert).unwrap();
    let at = BalanceCertificate::TAG.len() + 1;
    bytes[at] = 2;
    assert_eq!(
        codec::decode::<BalanceCertificate>(&bytes),
        Err(Error::UnsupportedVersion {
            tag: BalanceCertificate::TAG,
            found: 2,
            supported: 1
        })
    );
}

#[test]
fn oversized_input_is_refused_before_parsing() {
    let w = world();
    let bytes = codec::encode(&w.countersigned).unwrap();
    assert_eq!(
        codec::decode_with_limit::<CountersignedRecord>(&bytes, bytes.len() - 1),
        Err(Error::TooLarge {
            len: bytes.len(),
            limit: bytes.len() - 1
        })
    );
    assert!(codec::decode_with_limit::<CountersignedRecord>(&bytes, bytes.len()).is_ok());
    let huge = vec![0u8; codec::DEFAULT_MAX_MESSAGE_LEN + 1];
    assert!(matches!(
        codec::decode::<KeyDirectory>(&huge),
        Err(Error::TooLarge { .. })
    ));
}

#[test]
fn forged_length_prefixes_do_not_allocate_or_panic() {
    // A coin payment header followed by a vector length of 2^62 and nothing else.
    let w = world();
    let mut bytes = codec::encode(&w.coin_payment).unwrap();
    let request_len =
        codec::encode(&w.coin_payment.request).unwrap().len() - (PaymentRequest::TAG.len() + 3);
    let coins_at = CoinPayment::TAG.len() + 3 + request_len;
    bytes.truncate(coins_at);
    bytes.extend_from_slice(&(1u64 << 62).to_le_bytes());
    assert!(matches!(
        codec::decode::<CoinPayment>(&bytes),
        Err(Error::Malformed(_))
    ));

    // A signature claiming 2^40 bytes.
    let mut bytes = codec::encode(&w.request).unwrap();
    let sig_len_at = bytes.len() - 256 - 8;
    bytes[sig_len_at..sig_len_at + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    assert!(matches!(
        codec::decode::<PaymentRequest>(&bytes),
        Err(Error::Malformed(_))
    ));
}

#[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
struct Probe<T>(T);

macro_rules! probe_message {
    ($t:ty, $tag:literal) => {
        impl Message for Probe<$t> {
            const TAG: &'static str = $tag;
            const VERSION: u16 = 1;
        }
    };
}
probe_message!(Amount, "test/amount");
probe_message!(MerchantCategory, "test/category");
probe_message!(Allowed<MerchantCategory>, "test/allowed");
probe_message!(Option<u8>, "test/option");

#[test]
fn field_values_outside_their_domain_are_refused() {
    // A currency is three raw bytes in the binary codec; lower case is not a currency.
    let mut bytes = codec::encode(&Probe(Amount::new(5, EUR))).unwrap();
    let n = bytes.len();
    bytes[n - 3..].copy_from_slice(b"eur");
    assert!(matches!(
        codec::decode::<Probe<Amount>>(&bytes),
        Err(Error::Malformed(_))
    ));

    // A merchant category code above 9999.
    let mut bytes = codec::encode(&Probe(MerchantCategory::GROCERY)).unwrap();
    let n = bytes.len();
    bytes[n - 2..].copy_from_slice(&10_000u16.to_le_bytes());
    assert!(matches!(
        codec::decode::<Probe<MerchantCategory>>(&bytes),
        Err(Error::Malformed(_))
    ));

    // An enum variant index that does not exist.
    let mut bytes = codec::encode(&Probe(Allowed::<MerchantCategory>::Any)).unwrap();
    let n = bytes.len();
    bytes[n - 4..].copy_from_slice(&7u32.to_le_bytes());
    assert!(matches!(
        codec::decode::<Probe<Allowed<MerchantCategory>>>(&bytes),
        Err(Error::Malformed(_))
    ));

    // An option tag other than 0 or 1.
    let mut bytes = codec::encode(&Probe(Some(3u8))).unwrap();
    let n = bytes.len();
    bytes[n - 2] = 2;
    assert!(matches!(
        codec::decode::<Probe<Option<u8>>>(&bytes),
        Err(Error::Malformed(_))
    ));
}

#[test]
fn keysets_with_a_forged_id_are_refused() {
    let w = world();
    let mut json: serde_json::Value = serde_json::to_value(w.directory()).unwrap();
    json["keysets"][0]["id"] = serde_json::Value::String("00".repeat(32));
    let err = serde_json::from_value::<KeyDirectory>(json).unwrap_err();
    assert!(err.to_string().contains("keyset.id"), "{err}");
}

/// Decodes `bytes` as every type; none may panic. Returns how many accepted them.
fn decode_as_everything(bytes: &[u8]) -> usize {
    [
        codec::decode::<AccountCertificate>(bytes).is_ok(),
        codec::decode::<MerchantCertificate>(bytes).is_ok(),
        codec::decode::<BalanceCertificate>(bytes).is_ok(),
        codec::decode::<PaymentRequest>(bytes).is_ok(),
        codec::decode::<WithdrawalRecord>(bytes).is_ok(),
        codec::decode::<CountersignedRecord>(bytes).is_ok(),
        codec::decode::<DepositRequest>(bytes).is_ok(),
        codec::decode::<DepositRecord>(bytes).is_ok(),
        codec::decode::<DepositConfirmation>(bytes).is_ok(),
        codec::decode::<Coin>(bytes).is_ok(),
        codec::decode::<CoinPayment>(bytes).is_ok(),
        codec::decode::<EndorsedCoinPayment>(bytes).is_ok(),
        codec::decode::<PendingCoin>(bytes).is_ok(),
        codec::decode::<KeyDirectory>(bytes).is_ok(),
    ]
    .into_iter()
    .filter(|ok| *ok)
    .count()
}

fn arb_amount() -> impl Strategy<Value = Amount> {
    (
        any::<u64>(),
        prop::sample::select(vec![
            Currency::EUR,
            Currency::USD,
            Currency::new("JPY").unwrap(),
        ]),
    )
        .prop_map(|(m, c)| Amount::new(m, c))
}

fn arb_uuid() -> impl Strategy<Value = uuid::Uuid> {
    any::<[u8; 16]>().prop_map(uuid::Uuid::from_bytes)
}

fn arb_region() -> impl Strategy<Value = Region> {
    "[A-Z]{2}(-[A-Z0-9]{1,3})?".prop_map(|s| Region::new(&s).unwrap())
}

fn arb_category() -> impl Strategy<Value = MerchantCategory> {
    (0u16..=9999).prop_map(|c| MerchantCategory::new(c).unwrap())
}

fn arb_balance_payload() -> impl Strategy<Value = BalanceCertificatePayload> {
    (
        (arb_uuid(), arb_uuid(), arb_uuid()),
        (arb_amount(), arb_amount(), arb_amount()),
        (any::<u64>(), any::<u64>(), any::<u32>(), any::<u64>()),
        prop_oneof![
            Just(Allowed::Any),
            prop::collection::vec(arb_category(), 0..5).prop_map(Allowed::Only)
        ],
        prop_oneof![
            Just(Allowed::Any),
            prop::collection::vec(arb_region(), 0..5).prop_map(Allowed::Only)
        ],
    )
        .prop_map(
            |((s, a, d), (avail, locked, cap), (iss, exp, maxp, first), cats, regions)| {
                BalanceCertificatePayload {
                    serial: CertificateSerial(s),
                    account_id: AccountId(a),
                    device_id: DeviceId(d),
                    available: avail,
                    locked,
                    issued_at: Timestamp(iss),
                    expires_at: Timestamp(exp),
                    max_payments: maxp,
                    first_sequence: first,
                    per_payment_cap: cap,
                    allowed_categories: cats,
                    allowed_regions: regions,
                }
            },
        )
}

fn arb_request_payload() -> impl Strategy<Value = PaymentRequestPayload> {
    (
        arb_uuid(),
        arb_uuid(),
        arb_amount(),
        any::<u64>(),
        arb_category(),
        arb_region(),
    )
        .prop_map(
            |(r, m, amount, t, category, region)| PaymentRequestPayload {
                request_id: RequestId(r),
                merchant_id: MerchantId(m),
                amount,
                created_at: Timestamp(t),
                category,
                region,
            },
        )
}

fn arb_blind_coin() -> impl Strategy<Value = BlindCoin> {
    (
        arb_uuid(),
        arb_amount(),
        any::<[u8; 32]>(),
        any::<[u8; 32]>(),
        any::<[u8; 32]>(),
        prop::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(|(id, amount, ks, k, r, sig)| BlindCoin {
            coin_id: CoinId(id),
            amount,
            keyset_id: KeysetId(ks),
            key_id: KeyId(k),
            randomizer: r,
            signature: Signature(sig),
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn balance_payloads_roundtrip(p in arb_balance_payload()) {
        let bytes = codec::encode(&p).unwrap();
        prop_assert_eq!(codec::decode::<BalanceCertificatePayload>(&bytes).unwrap(), p.clone());
        let json = serde_json::to_string(&p).unwrap();
        prop_assert_eq!(serde_json::from_str::<BalanceCertificatePayload>(&json).unwrap(), p);
    }

    #[test]
    fn request_payloads_roundtrip(p in arb_request_payload()) {
        let bytes = codec::encode(&p).unwrap();
        prop_assert_eq!(codec::decode::<PaymentRequestPayload>(&bytes).unwrap(), p);
    }

    #[test]
    fn coins_roundtrip(c in arb_blind_coin()) {
        let coin = Coin::Blind(c);
        let bytes = codec::encode(&coin).unwrap();
        prop_assert_eq!(codec::decode::<Coin>(&bytes).unwrap(), coin);
    }

    #[test]
    fn every_strict_prefix_and_any_extension_is_refused(p in arb_balance_payload(), extra in prop::collection::vec(any::<u8>(), 1..16)) {
        let bytes = codec::encode(&p).unwrap();
        for len in 0..bytes.len() {
            prop_assert!(codec::decode::<BalanceCertificatePayload>(&bytes[..len]).is_err());
        }
        let mut longer = bytes.clone();
        longer.extend_from_slice(&extra);
        prop_assert_eq!(
            codec::decode::<BalanceCertificatePayload>(&longer),
            Err(Error::TrailingBytes { count: extra.len() })
        );
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        prop_assert_eq!(decode_as_everything(&bytes), 0);
    }

    #[test]
    fn arbitrary_bodies_behind_a_valid_header_never_panic(
        which in 0usize..4,
        body in prop::collection::vec(any::<u8>(), 0..1024),
    ) {
        let tag = [Coin::TAG, CoinPayment::TAG, WithdrawalRecord::TAG, KeyDirectory::TAG][which];
        let mut bytes = tag.as_bytes().to_vec();
        bytes.push(0);
        bytes.extend_from_slice(&1u16.to_le_bytes());
        bytes.extend_from_slice(&body);
        // Random bodies are almost never valid; what matters is that nothing panics.
        let _ = decode_as_everything(&bytes);
    }

    #[test]
    fn mutated_genuine_tokens_never_panic(index in any::<prop::sample::Index>(), value in any::<u8>(), cut in any::<prop::sample::Index>()) {
        let w = shared_world();
        for (_, bytes, verify) in w.signed_objects() {
            let mut mutated = bytes.clone();
            let i = index.index(mutated.len());
            mutated[i] = value;
            let _ = verify(w, &mutated);
            let _ = decode_as_everything(&mutated);
            let _ = decode_as_everything(&bytes[..cut.index(bytes.len())]);
        }
    }
}

fn shared_world() -> &'static World {
    static WORLD: std::sync::OnceLock<World> = std::sync::OnceLock::new();
    WORLD.get_or_init(common::world)
}
