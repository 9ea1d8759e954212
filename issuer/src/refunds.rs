//! Refunds of settled payments (SPEC §8: "merchants are paid and can refund").
//!
//! A payment is named by the merchant and its payment request id: the unit that credited
//! the merchant for a record or a coin payment wrote it in the payment index (`payments`,
//! see `src/redemption.rs`) with who paid and how much.
//!
//! - **To the account** ([`Issuer::refund`]): for a payment by withdrawal record, the
//!   merchant's signed [`RefundRequest`] moves the amount `Merchant(m) → Customer(account)`.
//! - **By voucher** ([`Issuer::withdraw_voucher`]): for a coin payment, the customer
//!   withdraws blind coins against the merchant's [`RefundVoucher`](scrip_tokens::RefundVoucher), moving the amount
//!   `Merchant(m) → coins-outstanding`. The request carries no account: the voucher is a
//!   bearer instrument, and the issuer learns no more about who holds the new coins than
//!   about who held the old ones. The merchant is debited when the voucher is withdrawn,
//!   not when it was made (the issuer never sees it before): a merchant whose balance was
//!   paid out or refunded meanwhile leaves the voucher unfunded, refused
//!   `insufficient_funds` until the merchant is credited again (the customer retries).
//!
//! A refund of the other kind is refused `wrong_payment_kind`: money paid by an account
//! goes back to that account (not to whoever holds a voucher), and coins name no account.
//! A frozen account still receives refunds: a credit takes nothing from anyone.
//!
//! **Idempotent by refund id.** Every refund claims `refund/<merchant, refund id>` with
//! the digest of what it asks (the payment, the amount; for a voucher the whole voucher),
//! in the unit that moves the money, and stores its result under the same key. The same
//! refund again (signed again: the server refuses replayed bytes) gets the first result;
//! the id for another refund is `refund_id_reused`; a withdrawn voucher presented with
//! other coins is `voucher_already_used` (the same coins get the same signatures back).
//!
//! **Never more than was paid, under concurrency.** Each payment has a refund counter,
//! `refund-totals/<merchant, request>` = (n, refunded so far). A refund reads it, checks
//! `refunded + amount ≤ paid`, and commits with a claim of slot `n + 1`
//! (`refund-slot/<merchant, request, n + 1>`) and the counter's new value in the same
//! unit. Of two concurrent refunds of one payment, both read `n`: one commits slot `n + 1`,
//! the other's unit conflicts on it, writes nothing, re-reads the counter (now `n + 1`)
//! and is judged again. This compare-and-set through a claim was chosen over a per-payment
//! ledger account with a floor: that would need a posting (against some counter-account)
//! in every payment's unit, on the hot redemption path, for a rare operation; the counter
//! costs the payment one document and the refund nothing it does not already do. The
//! merchant's balance is guarded by a floor at zero on `Merchant(m)` in the same unit, so a
//! refund never takes more than the merchant holds. Memos start with `refund ` (the
//! merchant's statement shows them).
//!
//! Payments settled before the payment index existed cannot be refunded
//! (`unknown_payment`).

use rand_core::CryptoRng;
use scrip_stores::{Claimant, CommitOutcome, Floor, LedgerAccount, Posting, RecordStore, Unit};
use scrip_tokens::{
    codec, AccountId, Amount, BlindWithdrawalResponse, ContentDigest, KeysetId, MerchantId,
    Message, RefundId, RefundReceiptPayload, RefundRequest, RefundVoucherPayload, RequestId,
    Timestamp, VoucherWithdrawalRequest,
};
use serde::{Deserialize, Serialize};

use crate::authentication::Authenticated;
use crate::coins::{issuing_keyset, sign_blinded};
use crate::schema::{
    coins_outstanding_account, payment_prefix, refund_key, refund_slot_key, MerchantDoc, PaidBy,
    PaymentDoc, RefundDoc, RefundPaid, RefundTotalDoc, PAYMENTS, REFUND, REFUNDS, REFUND_SLOT,
    REFUND_TOTALS,
};
use crate::{encode, FundingSource, Issuer, IssuerError, Result, RETRIES};

/// Most payments of one request a refund reads (a request is paid once by an honest
/// wallet; more are a merchant's or a device's mistake, and all of them count).
const MAX_PAYMENTS_PER_REQUEST: usize = 64;

