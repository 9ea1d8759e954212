//! Redemption of merchant batches and reconciliation of withdrawal records.
//!
//! **Coins**: one unit per coin payment claims every coin id (digest = the payment's
//! encoding, request included) and credits the merchant from `coins-outstanding`, so a
//! payment is all or nothing, a retry of the same payment comes back `Repeated`
//! (`AlreadyAccepted`), and the coin in any other payment is `DoubleSpent`.
//!
//! **Records**: every copy of a record, whether the merchant's upload or the customer's
//! sync, is recorded by one unit with the *merchant* as claimant and the digest of the
//! device-signed record, claiming the record id and the (device, sequence) pair. The
//! second copy is therefore always a `Repeated`: recorded once. The merchant is paid from
//! the certificate's reservation, and from the account's balance for what the
//! reservation no longer covers.
//!
//! **Overspend policy** (records beyond their certificate): a record that breaks a rule
//! the merchant could check offline (signature, certificate serial, validity, sequence
//! range, per-payment cap, its own cumulative against `available`, category, region) is
//! `Invalid`: the merchant should have refused it and is not paid. A record that passed
//! every such check is honoured even when the certificate's records together exceed
//! `available` (the device lied about its cumulative amount, or a cloned device paid
//! twice): the merchant did everything right offline, and a payment system that makes
//! honest merchants carry device fraud is not one merchants accept. The excess is taken
//! from the account's balance, which may go negative (a debt), the overspend is logged in
//! the fraud log and the account is frozen. A record arriving after its certificate's
//! reservation was released is paid from the balance the same way, without fraud if the
//! certificate's records stay within `available`.
//!
//! **Equivocation**: a second, different record with an existing (device, sequence) is
//! recorded as evidence next to the first, honoured under the same policy, logged, and the
//! account is frozen.

use scrip_stores::{
    ClaimId, Claimant, CommitOutcome, ExistingClaim, Floor, LedgerAccount, Posting, RecordStore,
    Unit, Write,
};
use std::collections::{HashMap, HashSet};

use scrip_tokens::{
    codec, Amount, BalanceCertificate, CertificateSerial, Coin, CoinId, CoinSpendId, ContentDigest,
    CountersignedRecord, MerchantId, Message, RecordId, RedemptionBatch, RedemptionItem,
    RedemptionOutcome, RedemptionReportPayload, RejectReason, Timestamp, WithdrawalRecord,
};

use crate::authentication::Authenticated;
use crate::docs::{
    coins_outstanding_account, key2, record_digest, CoinHolder, FraudEntry, FraudKind, Mark,
    MerchantDoc, RecordDoc, RecordSource, CERTIFICATE_RECORDS, FRAUD_LOG, FROZEN, RECORDS,
    SEQUENCE_RECORDS,
};
use crate::{encode, FundingSource, Issuer, IssuerError, Result, RETRIES};

/// A copy of a withdrawal record reaching the issuer.
pub(crate) enum RecordSubmission<'a> {
    /// The merchant's countersigned copy, in its (verified) batch.
    Merchant {
        merchant: &'a MerchantDoc,
        receipt: &'a CountersignedRecord,
    },
    /// The customer device's own copy, in its certificate request.
    Customer(&'a WithdrawalRecord),
}

/// A record's outcome; only store errors stay errors.
fn outcome_or_store_error(result: Result<RedemptionOutcome>) -> Result<RedemptionOutcome> {
    match result {
        Ok(outcome) => Ok(outcome),
        Err(IssuerError::Store(e)) => Err(IssuerError::Store(e)),
        Err(e) => Ok(invalid(&e)),
    }
}

/// A record copy that passed every check that needs no write.
pub(crate) struct CheckedRecord<'a> {
    record: &'a WithdrawalRecord,
    source: RecordSource,
    merchant_id: MerchantId,
    digest: ContentDigest,
    certificate: BalanceCertificate,
}

/// What earlier attempts learned: the record id, or the (device, sequence) pair, is taken
/// by a different record. The record is then claimed under its own digest instead, kept as
/// evidence, honoured, logged, and the account frozen.
#[derive(Default)]
struct RecordConflicts {
    id_taken: bool,
    /// `Some(first)` once the pair is known to be taken (by `first`, if it could be read).
    sequence_taken: Option<Option<RecordId>>,
}

/// How a record of a call to `record_withdrawals` is committed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Never seen: in a group, counting what it takes from the reservation.
    Fresh,
    /// Already recorded as this very record: in a group, taking nothing.
    Repeat,
    /// Anything else (a reused id or sequence, a repeat within the call): on its own.
    Alone,
}

