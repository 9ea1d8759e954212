//! The fraud log, and what happens when a device is lost: revocation, and revoke-and-
//! reissue of its unspent identified coins.

use rand_core::CryptoRng;
use scrip_stores::{ClaimId, Claimant, CommitOutcome, ExistingClaim, RecordStore, Unit, Write};
use scrip_tokens::keys::{IdentifiedCoinIssuer, SigningKey};
use scrip_tokens::{
    codec, Coin, CoinId, CoinSpendId, ContentDigest, DeviceId, IdentifiedCoin,
    IdentifiedCoinPayload, IdentifiedWithdrawalResponse, Timestamp,
};

use crate::schema::{
    device_coin_key, parse_device_coin_key, FraudEntry, IdentifiedCoinDoc, Mark, RevokedCoinDoc,
    DEVICE_COINS, FRAUD_LOG, IDENTIFIED_COINS, REISSUE, REISSUE_RESPONSE, RESPONSES, REVOKED_COINS,
    REVOKED_DEVICES, REVOKE_DEVICE,
};
use crate::{encode, FundingSource, Issuer, IssuerError, Result, RETRIES};

/// An identified coin issued to a device, and the spend id a merchant redeems it under.
struct IssuedCoin {
    spend_id: CoinSpendId,
    doc: IdentifiedCoinDoc,
}

/// How many claims mark one coin spent (see [`IssuedCoin::spent_claims`]).
const SPENT_CLAIMS: usize = 2;

impl IssuedCoin {
    fn new(doc: IdentifiedCoinDoc) -> Result<Self> {
        Ok(IssuedCoin {
            spend_id: Coin::Identified(doc.coin.clone()).spend_id()?,
            doc,
        })
    }

    /// The claims that mark it spent: its spend id, or its bare id by scrip 0.1.
    fn spent_claims(&self) -> [ClaimId; SPENT_CLAIMS] {
        [
            ClaimId::Coin(self.spend_id),
            ClaimId::LegacyCoinId(self.doc.coin.payload.coin_id),
        ]
    }
}

/// The items none of whose claims is held (`held`: [`SPENT_CLAIMS`] existing claims per
/// item, in order): coins spent meanwhile are gone and are not reissued.
fn unspent<T>(items: Vec<T>, held: &[Option<ExistingClaim>]) -> Vec<T> {
    items
        .into_iter()
        .zip(held.chunks(SPENT_CLAIMS))
        .filter(|(_, claims)| claims.iter().all(Option::is_none))
        .map(|(item, _)| item)
        .collect()
}

/// A reissue ready to commit: the unit and the coins it issues.
struct Reissue {
    unit: Unit,
    coins: Vec<IdentifiedCoin>,
}

/// Revokes `coins` and issues their values again to `to`: the same holder, fresh ids. An
/// old coin is claimed by the issuer, so whoever spends it later is refused
/// (`DoubleSpent`). The answer is stored in the same unit, under `answer_key`, with the
/// claim of the reissue of `lost`: a concurrent reissue whose unit read other coins (or
/// none left) conflicts on it instead of storing its answer over this one.
fn reissue<G: CryptoRng + ?Sized>(
    coins: &[IssuedCoin],
    lost: DeviceId,
    to: DeviceId,
    answer_key: &[u8],
    signer: &SigningKey<IdentifiedCoinIssuer>,
    now: Timestamp,
    rng: &mut G,
) -> Result<Reissue> {
    let mut unit = Unit::new(Claimant::Issuer, now).claim(
        REISSUE.claim(lost.as_bytes().to_vec()),
        ContentDigest::of(lost.as_bytes()),
    );
    let mut fresh = Vec::with_capacity(coins.len());
    for old in coins {
        let old_coin = &old.doc.coin;
        let new = IdentifiedCoin::sign(
            IdentifiedCoinPayload {
                coin_id: CoinId::random(rng),
                amount: old_coin.payload.amount,
                holder: old_coin.payload.holder,
                issued_at: now,
            },
            signer,
            rng,
        )?;
        let new_id = new.payload.coin_id;
        unit = unit
            .claim(
                ClaimId::Coin(old.spend_id),
                codec::digest(&Coin::Identified(old_coin.clone()))?,
            )
            .write(Write::put(
                REVOKED_COINS,
                old_coin.payload.coin_id.as_bytes().to_vec(),
                encode(&RevokedCoinDoc {
                    at: now,
                    replacement: new_id,
                })?,
            ))
            .write(Write::put(
                IDENTIFIED_COINS,
                new_id.as_bytes().to_vec(),
                encode(&IdentifiedCoinDoc {
                    coin: new.clone(),
                    account_id: old.doc.account_id,
                    device_id: Some(to),
                })?,
            ))
            .write(Write::put(
                DEVICE_COINS,
                device_coin_key(to, new_id),
                Vec::new(),
            ));
        fresh.push(new);
    }
    let answer = IdentifiedWithdrawalResponse { coins: fresh };
    Ok(Reissue {
        unit: unit.write(Write::put(RESPONSES, answer_key.to_vec(), encode(&answer)?)),
        coins: answer.coins,
    })
}

