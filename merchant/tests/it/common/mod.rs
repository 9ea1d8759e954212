//! The merchant's integration tests use the shared test kit (`scrip-testkit`): an issuer core
//! in process and phones (wallets that save before they release) around it. What needs the
//! merchant crate stays here: the in-process `IssuerClient` the merchant syncs through,
//! registered points of sale, and one whole offline payment. The key window of this harness
//! is 30 days before `NOW` to 300 after.

#![allow(dead_code, clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;

use async_trait::async_trait;
use rand::rngs::StdRng;
use scrip_merchant::{ClientError, IssuerClient, Merchant, MerchantConfig};
use scrip_stores::{MemoryStore, RecordStore};
// `issuer` below shadows the kit's, which takes the store and validity as arguments.
pub use scrip_testkit::*;
use scrip_tokens::keys::Merchant as MerchantRole;
use scrip_tokens::*;
use scrip_wallet::PayWith;

/// The fixture keys' window in these tests.
pub fn validity() -> Validity {
    validity_around(NOW, DAY * 30, DAY * 300)
}

/// An issuer over a memory store, signing with the fixture keys (EUR coins of 1, 2, 5, 10),
/// shared with the in-process clients.
pub fn issuer() -> Arc<TestIssuer> {
    Arc::new(scrip_testkit::issuer(MemoryStore::new(), validity()))
}

/// The issuer core behind the merchant's client trait (tests stand in for HTTP).
pub struct InProcess {
    pub issuer: Arc<TestIssuer>,
    pub now: Timestamp,
    /// When set, every call fails as if the network were down.
    pub offline: bool,
}

#[async_trait]
impl IssuerClient for InProcess {
    async fn key_directory(&self) -> Result<SignedKeyDirectory, ClientError> {
        if self.offline {
            return Err(ClientError::Transport("offline".into()));
        }
        let mut rng = rng(99);
        self.issuer
            .key_directory(self.now, &mut rng)
            .map_err(|e| ClientError::Refused {
                code: e.code(),
                message: e.to_string(),
            })
    }

    async fn redeem(&self, batch: &RedemptionBatch) -> Result<RedemptionReport, ClientError> {
        if self.offline {
            return Err(ClientError::Transport("offline".into()));
        }
        let refused = |e: scrip_issuer::IssuerError| ClientError::Refused {
            code: e.code(),
            message: e.to_string(),
        };
        let report = self.issuer.redeem(batch, self.now).await.map_err(refused)?;
        self.issuer
            .sign_answer(report, self.now, &mut rng(98))
            .map_err(refused)
    }

    async fn merchant_swap(
        &self,
        request: &MerchantSwapRequest,
    ) -> Result<SwapReceipt, ClientError> {
        if self.offline {
            return Err(ClientError::Transport("offline".into()));
        }
        let refused = |e: scrip_issuer::IssuerError| ClientError::Refused {
            code: e.code(),
            message: e.to_string(),
        };
        let answer = self
            .issuer
            .merchant_swap(request, self.now, &mut rng(96))
            .await
            .map_err(refused)?;
        self.issuer
            .sign_answer(answer, self.now, &mut rng(95))
            .map_err(refused)
    }

    /// The list of the latest published version (the test publishes, as the server's
    /// periodic step would), signed now.
    async fn revocations(&self, since: Option<u64>) -> Result<RevocationList, ClientError> {
        if self.offline {
            return Err(ClientError::Transport("offline".into()));
        }
        let refused = |e: scrip_issuer::IssuerError| ClientError::Refused {
            code: e.code(),
            message: e.to_string(),
        };
        let latest = self.issuer.revocation_snapshot().await.map_err(refused)?;
        let payload = self
            .issuer
            .revocation_list(&latest, since, self.now)
            .await
            .map_err(refused)?;
        self.issuer
            .sign_answer(payload, self.now, &mut rng(97))
            .map_err(refused)
    }
}

/// Registers fixture merchant `n` as `category` in `region` (nonce `[n; 16]`), signing with
/// `rng`: its key and certificate, for opening a terminal.
pub async fn register_merchant(
    issuer: &TestIssuer,
    n: u8,
    category: MerchantCategory,
    region: &str,
    rng: &mut StdRng,
) -> (SigningKey<MerchantRole>, MerchantCertificate) {
    let shop = Shop::register_with(issuer, n, category, region, [n; 16], rng).await;
    (shop.key, shop.certificate)
}

/// A registered point of sale over a memory store, with the directory cached.
pub async fn shop(issuer: &Arc<TestIssuer>, n: u8, limit: u64) -> Merchant<MemoryStore> {
    shop_over(issuer, n, limit, MemoryStore::new()).await
}

/// A registered point of sale (fixture merchant `n`, a grocery in DE-BY) over `store`, with
/// an exposure limit of `limit` and the directory cached.
pub async fn shop_over<S: RecordStore>(
    issuer: &Arc<TestIssuer>,
    n: u8,
    limit: u64,
    store: S,
) -> Merchant<S> {
    let Shop {
        key,
        certificate,
        mut rng,
    } = Shop::grocery(issuer, n).await;
    let merchant = Merchant::open(
        store,
        key,
        certificate,
        root(),
        MerchantConfig::new(eur(limit)),
        NOW,
    )
    .await
    .unwrap();
    merchant
        .refresh_directory(issuer.key_directory(NOW, &mut rng).unwrap(), NOW)
        .await
        .unwrap();
    merchant
}

/// An in-process client of `issuer` whose clock reads `now`.
pub fn client(issuer: &Arc<TestIssuer>, now: Timestamp) -> InProcess {
    InProcess {
        issuer: Arc::clone(issuer),
        now,
        offline: false,
    }
}

/// Runs one offline payment: the merchant offers, the phone answers, the merchant replies,
/// the phone takes the reply. Returns the reply.
pub async fn pay<S: RecordStore>(
    phone: &mut Phone,
    merchant: &Merchant<S>,
    amount: u64,
    with: PayWith,
    now: Timestamp,
) -> MerchantReply {
    let mut rng = rng(now.as_unix_millis() ^ amount);
    // Everything crosses as bytes, as over NFC.
    let offer = codec::encode(&merchant.offer(eur(amount), now, &mut rng).await.unwrap()).unwrap();
    let answer = phone
        .wallet
        .pay_bytes(&offer, with, now, &mut phone.rng)
        .unwrap();
    let answer = phone.send(answer);
    let reply = merchant.accept_bytes(&answer, now, &mut rng).await.unwrap();
    let reply: MerchantReply = codec::decode(&reply).unwrap();
    phone.wallet.on_merchant_reply(&reply, now).unwrap();
    reply
}

/// The code of a rejection (panics on a receipt).
pub fn rejection_code(reply: &MerchantReply) -> ReasonCode {
    match reply {
        MerchantReply::Rejection(r) => r.payload.reason.code.clone(),
        MerchantReply::Receipt(_) => panic!("expected a rejection, got a receipt"),
    }
}

/// Whether `reply` is a receipt.
pub fn is_receipt(reply: &MerchantReply) -> bool {
    matches!(reply, MerchantReply::Receipt(_))
}
