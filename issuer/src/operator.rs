//! The operator's actions on accounts and merchants: freezing and unfreezing an account
//! (with a reason, kept and logged), listing frozen accounts, revoking a merchant.
//!
//! A freeze is claimed once per *generation* of the account (how many times it was
//! unfrozen, [`FREEZE_GENERATIONS`]): within a generation the first freeze's reason
//! stands, and an unfreeze moves the account to the next generation in the same unit that
//! lifts the mark, so the account can be frozen again later.

use scrip_stores::{Claimant, CommitOutcome, RecordStore, Unit, Write};
use scrip_tokens::{AccountId, ContentDigest, MerchantId, Timestamp};

use crate::schema::{
    freeze_claim_key, unfreeze_key, Mark, RawValue, UnfreezeDoc, FREEZE, FREEZE_GENERATIONS,
    FROZEN, REVOKED_MERCHANTS, REVOKE_MERCHANT, UNFREEZE, UNFREEZES,
};
use crate::{encode, FundingSource, Issuer, IssuerError, Result, RETRIES};

/// An operator's reason, checked: not blank, and short enough to keep and log.
fn checked_reason(reason: &str) -> Result<&str> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(IssuerError::Unsupported(
            "an operator action needs a reason",
        ));
    }
    if reason.chars().count() > scrip_api::MAX_REASON_CHARS {
        return Err(IssuerError::Unsupported("the reason is too long"));
    }
    Ok(reason)
}

impl<S: RecordStore, F: FundingSource> Issuer<S, F> {
    /// How many times the account was unfrozen: the generation its freezes claim under.
    async fn freeze_generation(&self, account: AccountId) -> Result<u64> {
        Ok(self
            .raw_value::<u64>(FREEZE_GENERATIONS, account.as_bytes())
            .await?
            .unwrap_or(0))
    }

