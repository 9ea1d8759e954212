//! Everything a wallet remembers, as one serde value sealed at rest.

use scrip_tokens::codec;
use scrip_tokens::keys::DirectoryRoot;
use scrip_tokens::{
    AccountCertificate, BalanceCertificate, BalanceCertificateRequest, BlindWithdrawalRequest,
    CertificateSerial, Coin, ContentDigest, DepositConfirmation, DepositRecord, DepositRequest,
    IdentifiedWithdrawalRequest, MerchantCertificate, Message, PaymentReceipt, PendingCoin,
    RequestId, SignedKeyDirectory, SwapRequest, Timestamp, VerifyingKey, VoucherWithdrawalRequest,
    WithdrawalRecord,
};
use serde::{Deserialize, Serialize};

/// The wallet's whole state, tag `scrip/wallet/state/v1`, format version 3. Older formats
/// still load ([`WalletState::decode`]): version 2 (before swaps) lacks `swaps`, version 1
/// (scrip 0.1, before refunds) lacks `voucher_withdrawals` too.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct WalletState {
    /// The device's private key, PKCS#8 DER.
    #[serde(with = "serde_bytes_vec")]
    pub device_key: Vec<u8>,
    /// The issuer's root key, pinned at setup.
    pub root: VerifyingKey<DirectoryRoot>,
    /// The account certificate once registered.
    pub account: Option<AccountCertificate>,
    /// The cached key directory and when it was fetched.
    pub directory: Option<(SignedKeyDirectory, Timestamp)>,
    /// The next sequence number to sign with. Only ever increases.
    pub next_sequence: u64,
    /// Balance certificates and what has been spent under each.
    pub certificates: Vec<CertificateState>,
    /// Coins held.
    pub coins: Vec<Coin>,
    /// Coins handed to a merchant, awaiting its reply.
    pub coins_in_flight: Vec<CoinsInFlight>,
    /// Withdrawals sent, awaiting the issuer's answer.
    pub blind_withdrawals: Vec<PendingBlindWithdrawal>,
    /// Identified withdrawals sent, awaiting the issuer's answer.
    pub identified_withdrawals: Vec<IdentifiedWithdrawalRequest>,
    /// Deposits requested, awaiting the issuer's record.
    pub pending_deposits: Vec<DepositRequest>,
    /// Deposit records received, with the confirmation the issuer has not acknowledged.
    pub deposits: Vec<DepositState>,
    /// Records released to a merchant, awaiting its reply.
    pub awaiting_receipt: Vec<RecordInFlight>,
    /// Receipts of completed payments.
    pub receipts: Vec<PaymentReceipt>,
    /// Receipted records the issuer has not seen from this wallet yet.
    pub outbox: Vec<WithdrawalRecord>,
    /// The certificate request sent last, awaiting its answer.
    pub pending_certificate_request: Option<BalanceCertificateRequest>,
    /// Requests paid (so a request is never paid twice), most recent last.
    pub paid_requests: Vec<RequestId>,
    /// Bumped by every change that must be saved before a message leaves the wallet.
    pub generation: u64,
    /// Withdrawals against refund vouchers sent, awaiting the issuer's answer.
    pub voucher_withdrawals: Vec<PendingVoucherWithdrawal>,
    /// Swaps sent, awaiting the issuer's answer (the coins handed in are in the request).
    pub swaps: Vec<PendingSwap>,
}

impl Drop for WalletState {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.device_key.zeroize();
    }
}

impl Message for WalletState {
    const TAG: &'static str = "scrip/wallet/state/v1";
    const VERSION: u16 = STATE_VERSION;
}

/// The version of the wallet state inside the sealed envelope (which has its own,
/// [`crate::STORAGE_FORMAT_VERSION`]). Older versions are migrated when loaded.
pub const STATE_VERSION: u16 = 3;

/// Largest sealed state [`WalletState::decode`] reads: the codec's allocation bound, far
/// above its default message limit (1 MiB), which a wallet keeping receipts of a few
/// thousand payments outgrows. The bytes were authenticated by the vendor's key first.
const MAX_STATE_LEN: usize = 16 << 20;

/// An empty list, encoded alone: what each newer format appends to an older state.
#[derive(Serialize, Deserialize)]
struct EmptyList(Vec<PendingVoucherWithdrawal>);

impl Message for EmptyList {
    const TAG: &'static str = "scrip/wallet/no-voucher-withdrawals/v1";
    const VERSION: u16 = 1;
}

