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
//! the fraud log and the account is frozen. While the reservation is held, only such an
//! overspend reaches beyond it.
//!
//! **Settlement window** (SPEC section 8): a certificate's reservation is held until
//! `expires_at + upload_grace` ([`crate::IssuerConfig::upload_grace`], published), and
//! released only then. A record signed before expiry and uploaded within the grace (the
//! merchant's copy or the customer's hand-in) is therefore paid from the reservation set
//! aside for it, whatever the account did since: the customer's balance is not touched. A
//! record the merchant accepted after expiry stays `expired`, grace or not: the grace
//! extends uploading, never paying. Once the window closed and the reservation was
//! released, its remainder is the customer's again, and a late record is paid from the
//! account's balance only if the balance covers it (a floor at zero: no debt, since the
//! customer did nothing wrong and the merchant missed the published deadline); otherwise
//! it is `Invalid` with `insufficient_funds` and nothing is recorded, so a later copy of it
//! is judged again. Card schemes treat late presentment alike: honoured while the account
//! can pay, the merchant's loss when it cannot. Fraud a refused late record proves (a
//! reused sequence number or record id) is still logged and freezes the account.
//!
//! **Revocation grace** (SPEC section 8, issue 17): a merchant learns of a revoked device
//! only from the published revocation list (`src/revocations.rs`), so the issuer judges a
//! record of a revoked device by that list, not by the revocation time. With `f` the time
//! the first published list named the device (`listed_since`) and `G` the published grace
//! ([`crate::IssuerConfig::revocation_grace`], `grace_secs` in every list), a record paid
//! at `paid_at` (the latest of the device's and the merchant's signed times, as for the
//! certificate's validity) is honoured if `paid_at < f + G`: some list no older than `G`
//! at `paid_at` did not name the device, so a merchant keeping its list that fresh could
//! not have refused it. A record paid at or after `f + G` is refused `device_revoked`: the
//! merchant accepted it against a list older than the grace, or ignored the list, and
//! carries it. A revoked device no published list names yet (`f` unknown) is honoured
//! for the same reason; records signed before the revocation always were. The customer
//! who reported the device carries what a thief spent within the grace, bounded by the
//! certificates issued before the report (a revoked device gets no new ones). Frozen
//! accounts are listed too but their records are honoured as before (a freeze stops new
//! certificates, not payments already covered by a reservation). Revoked identified
//! coins get no grace: the issuer claimed them when it reissued their value to the
//! holder, so a later spend is `double_spent` whatever the merchant's list said.
//!
//! **Equivocation**: a second, different record with an existing (device, sequence) is
//! recorded as evidence next to the first, honoured under the same policy, logged, and the
//! account is frozen.
//!
//! **Payment index**: the unit that credits the merchant also writes the payment under
//! (merchant, request id, digest) in `payments` (who paid, how much): what a refund reads
//! to know what it refunds (`src/refunds.rs`).

use std::collections::{HashMap, HashSet};

use scrip_stores::{
    ClaimId, Claimant, CommitOutcome, ExistingClaim, Floor, LedgerAccount, Posting, RecordStore,
    Unit, Write,
};
use scrip_tokens::{
    AccountId, Amount, BalanceCertificate, BalanceCertificatePayload, CertificateSerial, Coin,
    CoinId, CoinPayment, CoinSpendId, ContentDigest, CountersignedRecord, DeviceId, KeyDirectory,
    MerchantId, Message, ReceivedBatch, ReceivedPayment, RecordId, RedemptionBatch, RedemptionItem,
    RedemptionOutcome, RedemptionReportPayload, RejectReason, RequestId, Timestamp,
    WithdrawalRecord,
};

use crate::authentication::Authenticated;
use crate::schema::{
    coins_outstanding_account, key2, payment_key, record_digest, sequence_key, CoinHolder,
    FraudEntry, FraudKind, Mark, MerchantDoc, PaidBy, PaymentDoc, RawValue, RecordDoc,
    RecordSource, CERTIFICATE_RECORDS, EQUIVOCATING_RECORD, FRAUD_ENTRY, FRAUD_LOG, FROZEN,
    PAYMENTS, RECORDS, REUSED_RECORD_ID, SEQUENCE_RECORDS,
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

/// A record's outcome. Errors that say "try again" (the store failed, or the record kept
/// losing races) stay errors, so the whole answer is a 503 and the record stays queued at
/// the merchant and in the customer's outbox; answering them `Invalid` would make both
/// drop a valid record for good.
fn outcome_or_store_error(result: Result<RedemptionOutcome>) -> Result<RedemptionOutcome> {
    match result {
        Ok(outcome) => Ok(outcome),
        Err(e @ (IssuerError::Store(_) | IssuerError::Contended { .. })) => Err(e),
        Err(e) => Ok(invalid(&e)),
    }
}

fn invalid(e: &IssuerError) -> RedemptionOutcome {
    let reason = match e {
        IssuerError::Invalid(token_error) => RejectReason::from(token_error),
        other => RejectReason {
            code: other.code(),
            message: other.to_string(),
        },
    };
    RedemptionOutcome::Invalid { reason }
}

/// Every item's outcome; one left without (a bug) is answered as invalid rather than
/// dropped, so the answer keeps one outcome per item.
fn every_outcome(outcomes: Vec<Option<RedemptionOutcome>>, what: &str) -> Vec<RedemptionOutcome> {
    outcomes
        .into_iter()
        .map(|o| {
            o.unwrap_or_else(|| invalid(&IssuerError::Corrupted(format!("{what} not processed"))))
        })
        .collect()
}

/// A coin of a payment: the id it is claimed under, and the id it is known by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PaidCoin {
    spend_id: CoinSpendId,
    coin_id: CoinId,
}

/// A coin found spent before, and when it was.
struct SpentCoin {
    coin_id: CoinId,
    spent_at: Timestamp,
}

/// One coin payment of a batch, ready to commit.
struct CoinUnit {
    /// Its position in the batch.
    item: usize,
    total: Amount,
    /// Digest of the payment: the digest every coin is claimed with.
    digest: ContentDigest,
    /// Its coins, in the payment's order.
    coins: Vec<PaidCoin>,
    unit: Unit,
}

/// The payment index entry a unit that credits a merchant writes with the credit, so a
/// refund finds what the request paid (see `src/refunds.rs`).
pub(crate) fn payment_index(
    merchant: MerchantId,
    request: RequestId,
    digest: ContentDigest,
    paid_by: PaidBy,
    amount: Amount,
    now: Timestamp,
) -> Result<Write> {
    let doc = PaymentDoc {
        paid_by,
        amount,
        paid_at: now,
    };
    Ok(Write::put(
        PAYMENTS,
        payment_key(merchant, request, digest),
        encode(&doc)?,
    ))
}