/// A coin payment of a batch found spent: its position, the coins spent before, and
/// when the first of them was.
type DoubleSpend = (usize, Vec<CoinId>, Timestamp);

/// One coin payment of a batch, ready to commit.
struct CoinUnit {
    /// Its position in the batch.
    item: usize,
    total: Amount,
    /// Digest of the payment: the digest every coin is claimed with.
    digest: ContentDigest,
    /// Each coin's spend id and coin id, in the payment's order.
    spend_ids: Vec<(CoinSpendId, CoinId)>,
    unit: Unit,
}

impl CoinUnit {
    fn coin_of(&self, spend_id: CoinSpendId) -> Option<CoinId> {
        self.spend_ids
            .iter()
            .find(|(s, _)| *s == spend_id)
            .map(|(_, coin)| *coin)
    }
}

/// How a record's unit pays the merchant (minor units).
struct Taken {
    from_reservation: u64,
    from_balance: u64,
}

pub(crate) fn invalid(e: &IssuerError) -> RedemptionOutcome {
    let reason = match e {
        IssuerError::Invalid(token_error) => RejectReason::from(token_error),
        other => RejectReason {
            code: other.code().to_owned(),
            message: other.to_string(),
        },
    };
    RedemptionOutcome::Invalid { reason }
}

impl<S: RecordStore, F: FundingSource> Issuer<S, F> {
    /// Redeems a merchant's batch: one outcome per item, in order. Verifies the batch
    /// signature first; an unverifiable batch is refused as a whole.
    ///
    /// The answer is unsigned: [`Issuer::sign_answer`] signs it for the merchant.
    pub async fn redeem(
        &self,
        batch: &RedemptionBatch,
        now: Timestamp,
    ) -> Result<RedemptionReportPayload> {
        let batch = self.authenticate(batch).await?;
        self.redeem_authenticated(batch, now).await
    }