impl<S: RecordStore, F: FundingSource> Issuer<S, F> {
    /// The fraud log, oldest first: double-spend attempts (with the holder of identified
    /// coins), equivocations, overspends. `after` is the key of the last entry seen.
    pub async fn fraud_log(
        &self,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, FraudEntry)>> {
        self.store
            .scan(FRAUD_LOG, after, limit.min(crate::MAX_PAGE))
            .await?
            .into_iter()
            .map(|(k, v)| {
                codec::decode(&v)
                    .map(|e| (k, e))
                    .map_err(|e| IssuerError::Corrupted(format!("fraud log: {e}")))
            })
            .collect()
    }

    /// Revokes a device (lost or stolen): from `now` on it gets no certificates or coins,
    /// and records it signs after `now` are refused. Records it signed before stay valid:
    /// merchants accepted them in good faith. Idempotent; returns the revocation time.
    pub async fn revoke_device(&self, device_id: DeviceId, now: Timestamp) -> Result<Timestamp> {
        self.device(device_id).await?;
        let unit = Unit::new(Claimant::Issuer, now)
            .claim(
                REVOKE_DEVICE.claim(device_id.as_bytes().to_vec()),
                ContentDigest::of(device_id.as_bytes()),
            )
            .write(Write::put(
                REVOKED_DEVICES,
                device_id.as_bytes().to_vec(),
                encode(&Mark {
                    at: now,
                    reason: "device revoked".into(),
                })?,
            ));
        match self.store.commit(unit).await? {
            CommitOutcome::Committed => Ok(now),
            _ => Ok(self.revoked(device_id).await?.map(|m| m.at).unwrap_or(now)),
        }
    }

