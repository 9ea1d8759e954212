//! Coins: bearer tokens of fixed denominations, each with a UUID the issuer accepts once.
//!
//! *Blind coins* (default, private): the wallet picks the UUID and blinds the coin
//! message; the issuer signs it blind with the denomination's RFC 9474 key and cannot link
//! the withdrawal to the redemption. Flow: [`PendingCoin::new`] (wallet) →
//! [`DenominationSigningKey::sign_blinded`](crate::DenominationSigningKey::sign_blinded)
//! (issuer) → [`PendingCoin::finalize`] (wallet) → [`BlindCoin::verify`] (anyone).
//!
//! *Identified coins*: the issuer picks the UUID, writes the holder's virtual id and signs
//! openly with RSA-PSS; traceable and revocable.

use std::fmt;

use blind_rsa_signatures::{BlindMessage, BlindingResult, MessageRandomizer, Secret};
use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};

use crate::certificates::MerchantCertificatePayload;
use crate::codec;
use crate::keys::{
    BlindSignature, BlindedMessage, DenominationVerifyingKey, IdentifiedCoinIssuer, Merchant,
    Signature,
};
use crate::payment::PaymentRequest;
use crate::signed::{message, signed_token};
use crate::{
    Amount, CoinId, CoinSpendId, Error, KeyDirectory, KeyId, Keyset, KeysetId, MerchantId, Result,
    Timestamp, VirtualId,
};

/// Domain tag of [`Coin::spend_id`].
pub const SPEND_ID_TAG: &str = "scrip/coin-spend-id/v1";

/// The message a blind coin's signature covers (RFC 9474 `msg`; the signature covers
/// `randomizer || encode(BlindCoinMessage)`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlindCoinMessage {
    /// The coin id, chosen by the wallet.
    pub coin_id: CoinId,
    /// The face value.
    pub amount: Amount,
    /// The keyset of the signing key.
    pub keyset_id: KeysetId,
    /// The denomination key that signs it.
    pub key_id: KeyId,
}
message!(BlindCoinMessage, tag: "blind-coin");

/// A blind-signed coin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlindCoin {
    /// The coin id, chosen by the wallet.
    pub coin_id: CoinId,
    /// The face value.
    pub amount: Amount,
    /// The keyset of the signing key.
    pub keyset_id: KeysetId,
    /// The denomination key that signed it.
    pub key_id: KeyId,
    /// RFC 9474 message randomizer (prefix of the signed message).
    #[serde(with = "crate::bytes::array")]
    pub randomizer: [u8; 32],
    /// RSABSSA-SHA384-PSS-Randomized signature.
    pub signature: Signature,
}

impl BlindCoin {
    /// The message the signature covers.
    pub fn message(&self) -> BlindCoinMessage {
        BlindCoinMessage {
            coin_id: self.coin_id,
            amount: self.amount,
            keyset_id: self.keyset_id,
            key_id: self.key_id,
        }
    }

    /// Checks the signature under `key`, which must be the key the coin names.
    pub fn verify_signature(&self, key: &DenominationVerifyingKey) -> Result<()> {
        if key.key_id() != self.key_id {
            return Err(Error::UnknownKey(self.key_id));
        }
        key.verify(
            &self.signature,
            self.randomizer,
            &codec::encode(&self.message())?,
        )
    }

    /// Checks the coin against the directory: known keyset valid at `now`, currency and
    /// denomination of that keyset, signature by that denomination's key.
    pub fn verify(&self, directory: &KeyDirectory, now: Timestamp) -> Result<()> {
        let keyset = directory.keyset(self.keyset_id)?;
        keyset.validity().check(now)?;
        if keyset.currency() != self.amount.currency {
            return Err(Error::CurrencyMismatch {
                expected: keyset.currency(),
                found: self.amount.currency,
            });
        }
        self.verify_signature(keyset.key_for(self.amount.minor_units)?)
    }
}

