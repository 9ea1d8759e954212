#![doc = include_str!("../README.md")]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod authentication;
mod certificates;
mod coins;
mod deposits;
mod error;
mod fraud;
pub mod funding;
mod idempotency;
mod keyring;
pub mod keyring_files;
mod operator;
mod payouts;
mod redemption;
mod refunds;
mod registry;
mod revocations;
mod schema;
#[cfg(feature = "server")]
pub mod server;
mod statements;
mod swaps;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use scrip_stores::{Collection, LedgerAccount, LedgerEntry, RecordStore};
use scrip_tokens::{
    codec, AccountId, Backend, Currency, Message, Signed, SignedKeyDirectory, SignedPayload,
    Timestamp,
};

pub use authentication::{Authenticated, SignedRequest};
pub use certificates::Released;
pub use error::{IssuerError, Result};
pub use funding::{FundingError, FundingSource, InMemoryFunding, RecordedDemoFunding};
pub use payouts::{InMemoryPayouts, Payout, PayoutConfirmation, PayoutError, PayoutSink};

pub use keyring::{one_two_five, IssuerKey, Keyring, KeyringConfig, KeysetKeys, RoleKeys};
pub use registry::AccountOpened;
pub use revocations::REVOCATION_SNAPSHOTS_KEPT;
use schema::RawValue;
pub use schema::{coins_outstanding_account, funding_account, swap_fees_account};
pub use schema::{paid_out_account, payouts_pending_account, PayoutDoc, PayoutProgress};
/// The stored documents the issuer's read methods return ([`Issuer::account`],
/// [`Issuer::record`], ...). Where and how they are stored (collections, keys, claim
/// namespaces) is the crate-private storage schema.
pub use schema::{
    AccountDoc, CertificateDoc, DeviceDoc, IdentifiedCoinDoc, Mark, MerchantDoc, PaidBy,
    PaymentDoc, RecordDoc, RecordSource, RefundDoc, RefundPaid, RefundTotalDoc, ReleaseDoc,
    RevocationSnapshot, RevokedCoinDoc, UnfreezeDoc,
};

/// The HTTP API's message types (crate `scrip-api`), shared with every client.
pub use scrip_api as api;

/// Limits and lifetimes the issuer applies.
#[derive(Clone, Debug)]
pub struct IssuerConfig {
    /// Lifetime of account (device) certificates.
    pub account_certificate_lifetime: Duration,
    /// Lifetime of merchant certificates.
    pub merchant_certificate_lifetime: Duration,
    /// Lifetime of balance certificates.
    pub balance_certificate_lifetime: Duration,
    /// The settlement window: how long after a balance certificate's expiry its
    /// reservation is still held, so that a merchant that accepted a record before expiry
    /// and uploads it within this grace is paid from the reservation, whatever the account
    /// did since. The reservation's unspent remainder goes back to the account only once
    /// `expires_at + upload_grace` has passed ([`Issuer::release_expired`]); a record
    /// uploaded after that is paid from the account's balance only if the balance covers
    /// it, else refused `insufficient_funds` (see `src/redemption.rs`). Published to
    /// merchants and wallets (`interop/WIRE.md` §4.3, `--upload-grace-secs`): every server
    /// of a cluster must run the same value.
    ///
    /// Default 7 days: a point of sale offline over a long weekend, a market stall or a
    /// vehicle that syncs weekly must still be paid, and a merchant can plan to a week.
    /// The cost falls on the customer: what a certificate did not spend comes back a week
    /// after its expiry rather than at it (the rest of the balance stays usable for new
    /// certificates meanwhile, and a device asks for no more than it means to carry).
    pub upload_grace: Duration,
    /// The revocation grace, published in every revocation list (`grace_secs`): a record
    /// from a revoked device is honoured if it was paid before `listed_since + grace`,
    /// where `listed_since` is when the first published list named the device, since a
    /// merchant holding a list no older than the grace could not have known; a record
    /// paid later is refused `device_revoked` (see `src/redemption.rs`). Every server of a
    /// cluster must run the same value.
    ///
    /// Default 6 hours: a terminal that refreshes its list at opening and at midday (a
    /// delta is a few bytes) is always paid, while a thief's window after the owner's
    /// report is a quarter of a balance certificate's default lifetime (24 hours) rather
    /// than all of it. Merchants set `max_revocation_list_age` to at most this.
    pub revocation_grace: Duration,
    /// Most payments one balance certificate allows.
    pub max_payments_per_certificate: u32,
    /// Largest per-payment cap, in minor units.
    pub max_per_payment_cap: u64,
    /// Largest amount one balance certificate makes available, in minor units.
    pub max_certificate_amount: u64,
    /// Most coins in one withdrawal.
    pub max_coins_per_withdrawal: usize,
    /// Most items in one redemption batch.
    pub max_batch_items: usize,
    /// The swap fee hook: minor units the issuer keeps per coin handed in to a swap
    /// (`POST /v1/swaps`), moved from `coins-outstanding` to `swap-fees`
    /// ([`swap_fees_account`]). A swap's outputs must add up to its inputs less this fee
    /// per input coin. Default 0: change and refresh cost nothing, so a wallet never
    /// loses value by keeping its coins spendable. The key directory does not publish the
    /// fee: an issuer that sets one tells its wallet vendors, whose wallets ask for
    /// outputs worth the inputs less the fee (`scrip_wallet::Wallet::swap_request`).
    pub swap_fee_per_coin: u64,
    /// Where the RSA work runs: the issuer's keys are moved onto this backend when the
    /// keyring is installed, and every device and merchant key is verified on it. Default
    /// pure Rust ([`Backend::RustCrypto`]); the server runs [`Backend::fastest`]
    /// (`--crypto-backend`).
    pub backend: Backend,
}

