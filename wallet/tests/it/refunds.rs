//! A coin payment refunded by voucher, from the wallet's side: the voucher's bytes in,
//! fresh coins out, spendable at another merchant, and the blinding secrets surviving a
//! crash between sending the withdrawal and its answer.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use common::*;
use scrip_tokens::fixtures::NOW;
use scrip_tokens::*;
use scrip_wallet::WalletError;

fn voucher(
    shop: &Shop,
    request_id: RequestId,
    amount: u64,
    rng: &mut rand::rngs::StdRng,
) -> Vec<u8> {
    RefundVoucher::sign(
        RefundVoucherPayload {
            merchant_id: shop.id(),
            refund_id: RefundId::random(rng),
            request_id,
            amount: eur(amount),
            created_at: NOW,
        },
        &shop.key,
        rng,
    )
    .unwrap()
    .to_bytes()
    .unwrap()
}

#[tokio::test]
async fn a_refund_voucher_becomes_coins_the_wallet_spends_elsewhere() {
    let issuer = issuer();
    let mut rng = rng(1);
    let mut phone = Phone::open(&issuer, 1, 1_000, 11).await;
    let mut shop = Shop::register(&issuer, 1, &mut rng).await;
    let mut other_shop = Shop::register(&issuer, 2, &mut rng).await;
    phone.withdraw_blind(&issuer, &[10, 5]).await;

    // The customer pays 15 in coins; the shop uploads the payment.
    let offer = shop.offer(15, NOW);
    let answer = phone.pay_coins(&offer, NOW);
    let MerchantReply::Receipt(PaymentReceipt::Coins(endorsed)) = shop.receipt(&answer, NOW) else {
        panic!("accepted")
    };
    let items = vec![RedemptionItem::Coins(endorsed)];
    shop.redeem(&issuer, items, NOW, &mut rng).await;
    assert!(phone.coin_values().is_empty());

    // The shop refunds 12 with a voucher; the phone withdraws it, and crashes before the
    // answer arrives: the blinding secrets were saved with the request.
    let bytes = voucher(&shop, offer.request.payload.request_id, 12, &mut rng);
    let request = phone
        .wallet
        .voucher_withdrawal_request(&bytes, NOW, &mut phone.rng)
        .unwrap();
    let request = phone.send(request);
    assert!(request.coins.iter().map(|(v, _)| v).eq([10, 2].iter()));
    let response = issuer
        .withdraw_voucher(&request, NOW, &mut rng)
        .await
        .unwrap();
    phone.crash_and_restart();
    let ids = phone
        .wallet
        .on_voucher_withdrawal(&request, &response, NOW)
        .unwrap();
    assert_eq!(ids.len(), 2);
    assert_eq!(phone.coin_values(), [2, 10]);
    // The same answer again changes nothing.
    assert_eq!(
        phone.wallet.on_voucher_withdrawal(&request, &response, NOW),
        Err(WalletError::UnrequestedWithdrawal)
    );

    // The refunded coins pay another merchant.
    let offer = other_shop.offer(12, NOW);
    let answer = phone.pay_coins(&offer, NOW);
    let MerchantReply::Receipt(PaymentReceipt::Coins(endorsed)) = other_shop.receipt(&answer, NOW)
    else {
        panic!("accepted")
    };
    let outcomes = other_shop
        .redeem(
            &issuer,
            vec![RedemptionItem::Coins(endorsed)],
            NOW,
            &mut rng,
        )
        .await;
    assert_eq!(
        outcomes,
        [RedemptionOutcome::Accepted { credited: eur(12) }]
    );
}

#[test]
fn a_voucher_that_does_not_decode_or_no_coins_make_is_refused() {
    let mut rng = rng(2);
    let issuer = issuer();
    let mut phone = Phone::new(&issuer, 1, 3);
    assert!(matches!(
        phone
            .wallet
            .voucher_withdrawal_request(b"not a voucher", NOW, &mut rng),
        Err(WalletError::Invalid(_))
    ));
    let shop_key = fixtures::merchant(1);
    let nothing = RefundVoucher::sign(
        RefundVoucherPayload {
            merchant_id: MerchantId::random(&mut rng),
            refund_id: RefundId::random(&mut rng),
            request_id: RequestId::random(&mut rng),
            amount: eur(0),
            created_at: NOW,
        },
        &shop_key,
        &mut rng,
    )
    .unwrap();
    assert!(matches!(
        phone
            .wallet
            .voucher_withdrawal_request(&nothing.to_bytes().unwrap(), NOW, &mut rng),
        Err(WalletError::NoCoinsMake(_))
    ));
}
