//! A redemption batch as the issuer receives it, with the digests its checks need.
//!
//! Redeeming a batch takes four SHA-256 digests over nearly every byte of it: the batch's
//! (what the report names it by), its payload's (what the merchant's signature covers),
//! and per coin payment the endorsement's (what the endorsement signature covers) and the
//! payment's (what its coins are claimed under). Computed from the decoded values, each
//! pair costs an encoding pass over every coin. [`ReceivedBatch::decode_with_limit`]
//! takes them from the bytes the merchant sent instead, which the decoder has just proved
//! to be the canonical encoding of what it decoded, so they are the same digests for
//! less work (BENCHMARKS.md, "Hashing what was received").

use std::borrow::Cow;
use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::codec::{self, Pieces};
use crate::keys::{Merchant, VerifyingKey};
use crate::{
    CoinPayment, ContentDigest, EndorsedCoinPayment, EndorsedCoinPaymentPayload, Error, KeyId,
    MerchantCertificatePayload, MerchantId, Nonce, RedemptionBatch, RedemptionBatchPayload,
    RedemptionItem, Result, Signature, Timestamp,
};

/// A [`RedemptionBatch`] with the digests of the batch, of its payload and of each coin
/// payment's endorsement and payment. Made only by decoding (digests from the received
/// bytes) or from a batch (digests by encoding it), so the digests are always the batch's.
#[derive(Clone, Debug)]
pub struct ReceivedBatch<'b> {
    batch: Cow<'b, RedemptionBatch>,
    digest: ContentDigest,
    payload_digest: ContentDigest,
    /// Per item: the digests of a coin payment, `None` for a record.
    payments: Vec<Option<PaymentDigests>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PaymentDigests {
    endorsement: ContentDigest,
    payment: ContentDigest,
}

/// The part of a batch payload after its items, as it is encoded.
#[derive(Serialize, Deserialize)]
struct PayloadTail {
    created_at: Timestamp,
    #[serde(with = "crate::bytes::array")]
    nonce: Nonce,
}

/// What follows a payload in a signed object's encoding.
type SignatureTail = (KeyId, Signature);

/// Bytes of an enum's variant index in the encoding (bincode, fixed-width `u32`).
const VARIANT_LEN: usize = 4;

impl ReceivedBatch<'static> {
    /// [`Self::new`], keeping the batch (one decoded from JSON, say). Its digests are
    /// taken by encoding it, before anyone checks its signature: cheaper than the JSON
    /// parsing that produced it.
    pub fn from_batch(batch: RedemptionBatch) -> Result<Self> {
        Self::encoded(Cow::Owned(batch))
    }

    /// Decodes a batch from untrusted bytes, accepting what [`codec::decode_with_limit`]
    /// accepts, and takes every digest from the bytes. This does not verify anything.
    ///
    /// The digests are taken here, before anyone checks the batch signature: four SHA-256
    /// passes, linear in the bytes received like the decoding itself and bounded by the
    /// body limit. Before `ReceivedBatch` an unsigned batch cost its decoding and one
    /// encoding pass into two hashes; now it costs its decoding and four hashes of the
    /// bytes, about a fifth more per byte in the pinned server's profile.
    pub fn decode_with_limit(bytes: &[u8], limit: usize) -> Result<Self> {
        let mut pieces = Pieces::new::<RedemptionBatch>(bytes, limit)?;
        let body = pieces.body();
        let (merchant_id, _) = pieces.next::<MerchantId>()?;
        let (count, _) = pieces.next::<u64>()?;
        // Every item takes at least its variant index: a forged count reserves no more
        // than the bytes could hold.
        let room = pieces.left() / VARIANT_LEN;
        let capacity = usize::try_from(count).map_or(room, |c| c.min(room));
        let mut items = Vec::with_capacity(capacity);
        let mut payments = Vec::with_capacity(capacity);
        for _ in 0..count {
            let (item, at) = pieces.next::<RedemptionItem>()?;
            payments.push(match &item {
                RedemptionItem::Coins(endorsed) => Some(payment_digests(body, at, endorsed)?),
                RedemptionItem::Record(_) => None,
            });
            items.push(item);
        }
        let (tail, tail_at) = pieces.next::<PayloadTail>()?;
        let ((key_id, signature), _) = pieces.next::<SignatureTail>()?;
        pieces.finish()?;
        let payload_bytes = body.get(..tail_at.end).ok_or(Error::NonCanonical)?;
        Ok(ReceivedBatch {
            batch: Cow::Owned(RedemptionBatch {
                payload: RedemptionBatchPayload {
                    merchant_id,
                    items,
                    created_at: tail.created_at,
                    nonce: tail.nonce,
                },
                key_id,
                signature,
            }),
            digest: ContentDigest::of(bytes),
            payload_digest: codec::digest_of_body::<RedemptionBatchPayload>(payload_bytes),
            payments,
        })
    }
}