impl WalletState {
    /// Decodes a saved state of the current format or of an older one (migrating it).
    pub(crate) fn decode(plaintext: &[u8]) -> Result<WalletState, scrip_tokens::Error> {
        match codec::decode_with_limit::<WalletState>(plaintext, MAX_STATE_LEN) {
            Err(scrip_tokens::Error::UnsupportedVersion { found, .. })
                if (1..STATE_VERSION).contains(&found) =>
            {
                Self::from_older(plaintext, found)
            }
            other => other,
        }
    }

    /// Every format since version 1 only appended lists at the end of the state (version
    /// 2 `voucher_withdrawals`, version 3 `swaps`), and nothing was pending in a list
    /// before it existed: a version-`found` body with one empty list appended per newer
    /// format is the current body. The result is decoded and checked like any state.
    fn from_older(plaintext: &[u8], found: u16) -> Result<WalletState, scrip_tokens::Error> {
        let header = |tag: &str, version: u16| {
            let mut h = tag.as_bytes().to_vec();
            h.push(0);
            h.extend_from_slice(&version.to_le_bytes());
            h
        };
        let body = plaintext
            .strip_prefix(header(Self::TAG, found).as_slice())
            .ok_or(scrip_tokens::Error::WrongType {
                expected: Self::TAG,
            })?;
        let empty = codec::encode(&EmptyList(Vec::new()))?;
        let empty = empty
            .get(header(EmptyList::TAG, 1).len()..)
            .unwrap_or_default();
        let mut migrated = header(Self::TAG, Self::VERSION);
        migrated.extend_from_slice(body);
        for _ in found..STATE_VERSION {
            migrated.extend_from_slice(empty);
        }
        codec::decode_with_limit(&migrated, MAX_STATE_LEN)
    }
}

/// A balance certificate and the wallet's bookkeeping under it.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct CertificateState {
    pub certificate: BalanceCertificate,
    /// Total of the records signed under it (minor units), rejected ones included: a
    /// merchant that refused may still upload, so the wallet never reuses that headroom.
    pub spent: u64,
}

#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct CoinsInFlight {
    pub request_id: RequestId,
    pub answer_digest: ContentDigest,
    pub merchant: MerchantCertificate,
    pub coins: Vec<Coin>,
}

#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct RecordInFlight {
    pub request_id: RequestId,
    pub answer_digest: ContentDigest,
    pub merchant: MerchantCertificate,
    pub record: WithdrawalRecord,
}

#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct PendingBlindWithdrawal {
    pub request: BlindWithdrawalRequest,
    pub coins: Vec<PendingCoin>,
}

#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct PendingVoucherWithdrawal {
    pub request: VoucherWithdrawalRequest,
    pub coins: Vec<PendingCoin>,
}

#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct PendingSwap {
    pub request: SwapRequest,
    /// The new coins, blinded in the request's outputs.
    pub coins: Vec<PendingCoin>,
}

#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct DepositState {
    pub record: DepositRecord,
    pub confirmation: DepositConfirmation,
    /// The confirmation reached the issuer (inside a certificate request it answered).
    pub acknowledged: bool,
}

/// The certificate `serial` in `certificates`.
pub(crate) fn certificate_mut(
    certificates: &mut [CertificateState],
    serial: CertificateSerial,
) -> Option<&mut CertificateState> {
    certificates
        .iter_mut()
        .find(|c| c.certificate.payload.serial == serial)
}

/// Raw bytes in the binary codec (the device key never goes to JSON).
mod serde_bytes_vec {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = seq.next_element()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        d.deserialize_bytes(V)
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use scrip_tokens::fixtures;

    use crate::{StorageKey, Wallet};

    /// A wallet that kept the receipts of thousands of payments is larger than the
    /// codec's default message limit (1 MiB); it must still open.
    #[test]
    fn a_state_above_the_default_message_limit_saves_and_opens() {
        let root = fixtures::directory_root().verifying_key().clone();
        let mut wallet = Wallet::new(fixtures::device(1), root).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        // Any growing list does: what matters is the size of the sealed state.
        wallet.state.paid_requests = (0..100_000)
            .map(|_| scrip_tokens::RequestId::random(&mut rng))
            .collect();
        let key = StorageKey::random(&mut rng);
        let saved = wallet.save(&key, &mut rng).unwrap();
        assert!(saved.bytes().len() > scrip_tokens::codec::DEFAULT_MAX_MESSAGE_LEN);
        let opened = Wallet::load(saved.bytes(), &key).unwrap();
        assert_eq!(opened.state.paid_requests.len(), 100_000);
    }
}