    /// [`Self::redeem`] for a batch whose signature was checked.
    pub async fn redeem_authenticated(
        &self,
        batch: Authenticated<'_, RedemptionBatch>,
        now: Timestamp,
    ) -> Result<RedemptionReportPayload> {
        let merchant = batch.signer();
        let batch = batch.request();
        if batch.payload.items.len() > self.config.max_batch_items {
            return Err(IssuerError::Unsupported("too many items in one batch"));
        }
        let directory = self.keys().directory(now)?;
        let merchant_id = batch.payload.merchant_id;

        // Coin payments: verify, then commit all of them in one call (one durable write).
        let mut outcomes: Vec<Option<RedemptionOutcome>> = vec![None; batch.payload.items.len()];
        let mut coin_units = Vec::new();
        for (i, item) in batch.payload.items.iter().enumerate() {
            let RedemptionItem::Coins(endorsed) = item else {
                continue;
            };
            let checked = endorsed
                .verify(&merchant.certificate.payload)
                .map_err(IssuerError::from)
                .and_then(|p| {
                    // The merchant must have been certified when it took the payment: at
                    // the times it signed (request and endorsement), not at upload time,
                    // so a sale made just before expiry is still paid.
                    let validity = merchant.certificate.payload.validity;
                    validity.check(p.payment.request.payload.created_at)?;
                    validity.check(p.endorsed_at)?;
                    p.payment
                        .verify(&merchant.certificate.payload, &directory, now)?;
                    Ok(&p.payment)
                });
            match checked {
                Err(e) => outcomes[i] = Some(invalid(&self.explain_unknown_keyset(e, now))),
                Ok(payment) => {
                    let total = payment.total()?;
                    let mut unit =
                        Unit::new(Claimant::Merchant(merchant_id), now).post(Posting::transfer(
                            coins_outstanding_account(),
                            LedgerAccount::Merchant(merchant_id),
                            total,
                            "coins redeemed",
                        ));
                    // Every coin is claimed under its spend id with the digest of the
                    // payment it was spent in: a retry of this payment is a repeat, the
                    // coin in any other payment (even by this merchant) is a double spend.
                    let digest = codec::digest(payment)?;
                    let mut spend_ids = Vec::with_capacity(payment.coins.len());
                    for coin in &payment.coins {
                        let spend_id = coin.spend_id()?;
                        unit = unit.claim(ClaimId::Coin(spend_id), digest);
                        spend_ids.push((spend_id, coin.id()));
                    }
                    coin_units.push(CoinUnit {
                        item: i,
                        total,
                        digest,
                        spend_ids,
                        unit,
                    });
                }
            }
        }
        let (coin_units, mut double_spends) = self
            .settle_legacy_claims(coin_units, merchant_id, now, &mut outcomes)
            .await?;
        let results = self
            .store
            .commit_many(coin_units.iter().map(|c| c.unit.clone()).collect())
            .await?;
        for (coin_unit, result) in coin_units.iter().zip(results) {
            outcomes[coin_unit.item] = Some(match result {
                CommitOutcome::Committed => RedemptionOutcome::Accepted {
                    credited: coin_unit.total,
                },
                CommitOutcome::Repeated { first_claimed_at } => {
                    RedemptionOutcome::AlreadyAccepted {
                        first_accepted_at: first_claimed_at,
                    }
                }
                CommitOutcome::Conflict(report) => {
                    let held: Vec<_> = report
                        .into_iter()
                        .filter_map(|(id, held)| match (id, held) {
                            (ClaimId::Coin(spend_id), Some(h)) => {
                                coin_unit.coin_of(spend_id).map(|coin| (coin, h.claimed_at))
                            }
                            _ => None,
                        })
                        .collect();
                    let first_redeemed_at = held.iter().map(|(_, t)| *t).min().unwrap_or(now);
                    let coins: Vec<_> = held.into_iter().map(|(c, _)| c).collect();
                    double_spends.push((coin_unit.item, coins.clone(), first_redeemed_at));
                    RedemptionOutcome::DoubleSpent {
                        first_redeemed_at,
                        coins,
                    }
                }
                CommitOutcome::InsufficientFunds { .. } => {
                    return Err(IssuerError::Corrupted("floor on a coin redemption".into()))
                }
            });
        }
        for (i, coins, first_redeemed_at) in double_spends {
            if let Some(RedemptionItem::Coins(endorsed)) = batch.payload.items.get(i) {
                self.log_double_spend(
                    merchant_id,
                    &endorsed.payload.payment.coins,
                    coins,
                    first_redeemed_at,
                    now,
                )
                .await?;
            }
        }

        // Records: the fresh ones share one store call.
        let mut record_items = Vec::new();
        let mut submissions = Vec::new();
        for (i, item) in batch.payload.items.iter().enumerate() {
            if let RedemptionItem::Record(receipt) = item {
                record_items.push(i);
                submissions.push(RecordSubmission::Merchant { merchant, receipt });
            }
        }
        let record_outcomes = self.record_withdrawals(submissions, now).await?;
        for (i, outcome) in record_items.into_iter().zip(record_outcomes) {
            outcomes[i] = Some(outcome);
        }
        Ok(RedemptionReportPayload {
            merchant_id,
            batch_digest: codec::digest(batch)?,
            answered_at: now,
            outcomes: outcomes
                .into_iter()
                .map(|o| {
                    o.unwrap_or_else(|| {
                        invalid(&IssuerError::Corrupted("item not processed".into()))
                    })
                })
                .collect(),
        })
    }

    /// A coin of a keyset the directory no longer lists: if the issuer had that keyset and
    /// its window has ended, say so (`keyset_expired`) rather than `unknown_keyset`, so a
    /// merchant can tell stale coins from forged ones.
    fn explain_unknown_keyset(&self, e: IssuerError, now: Timestamp) -> IssuerError {
        if let IssuerError::Invalid(scrip_tokens::Error::UnknownKeyset(id)) = &e {
            if let Some(set) = self.keys().keyset(*id) {
                if set.keyset.validity().not_after < now {
                    return IssuerError::KeysetExpired(*id);
                }
            }
        }
        e
    }