/// What a refund asks, the digest its claim is made with: what it refunds and how much,
/// not when it was signed, so a merchant that signs its retry again gets the first answer.
#[derive(Serialize, Deserialize)]
enum RefundIdentity {
    Account {
        request_id: RequestId,
        amount: Amount,
    },
    Voucher(RefundVoucherPayload),
}
impl Message for RefundIdentity {
    const TAG: &'static str = "scrip/issuer/refund-identity/v1";
    const VERSION: u16 = 1;
}

/// The coins a voucher withdrawal asks for: a retry of the same withdrawal asks for the
/// same ones.
#[derive(Serialize, Deserialize)]
struct VoucherCoins {
    keyset_id: KeysetId,
    coins: Vec<(u64, Vec<u8>)>,
}
impl Message for VoucherCoins {
    const TAG: &'static str = "scrip/issuer/voucher-coins/v1";
    const VERSION: u16 = 1;
}

/// How a refund pays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RefundKind {
    Account,
    Voucher,
}

/// What a request paid the merchant, as far as a refund of `kind` is concerned.
#[derive(Debug, PartialEq, Eq)]
struct Paid {
    amount: Amount,
    /// The paying account (record payments).
    account: Option<AccountId>,
}

/// The payments of one request refundable by a refund of `kind`: every payment of that
/// kind, from one account.
fn refundable(
    merchant: MerchantId,
    request: RequestId,
    payments: &[PaymentDoc],
    kind: RefundKind,
) -> Result<Paid> {
    if payments.is_empty() {
        return Err(IssuerError::UnknownPayment { merchant, request });
    }
    let of_kind: Vec<&PaymentDoc> = payments
        .iter()
        .filter(|p| {
            matches!(
                (&p.paid_by, kind),
                (PaidBy::Record { .. }, RefundKind::Account) | (PaidBy::Coins, RefundKind::Voucher)
            )
        })
        .collect();
    let Some(first) = of_kind.first() else {
        return Err(match kind {
            RefundKind::Account => IssuerError::WrongPaymentKind {
                request,
                paid_by: "coins",
                refund: "refund it with a voucher the customer withdraws coins against",
            },
            RefundKind::Voucher => IssuerError::WrongPaymentKind {
                request,
                paid_by: "withdrawal record",
                refund: "refund it to the account with a refund request",
            },
        });
    };
    let account = match &first.paid_by {
        PaidBy::Record { account_id, .. } => Some(*account_id),
        PaidBy::Coins => None,
    };
    let one_account = of_kind.iter().all(|p| match &p.paid_by {
        PaidBy::Record { account_id, .. } => Some(*account_id) == account,
        PaidBy::Coins => true,
    });
    if !one_account {
        return Err(IssuerError::AmbiguousPayment(request));
    }
    let amount = Amount::checked_sum(first.amount.currency, of_kind.iter().map(|p| p.amount))?;
    Ok(Paid { amount, account })
}

/// A refund ready to commit, before the counter is read.
struct Refund {
    merchant: MerchantId,
    refund_id: RefundId,
    request_id: RequestId,
    amount: Amount,
    identity: ContentDigest,
    paid: Paid,
    /// Where it goes (the voucher's answer included).
    to: RefundPaid,
}

impl Refund {
    fn memo(&self) -> String {
        match self.to {
            RefundPaid::Account(_) => format!("refund {} to account", self.refund_id),
            RefundPaid::Voucher { .. } => format!("refund {} by voucher", self.refund_id),
        }
    }

    fn destination(&self) -> LedgerAccount {
        match self.to {
            RefundPaid::Account(account) => LedgerAccount::Customer(account),
            RefundPaid::Voucher { .. } => coins_outstanding_account(),
        }
    }
}

/// What became of one attempt at committing a refund.
enum Attempt {
    Done(RefundDoc),
    /// Another refund of the payment took the slot: read the counter again.
    Raced,
}

impl<S: RecordStore, F: FundingSource> Issuer<S, F> {
    /// Refunds (part of) a payment by withdrawal record to the account that paid, as the
    /// merchant's signed `request` asks. The answer is unsigned: [`Issuer::sign_answer`]
    /// signs it for the merchant.
    pub async fn refund(
        &self,
        request: &RefundRequest,
        now: Timestamp,
    ) -> Result<RefundReceiptPayload> {
        let request = self.authenticate(request).await?;
        self.refund_authenticated(request, now).await
    }

