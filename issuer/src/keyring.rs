//! The issuer's private keys, by role, each with a validity window; rotation; and the
//! public [`KeyDirectory`] derived from them. Pure: persistence is in
//! [`crate::keyring_files`].

use std::time::Duration;

use rand_core::CryptoRng;
use scrip_tokens::keys::{
    AccountCertifier, AnswerSigner, BalanceCertifier, DepositIssuer, DirectoryRoot,
    IdentifiedCoinIssuer, IssuerKeyRole, IssuerRole, MerchantCertifier, DEFAULT_RSA_BITS,
};
use scrip_tokens::{
    Backend, Currency, DenominationKeyEntry, DenominationSigningKey, IssuerKeyEntry, KeyDirectory,
    Keyset, KeysetId, SignedKeyDirectory, SigningKey, Timestamp, Validity,
};
use sha2::{Digest, Sha256};

use crate::{IssuerError, Result};

/// Domain separation of [`Keyring::fingerprint`]: a fingerprint is never a hash of anything
/// else the issuer hashes.
const FINGERPRINT_DOMAIN: &[u8] = b"scrip/issuer/keyring-fingerprint/v1";

/// What keys a new keyring gets.
#[derive(Clone, Debug)]
pub struct KeyringConfig {
    /// Currencies and their denominations (minor units), e.g. EUR 1-2-5 series.
    pub denominations: Vec<(Currency, Vec<u64>)>,
    /// How long an issuer signing key is valid.
    pub key_lifetime: Duration,
    /// How long wallets may withdraw from a new keyset.
    pub keyset_issue_period: Duration,
    /// How long coins of a keyset stay redeemable after issuance stops.
    pub keyset_redeem_grace: Duration,
    /// RSA modulus size of generated keys.
    pub rsa_bits: usize,
}

impl Default for KeyringConfig {
    fn default() -> Self {
        KeyringConfig {
            denominations: vec![(Currency::EUR, one_two_five(1, 20_000))],
            key_lifetime: Duration::from_secs(2 * 365 * 86_400),
            keyset_issue_period: Duration::from_secs(365 * 86_400),
            keyset_redeem_grace: Duration::from_secs(365 * 86_400),
            rsa_bits: DEFAULT_RSA_BITS,
        }
    }
}

/// The 1-2-5 series from `from` to `to` minor units inclusive: 1, 2, 5, 10, 20, 50, ...
pub fn one_two_five(from: u64, to: u64) -> Vec<u64> {
    let mut out = Vec::new();
    let mut decade: u64 = 1;
    while decade <= to {
        for step in [1, 2, 5] {
            if let Some(v) = decade.checked_mul(step) {
                if (from..=to).contains(&v) {
                    out.push(v);
                }
            }
        }
        decade = match decade.checked_mul(10) {
            Some(d) => d,
            None => break,
        };
    }
    out
}

/// A signing key of role `R` with the window in which its signatures are accepted.
pub struct IssuerKey<R: IssuerRole> {
    /// The key.
    pub key: SigningKey<R>,
    /// When its signatures are accepted.
    pub validity: Validity,
}

impl<R: IssuerRole> IssuerKey<R> {
    /// The key id of the public key.
    pub fn key_id(&self) -> scrip_tokens::KeyId {
        self.key.key_id()
    }

    /// The end of a token signed now with a lifetime ending at `wanted`: no later than this
    /// key's own end, since a signature is only accepted while its key is valid.
    pub fn cap(&self, wanted: Timestamp) -> Timestamp {
        wanted.min(self.validity.not_after)
    }
}

/// Every key of one role, oldest first. The newest one valid at `now` signs.
pub struct RoleKeys<R: IssuerRole> {
    keys: Vec<IssuerKey<R>>,
}

impl<R: IssuerRole> RoleKeys<R> {
    /// Keys of one role (at least one).
    pub fn new(keys: Vec<IssuerKey<R>>) -> Result<Self> {
        if keys.is_empty() {
            return Err(IssuerError::Keyring(format!("no {} key", R::NAME)));
        }
        Ok(RoleKeys { keys })
    }

    /// The key that signs at `now`: of those valid at `now`, the one that became valid
    /// last. Whatever it signs must not outlive `validity.not_after` (after that its
    /// signatures are no longer accepted): see [`IssuerKey::cap`].
    pub fn current(&self, now: Timestamp) -> Result<&IssuerKey<R>> {
        self.keys
            .iter()
            .filter(|k| k.validity.contains(now))
            .max_by_key(|k| k.validity.not_before)
            .ok_or_else(|| IssuerError::Keyring(format!("no {} key valid now", R::NAME)))
    }

