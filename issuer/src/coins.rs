//! Coin issuance: blind withdrawals (the issuer signs blinded messages it cannot link to
//! later redemptions) and identified coins (the issuer picks the ids and writes the
//! holder's virtual id). Both debit the account into `coins-outstanding` and are
//! idempotent under the client's key: a retry gets the stored answer and is debited once.

use rand_core::CryptoRng;
use scrip_stores::{
    ClaimId, Claimant, CommitOutcome, Floor, LedgerAccount, Posting, RecordStore, Unit, Write,
};
use scrip_tokens::{
    codec, AccountId, Amount, BlindWithdrawalRequest, BlindWithdrawalResponse, CoinId, Currency,
    IdentifiedCoin, IdentifiedCoinPayload, IdentifiedWithdrawalRequest,
    IdentifiedWithdrawalResponse, KeysetId, Message, Timestamp,
};
use serde::{Deserialize, Serialize};

use crate::authentication::Authenticated;
use crate::docs::{
    coins_outstanding_account, key2, IdentifiedCoinDoc, DEVICE_COINS, IDENTIFIED_COINS, RESPONSES,
};
use crate::{encode, FundingSource, Issuer, IssuerError, Result};

/// What a withdrawal's idempotency key stands for: the coins asked for, not the request's
/// nonce or time, so a client that re-signs its retry still gets its original answer.
#[derive(Serialize, Deserialize)]
enum WithdrawalIdentity {
    Blind {
        keyset_id: KeysetId,
        coins: Vec<(u64, Vec<u8>)>,
    },
    Identified {
        currency: Currency,
        amounts: Vec<u64>,
    },
}
impl Message for WithdrawalIdentity {
    const TAG: &'static str = "scrip/issuer/withdrawal-identity/v1";
    const VERSION: u16 = 1;
}

/// A withdrawal ready to commit: the debit, the idempotency claim, the stored answer.
struct Withdrawal<T> {
    account: AccountId,
    claim: ClaimId,
    digest: scrip_tokens::ContentDigest,
    total: Amount,
    response_key: Vec<u8>,
    answer: T,
    extra: Vec<Write>,
}

impl<S: RecordStore, F: FundingSource> Issuer<S, F> {
    fn check_coin_count(&self, n: usize) -> Result<()> {
        if n == 0 {
            return Err(IssuerError::Unsupported("a withdrawal of no coins"));
        }
        if n > self.config.max_coins_per_withdrawal {
            return Err(IssuerError::Unsupported("too many coins in one withdrawal"));
        }
        Ok(())
    }

    /// Looks up a finished withdrawal under `claim`: `Some(answer)` if this exact request
    /// was answered before, an error if the key was used for another request.
    async fn previous_answer<T: Message>(
        &self,
        claim: &ClaimId,
        digest: scrip_tokens::ContentDigest,
        response_key: &[u8],
    ) -> Result<Option<T>> {
        match self
            .store
            .claims(std::slice::from_ref(claim))
            .await?
            .pop()
            .flatten()
        {
            None => Ok(None),
            Some(held) if held.digest == digest => self
                .doc(RESPONSES, response_key)
                .await?
                .map(Some)
                .ok_or(IssuerError::Corrupted(
                    "withdrawal without stored answer".into(),
                )),
            Some(_) => Err(IssuerError::IdempotencyKeyReused),
        }
    }

    /// Commits a withdrawal unit; on a repeat, returns the stored answer instead.
    async fn commit_withdrawal<T: Message>(&self, w: Withdrawal<T>, now: Timestamp) -> Result<T> {
        let Withdrawal {
            account,
            claim,
            digest,
            total,
            response_key,
            answer,
            extra,
        } = w;
        let customer = LedgerAccount::Customer(account);
        let mut unit = Unit::new(Claimant::Account(account), now)
            .claim(claim, digest)
            .post(Posting::transfer(
                customer.clone(),
                coins_outstanding_account(),
                total,
                "coins withdrawn",
            ))
            .floor(Floor::non_negative(customer, total.currency))
            .write(Write::put(
                RESPONSES,
                response_key.clone(),
                encode(&answer)?,
            ));
        for w in extra {
            unit = unit.write(w);
        }
        match self.store.commit(unit).await? {
            CommitOutcome::Committed => Ok(answer),
            CommitOutcome::Repeated { .. } => {
                self.doc(RESPONSES, &response_key)
                    .await?
                    .ok_or(IssuerError::Corrupted(
                        "withdrawal without stored answer".into(),
                    ))
            }
            CommitOutcome::Conflict(_) => Err(IssuerError::IdempotencyKeyReused),
            CommitOutcome::InsufficientFunds { .. } => {
                Err(IssuerError::InsufficientFunds { requested: total })
            }
        }
    }

