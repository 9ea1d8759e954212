//! [`Merchant`]: the [`Terminal`]'s decisions driven over a `scrip-stores`
//! [`RecordStore`] (the queue, the replies, the exposure ledger, the claims that make a
//! coin or a sequence number count once) and an [`IssuerClient`] when online.

use std::sync::RwLock;
use std::time::Duration;

use rand_core::CryptoRng;
use scrip_stores::{ClaimId, Claimant, CommitOutcome, Floor, Posting, RecordStore, Unit, Write};
use scrip_tokens::keys::{DirectoryRoot, Merchant as MerchantRole};
use scrip_tokens::{
    codec, Amount, ContentDigest, KeyDirectory, MerchantCertificate, MerchantOffer, MerchantReply,
    PaymentAnswer, RedemptionBatch, RedemptionOutcome, RedemptionReport, RevocationCache,
    RevocationList, SignedKeyDirectory, SigningKey, Timestamp, VerifyingKey,
};

use crate::schema::{
    budget, headroom, queue_key, reply_key, unsettled, CachedDirectory, OpenRequest, QueuedPayment,
    Settlement, DIRECTORY_KEY, LOCAL, OPEN_REQUESTS, QUEUE, REPLIES, REVOCATIONS_KEY, SETTLED,
    SETTLED_ONCE,
};
use crate::terminal::{item_origin, request_of, Acceptance, Decision, Seen, Terminal};
use crate::{IssuerClient, MerchantConfig, MerchantError, Result, SyncSummary};

/// A point of sale: creates payment requests, verifies wallets' answers fully offline,
/// countersigns or endorses them, keeps them in a persistent queue (any scrip store
/// backend) and settles them with the issuer when online.
pub struct Merchant<S> {
    terminal: Terminal,
    root: VerifyingKey<DirectoryRoot>,
    store: S,
    directory: RwLock<Option<(KeyDirectory, Timestamp)>>,
    /// The issuer's revocation list, verified, as of the last sync.
    revocations: RwLock<RevocationCache>,
}

impl<S: RecordStore> Merchant<S> {
    /// Opens the point of sale over `store` (its queue survives restarts), with its key and
    /// certificate, trusting directories signed by `root`. Applies the configured exposure
    /// limit.
    pub async fn open(
        store: S,
        key: SigningKey<MerchantRole>,
        certificate: MerchantCertificate,
        root: VerifyingKey<DirectoryRoot>,
        config: MerchantConfig,
        now: Timestamp,
    ) -> Result<Self> {
        let merchant = Merchant {
            terminal: Terminal::new(key, certificate, config)?,
            root,
            store,
            directory: RwLock::new(None),
            revocations: RwLock::new(RevocationCache::new()),
        };
        if let Some(bytes) = merchant.store.get(LOCAL, DIRECTORY_KEY).await? {
            let cached: CachedDirectory = codec::decode(&bytes)?;
            let directory = cached.signed.verify(&merchant.root)?.clone();
            merchant.set_directory(directory, cached.fetched_at);
        }
        if let Some(bytes) = merchant.store.get(LOCAL, REVOCATIONS_KEY).await? {
            merchant.set_revocations(codec::decode(&bytes)?);
        }
        merchant.apply_limit(now).await?;
        Ok(merchant)
    }

    /// Brings headroom + unsettled to the configured limit (the limit may have changed).
    async fn apply_limit(&self, now: Timestamp) -> Result<()> {
        let limit = self.terminal.config().max_unsettled;
        let h = self.store.balance(&headroom(), limit.currency).await?;
        let u = self.store.balance(&unsettled(), limit.currency).await?;
        let delta = i128::from(limit.minor_units) - (h + u);
        if delta != 0 {
            let unit = Unit::new(self.claimant(), now).post([
                Posting {
                    account: budget(),
                    currency: limit.currency,
                    delta: -delta,
                    memo: "exposure limit".into(),
                },
                Posting {
                    account: headroom(),
                    currency: limit.currency,
                    delta,
                    memo: "exposure limit".into(),
                },
            ]);
            self.store.commit(unit).await?;
        }
        Ok(())
    }

