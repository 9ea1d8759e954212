//! Pre-generated 2048-bit RSA keys for tests (this crate's and every other crate's), so
//! no test pays for key generation. Generated once with
//! `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048`; never use them for
//! anything real: the private keys are public.

// The PEM documents are compiled into the binary; failing to parse one is a bug in the
// fixture files, not an input error, so panicking is the right answer.
#![allow(clippy::expect_used)]

use crate::keys::{
    AccountCertifier, AnswerSigner, BalanceCertifier, DenominationSigningKey, DepositIssuer,
    Device, DirectoryRoot, IdentifiedCoinIssuer, IssuerKeyRole, Merchant, MerchantCertifier, Role,
    SigningKey,
};
use crate::*;

macro_rules! pem {
    ($name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/",
            $name,
            ".pem"
        ))
    };
}

fn key<R: Role>(pem: &str) -> SigningKey<R> {
    SigningKey::from_pem(pem).expect("fixture key parses")
}

/// The issuer's root key (signs the key directory).
pub fn directory_root() -> SigningKey<DirectoryRoot> {
    key(pem!("directory-root"))
}

/// The issuer's account-certificate key.
pub fn account_certifier() -> SigningKey<AccountCertifier> {
    key(pem!("account-certifier"))
}

/// The issuer's merchant-certificate key.
pub fn merchant_certifier() -> SigningKey<MerchantCertifier> {
    key(pem!("merchant-certifier"))
}

/// The issuer's balance-certificate key.
pub fn balance_certifier() -> SigningKey<BalanceCertifier> {
    key(pem!("balance-certifier"))
}

/// The issuer's deposit key.
pub fn deposit_issuer() -> SigningKey<DepositIssuer> {
    key(pem!("deposit-issuer"))
}

/// The issuer's identified-coin key.
pub fn identified_coin_issuer() -> SigningKey<IdentifiedCoinIssuer> {
    key(pem!("identified-coin-issuer"))
}

/// The issuer's answer key (redemption and sync reports, statements).
pub fn answer_signer() -> SigningKey<AnswerSigner> {
    key(pem!("answer-signer"))
}

/// How many device fixture keys there are ([`device`] takes `1..=DEVICES`).
pub const DEVICES: u8 = 8;
/// How many merchant fixture keys there are ([`merchant`] takes `1..=MERCHANTS`).
pub const MERCHANTS: u8 = 4;

/// Device key number `n` (1 to [`DEVICES`]; others wrap around).
pub fn device(n: u8) -> SigningKey<Device> {
    match (n.max(1) - 1) % DEVICES + 1 {
        1 => key(pem!("device-1")),
        2 => key(pem!("device-2")),
        3 => key(pem!("device-3")),
        4 => key(pem!("device-4")),
        5 => key(pem!("device-5")),
        6 => key(pem!("device-6")),
        7 => key(pem!("device-7")),
        _ => key(pem!("device-8")),
    }
}

/// Merchant key number `n` (1 to [`MERCHANTS`]; others wrap around).
pub fn merchant(n: u8) -> SigningKey<Merchant> {
    match (n.max(1) - 1) % MERCHANTS + 1 {
        1 => key(pem!("merchant-1")),
        2 => key(pem!("merchant-2")),
        3 => key(pem!("merchant-3")),
        _ => key(pem!("merchant-4")),
    }
}

/// A key that belongs to no one, for "wrong key" tests, as PKCS#8 PEM.
pub fn unrelated_key_pem() -> &'static str {
    pem!("other")
}

/// The denominations that have fixture keys, in minor units.
pub const DENOMINATIONS: [u64; 4] = [1, 2, 5, 10];

/// The blind-signature key of denomination `minor_units` (one of [`DENOMINATIONS`]).
pub fn denomination(minor_units: u64) -> Option<DenominationSigningKey> {
    let pem = match minor_units {
        1 => pem!("denomination-1"),
        2 => pem!("denomination-2"),
        5 => pem!("denomination-5"),
        10 => pem!("denomination-10"),
        _ => return None,
    };
    Some(DenominationSigningKey::from_pem(pem).expect("fixture key parses"))
}