impl Default for IssuerConfig {
    fn default() -> Self {
        IssuerConfig {
            account_certificate_lifetime: Duration::from_secs(365 * 86_400),
            merchant_certificate_lifetime: Duration::from_secs(365 * 86_400),
            balance_certificate_lifetime: Duration::from_secs(86_400),
            upload_grace: Duration::from_secs(7 * 86_400),
            revocation_grace: Duration::from_secs(6 * 3_600),
            max_payments_per_certificate: 100,
            max_per_payment_cap: 50_000,
            max_certificate_amount: 100_000,
            max_coins_per_withdrawal: 200,
            max_batch_items: 1_000,
            swap_fee_per_coin: 0,
            backend: Backend::default(),
        }
    }
}

/// The crypto backends (`scrip_tokens::keys::backend`).
pub use scrip_tokens::keys::backend;

/// The account management system: registration, deposits, balance certificates, coin
/// issuance, redemption, reconciliation and the fraud log, over any [`RecordStore`].
///
/// Every method takes the current time (`now`) and, where it signs, an RNG: the core reads
/// no clock and owns no randomness. All state lives in the store, so several `Issuer`s
/// (processes) over one shared store behave as one.
pub struct Issuer<S, F> {
    store: S,
    funding: F,
    keyring: RwLock<Arc<Keyring>>,
    config: IssuerConfig,
    /// The latest revocation list version read or written, indexed.
    revocations: RwLock<Arc<revocations::LatestRevocations>>,
    /// Coins being swapped by this process (one swap at a time per coin).
    swaps_in_flight: swaps::SwapsInFlight,
}

impl<S: RecordStore, F: FundingSource> Issuer<S, F> {
    /// An issuer over `store`, crediting deposits from `funding`, signing with `keyring`.
    pub fn new(store: S, funding: F, keyring: Keyring, config: IssuerConfig) -> Self {
        Issuer {
            store,
            funding,
            keyring: RwLock::new(Arc::new(keyring.on_backend(config.backend))),
            config,
            revocations: RwLock::default(),
            swaps_in_flight: swaps::SwapsInFlight::default(),
        }
    }

    /// The record store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The funding source.
    pub fn funding(&self) -> &F {
        &self.funding
    }

    /// The configuration.
    pub fn config(&self) -> &IssuerConfig {
        &self.config
    }