/// The wallet's half-made blind coin between the withdrawal request and the issuer's
/// answer. Persist it (it is a [`codec::Message`]): without the blinding secret the
/// issuer's blind signature is worthless. `Debug` hides the secret, which is wiped from
/// memory on drop.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingCoin {
    coin_id: CoinId,
    amount: Amount,
    keyset_id: KeysetId,
    key_id: KeyId,
    blinded: BlindedMessage,
    #[serde(with = "crate::bytes::vec")]
    secret: Vec<u8>,
    #[serde(with = "crate::bytes::array")]
    randomizer: [u8; 32],
}
message!(PendingCoin, tag: "pending-coin");

impl PendingCoin {
    /// Picks a fresh coin id and blinds a coin worth `amount` for the matching
    /// denomination of `keyset`. Send [`PendingCoin::blinded`] to the issuer.
    pub fn new<G: CryptoRng + ?Sized>(
        rng: &mut G,
        keyset: &Keyset,
        amount: Amount,
    ) -> Result<Self> {
        if amount.currency != keyset.currency() {
            return Err(Error::CurrencyMismatch {
                expected: keyset.currency(),
                found: amount.currency,
            });
        }
        let key = keyset.key_for(amount.minor_units)?;
        let message = BlindCoinMessage {
            coin_id: CoinId::random(rng),
            amount,
            keyset_id: keyset.id(),
            key_id: key.key_id(),
        };
        let mut blinding = key.blind(rng, &codec::encode(&message)?)?;
        let randomizer = blinding
            .msg_randomizer
            .map(|r| r.0)
            .ok_or_else(|| Error::Blind("randomized variant returned no randomizer".into()))?;
        Ok(PendingCoin {
            coin_id: message.coin_id,
            amount,
            keyset_id: message.keyset_id,
            key_id: message.key_id,
            blinded: BlindedMessage(std::mem::take(&mut blinding.blind_message.0)),
            // Moved, not copied: the only copy of the secret is the one wiped on drop.
            secret: std::mem::take(&mut blinding.secret.0),
            randomizer,
        })
    }

    /// The coin id the wallet chose.
    pub fn coin_id(&self) -> CoinId {
        self.coin_id
    }

    /// The face value.
    pub fn amount(&self) -> Amount {
        self.amount
    }

    /// The keyset withdrawn from.
    pub fn keyset_id(&self) -> KeysetId {
        self.keyset_id
    }

    /// The denomination key the coin was blinded for.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// What to send the issuer to sign.
    pub fn blinded(&self) -> &BlindedMessage {
        &self.blinded
    }

    fn message(&self) -> BlindCoinMessage {
        BlindCoinMessage {
            coin_id: self.coin_id,
            amount: self.amount,
            keyset_id: self.keyset_id,
            key_id: self.key_id,
        }
    }

    /// Unblinds the issuer's answer into a coin and checks it (fails with
    /// [`Error::BadSignature`] if the issuer signed with another key or sent garbage).
    pub fn finalize(
        &self,
        key: &DenominationVerifyingKey,
        blind_signature: &BlindSignature,
    ) -> Result<BlindCoin> {
        if key.key_id() != self.key_id {
            return Err(Error::UnknownKey(self.key_id));
        }
        let blinding = BlindingResult {
            blind_message: BlindMessage(self.blinded.0.clone()),
            secret: Secret(self.secret.clone()),
            msg_randomizer: Some(MessageRandomizer(self.randomizer)),
        };
        let signature =
            key.finalize(blind_signature, &blinding, &codec::encode(&self.message())?)?;
        Ok(BlindCoin {
            coin_id: self.coin_id,
            amount: self.amount,
            keyset_id: self.keyset_id,
            key_id: self.key_id,
            randomizer: self.randomizer,
            signature,
        })
    }
}

impl Drop for PendingCoin {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.secret.zeroize();
    }
}

impl fmt::Debug for PendingCoin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingCoin")
            .field("coin_id", &self.coin_id)
            .field("amount", &self.amount)
            .field("keyset_id", &self.keyset_id)
            .finish_non_exhaustive()
    }
}