/// Every issuer key, a keyset over [`DENOMINATIONS`] and the matching directory.
pub struct TestIssuer {
    /// Root key (signs the directory).
    pub directory_root: SigningKey<DirectoryRoot>,
    /// Account-certificate key.
    pub account_certifier: SigningKey<AccountCertifier>,
    /// Merchant-certificate key.
    pub merchant_certifier: SigningKey<MerchantCertifier>,
    /// Balance-certificate key.
    pub balance_certifier: SigningKey<BalanceCertifier>,
    /// Deposit key.
    pub deposit_issuer: SigningKey<DepositIssuer>,
    /// Identified-coin key.
    pub identified_coin_issuer: SigningKey<IdentifiedCoinIssuer>,
    /// Answer key.
    pub answer_signer: SigningKey<AnswerSigner>,
    /// Denomination keys, by increasing value.
    pub denominations: Vec<(u64, DenominationSigningKey)>,
    /// The keyset of `denominations`.
    pub keyset: Keyset,
    /// The public directory: all keys valid during `validity`.
    pub directory: KeyDirectory,
}

/// The blind keys of [`DENOMINATIONS`] as a keyset open for issuance during all of
/// `validity`.
pub fn keyset(
    currency: Currency,
    validity: Validity,
    denominations: &[(u64, DenominationSigningKey)],
) -> Keyset {
    Keyset::new(
        currency,
        validity,
        validity.not_after,
        denominations
            .iter()
            .map(|(v, k)| DenominationKeyEntry {
                minor_units: *v,
                key: k.verifying_key().clone(),
            })
            .collect(),
    )
    .expect("fixture keyset is valid")
}

impl TestIssuer {
    /// All keys, valid during `validity`, coins in `currency`.
    pub fn new(currency: Currency, validity: Validity) -> Self {
        let denominations: Vec<(u64, DenominationSigningKey)> = DENOMINATIONS
            .iter()
            .filter_map(|&v| denomination(v).map(|k| (v, k)))
            .collect();
        let keyset = keyset(currency, validity, &denominations);
        let account_certifier = account_certifier();
        let merchant_certifier = merchant_certifier();
        let balance_certifier = balance_certifier();
        let deposit_issuer = deposit_issuer();
        let identified_coin_issuer = identified_coin_issuer();
        let answer_signer = answer_signer();
        let entry = |role, key: &crate::PublicKey| IssuerKeyEntry {
            role,
            key: key.clone(),
            validity,
        };
        let issuer_keys = vec![
            entry(
                IssuerKeyRole::AccountCertificate,
                account_certifier.verifying_key().public_key(),
            ),
            entry(
                IssuerKeyRole::MerchantCertificate,
                merchant_certifier.verifying_key().public_key(),
            ),
            entry(
                IssuerKeyRole::BalanceCertificate,
                balance_certifier.verifying_key().public_key(),
            ),
            entry(
                IssuerKeyRole::Deposit,
                deposit_issuer.verifying_key().public_key(),
            ),
            entry(
                IssuerKeyRole::IdentifiedCoin,
                identified_coin_issuer.verifying_key().public_key(),
            ),
            entry(
                IssuerKeyRole::Answer,
                answer_signer.verifying_key().public_key(),
            ),
        ];
        let directory = KeyDirectory::new(validity.not_before, issuer_keys, vec![keyset.clone()])
            .expect("fixture directory is valid");
        TestIssuer {
            directory_root: directory_root(),
            account_certifier,
            merchant_certifier,
            balance_certifier,
            deposit_issuer,
            identified_coin_issuer,
            answer_signer,
            denominations,
            keyset,
            directory,
        }
    }

    /// The directory signed by the root key.
    pub fn signed_directory<G: rand_core::CryptoRng + ?Sized>(
        &self,
        rng: &mut G,
    ) -> SignedKeyDirectory {
        SignedKeyDirectory::sign(self.directory.clone(), &self.directory_root, rng)
            .expect("fixture directory signs")
    }

    /// The denomination signing key worth `minor_units`.
    pub fn denomination_key(&self, minor_units: u64) -> Option<&DenominationSigningKey> {
        self.denominations
            .iter()
            .find(|(v, _)| *v == minor_units)
            .map(|(_, k)| k)
    }
}

/// A fixed "now" for tests: 2026-01-01T00:00:00Z.
pub const NOW: Timestamp = Timestamp::from_unix_millis(1_767_225_600_000);

const DAY: std::time::Duration = std::time::Duration::from_secs(86_400);

fn eur(minor_units: u64) -> Amount {
    Amount::new(minor_units, Currency::EUR)
}

