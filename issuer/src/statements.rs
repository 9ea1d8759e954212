//! Read-only answers a device or anyone may ask for: a device's statement of its account,
//! and what the issuer knows of a coin.

use scrip_api::{CoinState, CoinStatus, MAX_STATEMENT_ENTRIES};
use scrip_stores::{LedgerAccount, RecordStore};
use scrip_tokens::{CoinSpendId, StatementEntry, StatementPayload, StatementRequest, Timestamp};

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
        let request_digest = scrip_tokens::codec::digest(request.request())?;
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
}