    /// All keys, oldest first.
    pub fn all(&self) -> &[IssuerKey<R>] {
        &self.keys
    }

    /// Adds a key that takes over signing from `validity.not_before`; older keys keep
    /// verifying until they expire.
    pub fn rotate(&mut self, key: SigningKey<R>, validity: Validity) {
        self.keys.push(IssuerKey { key, validity });
    }

    fn on_backend(self, backend: Backend) -> Self {
        RoleKeys {
            keys: self
                .keys
                .into_iter()
                .map(|k| IssuerKey {
                    key: moved(&k.key, backend, SigningKey::on_backend, SigningKey::backend),
                    validity: k.validity,
                })
                .collect(),
        }
    }

    /// Feeds every key's public half and validity, oldest first, into a fingerprint.
    fn fingerprint_into(&self, hasher: &mut Sha256) {
        hash_bytes(hasher, R::NAME.as_bytes());
        hash_len(hasher, self.keys.len());
        for k in &self.keys {
            hash_bytes(hasher, k.key.verifying_key().public_key().to_spki_der());
            hash_validity(hasher, k.validity);
        }
    }

    fn entries(&self, now: Timestamp) -> impl Iterator<Item = IssuerKeyEntry> + '_ {
        self.keys
            .iter()
            .filter(move |k| k.validity.not_after >= now)
            .map(|k| IssuerKeyEntry {
                role: R::KIND,
                key: k.key.verifying_key().public_key().clone(),
                validity: k.validity,
            })
    }
}

/// One keyset with its private keys.
pub struct KeysetKeys {
    /// The public keyset.
    pub keyset: Keyset,
    /// (denomination, private key), by increasing denomination.
    pub keys: Vec<(u64, DenominationSigningKey)>,
}

impl KeysetKeys {
    /// A keyset over `keys`; fails if the keys do not form a valid keyset.
    pub fn new(
        currency: Currency,
        validity: Validity,
        issue_until: Timestamp,
        mut keys: Vec<(u64, DenominationSigningKey)>,
    ) -> Result<Self> {
        keys.sort_by_key(|(v, _)| *v);
        let entries = keys
            .iter()
            .map(|(v, k)| DenominationKeyEntry {
                minor_units: *v,
                key: k.verifying_key().clone(),
            })
            .collect();
        let keyset = Keyset::new(currency, validity, issue_until, entries)?;
        Ok(KeysetKeys { keyset, keys })
    }
}

/// All private keys of the issuer.
pub struct Keyring {
    /// Signs the key directory; its public key is what wallets and merchants pin.
    pub root: SigningKey<DirectoryRoot>,
    /// Account certificates.
    pub account_certifier: RoleKeys<AccountCertifier>,
    /// Merchant certificates.
    pub merchant_certifier: RoleKeys<MerchantCertifier>,
    /// Balance certificates.
    pub balance_certifier: RoleKeys<BalanceCertifier>,
    /// Deposit records.
    pub deposit_issuer: RoleKeys<DepositIssuer>,
    /// Identified coins.
    pub identified_coin_issuer: RoleKeys<IdentifiedCoinIssuer>,
    /// Signed answers: redemption and sync reports, statements.
    pub answer_signer: RoleKeys<AnswerSigner>,
    /// Blind-coin keysets, oldest first.
    pub keysets: Vec<KeysetKeys>,
}

/// `key` on `backend`; a key that cannot move there (held elsewhere, or refused by the
/// backend) stays where it is, with a warning: it signs the same, only slower.
fn moved<K: Clone + std::fmt::Debug>(
    key: &K,
    backend: Backend,
    on_backend: impl Fn(&K, Backend) -> scrip_tokens::Result<K>,
    current: impl Fn(&K) -> Backend,
) -> K {
    if current(key) == backend {
        return key.clone();
    }
    match on_backend(key, backend) {
        Ok(moved) => moved,
        Err(e) => {
            tracing::warn!(?key, %backend, error = %e, "key stays on its backend");
            key.clone()
        }
    }
}

fn one<R: IssuerRole>(key: SigningKey<R>, validity: Validity) -> Result<RoleKeys<R>> {
    RoleKeys::new(vec![IssuerKey { key, validity }])
}