    /// Coins claimed by scrip 0.1, under their bare ids, before spend ids existed: a
    /// payment holding one is answered from that claim (`already_accepted` for this
    /// merchant's own earlier upload of the same payment, `double_spent` otherwise) and
    /// not committed. One read for the whole batch; no new claim of this kind is ever
    /// written, so reading first and committing after cannot race.
    async fn settle_legacy_claims(
        &self,
        coin_units: Vec<CoinUnit>,
        merchant_id: scrip_tokens::MerchantId,
        now: Timestamp,
        outcomes: &mut [Option<RedemptionOutcome>],
    ) -> Result<(Vec<CoinUnit>, Vec<DoubleSpend>)> {
        let legacy: Vec<ClaimId> = coin_units
            .iter()
            .flat_map(|c| c.spend_ids.iter().map(|(_, id)| ClaimId::LegacyCoinId(*id)))
            .collect();
        if legacy.is_empty() {
            return Ok((coin_units, Vec::new()));
        }
        let held = self.store.claims(&legacy).await?;
        if held.len() != legacy.len() {
            return Err(IssuerError::Corrupted(
                "store answered another number of claims".into(),
            ));
        }
        let mut held = held.into_iter();
        let mut to_commit = Vec::with_capacity(coin_units.len());
        let mut double_spends = Vec::new();
        for coin_unit in coin_units {
            let claims: Vec<_> = coin_unit
                .spend_ids
                .iter()
                .zip(held.by_ref())
                .filter_map(|((_, coin), claim)| claim.map(|c| (*coin, c)))
                .collect();
            if claims.is_empty() {
                to_commit.push(coin_unit);
                continue;
            }
            let first = claims
                .iter()
                .map(|(_, c)| c.claimed_at)
                .min()
                .unwrap_or(now);
            let ours = claims.len() == coin_unit.spend_ids.len()
                && claims.iter().all(|(_, c)| {
                    c.claimant == Claimant::Merchant(merchant_id) && c.digest == coin_unit.digest
                });
            outcomes[coin_unit.item] = Some(if ours {
                RedemptionOutcome::AlreadyAccepted {
                    first_accepted_at: first,
                }
            } else {
                let coins: Vec<_> = claims.into_iter().map(|(coin, _)| coin).collect();
                double_spends.push((coin_unit.item, coins.clone(), first));
                RedemptionOutcome::DoubleSpent {
                    first_redeemed_at: first,
                    coins,
                }
            });
        }
        Ok((to_commit, double_spends))
    }

    async fn log_double_spend(
        &self,
        merchant: scrip_tokens::MerchantId,
        presented: &[Coin],
        spent: Vec<scrip_tokens::CoinId>,
        first_redeemed_at: Timestamp,
        now: Timestamp,
    ) -> Result<()> {
        let mut holders = Vec::new();
        for coin in presented.iter().filter(|c| spent.contains(&c.id())) {
            if let Some(virtual_id) = coin.holder() {
                holders.push(CoinHolder {
                    coin_id: coin.id(),
                    virtual_id,
                    account_id: self.account_of_virtual_id(virtual_id).await?,
                    revoked: self.revoked_coin(coin.id()).await?.is_some(),
                });
            }
        }
        let entry = FraudEntry {
            at: now,
            kind: FraudKind::DoubleSpend {
                merchant,
                coins: spent,
                first_redeemed_at,
                holders,
            },
        };
        self.log_fraud(&entry, now).await
    }

    /// Appends `entry` to the fraud log once (a retried batch does not log twice).
    pub(crate) async fn log_fraud(&self, entry: &FraudEntry, now: Timestamp) -> Result<()> {
        let identity = fraud_identity(entry)?;
        let unit = Unit::new(Claimant::Issuer, now)
            .claim(
                ClaimId::Custom {
                    namespace: "fraud-entry".into(),
                    key: identity.as_bytes().to_vec(),
                },
                identity,
            )
            .write(Write::put(
                FRAUD_LOG,
                fraud_key(entry, now)?,
                encode(entry)?,
            ));
        self.store.commit(unit).await?;
        Ok(())
    }

    /// Freezes an account once (the first reason stands).
    pub(crate) async fn freeze(
        &self,
        account: scrip_tokens::AccountId,
        reason: &str,
        now: Timestamp,
    ) -> Result<()> {
        let unit = Unit::new(Claimant::Issuer, now)
            .claim(
                ClaimId::Custom {
                    namespace: "freeze".into(),
                    key: account.as_bytes().to_vec(),
                },
                ContentDigest::of(account.as_bytes()),
            )
            .write(Write::put(
                FROZEN,
                account.as_bytes().to_vec(),
                encode(&Mark {
                    at: now,
                    reason: reason.to_owned(),
                })?,
            ));
        self.store.commit(unit).await?;
        Ok(())
    }

