//! A real wallet (`scrip_wallet::Wallet`) driven the way a vendor's app must drive it.

use rand::rngs::StdRng;
use scrip_stores::RecordStore;
use scrip_tokens::fixtures::{self, NOW};
use scrip_tokens::*;
use scrip_wallet::{CertificateOptions, SavedWallet, StorageKey, Unreleased, Wallet};

use crate::keyring::{root, TestIssuer};
use crate::{eur, eurs, rng};

/// Certificate options: at most `amount` EUR minor units, no other rule.
pub fn up_to(amount: u64) -> CertificateOptions {
    CertificateOptions::up_to(eur(amount))
}

/// A wallet with its storage key and the last saved state: every message goes through
/// save-then-release like a real vendor's would, so a test can crash the phone at any point
/// and restart it from what was in storage.
pub struct Phone {
    /// The wallet in memory.
    pub wallet: Wallet,
    /// The key its storage is encrypted under.
    pub storage_key: StorageKey,
    /// What storage holds: the last save, if any.
    pub saved: Option<SavedWallet>,
    /// The phone's own randomness (seeded, so a test replays).
    pub rng: StdRng,
}

impl Phone {
    /// Saves the wallet, keeps the bytes as "storage", releases the message.
    pub fn send<T>(&mut self, message: Unreleased<T>) -> T {
        let saved = self.wallet.save(&self.storage_key, &mut self.rng).unwrap();
        let message = message.release(&saved).unwrap();
        self.saved = Some(saved);
        message
    }

    /// One exchange with the issuer: saves and releases `request`, has the issuer `answer`
    /// it, and `apply`s the answer to the wallet (not saved: tests choose when to save).
    async fn exchange<Req, Resp, Out>(
        &mut self,
        request: Unreleased<Req>,
        answer: impl AsyncFnOnce(&Req, &mut StdRng) -> Resp,
        apply: impl FnOnce(&mut Wallet, &Req, Resp, &mut StdRng) -> scrip_wallet::Result<Out>,
    ) -> Out {
        let request = self.send(request);
        let response = answer(&request, &mut self.rng).await;
        apply(&mut self.wallet, &request, response, &mut self.rng).unwrap()
    }

    /// Saves the wallet now (storage holds these bytes from here on).
    pub fn save(&mut self) {
        self.saved = Some(self.wallet.save(&self.storage_key, &mut self.rng).unwrap());
    }

    /// The process dies and restarts: the wallet in memory is gone, the one in storage is
    /// opened again.
    pub fn crash_and_restart(&mut self) {
        let bytes = self.saved.as_ref().expect("nothing saved").bytes().to_vec();
        self.wallet = Wallet::load(&bytes, &self.storage_key).unwrap();
    }

    /// A wallet with fixture device key `n` and the issuer's directory, not registered;
    /// its generator is seeded by `seed`.
    pub fn new<S: RecordStore>(issuer: &TestIssuer<S>, n: u8, seed: u64) -> Phone {
        let mut rng = rng(seed);
        let mut wallet = Wallet::new(fixtures::device(n), root()).unwrap();
        wallet
            .update_directory(issuer.key_directory(NOW, &mut rng).unwrap(), NOW)
            .unwrap();
        let storage_key = StorageKey::random(&mut rng);
        Phone {
            wallet,
            storage_key,
            saved: None,
            rng,
        }
    }

    /// A registered wallet with fixture device key `n` and `deposit` on its account.
    pub async fn open<S: RecordStore>(
        issuer: &TestIssuer<S>,
        n: u8,
        deposit: u64,
        seed: u64,
    ) -> Phone {
        let mut phone = Phone::new(issuer, n, seed);
        let registration = phone
            .wallet
            .registration_request(None, NOW, &mut phone.rng)
            .unwrap();
        let registration = phone.send(registration);
        let opened = issuer
            .open_account(&registration, NOW, &mut phone.rng)
            .await
            .unwrap();
        phone
            .wallet
            .on_account_certificate(opened.certificate, NOW)
            .unwrap();
        if deposit > 0 {
            phone.deposit(issuer, deposit).await;
        }
        phone
    }

    /// A second device (fixture key `n`) of `existing`'s account, approved by it.
    pub async fn join<S: RecordStore>(
        issuer: &TestIssuer<S>,
        existing: &mut Phone,
        n: u8,
        seed: u64,
    ) -> Phone {
        let mut phone = Phone::new(issuer, n, seed);
        let account = existing.wallet.account().unwrap().account_id;
        let registration = phone
            .wallet
            .registration_request(Some(account), NOW, &mut phone.rng)
            .unwrap();
        let registration = phone.send(registration);
        let approval = existing
            .wallet
            .approve_device(phone.wallet.device_key_id(), NOW, &mut existing.rng)
            .unwrap();
        let certificate = issuer
            .add_device(&registration, &approval, NOW, &mut phone.rng)
            .await
            .unwrap();
        phone
            .wallet
            .on_account_certificate(certificate, NOW)
            .unwrap();
        phone
    }

