//! Read-only answers a device or anyone may ask for: a device's statement of its account,
//! what the issuer knows of a coin, and of a coin payment.

use scrip_api::{
    CoinPaymentState, CoinPaymentStatus, CoinState, CoinStatus, MAX_STATEMENT_ENTRIES,
};
use scrip_stores::{ClaimId, Claimant, LedgerAccount, RecordStore};
use scrip_tokens::{
    codec, CoinId, CoinSpendId, EndorsedCoinPayment, StatementEntry, StatementPayload,
    StatementRequest, Timestamp,
};

use crate::authentication::Authenticated;
use crate::{FundingSource, Issuer, IssuerError, Result};

impl<S: RecordStore, F: FundingSource> Issuer<S, F> {
    /// A device's statement request: verified against the device's key, the device must
    /// belong to the account and not be revoked (frozen accounts may read).
    /// The answer is unsigned: [`Issuer::sign_answer`] signs it for the device.
    pub async fn statement_for(
        &self,
        request: &StatementRequest,
        now: Timestamp,
    ) -> Result<StatementPayload> {
        let request = self.authenticate(request).await?;
        self.statement_authenticated(request, now).await
    }

    /// [`Self::statement_for`] for a request whose signature was checked.
    pub async fn statement_authenticated(
        &self,
        request: Authenticated<'_, StatementRequest>,
        now: Timestamp,
    ) -> Result<StatementPayload> {
        let device = request.signer();
        let request_digest = request.request_digest()?;
        let payload = &request.request().payload;
        self.check_unrevoked(device, payload.account_id, now)
            .await?;
        let limit = payload.limit.clamp(1, MAX_STATEMENT_ENTRIES) as usize;
        let entries = self
            .statement(
                payload.account_id,
                payload.currency,
                payload.after_seq,
                limit,
            )
            .await?;
        let balance = self
            .store()
            .balance(
                &LedgerAccount::Customer(payload.account_id),
                payload.currency,
            )
            .await?;
        Ok(StatementPayload {
            account_id: payload.account_id,
            request_digest,
            currency: payload.currency,
            balance,
            entries: entries
                .into_iter()
                .map(|e| StatementEntry {
                    seq: e.seq,
                    at: e.at,
                    delta: e.delta,
                    balance_after: e.balance_after,
                    memo: e.memo,
                })
                .collect(),
            answered_at: now,
        })
    }

    /// What the issuer knows of a coin, by its spend id: revoked (an identified coin of a
    /// lost device, reissued), redeemed, or never redeemed. The lookup is by spend id, which
    /// only someone who saw the coin can compute, so the answer tells a stranger nothing.
    /// (Coins redeemed by scrip 0.1, under their bare ids, show as not redeemed here; they
    /// are still refused at redemption.)
    pub async fn coin_state(&self, spend_id: CoinSpendId) -> Result<CoinState> {
        let claim = self
            .store()
            .claims(&[scrip_stores::ClaimId::Coin(spend_id)])
            .await?
            .pop()
            .ok_or_else(|| IssuerError::Corrupted("store answered no claim".into()))?;
        Ok(CoinState {
            spend_id,
            state: match claim {
                // Reissue claims the old coins as the issuer (fraud.rs).
                Some(c) if c.claimant == scrip_stores::Claimant::Issuer => CoinStatus::Revoked {
                    revoked_at: c.claimed_at,
                },
                Some(c) => CoinStatus::Redeemed {
                    redeemed_at: c.claimed_at,
                },
                None => CoinStatus::NotRedeemed,
            },
        })
    }

    /// The state of the coin payment a wallet holds the merchant's receipt for: settled
    /// (the merchant redeemed exactly this payment), unsettled (not uploaded yet), or
    /// unable to settle (a coin went into another payment first, or was revoked).
    ///
    /// Like [`Self::coin_state`] this is a read anyone may ask: it reveals only what the
    /// coins' spend ids reveal, and only someone who holds the coins (their signatures) can
    /// compute those. The endorsement is therefore not verified, and the answer is not
    /// signed (no money moves on it, and an unauthenticated read must not cost the issuer
    /// a signature); a wallet that acts on it (say, asks the merchant again) does so
    /// through signed messages.
    pub async fn coin_payment_state(
        &self,
        receipt: &EndorsedCoinPayment,
    ) -> Result<CoinPaymentState> {
        let payment = &receipt.payload.payment;
        // Bounds the coins (and refuses a coin listed twice) before any hashing or lookup.
        payment.total()?;
        let digest = codec::digest(payment)?;
        let merchant = Claimant::Merchant(receipt.payload.merchant_id);
        let ids = payment
            .coins
            .iter()
            .map(|coin| coin.spend_id().map(ClaimId::Coin))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let claims = self.store().claims(&ids).await?;
        let mut settled_at: Option<Timestamp> = None;
        let mut taken: Vec<(CoinId, Timestamp)> = Vec::new();
        let mut revoked: Vec<CoinId> = Vec::new();
        for (coin, claim) in payment.coins.iter().zip(claims) {
            match claim {
                None => {}
                // Reissue claims the old coins as the issuer (fraud.rs).
                Some(c) if c.claimant == Claimant::Issuer => revoked.push(coin.id()),
                Some(c) if c.claimant == merchant && c.digest == digest => {
                    settled_at = Some(settled_at.map_or(c.claimed_at, |at| at.max(c.claimed_at)));
                }
                Some(c) => taken.push((coin.id(), c.claimed_at)),
            }
        }
        // One unit claims all of a payment's coins, so "settled" is all of them or none;
        // a conflict anywhere means the payment as receipted cannot settle.
        let state = if !revoked.is_empty() {
            CoinPaymentStatus::Revoked { coins: revoked }
        } else if let Some(first_redeemed_at) = taken.iter().map(|(_, at)| *at).min() {
            CoinPaymentStatus::DoubleSpent {
                first_redeemed_at,
                coins: taken.into_iter().map(|(id, _)| id).collect(),
            }
        } else {
            match settled_at {
                Some(settled_at) => CoinPaymentStatus::Settled { settled_at },
                None => CoinPaymentStatus::Unsettled,
            }
        };
        Ok(CoinPaymentState {
            request_id: payment.request.payload.request_id,
            merchant_id: receipt.payload.merchant_id,
            state,
        })
    }
}