/// The content of an identified coin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentifiedCoinPayload {
    /// The coin id, chosen by the issuer.
    pub coin_id: CoinId,
    /// The face value.
    pub amount: Amount,
    /// The holder's virtual id (names the holder at the issuer).
    pub holder: VirtualId,
    /// When the issuer signed it.
    pub issued_at: Timestamp,
}

signed_token!(
    /// An [`IdentifiedCoinPayload`] signed openly by the issuer's identified-coin key.
    IdentifiedCoin = IdentifiedCoinPayload,
    signer: IdentifiedCoinIssuer,
    tag: "identified-coin"
);

/// Which kind of coin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CoinVariant {
    /// Blind-signed, unlinkable.
    Blind,
    /// Openly signed, carries the holder's virtual id.
    Identified,
}

/// A coin of either variant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Coin {
    /// A blind-signed coin.
    Blind(BlindCoin),
    /// An identified coin.
    Identified(IdentifiedCoin),
}
message!(Coin, tag: "coin");

impl Coin {
    /// The coin id (what the issuer accepts once).
    pub fn id(&self) -> CoinId {
        match self {
            Coin::Blind(c) => c.coin_id,
            Coin::Identified(c) => c.payload.coin_id,
        }
    }

    /// The face value.
    pub fn amount(&self) -> Amount {
        match self {
            Coin::Blind(c) => c.amount,
            Coin::Identified(c) => c.payload.amount,
        }
    }

    /// Blind or identified.
    pub fn variant(&self) -> CoinVariant {
        match self {
            Coin::Blind(_) => CoinVariant::Blind,
            Coin::Identified(_) => CoinVariant::Identified,
        }
    }

    /// The key that signed it (a denomination key, or the identified-coin key).
    pub fn key_id(&self) -> KeyId {
        match self {
            Coin::Blind(c) => c.key_id,
            Coin::Identified(c) => c.key_id,
        }
    }

    /// The keyset (blind coins only; identified coins are signed by an issuer key listed
    /// in the directory on its own).
    pub fn keyset_id(&self) -> Option<KeysetId> {
        match self {
            Coin::Blind(c) => Some(c.keyset_id),
            Coin::Identified(_) => None,
        }
    }

    /// The holder's virtual id (identified coins only).
    pub fn holder(&self) -> Option<VirtualId> {
        match self {
            Coin::Blind(_) => None,
            Coin::Identified(c) => Some(c.payload.holder),
        }
    }

    /// Checks the issuer's signature against the directory at `now`.
    pub fn verify(&self, directory: &KeyDirectory, now: Timestamp) -> Result<()> {
        match self {
            Coin::Blind(c) => c.verify(directory, now),
            Coin::Identified(c) => c.verify_in(directory, now).map(|_| ()),
        }
    }

    /// The exact bytes the issuer's key signed: `randomizer || encode(BlindCoinMessage)`
    /// for a blind coin (RFC 9474's prepared message), `encode(IdentifiedCoinPayload)`
    /// for an identified one.
    pub fn signed_bytes(&self) -> Result<Vec<u8>> {
        match self {
            Coin::Blind(c) => codec::encode_after(&c.randomizer, &c.message()),
            Coin::Identified(c) => c.signed_bytes(),
        }
    }

    /// What the coin is spent as: SHA-256 of `"scrip/coin-spend-id/v1" || 0x00 || variant
    /// (0 blind, 1 identified) || key id (32 bytes) || signed bytes`
    /// ([`Self::signed_bytes`]).
    ///
    /// Only someone who holds the coin (or saw it whole) can compute it: a coin minted
    /// under the same id with another key, amount, variant or randomizer has another spend
    /// id, so it cannot make this one `double_spent`. Two signatures over the same signed
    /// bytes are the same coin.
    pub fn spend_id(&self) -> Result<CoinSpendId> {
        use sha2::{Digest, Sha256};
        let variant: u8 = match self.variant() {
            CoinVariant::Blind => 0,
            CoinVariant::Identified => 1,
        };
        let digest = Sha256::new()
            .chain_update(SPEND_ID_TAG.as_bytes())
            .chain_update([0u8, variant])
            .chain_update(self.key_id().as_bytes())
            .chain_update(self.signed_bytes()?)
            .finalize();
        Ok(CoinSpendId(digest.into()))
    }
}