impl Keyring {
    /// Every key held in this process moved onto `backend` (the server: the fastest
    /// compiled in), public keys included, so that what the directory lists verifies there
    /// too. Same keys, ids, keysets and fingerprint; a key held elsewhere stays there.
    pub fn on_backend(self, backend: Backend) -> Keyring {
        let keysets = self
            .keysets
            .into_iter()
            .map(|set| {
                let keys = set
                    .keys
                    .iter()
                    .map(|(v, k)| {
                        let k = moved(
                            k,
                            backend,
                            DenominationSigningKey::on_backend,
                            DenominationSigningKey::backend,
                        );
                        (*v, k)
                    })
                    .collect();
                let keyset = &set.keyset;
                match KeysetKeys::new(
                    keyset.currency(),
                    keyset.validity(),
                    keyset.issue_until(),
                    keys,
                ) {
                    Ok(moved) if moved.keyset.id() == keyset.id() => moved,
                    // The same keys make the same keyset; should that ever fail, this
                    // keyset keeps verifying and signing as it did.
                    _ => {
                        tracing::warn!(keyset = %keyset.id(), %backend, "keyset stays on its backend");
                        set
                    }
                }
            })
            .collect();
        Keyring {
            root: moved(
                &self.root,
                backend,
                SigningKey::on_backend,
                SigningKey::backend,
            ),
            account_certifier: self.account_certifier.on_backend(backend),
            merchant_certifier: self.merchant_certifier.on_backend(backend),
            balance_certifier: self.balance_certifier.on_backend(backend),
            deposit_issuer: self.deposit_issuer.on_backend(backend),
            identified_coin_issuer: self.identified_coin_issuer.on_backend(backend),
            answer_signer: self.answer_signer.on_backend(backend),
            keysets,
        }
    }