/// One of every token, built from the fixture keys: a consistent story (an account,
/// a merchant, a balance certificate, a payment by record and one by coins, a deposit)
/// for tests, benchmarks and golden vectors. Deterministic for a given `rng` seed.
pub struct Specimens {
    /// Every issuer key and the directory.
    pub issuer: TestIssuer,
    /// The device key (device 1).
    pub device: SigningKey<Device>,
    /// The merchant key (merchant 1).
    pub merchant: SigningKey<Merchant>,
    /// The device's account certificate.
    pub account_cert: AccountCertificate,
    /// The merchant's certificate.
    pub merchant_cert: MerchantCertificate,
    /// A balance certificate of the account.
    pub balance_cert: BalanceCertificate,
    /// A payment request of the merchant.
    pub request: PaymentRequest,
    /// A withdrawal record paying `request`.
    pub record: WithdrawalRecord,
    /// The merchant's countersignature of `record`.
    pub countersigned: CountersignedRecord,
    /// A deposit request of the device.
    pub deposit_request: DepositRequest,
    /// The issuer's record of that deposit.
    pub deposit_record: DepositRecord,
    /// The device's confirmation of that record.
    pub deposit_confirmation: DepositConfirmation,
    /// A blind coin worth 10.
    pub blind_coin: BlindCoin,
    /// An identified coin worth 5.
    pub identified_coin: IdentifiedCoin,
    /// A payment of 15 in both coins.
    pub coin_payment: CoinPayment,
    /// The merchant's endorsement of `coin_payment`.
    pub endorsed: EndorsedCoinPayment,
}