/// The unit that redeems `payment` (with `digest`, its `codec::digest`, from
/// [`check_coin_payment`]) for `merchant_id`: the merchant is credited the total from
/// `coins-outstanding`, and every coin is claimed under its spend id with the digest of
/// the payment it was spent in, so a retry of this payment is a repeat and the coin in
/// any other payment (even by this merchant) is a double spend.
fn coin_unit(
    item: usize,
    (payment, digest): (&CoinPayment, ContentDigest),
    merchant_id: MerchantId,
    now: Timestamp,
) -> Result<CoinUnit> {
    let total = payment.total()?;
    let mut unit = Unit::new(Claimant::Merchant(merchant_id), now)
        .post(Posting::transfer(
            coins_outstanding_account(),
            LedgerAccount::Merchant(merchant_id),
            total,
            "coins redeemed",
        ))
        .write(payment_index(
            merchant_id,
            payment.request.payload.request_id,
            digest,
            PaidBy::Coins,
            total,
            now,
        )?);
    let mut coins = Vec::with_capacity(payment.coins.len());
    for coin in &payment.coins {
        let spend_id = coin.spend_id()?;
        unit = unit.claim(ClaimId::Coin(spend_id), digest);
        coins.push(PaidCoin {
            spend_id,
            coin_id: coin.id(),
        });
    }
    Ok(CoinUnit {
        item,
        total,
        digest,
        coins,
        unit,
    })
}

impl CoinUnit {
    /// The payment's outcome, from the store's answer to its unit.
    fn outcome(&self, result: CommitOutcome, now: Timestamp) -> Result<RedemptionOutcome> {
        Ok(match result {
            CommitOutcome::Committed => RedemptionOutcome::Accepted {
                credited: self.total,
            },
            CommitOutcome::Repeated { first_claimed_at } => RedemptionOutcome::AlreadyAccepted {
                first_accepted_at: first_claimed_at,
            },
            CommitOutcome::Conflict(report) => {
                let spent = report
                    .iter()
                    .filter_map(|(id, held)| match (id, held) {
                        (ClaimId::Coin(spend_id), Some(held)) => Some(SpentCoin {
                            coin_id: self.coin_spent_as(*spend_id)?,
                            spent_at: held.claimed_at,
                        }),
                        _ => None,
                    })
                    .collect();
                double_spent(spent, now)
            }
            CommitOutcome::InsufficientFunds { .. } => {
                return Err(IssuerError::Corrupted("floor on a coin redemption".into()))
            }
        })
    }

    /// The payment's outcome from the claims scrip 0.1 made under its coins' bare ids
    /// (`held`: one per coin, in order): `None` when none of its coins was claimed so,
    /// `already_accepted` when this merchant redeemed this very payment, `double_spent`
    /// otherwise.
    fn legacy_outcome(
        &self,
        held: &[Option<ExistingClaim>],
        merchant_id: MerchantId,
        now: Timestamp,
    ) -> Option<RedemptionOutcome> {
        let spent: Vec<SpentCoin> = self
            .coins
            .iter()
            .zip(held)
            .filter_map(|(coin, held)| {
                held.as_ref().map(|held| SpentCoin {
                    coin_id: coin.coin_id,
                    spent_at: held.claimed_at,
                })
            })
            .collect();
        if spent.is_empty() {
            return None;
        }
        let ours = spent.len() == self.coins.len()
            && held.iter().flatten().all(|held| {
                held.claimant == Claimant::Merchant(merchant_id) && held.digest == self.digest
            });
        Some(if ours {
            RedemptionOutcome::AlreadyAccepted {
                first_accepted_at: first_spent(&spent, now),
            }
        } else {
            double_spent(spent, now)
        })
    }

    fn coin_spent_as(&self, spend_id: CoinSpendId) -> Option<CoinId> {
        self.coins
            .iter()
            .find(|coin| coin.spend_id == spend_id)
            .map(|coin| coin.coin_id)
    }
}

fn first_spent(spent: &[SpentCoin], now: Timestamp) -> Timestamp {
    spent.iter().map(|s| s.spent_at).min().unwrap_or(now)
}

/// A payment holding coins spent before: it names them, and when the first was spent.
fn double_spent(spent: Vec<SpentCoin>, now: Timestamp) -> RedemptionOutcome {
    RedemptionOutcome::DoubleSpent {
        first_redeemed_at: first_spent(&spent, now),
        coins: spent.into_iter().map(|s| s.coin_id).collect(),
    }
}

/// Every check of a coin payment: the merchant's endorsement, its certification when it
/// took the payment, and the payment itself. Returns the payment and its digest (what
/// its coins are claimed under), which `received` carries with the endorsement's.
pub(crate) fn check_coin_payment<'b>(
    merchant: &MerchantDoc,
    received: &ReceivedPayment<'b>,
    directory: &KeyDirectory,
    now: Timestamp,
) -> Result<(&'b CoinPayment, ContentDigest)> {
    let certificate = &merchant.certificate.payload;
    let (p, digest) = received.verify(certificate)?;
    // The merchant must have been certified when it took the payment: at the times it
    // signed (request and endorsement), not at upload time, so a sale made just before
    // expiry is still paid.
    certificate
        .validity
        .check(p.payment.request.payload.created_at)?;
    certificate.validity.check(p.endorsed_at)?;
    Ok((p.payment.verify(certificate, directory, now)?, digest))
}

/// What identifies a copy of a record, and its claims: the same for every copy.
#[derive(Clone, Copy, Debug)]
struct RecordIdentity {
    record_id: RecordId,
    account_id: AccountId,
    device_id: DeviceId,
    sequence: u64,
    /// The merchant paid: every copy is claimed in its name, whoever hands it in, so the
    /// second copy is always a repeat.
    merchant_id: MerchantId,
    /// Digest of the device-signed record.
    digest: ContentDigest,
}

impl RecordIdentity {
    fn claimant(&self) -> Claimant {
        Claimant::Merchant(self.merchant_id)
    }

    /// The claims a record makes when neither its id nor its sequence is taken.
    fn first_claims(&self) -> [ClaimId; 2] {
        [
            ClaimId::Record(self.record_id),
            ClaimId::DeviceSequence {
                device: self.device_id,
                sequence: self.sequence,
            },
        ]
    }

    /// Whether `held` was claimed by this very record.
    fn holds(&self, held: &ExistingClaim) -> bool {
        held.digest == self.digest && held.claimant == self.claimant()
    }
}

/// A record copy that passed every check that needs no write.
struct CheckedRecord<'a> {
    record: &'a WithdrawalRecord,
    source: RecordSource,
    identity: RecordIdentity,
    certificate: BalanceCertificate,
}

/// A checked record and its position among the submissions.
struct CheckedItem<'a> {
    item: usize,
    record: CheckedRecord<'a>,
}

/// How a record of a call to `record_withdrawals` is committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RecordKind {
    /// Never seen: in a group, counting what it takes from the reservation.
    Fresh,
    /// Already recorded as this very record: in a group, taking nothing.
    Repeat,
    /// Anything else (a reused id or sequence, a repeat within the call): on its own.
    Alone,
}