/// Most coins one payment may hold (a bound on the work and the claims one payment costs).
pub const MAX_COINS_PER_PAYMENT: usize = 1_000;

/// Coins handed to a merchant for one payment request (exact amount: no change can be
/// given offline).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoinPayment {
    /// The merchant's signed request being paid.
    pub request: PaymentRequest,
    /// The coins.
    pub coins: Vec<Coin>,
}
message!(CoinPayment, tag: "coin-payment");

impl CoinPayment {
    /// Sum of the coins, in the request's currency. Fails on a coin of another currency
    /// and on a coin listed twice (which would count twice but redeem once).
    pub fn total(&self) -> Result<Amount> {
        if self.coins.len() > MAX_COINS_PER_PAYMENT {
            return Err(Error::InvalidField {
                field: "coins",
                reason: "more coins than one payment may hold",
            });
        }
        let mut ids: Vec<CoinId> = self.coins.iter().map(Coin::id).collect();
        ids.sort_unstable();
        if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
            return Err(Error::DuplicateCoin(w[0]));
        }
        Amount::checked_sum(
            self.request.payload.amount.currency,
            self.coins.iter().map(Coin::amount),
        )
    }

    /// Everything a merchant checks offline about a coin payment to it: the request is
    /// its own (signature under `merchant`'s key), no coin appears twice, every coin is
    /// signed by a key of `directory` valid at `now`, and the coins add up to exactly the
    /// requested amount. (Whether a coin was already seen or spent is the merchant's and
    /// the issuer's state, not the token's.)
    pub fn verify(
        &self,
        merchant: &MerchantCertificatePayload,
        directory: &KeyDirectory,
        now: Timestamp,
    ) -> Result<&Self> {
        let request = self.request.verify(merchant)?;
        let total = self.total()?;
        if total != request.amount {
            return Err(Error::AmountMismatch {
                expected: request.amount,
                found: total,
            });
        }
        for coin in &self.coins {
            coin.verify(directory, now)?;
        }
        Ok(self)
    }
}

/// The merchant's endorsement of a coin payment: the customer's receipt, and what the
/// merchant redeems.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndorsedCoinPaymentPayload {
    /// The payment as received.
    pub payment: CoinPayment,
    /// The endorsing merchant.
    pub merchant_id: MerchantId,
    /// When the merchant accepted it.
    pub endorsed_at: Timestamp,
}

signed_token!(
    /// An [`EndorsedCoinPaymentPayload`] signed by the merchant's key.
    EndorsedCoinPayment = EndorsedCoinPaymentPayload,
    signer: Merchant,
    tag: "endorsed-coin-payment"
);

impl EndorsedCoinPayment {
    /// Checks the merchant's endorsement under the key of `merchant` (whose certificate
    /// the caller has verified), and that both the endorsement and the paid request are
    /// that merchant's. The coins and the request signature are checked separately.
    pub fn verify(
        &self,
        merchant: &MerchantCertificatePayload,
    ) -> Result<&EndorsedCoinPaymentPayload> {
        let payload = self.verify_signature(&merchant.merchant_key)?;
        Self::check_merchant(payload, merchant)
    }

    /// Both the endorsement and the paid request are `merchant`'s.
    pub(crate) fn check_merchant<'p>(
        payload: &'p EndorsedCoinPaymentPayload,
        merchant: &MerchantCertificatePayload,
    ) -> Result<&'p EndorsedCoinPaymentPayload> {
        if payload.merchant_id != merchant.merchant_id
            || payload.payment.request.payload.merchant_id != merchant.merchant_id
        {
            return Err(Error::WrongMerchant);
        }
        Ok(payload)
    }
}