/// The digests of the coin payment item that lies at `at` in `body`: its endorsement
/// payload is what follows the variant index, up to the key id and signature; its payment
/// is the payload up to the merchant id and time (the payload's fields in order).
fn payment_digests(
    body: &[u8],
    at: Range<usize>,
    endorsed: &EndorsedCoinPayment,
) -> Result<PaymentDigests> {
    let item = body.get(at).ok_or(Error::NonCanonical)?;
    let signature_len = codec::encoded_len(&(&endorsed.key_id, &endorsed.signature))?;
    let payload = &endorsed.payload;
    let after_payment = codec::encoded_len(&(&payload.merchant_id, &payload.endorsed_at))?;
    let endorsement = item
        .len()
        .checked_sub(signature_len)
        .and_then(|end| item.get(VARIANT_LEN..end))
        .ok_or(Error::NonCanonical)?;
    let payment = endorsement
        .len()
        .checked_sub(after_payment)
        .and_then(|end| endorsement.get(..end))
        .ok_or(Error::NonCanonical)?;
    Ok(PaymentDigests {
        endorsement: codec::digest_of_body::<EndorsedCoinPaymentPayload>(endorsement),
        payment: codec::digest_of_body::<CoinPayment>(payment),
    })
}

impl<'b> ReceivedBatch<'b> {
    /// A batch that arrived some other way (in process): its digests by encoding it.
    pub fn new(batch: &'b RedemptionBatch) -> Result<Self> {
        Self::encoded(Cow::Borrowed(batch))
    }

    fn encoded(batch: Cow<'b, RedemptionBatch>) -> Result<Self> {
        let (digest, payload_digest) =
            codec::digest_with_leading::<RedemptionBatch, RedemptionBatchPayload, _>(
                &batch.payload,
                &(&batch.key_id, &batch.signature),
            )?;
        let payments = batch
            .payload
            .items
            .iter()
            .map(|item| match item {
                RedemptionItem::Coins(endorsed) => encoded_digests(endorsed).map(Some),
                RedemptionItem::Record(_) => Ok(None),
            })
            .collect::<Result<_>>()?;
        Ok(ReceivedBatch {
            batch,
            digest,
            payload_digest,
            payments,
        })
    }

    /// The batch.
    pub fn batch(&self) -> &RedemptionBatch {
        &self.batch
    }

    /// [`codec::digest`] of the batch: what the issuer's report names it by.
    pub fn digest(&self) -> ContentDigest {
        self.digest
    }

    /// [`RedemptionBatch::verify_signature_with_digest`]: checks the merchant's signature
    /// under `key` and returns the payload and the batch's digest.
    pub fn verify_signature_with_digest(
        &self,
        key: &VerifyingKey<Merchant>,
    ) -> Result<(&RedemptionBatchPayload, ContentDigest)> {
        let payload = self
            .batch
            .verify_signature_over(key, &self.payload_digest)?;
        Ok((payload, self.digest))
    }