    /// Revokes the unspent identified coins issued to a revoked device and issues the same
    /// values as new coins (same holder virtual id, fresh ids) to `to`, an active device of
    /// the same account, under which they can be revoked again if it is lost in turn. A
    /// revoked coin is claimed by the issuer, so a thief who spends it is refused at
    /// redemption (`DoubleSpent`); a merchant who accepted one offline from the thief is not
    /// paid either (the price of revocable coins, see the README). Coins already redeemed
    /// are left alone. Idempotent: a second call returns the coins issued by the first.
    pub async fn reissue_identified_coins<G: CryptoRng + Send + ?Sized>(
        &self,
        device_id: DeviceId,
        to: DeviceId,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<Vec<IdentifiedCoin>> {
        if self.revoked(device_id).await?.is_none() {
            return Err(IssuerError::Unsupported(
                "revoke the device before reissuing its coins",
            ));
        }
        let lost = self.device(device_id).await?;
        // Allowed for frozen accounts too: taking the coins out of a thief's hands is
        // protective whatever else the account did.
        let heir = self.device(to).await?;
        self.check_unrevoked(&heir, lost.certificate.payload.account_id, now)
            .await?;
        let answer_key = REISSUE_RESPONSE.key(device_id.as_bytes());
        if let Some(coins) = self.reissued(&answer_key).await? {
            return Ok(coins);
        }
        let mut coins = self.coins_issued_to(device_id).await?;
        let keys = self.keys();
        for _ in 0..RETRIES {
            coins = self.unspent_coins(coins).await?;
            let signer = &keys.identified_coin_issuer.current(now)?.key;
            let reissue = reissue(&coins, device_id, to, &answer_key, signer, now, rng)?;
            if self.store.commit(reissue.unit).await? == CommitOutcome::Committed {
                return Ok(reissue.coins);
            }
            // A concurrent call reissued them (its answer stands), or a coin was spent
            // meanwhile: look again.
            if let Some(coins) = self.reissued(&answer_key).await? {
                return Ok(coins);
            }
        }
        Err(IssuerError::Contended {
            operation: "reissuing identified coins",
        })
    }

    async fn reissued(&self, answer_key: &[u8]) -> Result<Option<Vec<IdentifiedCoin>>> {
        Ok(self
            .doc::<IdentifiedWithdrawalResponse>(RESPONSES, answer_key)
            .await?
            .map(|answer| answer.coins))
    }

    /// The identified coins issued (or reissued) to `device_id`, spent or not.
    async fn coins_issued_to(&self, device_id: DeviceId) -> Result<Vec<IssuedCoin>> {
        const PAGE: usize = 256;
        let mut coins = Vec::new();
        let mut after = device_id.as_bytes().to_vec();
        loop {
            let page = self.store.scan(DEVICE_COINS, Some(&after), PAGE).await?;
            for (key, _) in &page {
                let (device, coin_id) = parse_device_coin_key(key)
                    .ok_or_else(|| IssuerError::Corrupted("device coin key".into()))?;
                if device != device_id {
                    return Ok(coins);
                }
                if let Some(doc) = self.doc(IDENTIFIED_COINS, coin_id.as_bytes()).await? {
                    coins.push(IssuedCoin::new(doc)?);
                }
            }
            match page.last() {
                Some((key, _)) if page.len() == PAGE => after = key.clone(),
                _ => return Ok(coins),
            }
        }
    }

    /// `coins` less those spent by now (claimed by a merchant, now or by scrip 0.1 under
    /// the bare id).
    async fn unspent_coins(&self, coins: Vec<IssuedCoin>) -> Result<Vec<IssuedCoin>> {
        let ids: Vec<ClaimId> = coins.iter().flat_map(IssuedCoin::spent_claims).collect();
        let held = self.held_claims(&ids).await?;
        Ok(unspent(coins, &held))
    }

    /// Whether an identified coin was revoked, and its replacement.
    pub async fn revoked_coin(&self, coin_id: CoinId) -> Result<Option<RevokedCoinDoc>> {
        self.doc(REVOKED_COINS, coin_id.as_bytes()).await
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use scrip_stores::Claimant;
    use scrip_tokens::{AccountId, Amount, Currency, VirtualId};

    use super::*;

    const NOW: Timestamp = Timestamp::from_unix_millis(1_700_000_000_000);

    fn claim() -> Option<ExistingClaim> {
        Some(ExistingClaim {
            claimant: Claimant::Merchant(scrip_tokens::MerchantId(uuid::Uuid::from_u128(1))),
            claimed_at: NOW,
            digest: ContentDigest::of(b"payment"),
        })
    }

    #[test]
    fn a_coin_spent_under_its_spend_id_or_its_bare_id_is_not_reissued() {
        let held = [None, None, claim(), None, None, claim()];
        assert_eq!(
            unspent(vec!["kept", "spent", "spent by 0.1"], &held),
            ["kept"]
        );
    }

    #[test]
    fn a_reissued_coin_keeps_its_holder_and_value_and_revokes_the_old_one() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let signer = scrip_tokens::fixtures::identified_coin_issuer();
        let old = IdentifiedCoin::sign(
            IdentifiedCoinPayload {
                coin_id: CoinId(uuid::Uuid::from_u128(5)),
                amount: Amount::new(200, Currency::EUR),
                holder: VirtualId(uuid::Uuid::from_u128(6)),
                issued_at: Timestamp::from_unix_millis(1),
            },
            &signer,
            &mut rng,
        )
        .unwrap();
        let old = IssuedCoin::new(IdentifiedCoinDoc {
            coin: old,
            account_id: AccountId(uuid::Uuid::from_u128(7)),
            device_id: Some(DeviceId(uuid::Uuid::from_u128(8))),
        })
        .unwrap();
        let heir = DeviceId(uuid::Uuid::from_u128(9));
        let done = reissue(
            std::slice::from_ref(&old),
            DeviceId(uuid::Uuid::from_u128(8)),
            heir,
            b"answer",
            &signer,
            NOW,
            &mut rng,
        )
        .unwrap();

        let [new] = &done.coins[..] else {
            panic!("one coin in, one coin out: {:?}", done.coins)
        };
        let (before, after) = (&old.doc.coin.payload, &new.payload);
        assert_eq!((after.amount, after.holder), (before.amount, before.holder));
        assert_ne!(after.coin_id, before.coin_id);
        assert!(
            done.unit
                .claims
                .iter()
                .any(|c| c.id == ClaimId::Coin(old.spend_id)),
            "the old coin must be claimed so that spending it is refused"
        );
        assert!(
            done.unit
                .writes
                .iter()
                .any(|w| w.collection == DEVICE_COINS
                    && w.key == device_coin_key(heir, after.coin_id))
        );
    }
}