    /// A snapshot of the keyring (rotation swaps in a new one).
    pub fn keys(&self) -> Arc<Keyring> {
        match self.keyring.read() {
            Ok(k) => Arc::clone(&k),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Replaces the keyring (after a rotation). Tokens signed by keys that are still
    /// listed keep verifying.
    pub fn replace_keyring(&self, keyring: Keyring) {
        let new = Arc::new(keyring.on_backend(self.config.backend));
        match self.keyring.write() {
            Ok(mut k) => *k = new,
            Err(poisoned) => *poisoned.into_inner() = new,
        }
    }

    /// The signed key directory at `now`.
    pub fn key_directory<G: rand_core::CryptoRng + ?Sized>(
        &self,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<SignedKeyDirectory> {
        self.keys().signed_directory(now, rng)
    }

    /// Signs an answer (a redemption or sync report, a statement) with the answer key
    /// valid at `now`: clients act on an answer only after checking this signature.
    pub fn sign_answer<P, G>(&self, answer: P, now: Timestamp, rng: &mut G) -> Result<Signed<P>>
    where
        P: SignedPayload<Signer = scrip_tokens::keys::AnswerSigner>,
        G: rand_core::CryptoRng + ?Sized,
    {
        let keys = self.keys();
        Ok(Signed::sign(
            answer,
            &keys.answer_signer.current(now)?.key,
            rng,
        )?)
    }

    /// An account's spendable balance in `currency` (minor units; negative if the account
    /// owes money after overspending).
    pub async fn balance(&self, account: AccountId, currency: Currency) -> Result<i128> {
        Ok(self
            .store
            .balance(&LedgerAccount::Customer(account), currency)
            .await?)
    }

    /// An account's ledger in `currency`, oldest first, after `after_seq`.
    pub async fn statement(
        &self,
        account: AccountId,
        currency: Currency,
        after_seq: Option<u64>,
        limit: usize,
    ) -> Result<Vec<LedgerEntry>> {
        Ok(self
            .store
            .ledger_entries(
                &LedgerAccount::Customer(account),
                currency,
                after_seq,
                limit,
            )
            .await?)
    }

    /// The claims held under `ids`, one answer per id in order (a store answering
    /// another number is corrupted).
    async fn held_claims(
        &self,
        ids: &[scrip_stores::ClaimId],
    ) -> Result<Vec<Option<scrip_stores::ExistingClaim>>> {
        let held = self.store.claims(ids).await?;
        if held.len() != ids.len() {
            return Err(IssuerError::Corrupted(
                "store answered another number of claims".into(),
            ));
        }
        Ok(held)
    }

    /// The claim held under `id`, if any.
    async fn held_claim(
        &self,
        id: scrip_stores::ClaimId,
    ) -> Result<Option<scrip_stores::ExistingClaim>> {
        Ok(self
            .held_claims(std::slice::from_ref(&id))
            .await?
            .into_iter()
            .next()
            .flatten())
    }

    async fn doc<T: Message>(&self, collection: Collection, key: &[u8]) -> Result<Option<T>> {
        match self.store.get(collection, key).await? {
            None => Ok(None),
            Some(bytes) => codec::decode(&bytes)
                .map(Some)
                .map_err(|e| IssuerError::Corrupted(format!("{}: {e}", collection.name()))),
        }
    }

    /// [`Self::doc`] for the values kept as raw bytes (ids in index collections,
    /// counters).
    async fn raw_value<T: RawValue>(
        &self,
        collection: Collection,
        key: &[u8],
    ) -> Result<Option<T>> {
        match self.store.get(collection, key).await? {
            None => Ok(None),
            Some(raw) => T::from_raw(&raw).map(Some).ok_or_else(|| {
                IssuerError::Corrupted(format!("{}: a value of another width", collection.name()))
            }),
        }
    }

    /// [`Self::raw_value`] for evidence that only enriches an answer (who held a coin,
    /// which record came first): a value of another width reads as unknown, with a
    /// warning, rather than failing the redemption it belongs to.
    async fn evidence<T: RawValue>(&self, collection: Collection, key: &[u8]) -> Result<Option<T>> {
        match self.raw_value(collection, key).await {
            Err(IssuerError::Corrupted(what)) => {
                tracing::warn!(%what, "unreadable evidence, treated as unknown");
                Ok(None)
            }
            other => other,
        }
    }
}

fn encode<T: Message>(value: &T) -> Result<Vec<u8>> {
    Ok(codec::encode(value)?)
}

/// Most items any listing call returns (callers page with `after`).
pub const MAX_PAGE: usize = 1_000;

/// Most records or deposit confirmations one device may hand in at once.
pub const MAX_HAND_INS: usize = 1_000;

/// How many times an operation re-reads and retries after losing a race with a
/// concurrent one (the store's atomic checks make the retry safe).
const RETRIES: usize = 16;
