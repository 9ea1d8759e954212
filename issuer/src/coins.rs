//! Coin issuance: blind withdrawals (the issuer signs blinded messages it cannot link to
//! later redemptions) and identified coins (the issuer picks the ids and writes the
//! holder's virtual id). Both debit the account into `coins-outstanding` and are
//! idempotent under the client's key: a retry gets the stored answer and is debited once.

use rand_core::CryptoRng;
use scrip_stores::{
    ClaimId, Claimant, CommitOutcome, Floor, LedgerAccount, Posting, RecordStore, Unit, Write,
};
use scrip_tokens::{
    codec, AccountId, Amount, BlindSignature, BlindWithdrawalRequest, BlindWithdrawalResponse,
    BlindedMessage, CoinId, Currency, IdentifiedCoin, IdentifiedCoinPayload,
    IdentifiedWithdrawalRequest, IdentifiedWithdrawalResponse, KeysetId, Message, Timestamp,
};
use serde::{Deserialize, Serialize};

use crate::authentication::Authenticated;
use crate::idempotency::{impossible_outcome, Answered, Idempotent};
use crate::schema::{
    coins_outstanding_account, device_coin_key, IdentifiedCoinDoc, ResponseKind, BLIND_RESPONSE,
    DEVICE_COINS, IDENTIFIED_COINS, IDENTIFIED_RESPONSE, RESPONSES,
};
use crate::{encode, FundingSource, Issuer, IssuerError, Keyring, KeysetKeys, Result};

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

impl WithdrawalIdentity {
    /// The withdrawal's claim: the client's key within the account, standing for the coins
    /// asked for, its answer kept as `kind`.
    fn idempotency(
        &self,
        account: AccountId,
        key: [u8; 32],
        kind: ResponseKind,
    ) -> Result<Idempotent> {
        let claim = ClaimId::Idempotency {
            scope: *account.as_uuid(),
            key,
        };
        Ok(Idempotent {
            answer_key: kind.key(&claim.key_bytes()),
            claim,
            digest: codec::digest(self)?,
            answers: RESPONSES,
        })
    }
}

/// A withdrawal ready to commit: the debit, the request it answers, the answer.
struct Withdrawal<T> {
    account: AccountId,
    idempotent: Idempotent,
    total: Amount,
    answer: T,
    /// The coins' own records (identified coins).
    extra: Vec<Write>,
}

/// The keyset `id`, provided it issues coins at `now`.
pub(crate) fn issuing_keyset(keys: &Keyring, id: KeysetId, now: Timestamp) -> Result<&KeysetKeys> {
    let set = keys
        .keyset(id)
        .ok_or(scrip_tokens::Error::UnknownKeyset(id))?;
    let keyset = &set.keyset;
    if now < keyset.validity().not_before || now > keyset.issue_until() {
        return Err(IssuerError::KeysetNotIssuing(id));
    }
    Ok(set)
}

/// One blind signature per `(denomination, blinded message)`, by `set`'s key for that
/// denomination.
pub(crate) fn sign_blinded<G: CryptoRng + ?Sized>(
    set: &KeysetKeys,
    coins: &[(u64, BlindedMessage)],
    rng: &mut G,
) -> Result<Vec<BlindSignature>> {
    coins
        .iter()
        .map(|(value, blinded)| {
            let key = set
                .keys
                .iter()
                .find(|(v, _)| v == value)
                .map(|(_, k)| k)
                .ok_or(scrip_tokens::Error::UnknownDenomination {
                    keyset_id: set.keyset.id(),
                    minor_units: *value,
                })?;
            Ok(key.sign_blinded(rng, blinded)?)
        })
        .collect()
}

impl<S: RecordStore, F: FundingSource> Issuer<S, F> {
    pub(crate) fn check_coin_count(&self, n: usize) -> Result<()> {
        if n == 0 {
            return Err(IssuerError::Unsupported("a withdrawal of no coins"));
        }
        if n > self.config.max_coins_per_withdrawal {
            return Err(IssuerError::Unsupported("too many coins in one withdrawal"));
        }
        Ok(())
    }