    /// [`Self::refund`] for a request whose signature was checked.
    pub async fn refund_authenticated(
        &self,
        request: Authenticated<'_, RefundRequest>,
        now: Timestamp,
    ) -> Result<RefundReceiptPayload> {
        let merchant = request.signer();
        let request = request.request();
        let p = &request.payload;
        self.check_refunding_merchant(merchant, p.created_at)
            .await?;
        let identity = codec::digest(&RefundIdentity::Account {
            request_id: p.request_id,
            amount: p.amount,
        })?;
        let doc = match self
            .refund_done(p.merchant_id, p.refund_id, identity)
            .await?
        {
            Some(doc) => doc,
            None => {
                let paid = self
                    .paid(p.merchant_id, p.request_id, RefundKind::Account, p.amount)
                    .await?;
                let account = paid.account.ok_or_else(|| {
                    IssuerError::Corrupted("a record payment without its account".into())
                })?;
                let refund = Refund {
                    merchant: p.merchant_id,
                    refund_id: p.refund_id,
                    request_id: p.request_id,
                    amount: p.amount,
                    identity,
                    paid,
                    to: RefundPaid::Account(account),
                };
                self.commit_refund(&refund, now).await?
            }
        };
        let RefundPaid::Account(account_id) = doc.paid else {
            return Err(IssuerError::Corrupted(
                "a refund to an account stored as a voucher".into(),
            ));
        };
        Ok(RefundReceiptPayload {
            merchant_id: p.merchant_id,
            refund_id: p.refund_id,
            request_id: doc.request_id,
            account_id,
            amount: doc.amount,
            refunded_total: doc.refunded_total,
            refunded_at: doc.refunded_at,
            request_digest: codec::digest(request)?,
            answered_at: now,
        })
    }