    pub(crate) fn claimant(&self) -> Claimant {
        Claimant::Merchant(self.terminal.certificate().payload.merchant_id)
    }

    fn set_directory(&self, directory: KeyDirectory, at: Timestamp) {
        match self.directory.write() {
            Ok(mut d) => *d = Some((directory, at)),
            Err(poisoned) => *poisoned.into_inner() = Some((directory, at)),
        }
    }

    fn set_revocations(&self, cache: RevocationCache) {
        match self.revocations.write() {
            Ok(mut r) => *r = cache,
            Err(poisoned) => *poisoned.into_inner() = cache,
        }
    }

    /// A copy of the revocation list held.
    pub fn revocations(&self) -> RevocationCache {
        match self.revocations.read() {
            Ok(r) => r.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// How old the revocation list held is (`None`: none yet): show it on the terminal
    /// next to the directory's age; payments are checked against it.
    pub fn revocation_list_age(&self, now: Timestamp) -> Option<Duration> {
        match self.revocations.read() {
            Ok(r) => r.age(now),
            Err(poisoned) => poisoned.into_inner().age(now),
        }
    }

    /// Takes a revocation list fetched from the issuer (full, or the delta since the
    /// version held): verified against the cached key directory, applied, kept across
    /// restarts. A delta against another version, or an older list, changes nothing and
    /// is an error (fetch the full list).
    pub async fn refresh_revocations(&self, list: &RevocationList, now: Timestamp) -> Result<()> {
        let (directory, _) = self.cached_directory().ok_or(MerchantError::NoDirectory)?;
        let mut cache = self.revocations();
        cache.apply(list, &directory, now)?;
        let unit = Unit::new(self.claimant(), now).write(Write::put(
            LOCAL,
            REVOCATIONS_KEY.to_vec(),
            codec::encode(&cache)?,
        ));
        self.store.commit(unit).await?;
        self.set_revocations(cache);
        Ok(())
    }

    /// Fetches the revocation list (the delta since the version held, or the full list
    /// when that does not apply) and applies it.
    async fn sync_revocations(&self, issuer: &dyn IssuerClient, now: Timestamp) -> Result<()> {
        let held = self.revocations().version();
        let since = (held > 0).then_some(held);
        let list = issuer.revocations(since).await?;
        match self.refresh_revocations(&list, now).await {
            Err(MerchantError::Invalid(scrip_tokens::Error::RevocationDeltaBase { .. })) => {
                let full = issuer.revocations(None).await?;
                self.refresh_revocations(&full, now).await
            }
            // A server of a cluster that has not published the version another one did
            // yet: keep the newer list held (its age shows how fresh it is).
            Err(MerchantError::Invalid(scrip_tokens::Error::OutdatedRevocationList { .. })) => {
                Ok(())
            }
            other => other,
        }
    }

    pub(crate) fn cached_directory(&self) -> Option<(KeyDirectory, Timestamp)> {
        match self.directory.read() {
            Ok(d) => d.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The key directory held (verified against the root when it was taken), if any:
    /// what answers from the issuer are checked against, for instance a refund receipt
    /// ([`Terminal::verify_refund_receipt`]).
    pub fn key_directory(&self) -> Option<KeyDirectory> {
        self.cached_directory().map(|(directory, _)| directory)
    }

    /// The merchant's certificate.
    pub fn certificate(&self) -> &MerchantCertificate {
        self.terminal.certificate()
    }

    /// The pure decision core this point of sale drives.
    pub fn terminal(&self) -> &Terminal {
        &self.terminal
    }

    /// The local store (queue, settlements).
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Takes a key directory fetched from the issuer (checked against the pinned root).
    pub async fn refresh_directory(
        &self,
        signed: SignedKeyDirectory,
        now: Timestamp,
    ) -> Result<()> {
        let directory = signed.verify(&self.root)?.clone();
        let cached = CachedDirectory {
            signed,
            fetched_at: now,
        };
        let unit = Unit::new(self.claimant(), now).write(Write::put(
            LOCAL,
            DIRECTORY_KEY.to_vec(),
            codec::encode(&cached)?,
        ));
        self.store.commit(unit).await?;
        self.set_directory(directory, now);
        Ok(())
    }

    /// How old the cached key directory is (show it on the terminal: payments are checked
    /// against it).
    pub fn directory_age(&self, now: Timestamp) -> Option<Duration> {
        self.cached_directory().map(|(_, at)| {
            Duration::from_millis(now.as_unix_millis().saturating_sub(at.as_unix_millis()))
        })
    }

    /// A payment request for `amount`, signed, with the merchant certificate: show its
    /// bytes to the wallet. It stays payable for the configured lifetime.
    pub async fn offer<G: CryptoRng + ?Sized>(
        &self,
        amount: Amount,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<MerchantOffer> {
        let (offer, open) = self.terminal.offer(amount, now, rng)?;
        let unit = Unit::new(self.claimant(), now).write(Write::put(
            OPEN_REQUESTS,
            open.request.payload.request_id.as_bytes().to_vec(),
            codec::encode(&open)?,
        ));
        self.store.commit(unit).await?;
        Ok(offer)
    }

    /// Decides on a wallet's answer, fully offline ([`Terminal::decide`] over this
    /// store): a receipt once the payment is queued, or a signed, machine-readable
    /// refusal. A repeated answer gets the same reply.
    pub async fn accept<G: CryptoRng + ?Sized>(
        &self,
        answer: &PaymentAnswer,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<MerchantReply> {
        let answer_digest = codec::digest(answer)?;
        let request_id = request_of(answer).payload.request_id;
        if let Some(reply) = self.stored_reply(request_id, answer_digest).await? {
            return Ok(reply);
        }
        let lookups = self.terminal.lookups(answer);
        let open: Option<OpenRequest> = match self
            .store
            .get(OPEN_REQUESTS, lookups.request_id.as_bytes())
            .await?
        {
            Some(bytes) => Some(codec::decode(&bytes)?),
            None => None,
        };
        let held = self.store.claims(&lookups.claims).await?;
        let seen = Seen {
            open,
            held: lookups
                .claims
                .into_iter()
                .zip(held)
                .filter_map(|(id, claim)| claim.map(|_| id))
                .collect(),
        };
        let directory = self.cached_directory().map(|(d, _)| d);
        let decision = {
            let revocations = match self.revocations.read() {
                Ok(r) => r,
                Err(poisoned) => poisoned.into_inner(),
            };
            self.terminal
                .decide(answer, directory.as_ref(), &revocations, &seen, now, rng)?
        };
        match decision {
            Decision::Refuse(reply) => Ok(*reply),
            Decision::Accept(acceptance) => self.record(*acceptance, now, rng).await,
        }
    }

    /// [`Merchant::accept`] on bytes: decodes the answer, encodes the reply. Bytes that do
    /// not decode cannot be answered with a signed rejection (there is no request to name)
    /// and are an error.
    pub async fn accept_bytes<G: CryptoRng + ?Sized>(
        &self,
        answer: &[u8],
        now: Timestamp,
        rng: &mut G,
    ) -> Result<Vec<u8>> {
        let answer: PaymentAnswer = codec::decode(answer)?;
        let reply = self.accept(&answer, now, rng).await?;
        Ok(codec::encode(&reply)?)
    }

    async fn stored_reply(
        &self,
        request_id: scrip_tokens::RequestId,
        answer_digest: ContentDigest,
    ) -> Result<Option<MerchantReply>> {
        match self
            .store
            .get(REPLIES, &reply_key(request_id, answer_digest))
            .await?
        {
            Some(bytes) => Ok(Some(codec::decode(&bytes)?)),
            None => Ok(None),
        }
    }

    /// Records an acceptance in one unit: its claims, the amount moved from headroom to
    /// unsettled under a floor (the exposure limit holds however many answers arrive at
    /// once), the queue entry, the reply, the open request closed.
    async fn record<G: CryptoRng + ?Sized>(
        &self,
        acceptance: Acceptance,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<MerchantReply> {
        let amount = acceptance.amount();
        let request_id = acceptance.request_id;
        let mut unit = Unit::new(self.claimant(), now)
            .post(Posting::transfer(
                headroom(),
                unsettled(),
                amount,
                "payment accepted",
            ))
            .floor(Floor::non_negative(headroom(), amount.currency))
            .write(Write::put(
                QUEUE,
                queue_key(now, request_id),
                codec::encode(&acceptance.queued)?,
            ))
            .write(Write::put(
                REPLIES,
                reply_key(request_id, acceptance.answer_digest),
                codec::encode(&acceptance.reply)?,
            ))
            .write(Write::delete(OPEN_REQUESTS, request_id.as_bytes().to_vec()));
        for claim in &acceptance.claims {
            unit = unit.claim(claim.clone(), acceptance.answer_digest);
        }
        match self.store.commit(unit).await? {
            CommitOutcome::Committed => Ok(acceptance.reply),
            // The same answer, accepted by a concurrent call: its unit stored the reply.
            CommitOutcome::Repeated { .. } => self
                .stored_reply(request_id, acceptance.answer_digest)
                .await?
                .ok_or_else(|| MerchantError::Corrupted("accepted payment without reply".into())),
            CommitOutcome::InsufficientFunds { .. } => {
                self.terminal.refuse_over_limit(&acceptance, now, rng)
            }
            CommitOutcome::Conflict(report) => {
                let held: Vec<ClaimId> = report
                    .into_iter()
                    .filter(|(_, existing)| existing.is_some())
                    .map(|(id, _)| id)
                    .collect();
                self.terminal.refuse_held(&acceptance, &held, now, rng)
            }
        }
    }

    /// Payments accepted and not yet settled with the issuer, oldest first.
    pub async fn pending(&self, limit: usize) -> Result<Vec<QueuedPayment>> {
        self.store
            .scan(QUEUE, None, limit)
            .await?
            .into_iter()
            .map(|(_, v)| codec::decode(&v).map_err(MerchantError::from))
            .collect()
    }

    /// What accepted payments not yet settled add up to.
    pub async fn unsettled(&self) -> Result<Amount> {
        let currency = self.terminal.config().max_unsettled.currency;
        let u = self.store.balance(&unsettled(), currency).await?;
        Ok(Amount::new(u64::try_from(u).unwrap_or(0), currency))
    }

    /// A signed upload of the oldest queued payments (at most the configured batch
    /// size), or `None` if nothing is queued. Uploading the same items again is safe: the
    /// issuer answers `AlreadyAccepted`.
    pub async fn build_batch<G: CryptoRng + ?Sized>(
        &self,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<Option<RedemptionBatch>> {
        let queued = self.pending(self.terminal.config().batch_size).await?;
        self.terminal.batch(queued, now, rng)
    }

    /// Applies the issuer's answer to a batch: every answered item leaves the queue (and
    /// its amount the unsettled total) and is kept as a settlement. Safe to repeat. The
    /// answer must be signed by the issuer's answer key (as listed in the cached
    /// directory) and name this batch; otherwise nothing is applied
    /// ([`MerchantError::UnverifiedAnswer`]).
    pub async fn apply_report(
        &self,
        batch: &RedemptionBatch,
        report: &RedemptionReport,
        now: Timestamp,
    ) -> Result<SyncSummary> {
        let (directory, _) = self.cached_directory().ok_or(MerchantError::NoDirectory)?;
        let report = self
            .terminal
            .verify_report(batch, report, &directory, now)?;
        let mut summary = SyncSummary::default();
        for (item, outcome) in batch.payload.items.iter().zip(&report.outcomes) {
            let (request_id, accepted_at) = item_origin(item);
            let key = queue_key(accepted_at, request_id);
            let Some(bytes) = self.store.get(QUEUE, &key).await? else {
                continue; // applied before
            };
            let payment: QueuedPayment = codec::decode(&bytes)?;
            if self.settle(key, payment, outcome, now).await? {
                summary.count(outcome);
            }
        }
        Ok(summary)
    }

    /// Moves one payment from the queue to the settlements, once: `false` when a
    /// concurrent call (another sync applying the same answer) settled it first.
    async fn settle(
        &self,
        key: Vec<u8>,
        payment: QueuedPayment,
        outcome: &RedemptionOutcome,
        now: Timestamp,
    ) -> Result<bool> {
        let amount = payment.amount;
        let settlement = Settlement {
            payment,
            outcome: outcome.clone(),
            settled_at: now,
        };
        let unit = Unit::new(self.claimant(), now)
            .claim(SETTLED_ONCE.claim(key.clone()), ContentDigest::of(&key))
            .post(Posting::transfer(
                unsettled(),
                headroom(),
                amount,
                "settled",
            ))
            .write(Write::delete(QUEUE, key.clone()))
            .write(Write::put(SETTLED, key, codec::encode(&settlement)?));
        match self.store.commit(unit).await? {
            CommitOutcome::Committed => Ok(true),
            CommitOutcome::Repeated { .. } => Ok(false),
            // The claim's digest is a function of its key and the unit has no floor.
            other => Err(MerchantError::Corrupted(format!(
                "settling a payment did not apply: {other:?}"
            ))),
        }
    }

    /// Settlements so far, oldest first.
    pub async fn settlements(&self, limit: usize) -> Result<Vec<Settlement>> {
        self.store
            .scan(SETTLED, None, limit)
            .await?
            .into_iter()
            .map(|(_, v)| codec::decode(&v).map_err(MerchantError::from))
            .collect()
    }

    /// The merchant's statement in `currency` from the issuer (entries after `after_seq`,
    /// at most `limit`), checked against the cached key directory before it is returned.
    pub async fn statement<G: CryptoRng + ?Sized>(
        &self,
        issuer: &dyn IssuerClient,
        currency: scrip_tokens::Currency,
        after_seq: Option<u64>,
        limit: u32,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<scrip_tokens::MerchantStatementPayload> {
        let (directory, _) = self.cached_directory().ok_or(MerchantError::NoDirectory)?;
        let request = self
            .terminal
            .statement_request(currency, after_seq, limit, now, rng)?;
        let statement = issuer.merchant_statement(&request).await?;
        Ok(self
            .terminal
            .verify_statement(&request, &statement, &directory, now)?
            .clone())
    }

    /// Pays `amount` out to the merchant's bank under `payout_id` (pick it with
    /// `PayoutId::random` and keep it until this returns a receipt: calling again with the
    /// same id and amount after an error pays once). The receipt is checked against the
    /// cached key directory before it is returned: paid (with the bank's reference) or
    /// declined (the amount is back on the merchant's balance).
    pub async fn payout<G: CryptoRng + ?Sized>(
        &self,
        issuer: &dyn IssuerClient,
        payout_id: scrip_tokens::PayoutId,
        amount: Amount,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<scrip_tokens::PayoutReceiptPayload> {
        let (directory, _) = self.cached_directory().ok_or(MerchantError::NoDirectory)?;
        let request = self.terminal.payout_request(payout_id, amount, now, rng)?;
        let receipt = issuer.payout(&request).await?;
        Ok(self
            .terminal
            .verify_payout(&request, &receipt, &directory, now)?
            .clone())
    }

    /// Goes online: refreshes the key directory and the revocation list, then uploads the
    /// queue batch by batch and applies the answers. Any failure of the upload leaves the
    /// queue as it was (retry later).
    ///
    /// A revocation list that cannot be fetched or applied (a server that does not serve
    /// lists yet, a transient error) does not stop the upload: being paid for what was
    /// accepted does not depend on it. The list then keeps its age
    /// ([`Self::revocation_list_age`]), which a configured maximum age enforces.
    pub async fn sync<G: CryptoRng + ?Sized>(
        &self,
        issuer: &dyn IssuerClient,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<SyncSummary> {
        self.refresh_directory(issuer.key_directory().await?, now)
            .await?;
        if let Err(error) = self.sync_revocations(issuer, now).await {
            tracing::warn!(%error, "revocation list not refreshed; uploading anyway");
        }
        let mut total = SyncSummary::default();
        while let Some(batch) = self.build_batch(now, rng).await? {
            let report = issuer.redeem(&batch).await?;
            let summary = self.apply_report(&batch, &report, now).await?;
            if summary == SyncSummary::default() {
                break; // nothing left the queue: avoid looping on a stuck item
            }
            total.add(&summary);
        }
        Ok(total)
    }
}
