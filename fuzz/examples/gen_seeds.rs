//! Writes the seed corpora under `fuzz/seeds/<target>/`: valid encodings of every token
//! type (decode_tokens), every request body in both formats (http_bodies), and a payment
//! by record and one by coins that the fuzzed merchant accepts (merchant_accept).
//!
//! `cargo +nightly run --release --example gen_seeds` from `fuzz/` (or `./run.sh --seeds`).
//! Deterministic: the same sources write the same files.

use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::SeedableRng;
use scrip_fuzz::{world, BODY_TYPES, OFFER_AMOUNT, TOKEN_TYPES};
use scrip_issuer::api::{DeviceEnrollment, ReissueRequest};
use scrip_tokens::fixtures::{self, NOW};
use scrip_tokens::*;

type Table = &'static [(&'static str, fn(&[u8]))];

struct Out {
    root: PathBuf,
    written: usize,
    covered: Vec<(&'static str, &'static str)>,
}

impl Out {
    fn file(&mut self, target: &str, name: &str, bytes: &[u8]) {
        let dir = self.root.join(target);
        std::fs::create_dir_all(&dir).expect("create seed dir");
        std::fs::write(dir.join(name), bytes).expect("write seed");
        self.written += 1;
    }

    fn selected(&mut self, target: &'static str, table: Table, name: &str, tag: &str, body: &[u8]) {
        let index = table
            .iter()
            .position(|(t, _)| *t == tag)
            .unwrap_or_else(|| panic!("{tag} is not in the {target} table"));
        let mut bytes = vec![u8::try_from(index).expect("fewer than 256 types")];
        bytes.extend_from_slice(body);
        // The seed must pass the target's own checks.
        (table[index].1)(&bytes[1..]);
        self.covered.push((target, table[index].0));
        self.file(target, name, &bytes);
    }

    /// A decode_tokens seed.
    fn token<T: Message>(&mut self, name: &str, value: &T) {
        let encoded = codec::encode(value).expect("encode");
        codec::decode::<T>(&encoded).expect("a seed decodes");
        self.selected("decode_tokens", TOKEN_TYPES, name, T::TAG, &encoded);
    }

    /// A signed token and its payload.
    fn signed<P: SignedPayload>(&mut self, name: &str, value: &Signed<P>) {
        self.token(name, value);
        self.token(&format!("{name}-payload"), &value.payload);
    }

    /// An http_bodies seed in both formats (and the decode_tokens seed of the same value).
    fn body<T: Message>(&mut self, name: &str, value: &T) {
        let encoded = codec::encode(value).expect("encode");
        self.selected(
            "http_bodies",
            BODY_TYPES,
            &format!("{name}-bin"),
            T::TAG,
            &encoded,
        );
        let json = serde_json::to_vec(value).expect("json");
        self.selected(
            "http_bodies",
            BODY_TYPES,
            &format!("{name}-json"),
            T::TAG,
            &json,
        );
    }
}

fn eur(v: u64) -> Amount {
    Amount::new(v, Currency::EUR)
}

