//! [`IssuerHttp`]: a blocking client for the online steps (feature `http`). Each method
//! takes the bytes the wallet or merchant produced and returns exactly the body the
//! endpoint answers, so an app may instead carry the same bytes over its own HTTP stack
//! (`POST` with `Content-Type: application/vnd.scrip.bincode`).

use std::sync::Arc;

use scrip_api::client::HttpClient;
use scrip_tokens::{
    BalanceCertificateRequest, BlindWithdrawalRequest, DepositConfirmation, DepositRequest,
    DeviceRegistration, MerchantRegistration, RedemptionBatch, SyncRequest,
};

use crate::merchant::{block_on, Merchant, SyncSummary};
use crate::wallet::{statement_of, Statement};
use crate::{at, decode, encode, parse_id, rng, Result};

/// The issuer's HTTP API, blocking (each call waits for the answer). Thread-safe.
#[derive(uniffi::Object)]
pub struct IssuerHttp {
    client: HttpClient,
}

#[uniffi::export]
impl IssuerHttp {
    /// A client of the server at `base_url` (e.g. `https://issuer.example`), with the
    /// operator token for operator-only calls (registering a merchant) if given.
    #[uniffi::constructor]
    pub fn new(base_url: String, operator_token: Option<String>) -> Result<Arc<Self>> {
        let mut client = HttpClient::new(&base_url)?;
        if let Some(token) = operator_token {
            client = client.with_operator_token(token);
        }
        Ok(Arc::new(IssuerHttp { client }))
    }

    /// `GET /v1/root-key`, as PEM. Fetching the root key is trust on first use: ship the
    /// issuer's root key with the app and pin it instead where you can.
    pub fn root_key_pem(&self) -> Result<String> {
        let root = block_on(self.client.root_key())??;
        Ok(root.key.public_key().to_pem()?)
    }

    /// `GET /v1/keys`: the signed key directory.
    pub fn key_directory(&self) -> Result<Vec<u8>> {
        encode(&block_on(self.client.key_directory())??)
    }

    /// `GET /v1/revocations[?since=V]`: the signed revocation list (a delta since
    /// version `since`, or the full list).
    pub fn revocations(&self, since: Option<u64>) -> Result<Vec<u8>> {
        encode(&block_on(self.client.revocations(since))??)
    }

    /// `POST /v1/accounts` with a wallet's registration.
    pub fn open_account(&self, registration: Vec<u8>) -> Result<Vec<u8>> {
        let registration: DeviceRegistration = decode(&registration)?;
        encode(&block_on(self.client.open_account(&registration))??)
    }

    /// `POST /v1/merchants` (operator token) with a merchant's registration; the answer
    /// is the merchant certificate.
    pub fn register_merchant(&self, registration: Vec<u8>) -> Result<Vec<u8>> {
        let registration: MerchantRegistration = decode(&registration)?;
        encode(&block_on(self.client.register_merchant(&registration))??)
    }

    /// `POST /v1/deposits`.
    pub fn deposit(&self, request: Vec<u8>) -> Result<Vec<u8>> {
        let request: DepositRequest = decode(&request)?;
        encode(&block_on(self.client.deposit(&request))??)
    }

    /// `POST /v1/deposit-confirmations`.
    pub fn confirm_deposit(&self, confirmation: Vec<u8>) -> Result<()> {
        let confirmation: DepositConfirmation = decode(&confirmation)?;
        Ok(block_on(self.client.confirm_deposit(&confirmation))??)
    }

    /// `POST /v2/balance-certificates`.
    pub fn balance_certificate(&self, request: Vec<u8>) -> Result<Vec<u8>> {
        let request: BalanceCertificateRequest = decode(&request)?;
        encode(&block_on(
            self.client.balance_certificate_answered(&request),
        )??)
    }

    /// `POST /v1/sync`.
    pub fn sync(&self, request: Vec<u8>) -> Result<Vec<u8>> {
        let request: SyncRequest = decode(&request)?;
        encode(&block_on(self.client.sync(&request))??)
    }

    /// `POST /v1/withdrawals/blind`.
    pub fn withdraw_blind(&self, request: Vec<u8>) -> Result<Vec<u8>> {
        let request: BlindWithdrawalRequest = decode(&request)?;
        encode(&block_on(self.client.withdraw_blind(&request))??)
    }

    /// `POST /v1/redemptions` with a merchant's batch; the answer is the signed report.
    pub fn redeem(&self, batch: Vec<u8>) -> Result<Vec<u8>> {
        let batch: RedemptionBatch = decode(&batch)?;
        encode(&block_on(self.client.redeem(&batch))??)
    }

    /// Settles `merchant`'s queue: refreshes its key directory and revocation list, then
    /// uploads batch by batch and applies the issuer's answers.
    pub fn settle(&self, merchant: Arc<Merchant>, now_unix_ms: u64) -> Result<SyncSummary> {
        let summary = block_on(
            merchant
                .inner()
                .sync(&self.client, at(now_unix_ms), &mut rng()),
        )??;
        Ok(summary.into())
    }