    /// Withdraws blind coins against a merchant's refund voucher: the coins must add up
    /// to the voucher's amount; the merchant is debited into coins outstanding. Anyone
    /// holding the voucher may do it, once; the same request again gets the same
    /// signatures.
    pub async fn withdraw_voucher<G: CryptoRng + Send + ?Sized>(
        &self,
        request: &VoucherWithdrawalRequest,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<BlindWithdrawalResponse> {
        let request = self.authenticate(request).await?;
        self.withdraw_voucher_authenticated(request, now, rng).await
    }

    /// [`Self::withdraw_voucher`] for a request whose voucher's signature was checked.
    pub async fn withdraw_voucher_authenticated<G: CryptoRng + Send + ?Sized>(
        &self,
        request: Authenticated<'_, VoucherWithdrawalRequest>,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<BlindWithdrawalResponse> {
        let merchant = request.signer();
        let request = request.request();
        let voucher = &request.voucher.payload;
        self.check_refunding_merchant(merchant, voucher.created_at)
            .await?;
        self.check_coin_count(request.coins.len())?;
        let identity = codec::digest(&RefundIdentity::Voucher(voucher.clone()))?;
        let coins = codec::digest(&VoucherCoins {
            keyset_id: request.keyset_id,
            coins: request
                .coins
                .iter()
                .map(|(v, m)| (*v, m.0.clone()))
                .collect(),
        })?;
        if let Some(doc) = self
            .refund_done(voucher.merchant_id, voucher.refund_id, identity)
            .await?
        {
            return voucher_answer(doc, coins, voucher.refund_id);
        }
        let keys = self.keys();
        let set = issuing_keyset(&keys, request.keyset_id, now)?;
        let currency = set.keyset.currency();
        voucher
            .amount
            .ensure_same_currency(&Amount::zero(currency))?;
        let total = Amount::checked_sum(
            currency,
            request.coins.iter().map(|(v, _)| Amount::new(*v, currency)),
        )?;
        if total != voucher.amount {
            return Err(scrip_tokens::Error::AmountMismatch {
                expected: voucher.amount,
                found: total,
            }
            .into());
        }
        let paid = self
            .paid(
                voucher.merchant_id,
                voucher.request_id,
                RefundKind::Voucher,
                voucher.amount,
            )
            .await?;
        // Blind signing costs a millisecond per coin: refuse what cannot be paid before
        // signing anything (the commit still checks both atomically).
        if let Err(refusal) = self
            .check_refundable(
                voucher.merchant_id,
                voucher.request_id,
                &paid,
                voucher.amount,
            )
            .await
        {
            let doc = self
                .committed_copy_or(voucher.merchant_id, voucher.refund_id, identity, refusal)
                .await?;
            return voucher_answer(doc, coins, voucher.refund_id);
        }
        let answer = BlindWithdrawalResponse {
            keyset_id: set.keyset.id(),
            signatures: sign_blinded(set, &request.coins, rng)?,
        };
        let refund = Refund {
            merchant: voucher.merchant_id,
            refund_id: voucher.refund_id,
            request_id: voucher.request_id,
            amount: voucher.amount,
            identity,
            paid,
            to: RefundPaid::Voucher { coins, answer },
        };
        let doc = self.commit_refund(&refund, now).await?;
        voucher_answer(doc, coins, voucher.refund_id)
    }

    /// A refund paid by `merchant`, if one was.
    pub async fn refund_of(
        &self,
        merchant: MerchantId,
        refund: RefundId,
    ) -> Result<Option<RefundDoc>> {
        self.doc(REFUNDS, &refund_key(merchant, refund)).await
    }

    /// The settled payments of `merchant`'s request `request` (usually one).
    pub async fn payments_of(
        &self,
        merchant: MerchantId,
        request: RequestId,
    ) -> Result<Vec<PaymentDoc>> {
        let prefix = payment_prefix(merchant, request);
        let page = self
            .store
            .scan(PAYMENTS, Some(&prefix), MAX_PAYMENTS_PER_REQUEST)
            .await?;
        page.iter()
            .take_while(|(key, _)| key.starts_with(&prefix))
            .map(|(_, value)| {
                codec::decode(value)
                    .map_err(|e| IssuerError::Corrupted(format!("{}: {e}", PAYMENTS.name())))
            })
            .collect()
    }

    /// What was refunded of a payment so far: `None` if nothing was.
    pub async fn refunded(
        &self,
        merchant: MerchantId,
        request: RequestId,
    ) -> Result<Option<RefundTotalDoc>> {
        self.doc(REFUND_TOTALS, &payment_prefix(merchant, request))
            .await
    }

    /// A refunding merchant must not be revoked, and must have been certified when it
    /// signed.
    async fn check_refunding_merchant(
        &self,
        merchant: &MerchantDoc,
        signed_at: Timestamp,
    ) -> Result<()> {
        let id = merchant.certificate.payload.merchant_id;
        if self.merchant_revoked(id).await?.is_some() {
            return Err(IssuerError::MerchantRevoked(id));
        }
        merchant.certificate.payload.validity.check(signed_at)?;
        Ok(())
    }

    /// The refund `refund` of `merchant` if it was paid for what `identity` asks;
    /// `refund_id_reused` if it was paid for something else.
    async fn refund_done(
        &self,
        merchant: MerchantId,
        refund: RefundId,
        identity: ContentDigest,
    ) -> Result<Option<RefundDoc>> {
        match self.refund_of(merchant, refund).await? {
            Some(doc) if doc.identity == identity => Ok(Some(doc)),
            Some(_) => Err(IssuerError::RefundIdReused(refund)),
            None => Ok(None),
        }
    }

    /// What the request paid the merchant, for a refund of `kind` of `amount`.
    async fn paid(
        &self,
        merchant: MerchantId,
        request: RequestId,
        kind: RefundKind,
        amount: Amount,
    ) -> Result<Paid> {
        let payments = self.payments_of(merchant, request).await?;
        let paid = refundable(merchant, request, &payments, kind)?;
        amount.ensure_same_currency(&paid.amount)?;
        Ok(paid)
    }

    /// Refuses early what the commit would refuse: more than is left of the payment, or
    /// than the merchant holds.
    async fn check_refundable(
        &self,
        merchant: MerchantId,
        request: RequestId,
        paid: &Paid,
        amount: Amount,
    ) -> Result<()> {
        let total = self.refunded(merchant, request).await?;
        next_total(total.as_ref(), paid, amount)?;
        let balance = self
            .store
            .balance(&LedgerAccount::Merchant(merchant), amount.currency)
            .await?;
        if balance < i128::from(amount.minor_units) {
            return Err(IssuerError::MerchantBalanceShort {
                merchant,
                requested: amount,
            });
        }
        Ok(())
    }

    /// Commits a refund against the payment's counter, reading it again while other
    /// refunds of the payment take slots first.
    async fn commit_refund(&self, refund: &Refund, now: Timestamp) -> Result<RefundDoc> {
        for _ in 0..RETRIES {
            if let Attempt::Done(doc) = self.try_refund(refund, now).await? {
                return Ok(doc);
            }
        }
        Err(IssuerError::Contended {
            operation: "refunding a payment",
        })
    }

    async fn try_refund(&self, refund: &Refund, now: Timestamp) -> Result<Attempt> {
        let m = refund.merchant;
        let total = self.refunded(m, refund.request_id).await?;
        let counter = match next_total(total.as_ref(), &refund.paid, refund.amount) {
            Ok(counter) => counter,
            Err(refusal) => {
                return self
                    .committed_copy_or(m, refund.refund_id, refund.identity, refusal)
                    .await
                    .map(Attempt::Done)
            }
        };
        let doc = RefundDoc {
            request_id: refund.request_id,
            identity: refund.identity,
            amount: refund.amount,
            refunded_total: counter.refunded,
            refunded_at: now,
            paid: refund.to.clone(),
        };
        let merchant = LedgerAccount::Merchant(m);
        let refund_claim = REFUND.claim(refund_key(m, refund.refund_id));
        let unit = Unit::new(Claimant::Merchant(m), now)
            .claim(refund_claim.clone(), refund.identity)
            .claim(
                REFUND_SLOT.claim(refund_slot_key(m, refund.request_id, counter.refunds)),
                refund.identity,
            )
            .post(Posting::transfer(
                merchant.clone(),
                refund.destination(),
                refund.amount,
                &refund.memo(),
            ))
            .floor(Floor::non_negative(merchant, refund.amount.currency))
            .write(scrip_stores::Write::put(
                REFUND_TOTALS,
                payment_prefix(m, refund.request_id),
                encode(&counter)?,
            ))
            .write(scrip_stores::Write::put(
                REFUNDS,
                refund_key(m, refund.refund_id),
                encode(&doc)?,
            ));
        match self.store.commit(unit).await? {
            CommitOutcome::Committed => Ok(Attempt::Done(doc)),
            CommitOutcome::InsufficientFunds { .. } => {
                let refusal = IssuerError::MerchantBalanceShort {
                    merchant: m,
                    requested: refund.amount,
                };
                self.committed_copy_or(m, refund.refund_id, refund.identity, refusal)
                    .await
                    .map(Attempt::Done)
            }
            CommitOutcome::Repeated { .. } => self.stored_refund(refund).await.map(Attempt::Done),
            CommitOutcome::Conflict(report) => {
                let held = report
                    .iter()
                    .find(|(id, _)| *id == refund_claim)
                    .and_then(|(_, held)| held.as_ref());
                match held {
                    // A twin of this refund committed first (under another slot).
                    Some(h) if h.digest == refund.identity => {
                        self.stored_refund(refund).await.map(Attempt::Done)
                    }
                    Some(_) => Err(IssuerError::RefundIdReused(refund.refund_id)),
                    None => Ok(Attempt::Raced),
                }
            }
        }
    }

    /// The refund a copy of this request committed, else `refusal`. A copy that commits
    /// between this request's first look and its read of the payment's counter (or of the
    /// merchant's balance) is what used the payment up; it stored its record in the same
    /// write as the counter, so a read after the counter's finds it.
    async fn committed_copy_or(
        &self,
        merchant: MerchantId,
        refund: RefundId,
        identity: ContentDigest,
        refusal: IssuerError,
    ) -> Result<RefundDoc> {
        match self.refund_done(merchant, refund, identity).await? {
            Some(doc) => Ok(doc),
            None => Err(refusal),
        }
    }

    async fn stored_refund(&self, refund: &Refund) -> Result<RefundDoc> {
        // The unit that claimed the refund stored it in the same write.
        let missing = IssuerError::Corrupted("a refund claimed without its record".into());
        self.committed_copy_or(refund.merchant, refund.refund_id, refund.identity, missing)
            .await
    }
}

/// The payment's counter after a refund of `amount`, if what was paid covers it.
fn next_total(
    total: Option<&RefundTotalDoc>,
    paid: &Paid,
    amount: Amount,
) -> Result<RefundTotalDoc> {
    let (refunds, refunded) = match total {
        Some(t) => (t.refunds, t.refunded),
        None => (0, Amount::zero(paid.amount.currency)),
    };
    let after = refunded.checked_add(amount)?;
    if after.checked_cmp(&paid.amount)? == std::cmp::Ordering::Greater {
        return Err(IssuerError::RefundExceedsPayment {
            paid: paid.amount,
            refunded,
            requested: amount,
        });
    }
    Ok(RefundTotalDoc {
        refunds: refunds + 1,
        refunded: after,
    })
}

/// The answer to a voucher withdrawal whose refund is `doc`: its signatures when the
/// withdrawal asked for these very `coins`.
fn voucher_answer(
    doc: RefundDoc,
    coins: ContentDigest,
    refund: RefundId,
) -> Result<BlindWithdrawalResponse> {
    match doc.paid {
        RefundPaid::Voucher {
            coins: paid_for,
            answer,
        } if paid_for == coins => Ok(answer),
        RefundPaid::Voucher { .. } => Err(IssuerError::VoucherAlreadyUsed(refund)),
        RefundPaid::Account(_) => Err(IssuerError::RefundIdReused(refund)),
    }
}

#[cfg(test)]
mod tests {
    use scrip_tokens::{Currency, RecordId};