    /// Commits a withdrawal; a retry gets the stored answer instead.
    async fn commit_withdrawal<T: Message>(&self, w: Withdrawal<T>, now: Timestamp) -> Result<T> {
        let customer = LedgerAccount::Customer(w.account);
        let mut unit = Unit::new(Claimant::Account(w.account), now)
            .post(Posting::transfer(
                customer.clone(),
                coins_outstanding_account(),
                w.total,
                "coins withdrawn",
            ))
            .floor(Floor::non_negative(customer, w.total.currency));
        for write in w.extra {
            unit = unit.write(write);
        }
        match self.commit_answered(unit, &w.idempotent, w.answer).await? {
            Answered::Answer(answer) => Ok(answer),
            Answered::NotApplied(CommitOutcome::InsufficientFunds { .. }) => {
                Err(IssuerError::InsufficientFunds { requested: w.total })
            }
            // The request's claim is the unit's only one, so a conflict is always on it.
            Answered::NotApplied(other) => Err(impossible_outcome("withdrawal", &other)),
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
        let identity = WithdrawalIdentity::Blind {
            keyset_id: payload.keyset_id,
            coins: payload
                .coins
                .iter()
                .map(|(v, m)| (*v, m.0.clone()))
                .collect(),
        };
        let idempotent =
            identity.idempotency(payload.account_id, payload.idempotency_key, BLIND_RESPONSE)?;
        // The stored answer before any check that depends on the time or the keyring: a
        // retry after the keyset stopped issuing still gets the coins it paid for.
        if let Some(answer) = self.previous_answer(&idempotent).await? {
            return Ok(answer);
        }
        let keys = self.keys();
        let set = issuing_keyset(&keys, payload.keyset_id, now)?;
        let keyset = &set.keyset;
        let total = Amount::checked_sum(
            keyset.currency(),
            payload
                .coins
                .iter()
                .map(|(v, _)| Amount::new(*v, keyset.currency())),
        )?;
        // Blind signing costs a millisecond per coin: refuse what cannot be paid before
        // signing anything (the commit still checks the balance atomically). A copy of
        // this request that committed since the look above is what spent the balance.
        if let Err(refusal) = self.check_spendable(payload.account_id, total).await {
            return self.answered_or(&idempotent, refusal).await;
        }
        let signatures = sign_blinded(set, &payload.coins, rng)?;
        let answer = BlindWithdrawalResponse {
            keyset_id: keyset.id(),
            signatures,
        };
        let withdrawal = Withdrawal {
            account: payload.account_id,
            idempotent,
            total,
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
        let identity = WithdrawalIdentity::Identified {
            currency: payload.currency,
            amounts: payload.amounts.clone(),
        };
        let idempotent = identity.idempotency(
            payload.account_id,
            payload.idempotency_key,
            IDENTIFIED_RESPONSE,
        )?;
        // Before the keyring's checks, as for blind coins: a retry after a rotation still
        // gets its coins.
        if let Some(answer) = self.previous_answer(&idempotent).await? {
            return Ok(answer);
        }
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
                device_coin_key(payload.device_id, id),
                Vec::new(),
            ));
        }
        let answer = IdentifiedWithdrawalResponse { coins };
        let withdrawal = Withdrawal {
            account: payload.account_id,
            idempotent,
            total,
            answer,
            extra: writes,
        };
        self.commit_withdrawal(withdrawal, now).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account() -> AccountId {
        AccountId(uuid::Uuid::from_u128(1))
    }

    fn blind(values: &[u64]) -> WithdrawalIdentity {
        WithdrawalIdentity::Blind {
            keyset_id: KeysetId([5; 32]),
            coins: values.iter().map(|v| (*v, vec![1, 2, 3])).collect(),
        }
    }

    #[test]
    fn a_withdrawal_retried_under_its_key_is_the_same_request() {
        let first = blind(&[10, 20])
            .idempotency(account(), [7; 32], BLIND_RESPONSE)
            .unwrap();
        let retry = blind(&[10, 20])
            .idempotency(account(), [7; 32], BLIND_RESPONSE)
            .unwrap();
        assert_eq!((&first.claim, first.digest), (&retry.claim, retry.digest));
        assert_eq!(first.answer_key, retry.answer_key);
    }

    #[test]
    fn other_coins_under_a_used_key_are_another_request() {
        let first = blind(&[10, 20])
            .idempotency(account(), [7; 32], BLIND_RESPONSE)
            .unwrap();
        let more = blind(&[10, 20, 50])
            .idempotency(account(), [7; 32], BLIND_RESPONSE)
            .unwrap();
        assert_eq!(more.claim, first.claim);
        assert_ne!(more.digest, first.digest);
        let identified = WithdrawalIdentity::Identified {
            currency: Currency::EUR,
            amounts: vec![10, 20],
        }
        .idempotency(account(), [7; 32], IDENTIFIED_RESPONSE)
        .unwrap();
        assert_eq!(identified.claim, first.claim);
        assert_ne!(identified.digest, first.digest);
        assert_ne!(identified.answer_key, first.answer_key);
    }

    #[test]
    fn one_key_in_two_accounts_is_two_requests() {
        let mine = blind(&[10])
            .idempotency(account(), [7; 32], BLIND_RESPONSE)
            .unwrap();
        let theirs = blind(&[10])
            .idempotency(AccountId(uuid::Uuid::from_u128(2)), [7; 32], BLIND_RESPONSE)
            .unwrap();
        assert_ne!(mine.claim, theirs.claim);
    }
}
