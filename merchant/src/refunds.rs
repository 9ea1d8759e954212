//! Refunds, with no I/O: the terminal signs a refund of a payment by record (sent to the
//! issuer, which credits the paying account and answers with a signed receipt) or a
//! refund voucher for a coin payment (handed to the customer offline, as bytes: the
//! customer's wallet withdraws fresh coins against it, anonymously).
//!
//! The issuer pays each refund id once and never more than the payment brought in, all
//! refunds of it together; it debits the merchant's balance, so a merchant that paid out
//! everything cannot refund until it is credited again. A voucher is debited only when
//! the customer withdraws it: keep track of the vouchers handed out, since the issuer
//! refuses (`refund_exceeds_payment`) those beyond what the payment brought in.

use rand_core::CryptoRng;
use scrip_tokens::{
    Amount, KeyDirectory, RefundId, RefundReceipt, RefundReceiptPayload, RefundRequest,
    RefundRequestPayload, RefundVoucher, RefundVoucherPayload, RequestId, Timestamp,
};

use crate::{MerchantError, Result, Terminal};

impl Terminal {
    /// A refund of `amount` of the payment that answered this terminal's request
    /// `request_id` (paid by withdrawal record), to the account that paid, under a fresh
    /// refund id. Send it to the issuer (`POST /v1/refunds`); to retry, sign it again
    /// with [`Terminal::refund_request_again`] (the issuer refuses replayed bytes, and pays
    /// a refund id once).
    pub fn refund_request<G: CryptoRng + ?Sized>(
        &self,
        request_id: RequestId,
        amount: Amount,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<RefundRequest> {
        let refund_id = RefundId::random(rng);
        self.refund_request_again(refund_id, request_id, amount, now, rng)
    }

    /// [`Terminal::refund_request`] under a given refund id: the retry of a refund whose
    /// answer was lost gets the first receipt and pays once.
    pub fn refund_request_again<G: CryptoRng + ?Sized>(
        &self,
        refund_id: RefundId,
        request_id: RequestId,
        amount: Amount,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<RefundRequest> {
        self.check_refund_amount(amount)?;
        let mut nonce = [0u8; 16];
        rng.fill_bytes(&mut nonce);
        Ok(RefundRequest::sign(
            RefundRequestPayload {
                merchant_id: self.certificate().payload.merchant_id,
                refund_id,
                request_id,
                amount,
                created_at: now,
                nonce,
            },
            &self.key,
            rng,
        )?)
    }

    /// A voucher refunding `amount` of the coin payment that answered this terminal's
    /// request `request_id`: hand its bytes ([`RefundVoucher::to_bytes`]) to the customer,
    /// whose wallet withdraws fresh coins against it. Whoever holds the bytes can withdraw
    /// it, once.
    pub fn refund_voucher<G: CryptoRng + ?Sized>(
        &self,
        request_id: RequestId,
        amount: Amount,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<RefundVoucher> {
        self.check_refund_amount(amount)?;
        Ok(RefundVoucher::sign(
            RefundVoucherPayload {
                merchant_id: self.certificate().payload.merchant_id,
                refund_id: RefundId::random(rng),
                request_id,
                amount,
                created_at: now,
            },
            &self.key,
            rng,
        )?)
    }

    /// The issuer's receipt for `request`, if it is one: signed by the answer key
    /// `directory` lists, and naming this very request. Count the refund as paid only
    /// after this.
    pub fn verify_refund_receipt<'r>(
        &self,
        request: &RefundRequest,
        receipt: &'r RefundReceipt,
        directory: &KeyDirectory,
        now: Timestamp,
    ) -> Result<&'r RefundReceiptPayload> {
        receipt
            .verify_for(request, directory, now)
            .map_err(MerchantError::UnverifiedAnswer)
    }

    fn check_refund_amount(&self, amount: Amount) -> Result<()> {
        if amount.is_zero() {
            return Err(MerchantError::ZeroAmount);
        }
        let currency = self.config().max_unsettled.currency;
        if amount.currency != currency {
            return Err(MerchantError::OtherCurrency(amount.currency));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use scrip_tokens::fixtures::{Specimens, NOW};
    use scrip_tokens::Currency;

    use super::*;
    use crate::MerchantConfig;

    fn terminal() -> (Specimens, Terminal, StdRng) {
        let mut rng = StdRng::seed_from_u64(3);
        let s = Specimens::new(&mut rng);
        let terminal = Terminal::new(
            scrip_tokens::fixtures::merchant(1),
            s.merchant_cert.clone(),
            MerchantConfig::new(Amount::new(1_000, Currency::EUR)),
        )
        .unwrap();
        (s, terminal, rng)
    }

    #[test]
    fn refunds_and_vouchers_verify_under_the_merchant_certificate() {
        let (s, terminal, mut rng) = terminal();
        let request_id = RequestId::random(&mut rng);
        let eur = Amount::new(250, Currency::EUR);
        let refund = terminal
            .refund_request(request_id, eur, NOW, &mut rng)
            .unwrap();
        assert_eq!(refund.verify(&s.merchant_cert.payload).unwrap().amount, eur);
        let voucher = terminal
            .refund_voucher(request_id, eur, NOW, &mut rng)
            .unwrap();
        let bytes = voucher.to_bytes().unwrap();
        let carried = RefundVoucher::from_bytes(&bytes).unwrap();
        assert_eq!(
            carried.verify(&s.merchant_cert.payload).unwrap().request_id,
            request_id
        );
    }

    #[test]
    fn a_refund_of_nothing_or_in_another_currency_is_not_signed() {
        let (_, terminal, mut rng) = terminal();
        let request_id = RequestId::random(&mut rng);
        assert!(matches!(
            terminal.refund_request(request_id, Amount::new(0, Currency::EUR), NOW, &mut rng),
            Err(MerchantError::ZeroAmount)
        ));
        assert!(matches!(
            terminal.refund_voucher(request_id, Amount::new(5, Currency::USD), NOW, &mut rng),
            Err(MerchantError::OtherCurrency(Currency::USD))
        ));
    }
}