    use super::*;

    fn uuid(n: u128) -> uuid::Uuid {
        uuid::Uuid::from_u128(n)
    }

    fn eur(v: u64) -> Amount {
        Amount::new(v, Currency::EUR)
    }

    fn by_record(account: u128, amount: u64) -> PaymentDoc {
        PaymentDoc {
            paid_by: PaidBy::Record {
                account_id: AccountId(uuid(account)),
                record_id: RecordId(uuid(account + 1000)),
            },
            amount: eur(amount),
            paid_at: Timestamp::from_unix_millis(1),
        }
    }

    fn by_coins(amount: u64) -> PaymentDoc {
        PaymentDoc {
            paid_by: PaidBy::Coins,
            amount: eur(amount),
            paid_at: Timestamp::from_unix_millis(1),
        }
    }

    fn m() -> MerchantId {
        MerchantId(uuid(7))
    }

    fn r() -> RequestId {
        RequestId(uuid(8))
    }

    #[test]
    fn a_record_payment_is_refundable_to_its_account_only() {
        let paid = refundable(m(), r(), &[by_record(1, 300)], RefundKind::Account).unwrap();
        assert_eq!(
            paid,
            Paid {
                amount: eur(300),
                account: Some(AccountId(uuid(1)))
            }
        );
        assert!(matches!(
            refundable(m(), r(), &[by_record(1, 300)], RefundKind::Voucher),
            Err(IssuerError::WrongPaymentKind { .. })
        ));
        assert!(matches!(
            refundable(m(), r(), &[by_coins(300)], RefundKind::Account),
            Err(IssuerError::WrongPaymentKind { .. })
        ));
        assert!(matches!(
            refundable(m(), r(), &[], RefundKind::Account),
            Err(IssuerError::UnknownPayment { .. })
        ));
    }