    /// The coin payments, each with its item's index.
    pub fn coin_payments(&self) -> impl Iterator<Item = (usize, ReceivedPayment<'_>)> {
        self.batch
            .payload
            .items
            .iter()
            .zip(&self.payments)
            .enumerate()
            .filter_map(|(index, pair)| match pair {
                (RedemptionItem::Coins(endorsed), Some(digests)) => Some((
                    index,
                    ReceivedPayment {
                        endorsed,
                        digests: *digests,
                    },
                )),
                _ => None,
            })
    }
}

fn encoded_digests(endorsed: &EndorsedCoinPayment) -> Result<PaymentDigests> {
    let payload = &endorsed.payload;
    // The payload's encoding is its fields in order: the payment, then the rest.
    let (endorsement, payment) = codec::digest_with_leading::<EndorsedCoinPaymentPayload, _, _>(
        &payload.payment,
        &(&payload.merchant_id, &payload.endorsed_at),
    )?;
    Ok(PaymentDigests {
        endorsement,
        payment,
    })
}

/// A merchant-endorsed coin payment with the digests of its endorsement and payment,
/// from a [`ReceivedBatch`] or [`ReceivedPayment::new`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReceivedPayment<'p> {
    endorsed: &'p EndorsedCoinPayment,
    digests: PaymentDigests,
}

impl<'p> ReceivedPayment<'p> {
    /// An endorsed payment that did not come in a received batch (a swap request's):
    /// its digests by encoding it.
    pub fn new(endorsed: &'p EndorsedCoinPayment) -> Result<Self> {
        Ok(ReceivedPayment {
            endorsed,
            digests: encoded_digests(endorsed)?,
        })
    }