    /// Blind withdrawal: debits the account by the total face value and returns one blind
    /// signature per blinded coin, by the keyset's key for that denomination.
    pub async fn withdraw_blind<G: CryptoRng + Send + ?Sized>(
        &self,
        request: &BlindWithdrawalRequest,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<BlindWithdrawalResponse> {
        let request = self.authenticate(request).await?;
        self.withdraw_blind_authenticated(request, now, rng).await
    }

    /// [`Self::withdraw_blind`] for a request whose signature was checked.
    pub async fn withdraw_blind_authenticated<G: CryptoRng + Send + ?Sized>(
        &self,
        request: Authenticated<'_, BlindWithdrawalRequest>,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<BlindWithdrawalResponse> {
        let device = request.signer();
        let request = request.request();
        let payload = &request.payload;
        self.check_active(device, payload.account_id, now).await?;
        self.check_coin_count(payload.coins.len())?;
        let keys = self.keys();
        let set = keys
            .keyset(payload.keyset_id)
            .ok_or(scrip_tokens::Error::UnknownKeyset(payload.keyset_id))?;
        let keyset = &set.keyset;
        if now < keyset.validity().not_before || now > keyset.issue_until() {
            return Err(IssuerError::KeysetNotIssuing(payload.keyset_id));
        }
        let total = Amount::checked_sum(
            keyset.currency(),
            payload
                .coins
                .iter()
                .map(|(v, _)| Amount::new(*v, keyset.currency())),
        )?;
        let identity = WithdrawalIdentity::Blind {
            keyset_id: payload.keyset_id,
            coins: payload
                .coins
                .iter()
                .map(|(v, m)| (*v, m.0.clone()))
                .collect(),
        };
        let digest = codec::digest(&identity)?;
        let claim = ClaimId::Idempotency {
            scope: *payload.account_id.as_uuid(),
            key: payload.idempotency_key,
        };
        let response_key = key2(b"blind/", &claim.key_bytes());
        if let Some(answer) = self.previous_answer(&claim, digest, &response_key).await? {
            return Ok(answer);
        }
        // Blind signing costs a millisecond per coin: refuse what cannot be paid before
        // signing anything (the commit still checks the balance atomically).
        self.check_spendable(payload.account_id, total).await?;
        let signatures = payload
            .coins
            .iter()
            .map(|(value, blinded)| {
                let key = set
                    .keys
                    .iter()
                    .find(|(v, _)| v == value)
                    .map(|(_, k)| k)
                    .ok_or(scrip_tokens::Error::UnknownDenomination {
                        keyset_id: keyset.id(),
                        minor_units: *value,
                    })?;
                Ok(key.sign_blinded(rng, blinded)?)
            })
            .collect::<Result<Vec<_>>>()?;
        let answer = BlindWithdrawalResponse {
            keyset_id: keyset.id(),
            signatures,
        };
        let withdrawal = Withdrawal {
            account: payload.account_id,
            claim,
            digest,
            total,
            response_key,
            answer,
            extra: Vec::new(),
        };
        self.commit_withdrawal(withdrawal, now).await
    }

    async fn check_spendable(&self, account: scrip_tokens::AccountId, total: Amount) -> Result<()> {
        let balance = self
            .store
            .balance(
                &scrip_stores::LedgerAccount::Customer(account),
                total.currency,
            )
            .await?;
        if balance < i128::from(total.minor_units) {
            return Err(IssuerError::InsufficientFunds { requested: total });
        }
        Ok(())
    }

    /// Identified withdrawal: debits the account and returns coins with fresh ids and the
    /// account's virtual id, signed openly. Amounts must be denominations of the
    /// currency's current keyset.
    pub async fn withdraw_identified<G: CryptoRng + Send + ?Sized>(
        &self,
        request: &IdentifiedWithdrawalRequest,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<IdentifiedWithdrawalResponse> {
        let request = self.authenticate(request).await?;
        self.withdraw_identified_authenticated(request, now, rng)
            .await
    }

    /// [`Self::withdraw_identified`] for a request whose signature was checked.
    pub async fn withdraw_identified_authenticated<G: CryptoRng + Send + ?Sized>(
        &self,
        request: Authenticated<'_, IdentifiedWithdrawalRequest>,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<IdentifiedWithdrawalResponse> {
        let device = request.signer();
        let request = request.request();
        let payload = &request.payload;
        self.check_active(device, payload.account_id, now).await?;
        self.check_coin_count(payload.amounts.len())?;
        let keys = self.keys();
        let keyset = keys
            .current_keyset(payload.currency, now)
            .ok_or(IssuerError::Unsupported("currency not served"))?;
        for v in &payload.amounts {
            keyset.keyset.key_for(*v)?;
        }
        let total = Amount::checked_sum(
            payload.currency,
            payload
                .amounts
                .iter()
                .map(|v| Amount::new(*v, payload.currency)),
        )?;
        let identity = WithdrawalIdentity::Identified {
            currency: payload.currency,
            amounts: payload.amounts.clone(),
        };
        let digest = codec::digest(&identity)?;
        let claim = ClaimId::Idempotency {
            scope: *payload.account_id.as_uuid(),
            key: payload.idempotency_key,
        };
        let response_key = key2(b"identified/", &claim.key_bytes());
        if let Some(answer) = self.previous_answer(&claim, digest, &response_key).await? {
            return Ok(answer);
        }
        let account = self.account(payload.account_id).await?;
        let signer = &keys.identified_coin_issuer.current(now)?.key;
        let coins = payload
            .amounts
            .iter()
            .map(|v| {
                Ok(IdentifiedCoin::sign(
                    IdentifiedCoinPayload {
                        coin_id: CoinId::random(rng),
                        amount: Amount::new(*v, payload.currency),
                        holder: account.virtual_id,
                        issued_at: now,
                    },
                    signer,
                    rng,
                )?)
            })
            .collect::<Result<Vec<_>>>()?;
        let mut writes = Vec::new();
        for coin in &coins {
            let id = coin.payload.coin_id;
            let doc = IdentifiedCoinDoc {
                coin: coin.clone(),
                account_id: payload.account_id,
                device_id: Some(payload.device_id),
            };
            writes.push(Write::put(
                IDENTIFIED_COINS,
                id.as_bytes().to_vec(),
                encode(&doc)?,
            ));
            writes.push(Write::put(
                DEVICE_COINS,
                key2(payload.device_id.as_bytes(), id.as_bytes()),
                Vec::new(),
            ));
        }
        let answer = IdentifiedWithdrawalResponse { coins };
        let withdrawal = Withdrawal {
            account: payload.account_id,
            claim,
            digest,
            total,
            response_key,
            answer,
            extra: writes,
        };
        self.commit_withdrawal(withdrawal, now).await
    }
}