    #[test]
    fn a_request_paid_by_two_accounts_is_refunded_by_none() {
        let payments = [by_record(1, 300), by_record(2, 300)];
        assert!(matches!(
            refundable(m(), r(), &payments, RefundKind::Account),
            Err(IssuerError::AmbiguousPayment(_))
        ));
        // Two coin payments of one request (a terminal that took it twice) both count.
        let coins = refundable(m(), r(), &[by_coins(5), by_coins(7)], RefundKind::Voucher);
        assert_eq!(coins.unwrap().amount, eur(12));
    }

    #[test]
    fn refunds_add_up_to_at_most_what_was_paid() {
        let paid = Paid {
            amount: eur(300),
            account: None,
        };
        let first = next_total(None, &paid, eur(100)).unwrap();
        assert_eq!((first.refunds, first.refunded), (1, eur(100)));
        let second = next_total(Some(&first), &paid, eur(200)).unwrap();
        assert_eq!((second.refunds, second.refunded), (2, eur(300)));
        assert!(matches!(
            next_total(Some(&second), &paid, eur(1)),
            Err(IssuerError::RefundExceedsPayment { .. })
        ));
    }

    #[test]
    fn a_withdrawn_voucher_answers_only_the_coins_it_was_withdrawn_for() {
        let answer = BlindWithdrawalResponse {
            keyset_id: KeysetId([1; 32]),
            signatures: Vec::new(),
        };
        let doc = RefundDoc {
            request_id: r(),
            identity: ContentDigest::of(b"voucher"),
            amount: eur(5),
            refunded_total: eur(5),
            refunded_at: Timestamp::from_unix_millis(1),
            paid: RefundPaid::Voucher {
                coins: ContentDigest::of(b"coins"),
                answer: answer.clone(),
            },
        };
        assert_eq!(
            voucher_answer(doc.clone(), ContentDigest::of(b"coins"), RefundId(uuid(1))).unwrap(),
            answer
        );
        assert!(matches!(
            voucher_answer(doc, ContentDigest::of(b"other"), RefundId(uuid(1))),
            Err(IssuerError::VoucherAlreadyUsed(_))
        ));
    }
}