    /// Freezes an account once per generation (the first reason of a generation stands).
    /// Used by fraud detection and by the operator.
    pub(crate) async fn freeze_once(
        &self,
        account: AccountId,
        reason: &str,
        now: Timestamp,
    ) -> Result<()> {
        for _ in 0..RETRIES {
            let generation = self.freeze_generation(account).await?;
            let unit = Unit::new(Claimant::Issuer, now)
                .claim(
                    FREEZE.claim(freeze_claim_key(account, generation)),
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
            if self.store.commit(unit).await? == CommitOutcome::Committed {
                return Ok(());
            }
            // Frozen already in this generation, unless an unfreeze moved the account to
            // the next one meanwhile: then this freeze is a new one, and must stand.
            if self.freeze_generation(account).await? == generation {
                return Ok(());
            }
        }
        Err(IssuerError::Contended {
            operation: "freezing an account",
        })
    }

    /// Freezes an account on the operator's authority: from `now` on it gets no balance
    /// certificates or coins. Idempotent while frozen: the first freeze's mark stands and
    /// is returned.
    pub async fn freeze_account(
        &self,
        account: AccountId,
        reason: &str,
        now: Timestamp,
    ) -> Result<Mark> {
        let reason = checked_reason(reason)?;
        self.account(account).await?;
        self.freeze_once(account, reason, now).await?;
        let mark = self.frozen(account).await?.ok_or_else(|| {
            // Only a concurrent unfreeze lifts it this fast; say so rather than invent.
            IssuerError::Contended {
                operation: "freezing an account",
            }
        })?;
        tracing::info!(account = %account, reason, "account frozen by the operator");
        Ok(mark)
    }

    /// Lifts an account's freeze on the operator's authority, keeping the freeze lifted
    /// and `reason` in the account's unfreeze history. The account moves to the next freeze
    /// generation in the same unit, so it can be frozen again later. Of two concurrent
    /// unfreezes of one freeze one is done and both answer it. Refused with
    /// `AccountNotFrozen` if the account is not frozen.
    pub async fn unfreeze_account(
        &self,
        account: AccountId,
        reason: &str,
        now: Timestamp,
    ) -> Result<UnfreezeDoc> {
        let reason = checked_reason(reason)?;
        self.account(account).await?;
        for _ in 0..RETRIES {
            let generation = self.freeze_generation(account).await?;
            let Some(frozen) = self.frozen(account).await? else {
                // Lifted since the generation was read: by a concurrent unfreeze of this
                // freeze, whose record is the answer, or the account was never frozen.
                return match self
                    .doc(UNFREEZES, &unfreeze_key(account, generation))
                    .await?
                {
                    Some(done) => Ok(done),
                    None => Err(IssuerError::AccountNotFrozen(account)),
                };
            };
            let next = generation
                .checked_add(1)
                .ok_or_else(|| IssuerError::Corrupted("freeze generation overflow".into()))?;
            let doc = UnfreezeDoc {
                account_id: account,
                frozen,
                at: now,
                reason: reason.to_owned(),
                generation,
            };
            let unit = Unit::new(Claimant::Issuer, now)
                .claim(
                    UNFREEZE.claim(freeze_claim_key(account, generation)),
                    ContentDigest::of(account.as_bytes()),
                )
                .write(Write::delete(FROZEN, account.as_bytes().to_vec()))
                .write(Write::put(
                    FREEZE_GENERATIONS,
                    account.as_bytes().to_vec(),
                    next.to_raw(),
                ))
                .write(Write::put(
                    UNFREEZES,
                    unfreeze_key(account, generation),
                    encode(&doc)?,
                ));
            if self.store.commit(unit).await? == CommitOutcome::Committed {
                tracing::info!(
                    account = %account,
                    reason,
                    frozen_reason = %doc.frozen.reason,
                    "account unfrozen by the operator"
                );
                return Ok(doc);
            }
            // Another unfreeze of this generation won: its record is the answer.
            if let Some(done) = self
                .doc(UNFREEZES, &unfreeze_key(account, generation))
                .await?
            {
                return Ok(done);
            }
        }
        Err(IssuerError::Contended {
            operation: "unfreezing an account",
        })
    }

    /// An account's unfreezes, oldest first.
    pub async fn unfreezes(&self, account: AccountId) -> Result<Vec<UnfreezeDoc>> {
        let mut history = Vec::new();
        for generation in 0..self.freeze_generation(account).await? {
            if let Some(doc) = self
                .doc(UNFREEZES, &unfreeze_key(account, generation))
                .await?
            {
                history.push(doc);
            }
        }
        Ok(history)
    }

    /// The frozen accounts, in account id order, after `after` (the last one seen), at
    /// most `limit` (capped at [`crate::MAX_PAGE`]).
    pub async fn frozen_accounts(
        &self,
        after: Option<AccountId>,
        limit: usize,
    ) -> Result<Vec<(AccountId, Mark)>> {
        let after = after.map(|a| a.as_bytes().to_vec());
        self.store
            .scan(FROZEN, after.as_deref(), limit.min(crate::MAX_PAGE))
            .await?
            .into_iter()
            .map(|(key, value)| {
                let account = AccountId::from_raw(&key)
                    .ok_or_else(|| IssuerError::Corrupted("frozen account key".into()))?;
                let mark = scrip_tokens::codec::decode(&value)
                    .map_err(|e| IssuerError::Corrupted(format!("frozen account: {e}")))?;
                Ok((account, mark))
            })
            .collect()
    }

    /// Revokes a merchant on the operator's authority: from `now` on its redemption
    /// batches are refused (`MerchantRevoked`). What it redeemed before stays settled.
    /// Idempotent: the first revocation's mark stands and is returned.
    pub async fn revoke_merchant(
        &self,
        merchant: MerchantId,
        reason: &str,
        now: Timestamp,
    ) -> Result<Mark> {
        let reason = checked_reason(reason)?;
        self.merchant(merchant).await?;
        let mark = Mark {
            at: now,
            reason: reason.to_owned(),
        };
        let unit = Unit::new(Claimant::Issuer, now)
            .claim(
                REVOKE_MERCHANT.claim(merchant.as_bytes().to_vec()),
                ContentDigest::of(merchant.as_bytes()),
            )
            .write(Write::put(
                REVOKED_MERCHANTS,
                merchant.as_bytes().to_vec(),
                encode(&mark)?,
            ));
        match self.store.commit(unit).await? {
            CommitOutcome::Committed => {
                tracing::info!(merchant = %merchant, reason, "merchant revoked by the operator");
                Ok(mark)
            }
            _ => self
                .merchant_revoked(merchant)
                .await?
                .ok_or_else(|| IssuerError::Corrupted("revocation claimed, no mark".into())),
        }
    }

    /// When and why the merchant was revoked, if it was.
    pub async fn merchant_revoked(&self, merchant: MerchantId) -> Result<Option<Mark>> {
        self.doc(REVOKED_MERCHANTS, merchant.as_bytes()).await
    }
}