    /// [`EndorsedCoinPayment::verify`], also returning the payment's digest (what its
    /// coins are claimed under).
    pub fn verify(
        &self,
        merchant: &MerchantCertificatePayload,
    ) -> Result<(&'p EndorsedCoinPaymentPayload, ContentDigest)> {
        let payload = self
            .endorsed
            .verify_signature_over(&merchant.merchant_key, &self.digests.endorsement)?;
        let payload = EndorsedCoinPayment::check_merchant(payload, merchant)?;
        Ok((payload, self.digests.payment))
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;
    use crate::fixtures::{Specimens, NOW};
    use crate::{codec, RedemptionItem, Signed};

    fn batch(specimens: &Specimens, items: Vec<RedemptionItem>) -> RedemptionBatch {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let payload = RedemptionBatchPayload {
            merchant_id: specimens.merchant_cert.payload.merchant_id,
            items,
            created_at: NOW,
            nonce: [9; 16],
        };
        Signed::sign(payload, &specimens.merchant, &mut rng).unwrap()
    }

    fn specimens() -> Specimens {
        Specimens::new(&mut rand::rngs::StdRng::seed_from_u64(1))
    }

    fn mixed(s: &Specimens) -> RedemptionBatch {
        batch(
            s,
            vec![
                RedemptionItem::Coins(s.endorsed.clone()),
                RedemptionItem::Record(s.countersigned.clone()),
                RedemptionItem::Coins(s.endorsed.clone()),
            ],
        )
    }

    /// Digests taken from the bytes are the digests of the values: the batch's, its
    /// payload's, and each payment's, as encoding them gives.
    #[test]
    fn digests_from_the_received_bytes_are_those_of_the_decoded_batch() {
        let s = specimens();
        for sent in [mixed(&s), batch(&s, vec![])] {
            let bytes = codec::encode(&sent).unwrap();
            let received = ReceivedBatch::decode_with_limit(&bytes, bytes.len()).unwrap();
            let encoded = ReceivedBatch::new(&sent).unwrap();
            assert_eq!(received.batch(), &sent);
            assert_eq!(received.digest, codec::digest(&sent).unwrap());
            assert_eq!(
                received.payload_digest,
                codec::digest(&sent.payload).unwrap()
            );
            assert_eq!(received.digest, encoded.digest);
            assert_eq!(received.payload_digest, encoded.payload_digest);
            assert_eq!(received.payments, encoded.payments);
            for (index, payment) in received.coin_payments() {
                let RedemptionItem::Coins(endorsed) = &sent.payload.items[index] else {
                    panic!("item {index} is not a coin payment");
                };
                assert_eq!(
                    payment.digests.endorsement,
                    codec::digest(&endorsed.payload).unwrap()
                );
                assert_eq!(
                    payment.digests.payment,
                    codec::digest(&endorsed.payload.payment).unwrap()
                );
            }
            assert_eq!(
                received.coin_payments().count(),
                encoded.coin_payments().count()
            );
        }
    }

    #[test]
    fn a_received_batch_verifies_as_the_batch_does_and_names_it_by_its_digest() {
        let s = specimens();
        let sent = mixed(&s);
        let bytes = codec::encode(&sent).unwrap();
        let received = ReceivedBatch::decode_with_limit(&bytes, bytes.len()).unwrap();
        let key = &s.merchant_cert.payload.merchant_key;
        assert_eq!(
            received.verify_signature_with_digest(key).unwrap(),
            sent.verify_signature_with_digest(key).unwrap()
        );
        for (_, payment) in received.coin_payments() {
            let (payload, digest) = payment.verify(&s.merchant_cert.payload).unwrap();
            assert_eq!(payload, &s.endorsed.payload);
            assert_eq!(digest, codec::digest(&s.endorsed.payload.payment).unwrap());
        }
        let mut forged = sent.clone();
        forged.payload.nonce = [8; 16];
        let bytes = codec::encode(&forged).unwrap();
        let received = ReceivedBatch::decode_with_limit(&bytes, bytes.len()).unwrap();
        assert_eq!(
            received.verify_signature_with_digest(key),
            Err(Error::BadSignature)
        );
    }

    #[test]
    fn a_payment_endorsed_with_another_payment_in_it_fails_its_check() {
        let s = specimens();
        let mut endorsed = s.endorsed.clone();
        endorsed.payload.payment.coins.pop();
        let sent = batch(&s, vec![RedemptionItem::Coins(endorsed)]);
        let bytes = codec::encode(&sent).unwrap();
        let received = ReceivedBatch::decode_with_limit(&bytes, bytes.len()).unwrap();
        for (_, payment) in received.coin_payments() {
            assert_eq!(
                payment.verify(&s.merchant_cert.payload),
                Err(Error::BadSignature)
            );
        }
    }

    /// Whatever the bytes, the piecewise decoder accepts exactly what the codec accepts,
    /// with the same value, and refuses with the same error: every truncation, and every
    /// byte changed in turn (two values each), of a batch with both kinds of item.
    #[test]
    fn hostile_bytes_are_accepted_or_refused_exactly_as_the_codec_does() {
        let s = specimens();
        let bytes = codec::encode(&mixed(&s)).unwrap();
        let check = |input: &[u8]| {
            let ours = ReceivedBatch::decode_with_limit(input, bytes.len());
            let codec = codec::decode_with_limit::<RedemptionBatch>(input, bytes.len());
            match (ours, codec) {
                (Ok(ours), Ok(codec)) => assert_eq!(ours.batch(), &codec),
                (Err(ours), Err(codec)) => assert_eq!(
                    std::mem::discriminant(&ours),
                    std::mem::discriminant(&codec),
                    "{ours} / {codec}"
                ),
                (ours, codec) => panic!("piecewise {ours:?} but codec {codec:?}"),
            }
        };
        for end in 0..bytes.len() {
            check(&bytes[..end]);
        }
        let mut longer = bytes.clone();
        longer.push(0);
        check(&longer);
        for at in 0..bytes.len() {
            for flip in [0x01, 0xff] {
                let mut changed = bytes.clone();
                changed[at] ^= flip;
                check(&changed);
            }
        }
    }
}
