//! The fraud log, and what happens when a device is lost: revocation, and revoke-and-
//! reissue of its unspent identified coins.

use rand_core::CryptoRng;
use scrip_stores::{ClaimId, Claimant, CommitOutcome, RecordStore, Unit, Write};
use scrip_tokens::{
    codec, Coin, CoinId, ContentDigest, DeviceId, IdentifiedCoin, IdentifiedCoinPayload,
    IdentifiedWithdrawalResponse, Timestamp,
};

use crate::docs::{
    FraudEntry, IdentifiedCoinDoc, Mark, RevokedCoinDoc, DEVICE_COINS, FRAUD_LOG, IDENTIFIED_COINS,
    RESPONSES, REVOKED_COINS, REVOKED_DEVICES,
};
use crate::{encode, FundingSource, Issuer, IssuerError, Result, RETRIES};

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
                ClaimId::Custom {
                    namespace: "revoke-device".into(),
                    key: device_id.as_bytes().to_vec(),
                },
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
        let response_key = [b"reissue/".as_slice(), device_id.as_bytes()].concat();
        if let Some(done) = self
            .doc::<IdentifiedWithdrawalResponse>(RESPONSES, &response_key)
            .await?
        {
            return Ok(done.coins);
        }
        let mut coins: Vec<IdentifiedCoinDoc> = Vec::new();
        let mut after = device_id.as_bytes().to_vec();
        loop {
            let page = self.store.scan(DEVICE_COINS, Some(&after), 256).await?;
            let full = page.len() == 256;
            for (key, _) in &page {
                let (Some(prefix), Some(id)) = (key.get(..16), key.get(16..32)) else {
                    continue;
                };
                if prefix != device_id.as_bytes() {
                    break;
                }
                let coin_id =
                    CoinId(uuid::Uuid::from_bytes(id.try_into().map_err(|_| {
                        IssuerError::Corrupted("device coin key".into())
                    })?));
                if let Some(doc) = self.doc(IDENTIFIED_COINS, coin_id.as_bytes()).await? {
                    coins.push(doc);
                }
            }
            match page.last() {
                Some((key, _)) if full && key.starts_with(device_id.as_bytes()) => {
                    after = key.clone()
                }
                _ => break,
            }
        }
        let mut coins = coins
            .into_iter()
            .map(|doc| Ok((Coin::Identified(doc.coin.clone()).spend_id()?, doc)))
            .collect::<Result<Vec<_>>>()?;
        let signer_keys = self.keys();
        for _ in 0..RETRIES {
            // Skip coins spent meanwhile (claimed by a merchant, now or by scrip 0.1 under
            // the bare id): they are gone.
            let ids: Vec<ClaimId> = coins
                .iter()
                .flat_map(|(spend_id, doc)| {
                    [
                        ClaimId::Coin(*spend_id),
                        ClaimId::LegacyCoinId(doc.coin.payload.coin_id),
                    ]
                })
                .collect();
            let held = self.store.claims(&ids).await?;
            if held.len() != ids.len() {
                return Err(IssuerError::Corrupted(
                    "store answered another number of claims".into(),
                ));
            }
            coins = coins
                .into_iter()
                .zip(held.chunks(2))
                .filter_map(|(c, h)| h.iter().all(Option::is_none).then_some(c))
                .collect();
            let signer = &signer_keys.identified_coin_issuer.current(now)?.key;
            let mut unit = Unit::new(Claimant::Issuer, now);
            let mut fresh = Vec::new();
            for (old_spend_id, old) in &coins {
                let new = IdentifiedCoin::sign(
                    IdentifiedCoinPayload {
                        coin_id: CoinId::random(rng),
                        amount: old.coin.payload.amount,
                        holder: old.coin.payload.holder,
                        issued_at: now,
                    },
                    signer,
                    rng,
                )?;
                let old_id = old.coin.payload.coin_id;
                let new_id = new.payload.coin_id;
                unit = unit
                    .claim(
                        ClaimId::Coin(*old_spend_id),
                        codec::digest(&Coin::Identified(old.coin.clone()))?,
                    )
                    .write(Write::put(
                        REVOKED_COINS,
                        old_id.as_bytes().to_vec(),
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
                            account_id: old.account_id,
                            device_id: Some(to),
                        })?,
                    ))
                    .write(Write::put(
                        DEVICE_COINS,
                        [to.as_bytes().as_slice(), new_id.as_bytes()].concat(),
                        Vec::new(),
                    ));
                fresh.push(new);
            }
            let answer = IdentifiedWithdrawalResponse { coins: fresh };
            unit = unit.write(Write::put(
                RESPONSES,
                response_key.clone(),
                encode(&answer)?,
            ));
            match self.store.commit(unit).await? {
                CommitOutcome::Committed => return Ok(answer.coins),
                CommitOutcome::Repeated { .. } => {
                    if let Some(done) = self
                        .doc::<IdentifiedWithdrawalResponse>(RESPONSES, &response_key)
                        .await?
                    {
                        return Ok(done.coins);
                    }
                }
                // A coin was spent (or revoked by a concurrent call) meanwhile: look again.
                _ => {
                    if let Some(done) = self
                        .doc::<IdentifiedWithdrawalResponse>(RESPONSES, &response_key)
                        .await?
                    {
                        return Ok(done.coins);
                    }
                }
            }
        }
        Err(IssuerError::Store(scrip_stores::StoreError::Corrupted(
            "coins kept changing during reissue".into(),
        )))
    }

    /// Whether an identified coin was revoked, and its replacement.
    pub async fn revoked_coin(&self, coin_id: CoinId) -> Result<Option<RevokedCoinDoc>> {
        self.doc(REVOKED_COINS, coin_id.as_bytes()).await
    }
}
