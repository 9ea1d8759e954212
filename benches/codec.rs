//! The canonical codec on what the redeem server decodes and re-encodes most: a merchant's
//! redemption batch of 10 payments of 20 blind coins each (the `scrip load` shape 20 × 10).
//!
//! - `encode_batch_200_coins/scrip`: `codec::encode`, scrip's direct serde writer.
//! - `encode_batch_200_coins/bincode`: bincode 2's own serde encoder, same configuration
//!   (little-endian, fixed-width integers): what `codec::encode` used before.
//! - `decode_batch_200_coins/scrip`: `codec::decode` (bincode's decoder, then the canonical
//!   re-encode through the writer, compared with the input as it is written).
//! - `digest_batch_<n>_coins/streamed`: `codec::digest`, which hashes the encoding as the
//!   writer produces it (what every signature check and content digest of a batch does),
//!   for the 200-coin batch and a 1 000-coin one (the `scrip load` shape 20 × 50).
//! - `digest_batch_<n>_coins/buffered`: SHA-256 of `codec::encode`'s buffer, as
//!   `codec::digest` did before 2026-11-30. The two digests are asserted equal first.
//!
//! Both encoders' bytes are asserted equal before anything is timed. Run with
//! `cargo bench --bench codec`; `BENCH_QUICK=1` shortens it.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use scrip_stores::MemoryStore;
use scrip_tokens::{codec, ContentDigest, Message, RedemptionBatch, RedemptionItem};

use common::{RawWallet, Shop};

const PAYMENTS: usize = 10;
const COINS_PER_PAYMENT: usize = 20;
/// Payments of the larger batch the digests are also measured on (20 × 50).
const LARGE_PAYMENTS: usize = 50;

fn bincode_encode(batch: &RedemptionBatch) -> Vec<u8> {
    let config = bincode::config::standard()
        .with_little_endian()
        .with_fixed_int_encoding();
    let mut out = RedemptionBatch::TAG.as_bytes().to_vec();
    out.push(0);
    out.extend_from_slice(&RedemptionBatch::VERSION.to_le_bytes());
    bincode::serde::encode_into_std_write(batch, &mut out, config).unwrap();
    out
}

fn codec_group(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut rng = common::rng(11);
    let issuer = common::issuer(MemoryStore::new());
    let (batch, large) = runtime.block_on(async {
        let device = RawWallet::open(&issuer, 1, &mut rng).await;
        device.deposit(&issuer, 1_000_000, &mut rng).await;
        let shop = Shop::register(&issuer, 1, &mut rng).await;
        // Withdrawals carry at most 100 coins each.
        let mut coins = Vec::new();
        for _ in 0..LARGE_PAYMENTS * COINS_PER_PAYMENT / 100 {
            coins.extend(device.withdraw_blind(&issuer, &[1; 100], &mut rng).await);
        }
        let items: Vec<RedemptionItem> = coins
            .chunks(COINS_PER_PAYMENT)
            .map(|coins| RedemptionItem::Coins(shop.endorse(coins.to_vec(), &mut rng)))
            .collect();
        let small = shop.batch(items[..PAYMENTS].to_vec(), &mut rng);
        (small, shop.batch(items, &mut rng))
    });
    let bytes = codec::encode(&batch).unwrap();
    assert_eq!(
        bytes,
        bincode_encode(&batch),
        "the writer must match bincode"
    );
    assert_eq!(codec::decode::<RedemptionBatch>(&bytes).unwrap(), batch);

    let mut group = c.benchmark_group("encode_batch_200_coins");
    common::fast(&mut group);
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("scrip", |b| {
        b.iter(|| black_box(codec::encode(black_box(&batch)).unwrap()))
    });
    group.bench_function("bincode", |b| {
        b.iter(|| black_box(bincode_encode(black_box(&batch))))
    });
    group.finish();

    let mut group = c.benchmark_group("decode_batch_200_coins");
    common::fast(&mut group);
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("scrip", |b| {
        b.iter(|| black_box(codec::decode::<RedemptionBatch>(black_box(&bytes)).unwrap()))
    });
    group.finish();

    for batch in [&batch, &large] {
        let encoded = codec::encode(batch).unwrap();
        let buffered = || ContentDigest::of(&codec::encode(batch).unwrap());
        assert_eq!(codec::digest(batch).unwrap(), buffered());
        let coins = batch.payload.items.len() * COINS_PER_PAYMENT;
        let mut group = c.benchmark_group(format!("digest_batch_{coins}_coins"));
        common::fast(&mut group);
        group.throughput(Throughput::Bytes(encoded.len() as u64));
        group.bench_function("streamed", |b| {
            b.iter(|| black_box(codec::digest(black_box(batch)).unwrap()))
        });
        group.bench_function("buffered", |b| b.iter(|| black_box(buffered())));
        group.finish();
    }
}

criterion_group!(benches, codec_group);
criterion_main!(benches);