    /// Deposits `amount` and confirms the issuer's record.
    pub async fn deposit<S: RecordStore>(
        &mut self,
        issuer: &TestIssuer<S>,
        amount: u64,
    ) -> DepositConfirmation {
        let request = self
            .wallet
            .deposit_request(eur(amount), NOW, &mut self.rng)
            .unwrap();
        self.exchange(
            request,
            async |r, rng| issuer.deposit(r, NOW, rng).await.unwrap(),
            |w, _, record, rng| w.on_deposit_record(record, NOW, rng),
        )
        .await
    }

    /// Asks for a certificate (handing in the outbox) at `now`.
    pub async fn certificate<S: RecordStore>(
        &mut self,
        issuer: &TestIssuer<S>,
        options: CertificateOptions,
        now: Timestamp,
    ) -> BalanceCertificate {
        let request = self
            .wallet
            .certificate_request(options, now, &mut self.rng)
            .unwrap();
        self.exchange(
            request,
            async |r, rng| issuer.issue_balance_certificate(r, now, rng).await.unwrap(),
            |w, _, cert, _| w.on_balance_certificate(cert.clone(), now).map(|()| cert),
        )
        .await
    }

    /// Withdraws blind coins of `amounts`; the ids of the coins now held.
    pub async fn withdraw_blind<S: RecordStore>(
        &mut self,
        issuer: &TestIssuer<S>,
        amounts: &[u64],
    ) -> Vec<CoinId> {
        let request = self
            .wallet
            .blind_withdrawal_request(&eurs(amounts), NOW, &mut self.rng)
            .unwrap();
        self.exchange(
            request,
            async |r, rng| issuer.withdraw_blind(r, NOW, rng).await.unwrap(),
            |w, r, response, _| w.on_blind_withdrawal(r, &response, NOW),
        )
        .await
    }

    /// Withdraws identified coins of `amounts`; the ids of the coins now held.
    pub async fn withdraw_identified<S: RecordStore>(
        &mut self,
        issuer: &TestIssuer<S>,
        amounts: &[u64],
    ) -> Vec<CoinId> {
        let request = self
            .wallet
            .identified_withdrawal_request(&eurs(amounts), NOW, &mut self.rng)
            .unwrap();
        self.exchange(
            request,
            async |r, rng| issuer.withdraw_identified(r, NOW, rng).await.unwrap(),
            |w, r, response, _| w.on_identified_withdrawal(r, &response, NOW),
        )
        .await
    }

    /// Sends a swap the wallet built (saving first; signed by this device when it hands in
    /// identified coins), has the issuer answer and sign it at `now`, and applies the
    /// signed answer.
    pub async fn swap<S: RecordStore>(
        &mut self,
        issuer: &TestIssuer<S>,
        request: Unreleased<SwapRequest>,
        now: Timestamp,
    ) -> scrip_wallet::SwapResult {
        let request = self.send(request);
        let answer = if request.hands_in_identified() {
            let signed = self.wallet.sign_swap(&request, now, &mut self.rng).unwrap();
            issuer.device_swap(&signed, now, &mut self.rng).await
        } else {
            issuer.swap(&request, now, &mut self.rng).await
        };
        let receipt = issuer
            .sign_answer(answer.unwrap(), now, &mut self.rng)
            .unwrap();
        self.wallet
            .on_swap_receipt(&request, &receipt, now)
            .unwrap()
    }

    /// Pays `offer` by record at `now`, saving before release; returns the answer sent.
    pub fn pay_record(&mut self, offer: &MerchantOffer, now: Timestamp) -> PaymentAnswer {
        let answer = self
            .wallet
            .pay_by_record(offer, now, &mut self.rng)
            .unwrap();
        self.send(answer)
    }

    /// Pays `offer` by coins at `now`, saving before release; returns the answer sent.
    pub fn pay_coins(&mut self, offer: &MerchantOffer, now: Timestamp) -> PaymentAnswer {
        let answer = self.wallet.pay_by_coins(offer, now).unwrap();
        self.send(answer)
    }

    /// The account's id and this device's id.
    pub fn ids(&self) -> (AccountId, DeviceId) {
        let account = self.wallet.account().unwrap();
        (account.account_id, account.device_id)
    }

    /// The values of the coins held, sorted.
    pub fn coin_values(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .wallet
            .coins()
            .iter()
            .map(|c| c.amount().minor_units)
            .collect();
        v.sort_unstable();
        v
    }
}