/// How each record of a call is committed. `held` has the existing claims of each
/// record's [`RecordIdentity::first_claims`], in order. A record is fresh when neither
/// claim is held nor used by an earlier record of the call, a repeat when both are held
/// for this very record (its unit will come back `Repeated` and move nothing).
fn record_kinds(records: &[RecordIdentity], held: &[Option<ExistingClaim>]) -> Vec<RecordKind> {
    let mut seen = HashSet::new();
    records
        .iter()
        .zip(held.chunks(2))
        .map(|(record, held)| {
            let [id, sequence] = record.first_claims();
            let new_id = seen.insert(id);
            let new_sequence = seen.insert(sequence);
            if !(new_id && new_sequence) {
                RecordKind::Alone
            } else if held.iter().all(Option::is_none) {
                RecordKind::Fresh
            } else if held
                .iter()
                .all(|h| h.as_ref().is_some_and(|h| record.holds(h)))
            {
                RecordKind::Repeat
            } else {
                RecordKind::Alone
            }
        })
        .collect()
}

/// How a record's unit pays the merchant (minor units).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Taken {
    from_reservation: u64,
    from_balance: u64,
    /// The balance must cover `from_balance` (a floor at zero on the account): the
    /// record came after its reservation was released, past the settlement window.
    covered_only: bool,
}

/// A record's `amount` is paid from what is `left` of its certificate's reservation, and
/// from the account's balance for what the reservation no longer covers: into debt while
/// the reservation is held (an overspend), only as far as the balance goes once it was
/// `released` (a record uploaded after the settlement window).
fn split_payment(amount: u64, left: u64, released: bool) -> Taken {
    let from_reservation = left.min(amount);
    let from_balance = amount - from_reservation;
    Taken {
        from_reservation,
        from_balance,
        covered_only: released && from_balance > 0,
    }
}

/// What is left of each reservation once the units of a group before it commit: a group
/// commits in one store call, so each record must count what the earlier ones take.
#[derive(Default)]
struct GroupReservations(HashMap<CertificateSerial, u64>);

impl GroupReservations {
    fn left(&self, serial: CertificateSerial) -> Option<u64> {
        self.0.get(&serial).copied()
    }

    /// Splits a record of `kind` against the `left` of its reservation (`released` or
    /// not), and remembers what it leaves for the next.
    fn take(
        &mut self,
        serial: CertificateSerial,
        left: u64,
        amount: u64,
        kind: RecordKind,
        released: bool,
    ) -> Taken {
        let taken = split_payment(amount, left, released);
        // A repeat's unit moves nothing: it was paid when first recorded.
        let after = match kind {
            RecordKind::Fresh => left - taken.from_reservation,
            RecordKind::Repeat | RecordKind::Alone => left,
        };
        self.0.insert(serial, after);
        taken
    }
}

/// Fresh and repeated records committed together in one store call.
#[derive(Default)]
struct RecordGroup<'c, 'a> {
    members: Vec<GroupMember<'c, 'a>>,
    units: Vec<Unit>,
    reservations: GroupReservations,
}

struct GroupMember<'c, 'a> {
    item: usize,
    record: &'c CheckedRecord<'a>,
    from_balance: u64,
}

/// What earlier attempts learned: the record id, or the (device, sequence) pair, is taken
/// by a different record. The record is then claimed under its own digest instead, kept as
/// evidence, honoured, logged, and the account frozen.
#[derive(Debug, Default)]
struct RecordConflicts {
    id_taken: bool,
    /// `Some(first)` once the pair is known to be taken (by `first`, if it could be read).
    sequence_taken: Option<Option<RecordId>>,
}

/// What a conflict on a record's claims says (`report`: the record claim, then the
/// sequence claim).
#[derive(Debug, PartialEq, Eq)]
enum RecordConflict {
    /// This very record holds its id: it was recorded before.
    RecordedBefore { at: Timestamp },
    /// Other records hold the id, or the sequence.
    Taken { id: bool, sequence: bool },
}

fn read_conflict(
    report: &[(ClaimId, Option<ExistingClaim>)],
    digest: ContentDigest,
) -> RecordConflict {
    let held = |i: usize| report.get(i).and_then(|(_, held)| held.as_ref());
    match held(0) {
        Some(h) if h.digest == digest => RecordConflict::RecordedBefore { at: h.claimed_at },
        id => RecordConflict::Taken {
            id: id.is_some(),
            sequence: held(1).is_some_and(|h| h.digest != digest),
        },
    }
}

/// Where a record is kept and which claims guard it.
#[derive(Debug, PartialEq, Eq)]
struct RecordPlacement {
    record_claim: ClaimId,
    sequence_claim: ClaimId,
    /// Its key in [`RECORDS`].
    record_key: Vec<u8>,
    /// Whether it becomes the record of its (device, sequence): only the first one does.
    indexes_sequence: bool,
}

/// A record whose id or sequence another record took is kept next to the first, under
/// its own digest, and never replaces it.
fn placement(identity: &RecordIdentity, conflicts: &RecordConflicts) -> RecordPlacement {
    let [first_record_claim, first_sequence_claim] = identity.first_claims();
    let digest = identity.digest.as_bytes();
    let (record_claim, record_key) = if conflicts.id_taken {
        let key = key2(identity.record_id.as_bytes(), digest);
        (REUSED_RECORD_ID.claim(key.clone()), key)
    } else {
        (first_record_claim, identity.record_id.as_bytes().to_vec())
    };
    let sequence_claim = if conflicts.sequence_taken.is_some() {
        EQUIVOCATING_RECORD.claim(key2(
            &sequence_key(identity.device_id, identity.sequence),
            digest,
        ))
    } else {
        first_sequence_claim
    };
    RecordPlacement {
        record_claim,
        sequence_claim,
        record_key,
        indexes_sequence: conflicts.sequence_taken.is_none(),
    }
}

/// The fraud a record proves by reusing a record id or a sequence number, if it does.
fn record_fraud(identity: &RecordIdentity, conflicts: &RecordConflicts) -> Option<FraudKind> {
    if conflicts.id_taken {
        Some(FraudKind::RecordIdReuse {
            account_id: identity.account_id,
            device_id: identity.device_id,
            record_id: identity.record_id,
        })
    } else {
        conflicts
            .sequence_taken
            .map(|first| FraudKind::Equivocation {
                account_id: identity.account_id,
                device_id: identity.device_id,
                sequence: identity.sequence,
                first,
                second: identity.record_id,
            })
    }
}

/// The overspend of a certificate whose records add up to `recorded`, if that is more
/// than it made available.
fn overspend(certificate: &BalanceCertificatePayload, recorded: u64) -> Option<FraudKind> {
    let available = certificate.available;
    (recorded > available.minor_units).then(|| FraudKind::Overspend {
        account_id: certificate.account_id,
        device_id: certificate.device_id,
        certificate: certificate.serial,
        excess: Amount::new(recorded - available.minor_units, available.currency),
    })
}