    /// `POST /v1/withdrawals/identified`.
    pub fn withdraw_identified(&self, request: Vec<u8>) -> Result<Vec<u8>> {
        let request: scrip_tokens::IdentifiedWithdrawalRequest = decode(&request)?;
        encode(&block_on(self.client.withdraw_identified(&request))??)
    }

    /// `POST /v1/refund-withdrawals`: fresh blind coins against a refund voucher.
    pub fn withdraw_voucher(&self, request: Vec<u8>) -> Result<Vec<u8>> {
        let request: scrip_tokens::VoucherWithdrawalRequest = decode(&request)?;
        encode(&block_on(self.client.withdraw_voucher(&request))??)
    }

    /// `POST /v1/swaps`: a wallet's swap (change, refresh); the answer is the signed
    /// receipt for [`crate::Wallet::on_swap_receipt`]. After a lost answer send the same
    /// request again.
    pub fn swap(&self, request: Vec<u8>) -> Result<Vec<u8>> {
        let request: scrip_tokens::SwapRequest = decode(&request)?;
        encode(&block_on(self.client.swap(&request))??)
    }

    /// `POST /v1/device-swaps`: a swap signed by this device ([`crate::Wallet::sign_swap`]),
    /// the only way identified coins are swapped; the answer is the signed receipt for
    /// [`crate::Wallet::on_swap_receipt`] (with the unsigned request). After a lost answer
    /// sign the same request again and send that.
    pub fn device_swap(&self, request: Vec<u8>) -> Result<Vec<u8>> {
        let request: scrip_tokens::DeviceSwapRequest = decode(&request)?;
        encode(&block_on(self.client.device_swap(&request))??)
    }

    /// `POST /v1/accounts/{id}/statement`.
    pub fn statement(&self, request: Vec<u8>) -> Result<Vec<u8>> {
        let request: scrip_tokens::StatementRequest = decode(&request)?;
        encode(&block_on(self.client.statement(&request))??)
    }

    /// `POST /v1/devices`: a new device joins an account, with the approval of one
    /// already on it; the answer is the new device's account certificate.
    pub fn enroll_device(&self, registration: Vec<u8>, approval: Vec<u8>) -> Result<Vec<u8>> {
        let enrollment = scrip_api::DeviceEnrollment {
            registration: decode(&registration)?,
            approval: decode(&approval)?,
        };
        encode(&block_on(self.client.enroll_device(&enrollment))??)
    }

    /// `POST /v1/refunds` with a merchant's refund request; the answer is the receipt
    /// (check it with `Merchant.verify_refund_receipt`).
    pub fn refund(&self, request: Vec<u8>) -> Result<Vec<u8>> {
        let request: scrip_tokens::RefundRequest = decode(&request)?;
        encode(&block_on(self.client.refund(&request))??)
    }

    /// `merchant`'s statement in its currency (entries after `after_seq`, at most
    /// `limit`), checked against its key directory.
    pub fn merchant_statement(
        &self,
        merchant: Arc<Merchant>,
        after_seq: Option<u64>,
        limit: u32,
        now_unix_ms: u64,
    ) -> Result<Statement> {
        let currency = merchant.inner().terminal().config().max_unsettled.currency;
        let payload = block_on(merchant.inner().statement(
            &self.client,
            currency,
            after_seq,
            limit,
            at(now_unix_ms),
            &mut rng(),
        ))??;
        statement_of(payload.currency, payload.balance, &payload.entries)
    }

    /// Pays `amount_minor` of `merchant`'s balance out to its bank under `payout_id` (a
    /// fresh [`crate::new_id`], kept until a receipt comes: after an error, calling again
    /// with the same id and amount pays once). The receipt is checked.
    pub fn payout(
        &self,
        merchant: Arc<Merchant>,
        payout_id: String,
        amount_minor: u64,
        now_unix_ms: u64,
    ) -> Result<PayoutResult> {
        let payout_id: scrip_tokens::PayoutId = parse_id("payout id", &payout_id)?;
        let currency = merchant.inner().terminal().config().max_unsettled.currency;
        let amount = scrip_tokens::Amount::new(amount_minor, currency);
        let receipt = block_on(merchant.inner().payout(
            &self.client,
            payout_id,
            amount,
            at(now_unix_ms),
            &mut rng(),
        ))??;
        let (paid, detail) = match receipt.state {
            scrip_tokens::PayoutState::Paid { reference, .. } => (true, reference),
            scrip_tokens::PayoutState::Declined { reason, .. } => (false, reason),
        };
        Ok(PayoutResult {
            payout_id: payout_id.to_string(),
            amount_minor: receipt.amount.minor_units,
            paid,
            detail,
        })
    }
}

/// The issuer's checked receipt for a payout.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct PayoutResult {
    /// The payout's id (UUID).
    pub payout_id: String,
    /// The amount, in minor units.
    pub amount_minor: u64,
    /// Paid by the bank (`detail`: its reference), or declined for good (`detail`: why;
    /// the amount is back on the merchant's balance).
    pub paid: bool,
    /// The bank's reference, or the reason it declined.
    pub detail: String,
}