impl Specimens {
    /// Builds every token with keys valid 180 days around [`NOW`] and certificates valid
    /// a day around it.
    pub fn new<G: rand_core::CryptoRng + ?Sized>(rng: &mut G) -> Self {
        // Keys valid for a year around NOW; certificates for a day.
        let key_validity =
            Validity::new(NOW.saturating_sub(DAY * 180), NOW.saturating_add(DAY * 180))
                .expect("fixture token builds");
        let issuer = TestIssuer::new(Currency::EUR, key_validity);
        let device = fixtures::device(1);
        let merchant = fixtures::merchant(1);
        let cert_validity = Validity::new(NOW.saturating_sub(DAY), NOW.saturating_add(DAY))
            .expect("fixture token builds");
        let account_id = AccountId::random(rng);
        let device_id = DeviceId::random(rng);
        let merchant_id = MerchantId::random(rng);

        let account_cert = AccountCertificate::sign(
            AccountCertificatePayload {
                account_id,
                device_id,
                device_key: device.verifying_key().clone(),
                validity: cert_validity,
            },
            &issuer.account_certifier,
            rng,
        )
        .expect("fixture token builds");
        let region = Region::new("DE-BY").expect("fixture token builds");
        let merchant_cert = MerchantCertificate::sign(
            MerchantCertificatePayload {
                merchant_id,
                merchant_key: merchant.verifying_key().clone(),
                category: MerchantCategory::GROCERY,
                region: Region::new("DE").expect("fixture token builds"),
                validity: cert_validity,
            },
            &issuer.merchant_certifier,
            rng,
        )
        .expect("fixture token builds");
        let balance_cert = BalanceCertificate::sign(
            BalanceCertificatePayload {
                serial: CertificateSerial::random(rng),
                account_id,
                device_id,
                available: eur(5_000),
                locked: eur(1_000),
                issued_at: NOW.saturating_sub(std::time::Duration::from_secs(3600)),
                expires_at: NOW.saturating_add(DAY),
                max_payments: 10,
                first_sequence: 1,
                per_payment_cap: eur(2_000),
                allowed_categories: Allowed::Only(vec![MerchantCategory::GROCERY]),
                allowed_regions: Allowed::Only(vec![
                    Region::new("DE").expect("fixture token builds")
                ]),
            },
            &issuer.balance_certifier,
            rng,
        )
        .expect("fixture token builds");
        let request = PaymentRequest::sign(
            PaymentRequestPayload {
                request_id: RequestId::random(rng),
                merchant_id,
                amount: eur(1_250),
                created_at: NOW,
                category: MerchantCategory::GROCERY,
                region: region.clone(),
            },
            &merchant,
            rng,
        )
        .expect("fixture token builds");
        let record = WithdrawalRecord::sign(
            WithdrawalRecordPayload {
                record_id: RecordId::random(rng),
                account_id,
                device_id,
                certificate_serial: balance_cert.payload.serial,
                sequence: 1,
                cumulative: eur(1_250),
                signed_at: NOW,
                payment_request: request.clone(),
            },
            &device,
            rng,
        )
        .expect("fixture token builds");
        let countersigned = CountersignedRecord::sign(
            CountersignedRecordPayload {
                record: record.clone(),
                accepted_at: NOW,
            },
            &merchant,
            rng,
        )
        .expect("fixture token builds");
        let deposit_request = DepositRequest::sign(
            DepositRequestPayload {
                deposit_id: DepositId::random(rng),
                account_id,
                device_id,
                amount: eur(10_000),
                created_at: NOW,
            },
            &device,
            rng,
        )
        .expect("fixture token builds");
        let deposit_record = DepositRecord::sign(
            DepositRecordPayload {
                request: deposit_request.clone(),
                credited_at: NOW,
            },
            &issuer.deposit_issuer,
            rng,
        )
        .expect("fixture token builds");
        let deposit_confirmation = DepositConfirmation::sign(
            DepositConfirmationPayload {
                deposit_id: deposit_record.payload.deposit_id(),
                account_id,
                device_id,
                deposit_record_digest: codec::digest(&deposit_record)
                    .expect("fixture token builds"),
                confirmed_at: NOW,
            },
            &device,
            rng,
        )
        .expect("fixture token builds");
        let blind_coin = withdraw_blind(&issuer, rng, 10);
        let identified_coin = IdentifiedCoin::sign(
            IdentifiedCoinPayload {
                coin_id: CoinId::random(rng),
                amount: eur(5),
                holder: VirtualId::random(rng),
                issued_at: NOW,
            },
            &issuer.identified_coin_issuer,
            rng,
        )
        .expect("fixture token builds");
        let coin_request = PaymentRequest::sign(
            PaymentRequestPayload {
                request_id: RequestId::random(rng),
                merchant_id,
                amount: eur(15),
                created_at: NOW,
                category: MerchantCategory::GROCERY,
                region,
            },
            &merchant,
            rng,
        )
        .expect("fixture token builds");
        let coin_payment = CoinPayment {
            request: coin_request,
            coins: vec![
                Coin::Blind(blind_coin.clone()),
                Coin::Identified(identified_coin.clone()),
            ],
        };
        let endorsed = EndorsedCoinPayment::sign(
            EndorsedCoinPaymentPayload {
                payment: coin_payment.clone(),
                merchant_id,
                endorsed_at: NOW,
            },
            &merchant,
            rng,
        )
        .expect("fixture token builds");
        Specimens {
            issuer,
            device,
            merchant,
            account_cert,
            merchant_cert,
            balance_cert,
            request,
            record,
            countersigned,
            deposit_request,
            deposit_record,
            deposit_confirmation,
            blind_coin,
            identified_coin,
            coin_payment,
            endorsed,
        }
    }

    /// The issuer's key directory.
    pub fn directory(&self) -> &KeyDirectory {
        &self.issuer.directory
    }

    /// The account certificate's content.
    pub fn account(&self) -> &AccountCertificatePayload {
        &self.account_cert.payload
    }

    /// The merchant certificate's content.
    pub fn merchant_payload(&self) -> &MerchantCertificatePayload {
        &self.merchant_cert.payload
    }
}

/// Runs the blind withdrawal of one coin worth `minor_units` against the fixture issuer.
pub fn withdraw_blind<G: rand_core::CryptoRng + ?Sized>(
    issuer: &TestIssuer,
    rng: &mut G,
    minor_units: u64,
) -> BlindCoin {
    let keyset = &issuer.keyset;
    let pending = PendingCoin::new(
        rng,
        keyset,
        Amount::new(minor_units, issuer.keyset.currency()),
    )
    .expect("fixture coin withdraws");
    let blind_signature = issuer
        .denomination_key(minor_units)
        .expect("fixture coin withdraws")
        .sign_blinded(rng, pending.blinded())
        .expect("fixture coin withdraws");
    pending
        .finalize(
            keyset.key_for(minor_units).expect("fixture coin withdraws"),
            &blind_signature,
        )
        .expect("fixture coin withdraws")
}