/// The unit that records `c`, paying the merchant as `taken` says.
fn record_unit(
    c: &CheckedRecord<'_>,
    conflicts: &RecordConflicts,
    taken: Taken,
    now: Timestamp,
) -> Result<Unit> {
    let identity = &c.identity;
    let p = &c.record.payload;
    let amount = p.amount();
    let place = placement(identity, conflicts);
    let fraud = record_fraud(identity, conflicts);
    let doc = RecordDoc {
        record: c.record.clone(),
        recorded_at: now,
        source: c.source,
        paid_from_balance: taken.from_balance,
        equivocation: fraud.is_some(),
    };
    let mut unit = Unit::new(identity.claimant(), now)
        .claim(place.record_claim, identity.digest)
        .claim(place.sequence_claim, identity.digest)
        .floor(Floor::non_negative(
            LedgerAccount::Reservation(p.certificate_serial),
            amount.currency,
        ))
        .write(Write::put(RECORDS, place.record_key, encode(&doc)?))
        .write(payment_index(
            identity.merchant_id,
            p.payment_request.payload.request_id,
            identity.digest,
            PaidBy::Record {
                account_id: p.account_id,
                record_id: p.record_id,
            },
            amount,
            now,
        )?)
        .write(Write::put(
            CERTIFICATE_RECORDS,
            key2(p.certificate_serial.as_bytes(), identity.digest.as_bytes()),
            amount.minor_units.to_raw(),
        ));
    if place.indexes_sequence {
        unit = unit.write(Write::put(
            SEQUENCE_RECORDS,
            sequence_key(identity.device_id, identity.sequence),
            identity.record_id.to_raw(),
        ));
    }
    if let Some(kind) = fraud {
        // Logged and frozen in the same unit as the payment, so a crash or a retry can
        // never leave the payment without them.
        let entry = FraudEntry { at: now, kind };
        unit = unit
            .write(Write::put(
                FRAUD_LOG,
                fraud_key(&entry, now)?,
                encode(&entry)?,
            ))
            .write(Write::put(
                FROZEN,
                identity.account_id.as_bytes().to_vec(),
                encode(&Mark {
                    at: now,
                    reason: "a record reused a sequence number or record id".into(),
                })?,
            ));
    }
    Ok(pay_merchant(unit, c, taken))
}

fn pay_merchant(mut unit: Unit, c: &CheckedRecord<'_>, taken: Taken) -> Unit {
    let p = &c.record.payload;
    let currency = p.amount().currency;
    let merchant = LedgerAccount::Merchant(c.identity.merchant_id);
    if taken.from_reservation > 0 {
        unit = unit.post(Posting::transfer(
            LedgerAccount::Reservation(p.certificate_serial),
            merchant.clone(),
            Amount::new(taken.from_reservation, currency),
            "withdrawal record",
        ));
    }
    if taken.from_balance > 0 {
        let customer = LedgerAccount::Customer(p.account_id);
        if taken.covered_only {
            // After the settlement window the account pays only what it holds: a failed
            // floor here is the one `InsufficientFunds` on the customer a record can get.
            unit = unit.floor(Floor::non_negative(customer.clone(), currency));
        }
        unit = unit.post(Posting::transfer(
            customer,
            merchant,
            Amount::new(taken.from_balance, currency),
            "withdrawal record beyond its reservation",
        ));
    }
    unit
}