    /// Generates every key (slow: one RSA key generation per role and denomination).
    pub fn generate<G: CryptoRng + ?Sized>(
        config: &KeyringConfig,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<Self> {
        let bits = config.rsa_bits;
        let validity = Validity::starting_at(now, config.key_lifetime);
        let mut keyring = Keyring {
            root: SigningKey::generate(rng, bits)?,
            account_certifier: one(SigningKey::generate(rng, bits)?, validity)?,
            merchant_certifier: one(SigningKey::generate(rng, bits)?, validity)?,
            balance_certifier: one(SigningKey::generate(rng, bits)?, validity)?,
            deposit_issuer: one(SigningKey::generate(rng, bits)?, validity)?,
            identified_coin_issuer: one(SigningKey::generate(rng, bits)?, validity)?,
            answer_signer: one(SigningKey::generate(rng, bits)?, validity)?,
            keysets: Vec::new(),
        };
        for (currency, denominations) in &config.denominations {
            keyring.add_keyset(*currency, denominations, config, now, rng)?;
        }
        Ok(keyring)
    }

    /// Generates a new keyset for `currency`, open for issuance from `now`. Older keysets
    /// of the currency stay redeemable until their validity ends.
    pub fn add_keyset<G: CryptoRng + ?Sized>(
        &mut self,
        currency: Currency,
        denominations: &[u64],
        config: &KeyringConfig,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<KeysetId> {
        let keys = denominations
            .iter()
            .map(|v| Ok((*v, DenominationSigningKey::generate(rng, config.rsa_bits)?)))
            .collect::<Result<Vec<_>>>()?;
        let issue_until = now.saturating_add(config.keyset_issue_period);
        let validity = Validity::new(now, issue_until.saturating_add(config.keyset_redeem_grace))?;
        let keys = KeysetKeys::new(currency, validity, issue_until, keys)?;
        let id = keys.keyset.id();
        self.keysets.push(keys);
        Ok(id)
    }

    /// Replaces the signing key of `role` from `now` on: generates a new key valid for
    /// `lifetime`; the old key keeps verifying until its own validity ends.
    pub fn rotate<G: CryptoRng + ?Sized>(
        &mut self,
        role: IssuerKeyRole,
        now: Timestamp,
        lifetime: Duration,
        bits: usize,
        rng: &mut G,
    ) -> Result<()> {
        let validity = Validity::starting_at(now, lifetime);
        match role {
            IssuerKeyRole::AccountCertificate => self
                .account_certifier
                .rotate(SigningKey::generate(rng, bits)?, validity),
            IssuerKeyRole::MerchantCertificate => self
                .merchant_certifier
                .rotate(SigningKey::generate(rng, bits)?, validity),
            IssuerKeyRole::BalanceCertificate => self
                .balance_certifier
                .rotate(SigningKey::generate(rng, bits)?, validity),
            IssuerKeyRole::Deposit => self
                .deposit_issuer
                .rotate(SigningKey::generate(rng, bits)?, validity),
            IssuerKeyRole::IdentifiedCoin => self
                .identified_coin_issuer
                .rotate(SigningKey::generate(rng, bits)?, validity),
            IssuerKeyRole::Answer => self
                .answer_signer
                .rotate(SigningKey::generate(rng, bits)?, validity),
            _ => return Err(IssuerError::Unsupported("unknown key role")),
        }
        Ok(())
    }

    /// SHA-256 over the keyring's public half: the root key, every key of every role with
    /// its validity (roles in a fixed order, keys oldest first), and every keyset (id,
    /// currency, windows, each denomination's public key). Two keyrings with the same
    /// fingerprint verify and sign as one, so the servers of a cluster compare it with the
    /// one the operator published before they serve. No private material goes in: the
    /// fingerprint is published in the database and printed by the operator commands.
    pub fn fingerprint(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(FINGERPRINT_DOMAIN);
        hash_bytes(&mut h, self.root.verifying_key().public_key().to_spki_der());
        self.account_certifier.fingerprint_into(&mut h);
        self.merchant_certifier.fingerprint_into(&mut h);
        self.balance_certifier.fingerprint_into(&mut h);
        self.deposit_issuer.fingerprint_into(&mut h);
        self.identified_coin_issuer.fingerprint_into(&mut h);
        self.answer_signer.fingerprint_into(&mut h);
        hash_len(&mut h, self.keysets.len());
        for set in &self.keysets {
            let keyset = &set.keyset;
            h.update(keyset.id().as_bytes());
            hash_bytes(&mut h, keyset.currency().as_str().as_bytes());
            hash_validity(&mut h, keyset.validity());
            h.update(keyset.issue_until().as_unix_millis().to_be_bytes());
            hash_len(&mut h, set.keys.len());
            for (minor_units, key) in &set.keys {
                h.update(minor_units.to_be_bytes());
                hash_bytes(&mut h, key.verifying_key().public_key().to_spki_der());
            }
        }
        h.finalize().into()
    }

    /// The keyset wallets withdraw `currency` coins from at `now`.
    pub fn current_keyset(&self, currency: Currency, now: Timestamp) -> Option<&KeysetKeys> {
        self.keysets
            .iter()
            .filter(|k| {
                k.keyset.currency() == currency
                    && k.keyset.validity().not_before <= now
                    && now <= k.keyset.issue_until()
            })
            .max_by_key(|k| k.keyset.validity().not_before)
    }

    /// The keyset `id` with its private keys.
    pub fn keyset(&self, id: KeysetId) -> Option<&KeysetKeys> {
        self.keysets.iter().find(|k| k.keyset.id() == id)
    }

    /// Currencies the issuer has keysets for.
    pub fn currencies(&self) -> Vec<Currency> {
        let mut out: Vec<Currency> = self.keysets.iter().map(|k| k.keyset.currency()).collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The public directory at `now`: every key and keyset whose validity has not ended
    /// (keys not valid yet are included, so caches have them in time).
    pub fn directory(&self, now: Timestamp) -> Result<KeyDirectory> {
        let issuer_keys = self
            .account_certifier
            .entries(now)
            .chain(self.merchant_certifier.entries(now))
            .chain(self.balance_certifier.entries(now))
            .chain(self.deposit_issuer.entries(now))
            .chain(self.identified_coin_issuer.entries(now))
            .chain(self.answer_signer.entries(now))
            .collect();
        let keysets = self
            .keysets
            .iter()
            .filter(|k| k.keyset.validity().not_after >= now)
            .map(|k| k.keyset.clone())
            .collect();
        Ok(KeyDirectory::new(now, issuer_keys, keysets)?)
    }

    /// The directory at `now`, signed by the root key.
    pub fn signed_directory<G: CryptoRng + ?Sized>(
        &self,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<SignedKeyDirectory> {
        Ok(SignedKeyDirectory::sign(
            self.directory(now)?,
            &self.root,
            rng,
        )?)
    }
}

/// Length-prefixed, so that no two sequences of fields hash alike.
fn hash_bytes(h: &mut Sha256, bytes: &[u8]) {
    hash_len(h, bytes.len());
    h.update(bytes);
}

fn hash_len(h: &mut Sha256, len: usize) {
    h.update(u64::try_from(len).unwrap_or(u64::MAX).to_be_bytes());
}

fn hash_validity(h: &mut Sha256, validity: Validity) {
    h.update(validity.not_before.as_unix_millis().to_be_bytes());
    h.update(validity.not_after.as_unix_millis().to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_two_five_series() {
        assert_eq!(one_two_five(1, 100), vec![1, 2, 5, 10, 20, 50, 100]);
        assert_eq!(one_two_five(5, 60), vec![5, 10, 20, 50]);
        assert_eq!(one_two_five(1, 1), vec![1]);
        assert!(one_two_five(3, 4).is_empty());
        assert_eq!(one_two_five(1, u64::MAX).len(), 58);
    }
}