fn main() {
    let root = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds"));
    let mut out = Out {
        root,
        written: 0,
        covered: Vec::new(),
    };
    let world = world();
    let s = &world.specimens;
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let nonce = [7u8; 16];
    let account_id = s.account_cert.payload.account_id;
    let device_id = s.account_cert.payload.device_id;
    let merchant_id = s.merchant_cert.payload.merchant_id;

    // The merchant's open offer and two answers it accepts.
    let (_, offer, _) = world.block_on(world.merchant());
    let record = WithdrawalRecord::sign(
        WithdrawalRecordPayload {
            record_id: RecordId::random(&mut rng),
            account_id,
            device_id,
            certificate_serial: s.balance_cert.payload.serial,
            sequence: s.balance_cert.payload.first_sequence,
            cumulative: eur(OFFER_AMOUNT),
            signed_at: NOW,
            payment_request: offer.request.clone(),
        },
        &s.device,
        &mut rng,
    )
    .expect("sign record");
    let by_record = PaymentAnswer::ByRecord {
        record: record.clone(),
        account_certificate: s.account_cert.clone(),
        balance_certificate: s.balance_cert.clone(),
    };
    let coins = vec![
        Coin::Blind(s.blind_coin.clone()),
        Coin::Identified(s.identified_coin.clone()),
    ];
    assert_eq!(
        coins.iter().map(|c| c.amount().minor_units).sum::<u64>(),
        OFFER_AMOUNT
    );
    let by_coins = PaymentAnswer::ByCoins(CoinPayment {
        request: offer.request.clone(),
        coins,
    });
    for (name, answer) in [("record", &by_record), ("coins", &by_coins)] {
        let bytes = codec::encode(answer).expect("encode answer");
        let reply = scrip_fuzz::merchant_accept(&bytes).expect("the answer decodes");
        let MerchantReply::Receipt(_) = &reply else {
            panic!("the merchant refused the {name} seed: {reply:?}");
        };
        out.file("merchant_accept", name, &bytes);
        out.token(&format!("payment-answer-{name}"), answer);
        out.token(&format!("merchant-reply-{name}"), &reply);
        if let MerchantReply::Receipt(receipt) = &reply {
            out.token(&format!("payment-receipt-{name}"), receipt);
        }
    }
    // A refusal: the record answer with a coin payment's request digest, i.e. any refusal.
    let rejection = PaymentRejection::sign(
        PaymentRejectionPayload {
            request_id: offer.request.payload.request_id,
            answer_digest: codec::digest(&by_coins).expect("digest"),
            reason: RejectReason {
                code: "coin_already_seen".into(),
                message: "seen".into(),
            },
            rejected_at: NOW,
        },
        &s.merchant,
        &mut rng,
    )
    .expect("sign rejection");
    out.signed("payment-rejection", &rejection);
    out.token(
        "merchant-reply-rejection",
        &MerchantReply::Rejection(rejection),
    );
    out.token("merchant-offer", &offer);

    // Every specimen token.
    out.signed("account-certificate", &s.account_cert);
    out.signed("merchant-certificate", &s.merchant_cert);
    out.signed("balance-certificate", &s.balance_cert);
    out.signed("payment-request", &s.request);
    out.signed("withdrawal-record", &s.record);
    out.signed("countersigned-record", &s.countersigned);
    out.signed("deposit-request", &s.deposit_request);
    out.signed("deposit-record", &s.deposit_record);
    out.signed("deposit-confirmation", &s.deposit_confirmation);
    out.signed("identified-coin", &s.identified_coin);
    out.signed("endorsed-coin-payment", &s.endorsed);
    out.token("blind-coin-message", &s.blind_coin.message());
    out.token("coin-blind", &Coin::Blind(s.blind_coin.clone()));
    out.token(
        "coin-identified",
        &Coin::Identified(s.identified_coin.clone()),
    );
    out.token("coin-payment", &s.coin_payment);
    out.token("key-directory", s.directory());
    out.signed("signed-key-directory", &world.signed_directory);
    let keyset = &s.issuer.keyset;
    let pending = PendingCoin::new(&mut rng, keyset, eur(5)).expect("pending coin");
    out.token("pending-coin", &pending);

    // Requests and answers of the issuer API.
    let registration = DeviceRegistration::sign(
        DeviceRegistrationPayload {
            device_key: s.device.verifying_key().clone(),
            account_id: None,
            created_at: NOW,
            nonce,
        },
        &s.device,
        &mut rng,
    )
    .expect("sign");
    out.signed("device-registration", &registration);
    out.body("device-registration", &registration);

    let second = fixtures::device(2);
    let joining = DeviceRegistration::sign(
        DeviceRegistrationPayload {
            device_key: second.verifying_key().clone(),
            account_id: Some(account_id),
            created_at: NOW,
            nonce,
        },
        &second,
        &mut rng,
    )
    .expect("sign");
    let approval = DeviceApproval::sign(
        DeviceApprovalPayload {
            account_id,
            approving_device: device_id,
            new_device_key: second.key_id(),
            created_at: NOW,
            nonce,
        },
        &s.device,
        &mut rng,
    )
    .expect("sign");
    out.signed("device-approval", &approval);
    out.body(
        "device-enrollment",
        &DeviceEnrollment {
            registration: joining,
            approval,
        },
    );

    let merchant_registration = MerchantRegistration::sign(
        MerchantRegistrationPayload {
            merchant_key: s.merchant.verifying_key().clone(),
            category: MerchantCategory::GROCERY,
            region: Region::new("DE-BY").expect("region"),
            created_at: NOW,
            nonce,
        },
        &s.merchant,
        &mut rng,
    )
    .expect("sign");
    out.signed("merchant-registration", &merchant_registration);
    out.body("merchant-registration", &merchant_registration);
    out.body("deposit-request", &s.deposit_request);
    out.body("deposit-confirmation", &s.deposit_confirmation);

    let certificate_request = BalanceCertificateRequest::sign(
        BalanceCertificateRequestPayload {
            account_id,
            device_id,
            currency: Currency::EUR,
            requested_amount: Some(5_000),
            max_payments: Some(10),
            per_payment_cap: Some(2_000),
            lock: LockRules {
                min_balance: 100,
                locked_basis_points: 2_500,
                user_lock: Some(UserLock {
                    amount: 50,
                    unlocked_until: Some(NOW),
                }),
                allowed_categories: Allowed::Only(vec![MerchantCategory::GROCERY]),
                allowed_regions: Allowed::Only(vec![Region::new("DE").expect("region")]),
            },
            unsent_records: vec![s.record.clone()],
            deposit_confirmations: vec![s.deposit_confirmation.clone()],
            created_at: NOW,
            nonce,
        },
        &s.device,
        &mut rng,
    )
    .expect("sign");
    out.signed("balance-certificate-request", &certificate_request);
    out.body("balance-certificate-request", &certificate_request);

    let sync = SyncRequest::sign(
        SyncRequestPayload {
            account_id,
            device_id,
            unsent_records: vec![s.record.clone()],
            deposit_confirmations: vec![s.deposit_confirmation.clone()],
            created_at: NOW,
            nonce,
        },
        &s.device,
        &mut rng,
    )
    .expect("sign");
    out.signed("sync-request", &sync);
    out.body("sync-request", &sync);
    let sync_report = SyncReport::sign(
        SyncReportPayload {
            account_id,
            device_id,
            request_digest: codec::digest(&sync).expect("digest"),
            records: vec![RedemptionOutcome::Accepted {
                credited: eur(1_250),
            }],
            confirmations_recorded: 1,
            answered_at: NOW,
        },
        &s.issuer.answer_signer,
        &mut rng,
    )
    .expect("sign");
    out.signed("sync-report", &sync_report);
    let statement = Statement::sign(
        StatementPayload {
            account_id,
            request_digest: ContentDigest::of(b"a statement request"),
            currency: Currency::EUR,
            balance: 8_750,
            entries: vec![StatementEntry {
                seq: 1,
                at: NOW,
                delta: 8_750,
                balance_after: 8_750,
                memo: "deposit".into(),
            }],
            answered_at: NOW,
        },
        &s.issuer.answer_signer,
        &mut rng,
    )
    .expect("sign");
    out.signed("statement", &statement);

    let statement = StatementRequest::sign(
        StatementRequestPayload {
            account_id,
            device_id,
            currency: Currency::EUR,
            after_seq: Some(3),
            limit: 100,
            created_at: NOW,
            nonce,
        },
        &s.device,
        &mut rng,
    )
    .expect("sign");
    out.signed("statement-request", &statement);
    out.body("statement-request", &statement);

    let blind = BlindWithdrawalRequest::sign(
        BlindWithdrawalRequestPayload {
            account_id,
            device_id,
            keyset_id: keyset.id(),
            coins: vec![(5, pending.blinded().clone())],
            idempotency_key: [9u8; 32],
            created_at: NOW,
            nonce,
        },
        &s.device,
        &mut rng,
    )
    .expect("sign");
    out.signed("blind-withdrawal-request", &blind);
    out.body("blind-withdrawal-request", &blind);
    let blind_signature = s
        .issuer
        .denomination_key(5)
        .expect("denomination 5")
        .sign_blinded(&mut rng, pending.blinded())
        .expect("blind sign");
    out.token(
        "blind-withdrawal-response",
        &BlindWithdrawalResponse {
            keyset_id: keyset.id(),
            signatures: vec![blind_signature],
        },
    );

    let identified = IdentifiedWithdrawalRequest::sign(
        IdentifiedWithdrawalRequestPayload {
            account_id,
            device_id,
            currency: Currency::EUR,
            amounts: vec![1, 2, 5],
            idempotency_key: [9u8; 32],
            created_at: NOW,
            nonce,
        },
        &s.device,
        &mut rng,
    )
    .expect("sign");
    out.signed("identified-withdrawal-request", &identified);
    out.body("identified-withdrawal-request", &identified);
    out.token(
        "identified-withdrawal-response",
        &IdentifiedWithdrawalResponse {
            coins: vec![s.identified_coin.clone()],
        },
    );

    let batch = RedemptionBatch::sign(
        RedemptionBatchPayload {
            merchant_id,
            items: vec![
                RedemptionItem::Coins(s.endorsed.clone()),
                RedemptionItem::Record(s.countersigned.clone()),
            ],
            created_at: NOW,
            nonce,
        },
        &s.merchant,
        &mut rng,
    )
    .expect("sign");
    out.signed("redemption-batch", &batch);
    out.body("redemption-batch", &batch);
    let report = RedemptionReport::sign(
        RedemptionReportPayload {
            merchant_id,
            batch_digest: codec::digest(&batch).expect("digest"),
            answered_at: NOW,
            outcomes: vec![
                RedemptionOutcome::Accepted { credited: eur(15) },
                RedemptionOutcome::AlreadyAccepted {
                    first_accepted_at: NOW,
                },
                RedemptionOutcome::DoubleSpent {
                    first_redeemed_at: NOW,
                    coins: vec![s.blind_coin.coin_id],
                },
                RedemptionOutcome::Invalid {
                    reason: RejectReason {
                        code: "bad_signature".into(),
                        message: "no".into(),
                    },
                },
            ],
        },
        &s.issuer.answer_signer,
        &mut rng,
    )
    .expect("sign");
    out.signed("redemption-report", &report);
    out.body("reissue-request", &ReissueRequest { to: device_id });

    for (target, table) in [("decode_tokens", TOKEN_TYPES), ("http_bodies", BODY_TYPES)] {
        for (tag, _) in table {
            if !out.covered.iter().any(|(t, c)| *t == target && c == tag) {
                println!("{target}: no seed for {tag}");
            }
        }
    }
    println!(
        "wrote {} seed files under {}",
        out.written,
        out.root.display()
    );
}