/// The answer to a late record (uploaded after its settlement window closed) that the
/// account's balance does not cover.
fn unpaid_late_record(amount: Amount, deadline: Timestamp) -> RedemptionOutcome {
    RedemptionOutcome::Invalid {
        reason: RejectReason {
            code: scrip_tokens::ReasonCode::InsufficientFunds,
            message: format!(
                "uploaded after the certificate's settlement window closed at {deadline}, \
                 and the account's balance does not cover {amount}"
            ),
        },
    }
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
        let received = ReceivedBatch::new(batch)?;
        let batch = self.authenticate(&received).await?;
        self.redeem_authenticated(batch, now).await
    }

    /// [`Self::redeem`] for a batch whose signature was checked. The server decodes
    /// batches with [`ReceivedBatch::decode_with_limit`], which takes every digest the
    /// checks need from the bytes the merchant sent.
    pub async fn redeem_authenticated(
        &self,
        batch: Authenticated<'_, ReceivedBatch<'_>>,
        now: Timestamp,
    ) -> Result<RedemptionReportPayload> {
        let merchant = batch.signer();
        let received = batch.request();
        let batch_digest = received.digest();
        let batch = received.batch();
        // A revoked merchant's batch is refused whole: nothing in it is redeemed (what it
        // redeemed before stays settled).
        if self
            .merchant_revoked(batch.payload.merchant_id)
            .await?
            .is_some()
        {
            return Err(IssuerError::MerchantRevoked(batch.payload.merchant_id));
        }
        if batch.payload.items.len() > self.config.max_batch_items {
            return Err(IssuerError::Unsupported("too many items in one batch"));
        }
        let mut outcomes = vec![None; batch.payload.items.len()];
        self.redeem_coins(merchant, received, now, &mut outcomes)
            .await?;
        self.redeem_records(merchant, batch, now, &mut outcomes)
            .await?;
        Ok(RedemptionReportPayload {
            merchant_id: batch.payload.merchant_id,
            batch_digest,
            answered_at: now,
            outcomes: every_outcome(outcomes, "item"),
        })
    }

    /// The coin payments of a batch: verified, then committed together in one store call
    /// (one durable write); double spends are logged.
    async fn redeem_coins(
        &self,
        merchant: &MerchantDoc,
        received: &ReceivedBatch<'_>,
        now: Timestamp,
        outcomes: &mut [Option<RedemptionOutcome>],
    ) -> Result<()> {
        let batch = received.batch();
        let merchant_id = batch.payload.merchant_id;
        let directory = self.keys().directory(now)?;
        let mut coin_units = Vec::new();
        for (item, payment) in received.coin_payments() {
            match check_coin_payment(merchant, &payment, &directory, now) {
                Ok(payment) => coin_units.push(coin_unit(item, payment, merchant_id, now)?),
                Err(e) => outcomes[item] = Some(invalid(&self.explain_unknown_keyset(e, now))),
            }
        }
        let mut coin_units = self
            .settle_legacy_claims(coin_units, merchant_id, now, outcomes)
            .await?;
        // The store takes the units; what answers each payment stays in its `CoinUnit`.
        let units = coin_units
            .iter_mut()
            .map(|c| {
                let emptied = Unit::new(c.unit.claimant.clone(), c.unit.at);
                std::mem::replace(&mut c.unit, emptied)
            })
            .collect();
        let results = self.store.commit_many(units).await?;
        for (coin_unit, result) in coin_units.iter().zip(results) {
            outcomes[coin_unit.item] = Some(coin_unit.outcome(result, now)?);
        }
        for (entry, outcome) in batch.payload.items.iter().zip(outcomes.iter()) {
            if let (
                RedemptionItem::Coins(endorsed),
                Some(RedemptionOutcome::DoubleSpent {
                    first_redeemed_at,
                    coins,
                }),
            ) = (entry, outcome)
            {
                self.log_double_spend(
                    merchant_id,
                    &endorsed.payload.payment.coins,
                    coins.clone(),
                    *first_redeemed_at,
                    now,
                )
                .await?;
            }
        }
        Ok(())
    }

    /// The records of a batch; the fresh ones share one store call.
    async fn redeem_records(
        &self,
        merchant: &MerchantDoc,
        batch: &RedemptionBatch,
        now: Timestamp,
        outcomes: &mut [Option<RedemptionOutcome>],
    ) -> Result<()> {
        let mut items = Vec::new();
        let mut submissions = Vec::new();
        for (item, entry) in batch.payload.items.iter().enumerate() {
            if let RedemptionItem::Record(receipt) = entry {
                items.push(item);
                submissions.push(RecordSubmission::Merchant { merchant, receipt });
            }
        }
        let recorded = self.record_withdrawals(submissions, now).await?;
        for (item, outcome) in items.into_iter().zip(recorded) {
            outcomes[item] = Some(outcome);
        }
        Ok(())
    }

    /// A coin of a keyset the directory no longer lists: if the issuer had that keyset and
    /// its window has ended, say so (`keyset_expired`) rather than `unknown_keyset`, so a
    /// merchant can tell stale coins from forged ones.
    pub(crate) fn explain_unknown_keyset(&self, e: IssuerError, now: Timestamp) -> IssuerError {
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
    /// payment holding one is answered from that claim and not committed; the others are
    /// returned, to be committed. One read for the whole batch; no new claim of this kind
    /// is ever written, so reading first and committing after cannot race.
    async fn settle_legacy_claims(
        &self,
        coin_units: Vec<CoinUnit>,
        merchant_id: MerchantId,
        now: Timestamp,
        outcomes: &mut [Option<RedemptionOutcome>],
    ) -> Result<Vec<CoinUnit>> {
        let legacy: Vec<ClaimId> = coin_units
            .iter()
            .flat_map(|c| {
                c.coins
                    .iter()
                    .map(|coin| ClaimId::LegacyCoinId(coin.coin_id))
            })
            .collect();
        if legacy.is_empty() {
            return Ok(coin_units);
        }
        let held = self.held_claims(&legacy).await?;
        let mut rest = held.as_slice();
        let mut to_commit = Vec::with_capacity(coin_units.len());
        for coin_unit in coin_units {
            let (held, after) = rest.split_at(coin_unit.coins.len());
            rest = after;
            match coin_unit.legacy_outcome(held, merchant_id, now) {
                Some(outcome) => outcomes[coin_unit.item] = Some(outcome),
                None => to_commit.push(coin_unit),
            }
        }
        Ok(to_commit)
    }

    pub(crate) async fn log_double_spend(
        &self,
        merchant: scrip_tokens::MerchantId,
        presented: &[Coin],
        spent: Vec<scrip_tokens::CoinId>,
        first_redeemed_at: Timestamp,
        now: Timestamp,
    ) -> Result<()> {
        let holders = self.holders_of(presented, &spent).await?;
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

    /// The holders named by the identified coins of `presented` that are in `spent`.
    pub(crate) async fn holders_of(
        &self,
        presented: &[Coin],
        spent: &[scrip_tokens::CoinId],
    ) -> Result<Vec<CoinHolder>> {
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
        Ok(holders)
    }

    /// Appends `entry` to the fraud log once (a retried batch does not log twice).
    pub(crate) async fn log_fraud(&self, entry: &FraudEntry, now: Timestamp) -> Result<()> {
        let identity = fraud_identity(entry)?;
        let unit = Unit::new(Claimant::Issuer, now)
            .claim(FRAUD_ENTRY.claim(identity.as_bytes().to_vec()), identity)
            .write(Write::put(
                FRAUD_LOG,
                fraud_key(entry, now)?,
                encode(entry)?,
            ));
        self.store.commit(unit).await?;
        Ok(())
    }

    /// Freezes an account once per freeze generation (the first reason stands).
    pub(crate) async fn freeze(
        &self,
        account: scrip_tokens::AccountId,
        reason: &str,
        now: Timestamp,
    ) -> Result<()> {
        self.freeze_once(account, reason, now).await
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
    /// the balance (the reservation is released after its settlement window): money
    /// stays conserved.
    pub(crate) async fn record_withdrawals(
        &self,
        submissions: Vec<RecordSubmission<'_>>,
        now: Timestamp,
    ) -> Result<Vec<RedemptionOutcome>> {
        let mut outcomes: Vec<Option<RedemptionOutcome>> = vec![None; submissions.len()];
        let mut checked = Vec::with_capacity(submissions.len());
        for (item, submission) in submissions.into_iter().enumerate() {
            match self.check_record(submission).await {
                Ok(record) => checked.push(CheckedItem { item, record }),
                Err(IssuerError::Store(e)) => return Err(IssuerError::Store(e)),
                Err(e) => outcomes[item] = Some(invalid(&e)),
            }
        }
        let kinds = self.kinds_of(&checked).await?;
        let mut group = RecordGroup::default();
        for (checked, kind) in checked.iter().zip(kinds) {
            if kind == RecordKind::Alone {
                self.commit_group(std::mem::take(&mut group), &mut outcomes, now)
                    .await?;
                let one = self
                    .commit_record(&checked.record, RecordConflicts::default(), now)
                    .await;
                outcomes[checked.item] = Some(outcome_or_store_error(one)?);
            } else {
                self.add_to_group(&mut group, checked, kind, now).await?;
            }
        }
        self.commit_group(group, &mut outcomes, now).await?;
        Ok(every_outcome(outcomes, "record"))
    }

    async fn kinds_of(&self, checked: &[CheckedItem<'_>]) -> Result<Vec<RecordKind>> {
        let identities: Vec<RecordIdentity> = checked.iter().map(|c| c.record.identity).collect();
        let ids: Vec<ClaimId> = identities
            .iter()
            .flat_map(RecordIdentity::first_claims)
            .collect();
        let held = self.held_claims(&ids).await?;
        Ok(record_kinds(&identities, &held))
    }

    async fn add_to_group<'c, 'a>(
        &self,
        group: &mut RecordGroup<'c, 'a>,
        checked: &'c CheckedItem<'a>,
        kind: RecordKind,
        now: Timestamp,
    ) -> Result<()> {
        let c = &checked.record;
        let serial = c.certificate.payload.serial;
        let left = match group.reservations.left(serial) {
            Some(left) => left,
            None => self.reservation_left(c).await?,
        };
        let amount = c.record.payload.amount().minor_units;
        let released = amount > left && self.reservation_released(serial).await?;
        let taken = group
            .reservations
            .take(serial, left, amount, kind, released);
        group
            .units
            .push(record_unit(c, &RecordConflicts::default(), taken, now)?);
        group.members.push(GroupMember {
            item: checked.item,
            record: c,
            from_balance: taken.from_balance,
        });
        Ok(())
    }

    /// Commits a group of records in one store call; a record that lost a race is retried
    /// on its own.
    async fn commit_group(
        &self,
        group: RecordGroup<'_, '_>,
        outcomes: &mut [Option<RedemptionOutcome>],
        now: Timestamp,
    ) -> Result<()> {
        if group.members.is_empty() {
            return Ok(());
        }
        let results = self.store.commit_many(group.units).await?;
        if results.len() != group.members.len() {
            return Err(IssuerError::Corrupted(
                "store answered a different number of units".into(),
            ));
        }
        for (member, result) in group.members.into_iter().zip(results) {
            let mut conflicts = RecordConflicts::default();
            let settled = self
                .settle_record(
                    member.record,
                    &mut conflicts,
                    result,
                    member.from_balance,
                    now,
                )
                .await;
            let outcome = match settled {
                Ok(Some(outcome)) => Ok(outcome),
                Ok(None) => self.commit_record(member.record, conflicts, now).await,
                Err(e) => Err(e),
            };
            outcomes[member.item] = Some(outcome_or_store_error(outcome)?);
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
        // The revocation grace (module doc): refused only once a list the merchant should
        // have held named the device. Read only for revoked devices.
        if self.revoked(p.device_id).await?.is_some() {
            let listed_since = self
                .listed_since(&scrip_tokens::RevokedItem::Device(p.device_id))
                .await?;
            if listed_since
                .is_some_and(|f| paid_at >= f.saturating_add(self.config.revocation_grace))
            {
                return Err(IssuerError::DeviceRevoked(p.device_id));
            }
        }
        Ok(CheckedRecord {
            record,
            source,
            identity: RecordIdentity {
                record_id: p.record_id,
                account_id: p.account_id,
                device_id: p.device_id,
                sequence: p.sequence,
                merchant_id,
                digest: record_digest(record)?,
            },
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

    /// Whether a certificate's reservation was released (its settlement window closed).
    /// Asked only when the reservation does not cover a record, so a record paid from it
    /// costs no extra read. Once true it stays true; a release that commits after a
    /// `false` makes the record's unit fail its floor on the reservation (when it took
    /// from it) and be split again.
    async fn reservation_released(&self, serial: CertificateSerial) -> Result<bool> {
        Ok(self.release_of(serial).await?.is_some())
    }

    /// Commits a checked record, retrying while the reservation moves under it.
    async fn commit_record(
        &self,
        c: &CheckedRecord<'_>,
        mut conflicts: RecordConflicts,
        now: Timestamp,
    ) -> Result<RedemptionOutcome> {
        let amount = c.record.payload.amount().minor_units;
        let serial = c.record.payload.certificate_serial;
        for _ in 0..RETRIES {
            let left = self.reservation_left(c).await?;
            let released = amount > left && self.reservation_released(serial).await?;
            let taken = split_payment(amount, left, released);
            let unit = record_unit(c, &conflicts, taken, now)?;
            let result = self.store.commit(unit).await?;
            if let Some(outcome) = self
                .settle_record(c, &mut conflicts, result, taken.from_balance, now)
                .await?
            {
                return Ok(outcome);
            }
        }
        Err(IssuerError::Contended {
            operation: "recording a withdrawal record",
        })
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
        let recorded_before = |at| RedemptionOutcome::AlreadyAccepted {
            first_accepted_at: at,
        };
        match result {
            CommitOutcome::Committed => {
                if from_balance > 0 {
                    self.check_overspend(cert, now).await?;
                }
                Ok(Some(RedemptionOutcome::Accepted {
                    credited: c.record.payload.amount(),
                }))
            }
            // The overspend check runs after the payment's unit; a crash between the two
            // must not skip it, so every repeat runs it again (it is idempotent).
            CommitOutcome::Repeated { first_claimed_at } => {
                self.check_overspend(cert, now).await?;
                Ok(Some(recorded_before(first_claimed_at)))
            }
            // Only a late record has a floor on the account (`Taken::covered_only`), and
            // the balance did not cover it: refused, not retried.
            CommitOutcome::InsufficientFunds {
                account: LedgerAccount::Customer(_),
                ..
            } => self.refuse_late(c, conflicts, now).await.map(Some),
            // The reservation moved under the record: split again.
            CommitOutcome::InsufficientFunds { .. } => Ok(None),
            CommitOutcome::Conflict(report) => match read_conflict(&report, c.identity.digest) {
                RecordConflict::RecordedBefore { at } => {
                    self.check_overspend(cert, now).await?;
                    Ok(Some(recorded_before(at)))
                }
                RecordConflict::Taken { id, sequence } => {
                    conflicts.id_taken |= id;
                    if sequence && conflicts.sequence_taken.is_none() {
                        let identity = &c.identity;
                        let first = self
                            .evidence(
                                SEQUENCE_RECORDS,
                                &sequence_key(identity.device_id, identity.sequence),
                            )
                            .await?;
                        conflicts.sequence_taken = Some(first);
                    }
                    Ok(None)
                }
            },
        }
    }

    /// A late record the account's balance does not cover: refused, and nothing is
    /// recorded (no claim, no payment), so a later copy is judged again against the
    /// balance then. Fraud it proves by reusing a sequence number or record id does not
    /// depend on who pays: it is logged and the account frozen all the same.
    async fn refuse_late(
        &self,
        c: &CheckedRecord<'_>,
        conflicts: &RecordConflicts,
        now: Timestamp,
    ) -> Result<RedemptionOutcome> {
        let identity = &c.identity;
        if let Some(kind) = record_fraud(identity, conflicts) {
            self.log_fraud(&FraudEntry { at: now, kind }, now).await?;
            self.freeze(
                identity.account_id,
                "a record reused a sequence number or record id",
                now,
            )
            .await?;
        }
        let deadline = self.settlement_deadline(&c.certificate.payload);
        tracing::info!(record = %identity.record_id, %deadline, "late record refused: the balance does not cover it");
        Ok(unpaid_late_record(c.record.payload.amount(), deadline))
    }

    /// After a record was paid partly from the balance: if the certificate's records now
    /// add up to more than it made available, that is overspending.
    async fn check_overspend(
        &self,
        cert: &BalanceCertificatePayload,
        now: Timestamp,
    ) -> Result<()> {
        const PAGE: usize = 256;
        let mut recorded: u64 = 0;
        let mut after = cert.serial.as_bytes().to_vec();
        loop {
            let page = self
                .store
                .scan(CERTIFICATE_RECORDS, Some(&after), PAGE)
                .await?;
            let mut done = page.len() < PAGE;
            for (key, value) in &page {
                if !key.starts_with(cert.serial.as_bytes()) {
                    done = true;
                    break;
                }
                let amount = u64::from_raw(value)
                    .ok_or_else(|| IssuerError::Corrupted("certificate record amount".into()))?;
                recorded = recorded.saturating_add(amount);
            }
            match page.last() {
                Some((key, _)) if !done => after = key.clone(),
                _ => break,
            }
        }
        let Some(kind) = overspend(cert, recorded) else {
            return Ok(());
        };
        self.log_fraud(&FraudEntry { at: now, kind }, now).await?;
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

#[cfg(test)]
mod tests {
    use scrip_tokens::{Allowed, Currency, ReasonCode};

    use super::*;

    const NOW: Timestamp = Timestamp::from_unix_millis(1_700_000_000_000);

    fn uuid(n: u128) -> uuid::Uuid {
        uuid::Uuid::from_u128(n)
    }

    fn at(ms: u64) -> Timestamp {
        Timestamp::from_unix_millis(ms)
    }

    fn merchant() -> MerchantId {
        MerchantId(uuid(100))
    }

    #[test]
    fn a_record_that_must_be_retried_fails_the_answer_instead_of_being_invalid() {
        // An `Invalid` outcome makes the merchant settle the record and the wallet drop
        // it from its outbox: only a verdict on the record itself may be one.
        let contended = IssuerError::Contended {
            operation: "recording a withdrawal record",
        };
        assert!(matches!(
            outcome_or_store_error(Err(contended)),
            Err(IssuerError::Contended { .. })
        ));
        let store = IssuerError::Store(scrip_stores::StoreError::Closed);
        assert!(matches!(
            outcome_or_store_error(Err(store)),
            Err(IssuerError::Store(_))
        ));
        let refused = outcome_or_store_error(Err(IssuerError::AccountFrozen(AccountId(uuid(1)))));
        assert!(matches!(
            refused,
            Ok(RedemptionOutcome::Invalid { reason }) if reason.code == ReasonCode::AccountFrozen
        ));
    }

    /// Record `n` of device 1, with sequence `n`.
    fn record(n: u128) -> RecordIdentity {
        RecordIdentity {
            record_id: RecordId(uuid(n)),
            account_id: AccountId(uuid(200)),
            device_id: DeviceId(uuid(1)),
            sequence: n as u64,
            merchant_id: merchant(),
            digest: ContentDigest::of(&n.to_be_bytes()),
        }
    }

    fn claimed(
        claimant: Claimant,
        digest: ContentDigest,
        when: Timestamp,
    ) -> Option<ExistingClaim> {
        Some(ExistingClaim {
            claimant,
            claimed_at: when,
            digest,
        })
    }

    fn by(r: &RecordIdentity) -> Option<ExistingClaim> {
        claimed(r.claimant(), r.digest, at(1))
    }

    fn by_another() -> Option<ExistingClaim> {
        claimed(
            Claimant::Merchant(merchant()),
            ContentDigest::of(b"another record"),
            at(1),
        )
    }

    #[test]
    fn a_record_never_seen_is_fresh_and_one_its_merchant_recorded_is_a_repeat() {
        let (new, old) = (record(1), record(2));
        let kinds = record_kinds(&[new, old], &[None, None, by(&old), by(&old)]);
        assert_eq!(kinds, [RecordKind::Fresh, RecordKind::Repeat]);
    }

    #[test]
    fn a_record_whose_id_or_sequence_another_record_holds_goes_alone() {
        let (a, b, c) = (record(1), record(2), record(3));
        let held = [by_another(), None, None, by_another(), by(&c), None];
        assert_eq!(record_kinds(&[a, b, c], &held), [RecordKind::Alone; 3]);
    }

    #[test]
    fn a_second_copy_or_a_reused_sequence_in_one_call_goes_alone() {
        let first = record(1);
        let mut equivocation = record(2);
        equivocation.sequence = first.sequence;
        let held = [const { None }; 6];
        assert_eq!(
            record_kinds(&[first, first, equivocation], &held),
            [RecordKind::Fresh, RecordKind::Alone, RecordKind::Alone]
        );
    }

    #[test]
    fn a_record_is_paid_from_its_reservation_first_and_from_the_balance_beyond_it() {
        let split = |from_reservation, from_balance| Taken {
            from_reservation,
            from_balance,
            covered_only: false,
        };
        assert_eq!(split_payment(300, 1_000, false), split(300, 0));
        assert_eq!(
            split_payment(300, 100, false),
            split(100, 200),
            "an overspend"
        );
        assert_eq!(split_payment(300, 0, false), split(0, 300), "an overspend");
    }

    #[test]
    fn a_record_after_the_settlement_window_is_paid_only_from_what_the_balance_holds() {
        assert_eq!(
            split_payment(300, 0, true),
            Taken {
                from_reservation: 0,
                from_balance: 300,
                covered_only: true,
            }
        );
        // Nothing beyond the reservation, nothing to cover (a released reservation holds
        // nothing, but the split does not rely on it).
        assert!(!split_payment(300, 1_000, true).covered_only);
    }

    #[test]
    fn a_late_record_the_balance_does_not_cover_is_refused_as_insufficient_funds() {
        let outcome = unpaid_late_record(Amount::new(300, Currency::EUR), at(7));
        assert!(matches!(
            outcome,
            RedemptionOutcome::Invalid { reason } if reason.code == ReasonCode::InsufficientFunds
                && reason.message.contains("settlement window")
        ));
    }

    #[test]
    fn records_of_one_certificate_in_a_group_share_its_reservation_as_if_one_by_one() {
        let serial = CertificateSerial(uuid(9));
        let mut reservations = GroupReservations::default();
        let first = reservations.take(serial, 500, 300, RecordKind::Fresh, false);
        let left = reservations.left(serial).unwrap();
        let second = reservations.take(serial, left, 300, RecordKind::Fresh, false);
        assert_eq!((first.from_reservation, first.from_balance), (300, 0));
        assert_eq!((second.from_reservation, second.from_balance), (200, 100));
        assert_eq!(reservations.left(serial), Some(0));
    }

    #[test]
    fn a_repeat_in_a_group_takes_nothing_more_from_the_reservation() {
        let serial = CertificateSerial(uuid(9));
        let mut reservations = GroupReservations::default();
        reservations.take(serial, 500, 300, RecordKind::Repeat, false);
        assert_eq!(reservations.left(serial), Some(500));
    }

    #[test]
    fn a_conflict_on_its_own_id_means_the_record_was_recorded_before() {
        let r = record(1);
        let report = [
            (
                ClaimId::Record(r.record_id),
                claimed(r.claimant(), r.digest, at(7)),
            ),
            (r.first_claims()[1].clone(), by(&r)),
        ];
        assert_eq!(
            read_conflict(&report, r.digest),
            RecordConflict::RecordedBefore { at: at(7) }
        );
    }

    #[test]
    fn another_record_under_the_id_or_the_sequence_takes_it() {
        let r = record(1);
        let [id, sequence] = r.first_claims();
        let report =
            |held_id, held_sequence| [(id.clone(), held_id), (sequence.clone(), held_sequence)];
        assert_eq!(
            read_conflict(&report(by_another(), None), r.digest),
            RecordConflict::Taken {
                id: true,
                sequence: false
            }
        );
        assert_eq!(
            read_conflict(&report(None, by_another()), r.digest),
            RecordConflict::Taken {
                id: false,
                sequence: true
            }
        );
        // Its own sequence claim, with its id taken by another, is not equivocation.
        assert_eq!(
            read_conflict(&report(by_another(), by(&r)), r.digest),
            RecordConflict::Taken {
                id: true,
                sequence: false
            }
        );
    }

    #[test]
    fn a_first_record_is_kept_under_its_id_and_becomes_its_sequences_record() {
        let r = record(1);
        let conflicts = RecordConflicts::default();
        let place = placement(&r, &conflicts);
        let [id, sequence] = r.first_claims();
        assert_eq!(
            place,
            RecordPlacement {
                record_claim: id,
                sequence_claim: sequence,
                record_key: r.record_id.as_bytes().to_vec(),
                indexes_sequence: true,
            }
        );
        assert_eq!(record_fraud(&r, &conflicts), None);
    }

    #[test]
    fn a_record_reusing_an_id_is_kept_beside_the_first_and_logged_as_reuse() {
        let r = record(1);
        let conflicts = RecordConflicts {
            id_taken: true,
            sequence_taken: None,
        };
        let place = placement(&r, &conflicts);
        let beside = key2(r.record_id.as_bytes(), r.digest.as_bytes());
        assert_eq!(place.record_key, beside);
        assert_eq!(place.record_claim, REUSED_RECORD_ID.claim(beside));
        assert_eq!(
            record_fraud(&r, &conflicts),
            Some(FraudKind::RecordIdReuse {
                account_id: r.account_id,
                device_id: r.device_id,
                record_id: r.record_id,
            })
        );
    }

    #[test]
    fn an_equivocating_record_leaves_the_first_in_place_and_names_it() {
        let r = record(2);
        let first = RecordId(uuid(1));
        let conflicts = RecordConflicts {
            id_taken: false,
            sequence_taken: Some(Some(first)),
        };
        let place = placement(&r, &conflicts);
        assert!(
            !place.indexes_sequence,
            "the first record stays its sequence's record"
        );
        assert!(EQUIVOCATING_RECORD.holds(&place.sequence_claim));
        assert_eq!(
            record_fraud(&r, &conflicts),
            Some(FraudKind::Equivocation {
                account_id: r.account_id,
                device_id: r.device_id,
                sequence: r.sequence,
                first: Some(first),
                second: r.record_id,
            })
        );
    }

    fn certificate(available: u64) -> BalanceCertificatePayload {
        let eur = |v| Amount::new(v, Currency::EUR);
        BalanceCertificatePayload {
            serial: CertificateSerial(uuid(9)),
            account_id: AccountId(uuid(200)),
            device_id: DeviceId(uuid(1)),
            available: eur(available),
            locked: eur(0),
            issued_at: NOW,
            expires_at: NOW,
            max_payments: 10,
            first_sequence: 1,
            per_payment_cap: eur(available),
            allowed_categories: Allowed::Any,
            allowed_regions: Allowed::Any,
        }
    }

    #[test]
    fn records_within_what_a_certificate_made_available_are_no_overspend() {
        assert_eq!(overspend(&certificate(500), 500), None);
        assert_eq!(overspend(&certificate(500), 0), None);
    }

    #[test]
    fn records_beyond_what_a_certificate_made_available_are_an_overspend_of_the_excess() {
        let c = certificate(500);
        assert_eq!(
            overspend(&c, 700),
            Some(FraudKind::Overspend {
                account_id: c.account_id,
                device_id: c.device_id,
                certificate: c.serial,
                excess: Amount::new(200, Currency::EUR),
            })
        );
    }

    fn coin(n: u8) -> PaidCoin {
        PaidCoin {
            spend_id: CoinSpendId([n; 32]),
            coin_id: CoinId(uuid(u128::from(n))),
        }
    }

    fn payment(coins: Vec<PaidCoin>) -> CoinUnit {
        CoinUnit {
            item: 0,
            total: Amount::new(300, Currency::EUR),
            digest: ContentDigest::of(b"payment"),
            coins,
            unit: Unit::new(Claimant::Merchant(merchant()), NOW),
        }
    }

    #[test]
    fn a_payment_redeemed_again_is_already_accepted_and_credited_once() {
        let p = payment(vec![coin(1)]);
        let again = p
            .outcome(
                CommitOutcome::Repeated {
                    first_claimed_at: at(5),
                },
                NOW,
            )
            .unwrap();
        assert_eq!(
            again,
            RedemptionOutcome::AlreadyAccepted {
                first_accepted_at: at(5)
            }
        );
    }

    #[test]
    fn a_payment_holding_coins_spent_elsewhere_is_a_double_spend_naming_only_those() {
        let p = payment(vec![coin(1), coin(2), coin(3)]);
        let elsewhere = |when| {
            claimed(
                Claimant::Merchant(merchant()),
                ContentDigest::of(b"other"),
                when,
            )
        };
        let report = vec![
            (ClaimId::Coin(coin(1).spend_id), elsewhere(at(9))),
            (ClaimId::Coin(coin(2).spend_id), None),
            (ClaimId::Coin(coin(3).spend_id), elsewhere(at(4))),
        ];
        assert_eq!(
            p.outcome(CommitOutcome::Conflict(report), NOW).unwrap(),
            RedemptionOutcome::DoubleSpent {
                first_redeemed_at: at(4),
                coins: vec![coin(1).coin_id, coin(3).coin_id],
            }
        );
    }

    #[test]
    fn a_payment_this_merchant_redeemed_under_scrip_0_1_is_already_accepted() {
        let p = payment(vec![coin(1), coin(2)]);
        let ours = |when| claimed(Claimant::Merchant(merchant()), p.digest, when);
        assert_eq!(
            p.legacy_outcome(&[ours(at(3)), ours(at(2))], merchant(), NOW),
            Some(RedemptionOutcome::AlreadyAccepted {
                first_accepted_at: at(2)
            })
        );
    }

    #[test]
    fn a_coin_redeemed_elsewhere_under_scrip_0_1_makes_the_payment_a_double_spend() {
        let p = payment(vec![coin(1), coin(2)]);
        let theirs = claimed(Claimant::Merchant(MerchantId(uuid(101))), p.digest, at(3));
        assert_eq!(
            p.legacy_outcome(&[None, theirs], merchant(), NOW),
            Some(RedemptionOutcome::DoubleSpent {
                first_redeemed_at: at(3),
                coins: vec![coin(2).coin_id],
            })
        );
        assert_eq!(p.legacy_outcome(&[None, None], merchant(), NOW), None);
    }
}