    /// Records several copies of withdrawal records, one outcome per submission, in order:
    /// the same outcomes, and the same split between reservation and balance, as recording
    /// them one by one (see the module documentation for the policy), but consecutive
    /// fresh records share one store call (one durable write), so a merchant's batch of
    /// records costs about as much to commit as one record. Copies already recorded,
    /// repeats within the call and equivocations go one by one, in their place. Checks
    /// failing give `Invalid`; store errors are errors.
    ///
    /// Under a concurrent redemption of the same record or certificate, a record of a
    /// group can find its reservation short or its id taken: it is then retried on its
    /// own after the group, which can move part of its payment from the reservation to
    /// the balance (the reservation is released at expiry): money stays conserved.
    pub(crate) async fn record_withdrawals(
        &self,
        submissions: Vec<RecordSubmission<'_>>,
        now: Timestamp,
    ) -> Result<Vec<RedemptionOutcome>> {
        let mut outcomes: Vec<Option<RedemptionOutcome>> = vec![None; submissions.len()];
        let mut checked = Vec::with_capacity(submissions.len());
        for (i, submission) in submissions.into_iter().enumerate() {
            match self.check_record(submission).await {
                Ok(c) => checked.push((i, c)),
                Err(IssuerError::Store(e)) => return Err(IssuerError::Store(e)),
                Err(e) => outcomes[i] = Some(invalid(&e)),
            }
        }

        // Fresh: neither the record id nor the (device, sequence) pair is claimed yet, nor
        // used by an earlier record of this call. Repeat: both already claimed for this
        // very record (its unit will come back `Repeated` and move nothing). Both kinds
        // go into groups; anything else goes on its own.
        let ids: Vec<ClaimId> = checked
            .iter()
            .flat_map(|(_, c)| {
                let p = &c.record.payload;
                [
                    ClaimId::Record(p.record_id),
                    ClaimId::DeviceSequence {
                        device: p.device_id,
                        sequence: p.sequence,
                    },
                ]
            })
            .collect();
        let held = self.store.claims(&ids).await?;
        if held.len() != ids.len() {
            return Err(IssuerError::Corrupted(
                "store answered a different number of claims".into(),
            ));
        }
        let mut seen_ids = HashSet::new();
        let mut seen_sequences = HashSet::new();
        let kinds: Vec<Kind> = checked
            .iter()
            .zip(held.chunks(2))
            .map(|((_, c), held)| {
                let p = &c.record.payload;
                let new_id = seen_ids.insert(p.record_id);
                let new_sequence = seen_sequences.insert((p.device_id, p.sequence));
                let ours = |h: &Option<ExistingClaim>| {
                    h.as_ref().is_some_and(|h| {
                        h.digest == c.digest && h.claimant == Claimant::Merchant(c.merchant_id)
                    })
                };
                if !(new_id && new_sequence) {
                    Kind::Alone
                } else if held.iter().all(Option::is_none) {
                    Kind::Fresh
                } else if held.iter().all(ours) {
                    Kind::Repeat
                } else {
                    Kind::Alone
                }
            })
            .collect();

        let mut group: Vec<(usize, &CheckedRecord<'_>, Unit, u64)> = Vec::new();
        // What is left of each reservation after the group's units so far.
        let mut left: HashMap<CertificateSerial, u64> = HashMap::new();
        for ((i, c), kind) in checked.iter().zip(kinds) {
            match kind {
                Kind::Fresh | Kind::Repeat => {
                    let serial = c.certificate.payload.serial;
                    let remaining = match left.get(&serial) {
                        Some(r) => *r,
                        None => self.reservation_left(c).await?,
                    };
                    let (unit, taken) =
                        self.record_unit(c, &RecordConflicts::default(), remaining, now)?;
                    if kind == Kind::Fresh {
                        left.insert(serial, remaining - taken.from_reservation);
                    } else {
                        left.insert(serial, remaining);
                    }
                    group.push((*i, c, unit, taken.from_balance));
                }
                Kind::Alone => {
                    self.commit_group(std::mem::take(&mut group), &mut outcomes, now)
                        .await?;
                    left.clear();
                    let one = self.commit_record(c, RecordConflicts::default(), now).await;
                    outcomes[*i] = Some(outcome_or_store_error(one)?);
                }
            }
        }
        self.commit_group(group, &mut outcomes, now).await?;
        Ok(outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or_else(|| invalid(&IssuerError::Corrupted("record not processed".into())))
            })
            .collect())
    }

    /// Commits a group of fresh records in one store call; a record that lost a race is
    /// retried on its own.
    async fn commit_group(
        &self,
        group: Vec<(usize, &CheckedRecord<'_>, Unit, u64)>,
        outcomes: &mut [Option<RedemptionOutcome>],
        now: Timestamp,
    ) -> Result<()> {
        if group.is_empty() {
            return Ok(());
        }
        let mut rest = Vec::with_capacity(group.len());
        let mut units = Vec::with_capacity(group.len());
        for (i, c, unit, from_balance) in group {
            rest.push((i, c, from_balance));
            units.push(unit);
        }
        let results = self.store.commit_many(units).await?;
        if results.len() != rest.len() {
            return Err(IssuerError::Corrupted(
                "store answered a different number of units".into(),
            ));
        }
        for ((i, c, from_balance), result) in rest.into_iter().zip(results) {
            let mut conflicts = RecordConflicts::default();
            let settled = self
                .settle_record(c, &mut conflicts, result, from_balance, now)
                .await;
            let outcome = match settled {
                Ok(Some(outcome)) => Ok(outcome),
                Ok(None) => self.commit_record(c, conflicts, now).await,
                Err(e) => Err(e),
            };
            if let Some(slot) = outcomes.get_mut(i) {
                *slot = Some(outcome_or_store_error(outcome)?);
            }
        }
        Ok(())
    }

    /// Every check of a record copy that needs no write: signatures, certificates,
    /// rules, times, revocation.
    async fn check_record<'a>(
        &self,
        submission: RecordSubmission<'a>,
    ) -> Result<CheckedRecord<'a>> {
        let (record, source, merchant, accepted_at) = match submission {
            RecordSubmission::Merchant { merchant, receipt } => {
                receipt.verify(&merchant.certificate.payload)?;
                (
                    &receipt.payload.record,
                    RecordSource::Merchant,
                    Some(merchant),
                    Some(receipt.payload.accepted_at),
                )
            }
            RecordSubmission::Customer(record) => (record, RecordSource::Customer, None, None),
        };
        let p = &record.payload;
        let device = self.device(p.device_id).await?;
        record.verify(&device.certificate.payload)?;
        device.certificate.payload.validity.check(p.signed_at)?;
        let merchant_id = p.payment_request.payload.merchant_id;
        let owned_merchant;
        let merchant = match merchant {
            Some(m) => m,
            None => {
                owned_merchant = self.merchant(merchant_id).await?;
                &owned_merchant
            }
        };
        p.payment_request.verify(&merchant.certificate.payload)?;
        // As for coins: the merchant's certificate must cover the times it signed.
        let merchant_validity = merchant.certificate.payload.validity;
        merchant_validity.check(p.payment_request.payload.created_at)?;
        if let Some(accepted_at) = accepted_at {
            merchant_validity.check(accepted_at)?;
        }
        let certificate = self.certificate(p.certificate_serial).await?;
        let cert = &certificate.payload;
        cert.authorize(p)?;
        // The device's clock can be set back by a thief; the merchant's request time and
        // acceptance time (both signed by the merchant) cannot. The payment happened no
        // earlier than any of them.
        let paid_at = [
            Some(p.signed_at),
            Some(p.payment_request.payload.created_at),
            accepted_at,
        ]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(p.signed_at);
        cert.validity().check(paid_at)?;
        if let Some(revoked) = self.revoked(p.device_id).await? {
            if revoked.at <= paid_at {
                return Err(IssuerError::DeviceRevoked(p.device_id));
            }
        }
        Ok(CheckedRecord {
            record,
            source,
            merchant_id,
            digest: record_digest(record)?,
            certificate,
        })
    }

    /// What is left of the reservation of the record's certificate (minor units).
    async fn reservation_left(&self, c: &CheckedRecord<'_>) -> Result<u64> {
        let p = &c.record.payload;
        let reservation = LedgerAccount::Reservation(p.certificate_serial);
        let left = self
            .store
            .balance(&reservation, p.amount().currency)
            .await?;
        Ok(u64::try_from(left).unwrap_or(0))
    }

    /// Commits a checked record, retrying while the reservation moves under it.
    async fn commit_record(
        &self,
        c: &CheckedRecord<'_>,
        mut conflicts: RecordConflicts,
        now: Timestamp,
    ) -> Result<RedemptionOutcome> {
        for _ in 0..RETRIES {
            let left = self.reservation_left(c).await?;
            let (unit, taken) = self.record_unit(c, &conflicts, left, now)?;
            let result = self.store.commit(unit).await?;
            if let Some(outcome) = self
                .settle_record(c, &mut conflicts, result, taken.from_balance, now)
                .await?
            {
                return Ok(outcome);
            }
        }
        Err(IssuerError::Store(scrip_stores::StoreError::Corrupted(
            "record kept losing races".into(),
        )))
    }

    /// The unit that records `c`, taking up to `left` from its certificate's reservation
    /// and the rest from the account's balance.
    fn record_unit(
        &self,
        c: &CheckedRecord<'_>,
        conflicts: &RecordConflicts,
        left: u64,
        now: Timestamp,
    ) -> Result<(Unit, Taken)> {
        let p = &c.record.payload;
        let digest = c.digest;
        let amount = p.amount();
        let serial = p.certificate_serial;
        let merchant_id = c.merchant_id;
        let id_taken = conflicts.id_taken;
        let sequence_key = key2(p.device_id.as_bytes(), &p.sequence.to_be_bytes());
        let reservation = LedgerAccount::Reservation(serial);
        let from_reservation = left.min(amount.minor_units);
        let from_balance = amount.minor_units - from_reservation;
        let equivocation = id_taken || conflicts.sequence_taken.is_some();
        let doc = RecordDoc {
            record: c.record.clone(),
            recorded_at: now,
            source: c.source,
            paid_from_balance: from_balance,
            equivocation,
        };
        let record_key = if id_taken {
            key2(p.record_id.as_bytes(), digest.as_bytes())
        } else {
            p.record_id.as_bytes().to_vec()
        };
        let mut unit = Unit::new(Claimant::Merchant(merchant_id), now)
            .claim(
                if id_taken {
                    ClaimId::Custom {
                        namespace: "reused-record-id".into(),
                        key: record_key.clone(),
                    }
                } else {
                    ClaimId::Record(p.record_id)
                },
                digest,
            )
            .claim(
                if conflicts.sequence_taken.is_some() {
                    ClaimId::Custom {
                        namespace: "equivocating-record".into(),
                        key: key2(&sequence_key, digest.as_bytes()),
                    }
                } else {
                    ClaimId::DeviceSequence {
                        device: p.device_id,
                        sequence: p.sequence,
                    }
                },
                digest,
            )
            .floor(Floor::non_negative(reservation.clone(), amount.currency))
            .write(Write::put(RECORDS, record_key, encode(&doc)?))
            .write(Write::put(
                CERTIFICATE_RECORDS,
                key2(serial.as_bytes(), digest.as_bytes()),
                amount.minor_units.to_le_bytes().to_vec(),
            ));
        if conflicts.sequence_taken.is_none() {
            unit = unit.write(Write::put(
                SEQUENCE_RECORDS,
                sequence_key,
                p.record_id.as_bytes().to_vec(),
            ));
        }
        if equivocation {
            // Logged and frozen in the same unit as the payment, so a crash or a retry can
            // never leave the payment without them.
            let entry = FraudEntry {
                at: now,
                kind: if id_taken {
                    FraudKind::RecordIdReuse {
                        account_id: p.account_id,
                        device_id: p.device_id,
                        record_id: p.record_id,
                    }
                } else {
                    FraudKind::Equivocation {
                        account_id: p.account_id,
                        device_id: p.device_id,
                        sequence: p.sequence,
                        first: conflicts.sequence_taken.flatten(),
                        second: p.record_id,
                    }
                },
            };
            unit = unit
                .write(Write::put(
                    FRAUD_LOG,
                    fraud_key(&entry, now)?,
                    encode(&entry)?,
                ))
                .write(Write::put(
                    FROZEN,
                    p.account_id.as_bytes().to_vec(),
                    encode(&Mark {
                        at: now,
                        reason: "a record reused a sequence number or record id".into(),
                    })?,
                ));
        }
        if from_reservation > 0 {
            unit = unit.post(Posting::transfer(
                reservation,
                LedgerAccount::Merchant(merchant_id),
                Amount::new(from_reservation, amount.currency),
                "withdrawal record",
            ));
        }
        if from_balance > 0 {
            unit = unit.post(Posting::transfer(
                LedgerAccount::Customer(p.account_id),
                LedgerAccount::Merchant(merchant_id),
                Amount::new(from_balance, amount.currency),
                "withdrawal record beyond its reservation",
            ));
        }
        Ok((
            unit,
            Taken {
                from_reservation,
                from_balance,
            },
        ))
    }

    /// The outcome of a record's unit: `Some` when the record is settled, `None` when it
    /// needs another attempt (with `conflicts` updated).
    async fn settle_record(
        &self,
        c: &CheckedRecord<'_>,
        conflicts: &mut RecordConflicts,
        result: CommitOutcome,
        from_balance: u64,
        now: Timestamp,
    ) -> Result<Option<RedemptionOutcome>> {
        let cert = &c.certificate.payload;
        match result {
            CommitOutcome::Committed => {
                if from_balance > 0 {
                    self.check_overspend(cert, now).await?;
                }
                Ok(Some(RedemptionOutcome::Accepted {
                    credited: c.record.payload.amount(),
                }))
            }
            CommitOutcome::Repeated { first_claimed_at } => {
                // The overspend check runs after the payment's unit; a crash between the
                // two must not skip it, so every repeat runs it again (it is idempotent).
                self.check_overspend(cert, now).await?;
                Ok(Some(RedemptionOutcome::AlreadyAccepted {
                    first_accepted_at: first_claimed_at,
                }))
            }
            CommitOutcome::InsufficientFunds { .. } => Ok(None),
            CommitOutcome::Conflict(report) => {
                let held = |i: usize| report.get(i).and_then(|(_, h)| h.clone());
                if let Some(h) = held(0) {
                    if h.digest == c.digest {
                        self.check_overspend(cert, now).await?;
                        return Ok(Some(RedemptionOutcome::AlreadyAccepted {
                            first_accepted_at: h.claimed_at,
                        }));
                    }
                    conflicts.id_taken = true;
                }
                if let Some(h) = held(1) {
                    if h.digest != c.digest && conflicts.sequence_taken.is_none() {
                        let p = &c.record.payload;
                        let sequence_key = key2(p.device_id.as_bytes(), &p.sequence.to_be_bytes());
                        let first = self
                            .store
                            .get(SEQUENCE_RECORDS, &sequence_key)
                            .await?
                            .and_then(|raw| <[u8; 16]>::try_from(raw.as_slice()).ok())
                            .map(|b| RecordId(uuid::Uuid::from_bytes(b)));
                        conflicts.sequence_taken = Some(first);
                    }
                }
                Ok(None)
            }
        }
    }

    /// After a record was paid partly from the balance: if the certificate's records now
    /// add up to more than it made available, that is overspending.
    async fn check_overspend(
        &self,
        cert: &scrip_tokens::BalanceCertificatePayload,
        now: Timestamp,
    ) -> Result<()> {
        let mut total: u64 = 0;
        let mut after = cert.serial.as_bytes().to_vec();
        loop {
            let page = self
                .store
                .scan(CERTIFICATE_RECORDS, Some(&after), 256)
                .await?;
            let mut done = page.len() < 256;
            for (key, value) in &page {
                if !key.starts_with(cert.serial.as_bytes()) {
                    done = true;
                    break;
                }
                let v: [u8; 8] = value
                    .as_slice()
                    .try_into()
                    .map_err(|_| IssuerError::Corrupted("certificate record amount".into()))?;
                total = total.saturating_add(u64::from_le_bytes(v));
            }
            match page.last() {
                Some((key, _)) if !done => after = key.clone(),
                _ => break,
            }
        }
        let available = cert.available.minor_units;
        if total <= available {
            return Ok(());
        }
        let entry = FraudEntry {
            at: now,
            kind: FraudKind::Overspend {
                account_id: cert.account_id,
                device_id: cert.device_id,
                certificate: cert.serial,
                excess: Amount::new(total - available, cert.available.currency),
            },
        };
        self.log_fraud(&entry, now).await?;
        self.freeze(cert.account_id, "overspent a balance certificate", now)
            .await
    }

    /// The recorded copy of a withdrawal record.
    pub async fn record(&self, record_id: scrip_tokens::RecordId) -> Result<Option<RecordDoc>> {
        self.doc(RECORDS, record_id.as_bytes()).await
    }
}

/// What identifies a fraud entry: what it says, not when it was noticed.
fn fraud_identity(entry: &FraudEntry) -> Result<ContentDigest> {
    Ok(ContentDigest::of(&encode(&FraudIdentity(
        entry.kind.clone(),
    ))?))
}

/// The fraud log key: time first (the log reads oldest first), then the identity.
fn fraud_key(entry: &FraudEntry, now: Timestamp) -> Result<Vec<u8>> {
    Ok(key2(
        &now.as_unix_millis().to_be_bytes(),
        fraud_identity(entry)?.as_bytes(),
    ))
}

#[derive(serde::Serialize, serde::Deserialize)]
struct FraudIdentity(FraudKind);
impl Message for FraudIdentity {
    const TAG: &'static str = "scrip/issuer/fraud-identity/v1";
    const VERSION: u16 = 1;
}
