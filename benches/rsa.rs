//! RSA-2048 on every crypto backend compiled in (`Backend::ALL`: `rustcrypto`, and `fast`
//! where the server's feature is on, as it is for this package), next to `openssl speed
//! rsa2048` on the same machine in the same process.
//!
//! Criterion ids `rsa/<backend>/<operation>`, each with the fixture 2048-bit keys moved to
//! the backend with `on_backend`:
//!
//! - `blind_sign`: `DenominationSigningKey::sign_blinded` of a prepared blinded message
//!   (denomination 10): the issuer's RSASP1, including the RFC 9474 fault check
//!   (`s^e == m`, one public-key operation).
//! - `pss_sign`: `BalanceCertificate::sign` of the specimen balance certificate's payload
//!   (RSA-PSS-SHA256, encoding included). This **includes our verify-after-sign fault
//!   check**: every PSS signature is verified under the public key before it is released,
//!   so it costs about one private-key plus one public-key operation.
//! - `pss_verify`: `verify_signature` of the specimen balance certificate under the
//!   balance certifier's verifying key on the backend (encoding included).
//! - `coin_verify`: RFC 9474 `Verify` (RSABSSA-SHA384-PSS-Randomized) of the specimen blind
//!   coin, `Rfc9474::verify_message` on the denomination's verifying key on the backend.
//!
//! Around the criterion groups (once before, once after) the bench runs `openssl speed
//! -seconds S -mr rsa2048` (S = 3, or 1 with `BENCH_QUICK=1`), then reads criterion's
//! medians of this run (`<criterion dir>/rsa/<backend>/<operation>/new/estimates.json`,
//! `median.point_estimate`) and prints a Markdown table: each operation against OpenSSL's
//! sign time (`blind_sign`, `pss_sign`) or verify time (`pss_verify`, `coin_verify`), the
//! mean of the two OpenSSL runs, and whether the `fast` rows meet the targets (blind sign
//! ≤ 1.1×, verification ≤ 1.2× of OpenSSL). The table is also written to
//! `<criterion dir>/rsa/openssl-comparison.md`. Without `openssl` on the `PATH` it prints a
//! note and the medians alone. Everything runs on one thread.
//!
//! Run with `cargo bench --bench rsa` (about 70 s once built); `BENCH_QUICK=1` shortens
//! measurement for smoke runs. A filter (`cargo bench --bench rsa -- fast`) measures only
//! the matching ids; the others show as not measured. In test mode (`cargo test
//! --benches`) each benchmark runs once and OpenSSL is not run.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::fmt::Write as _;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use criterion::{BenchmarkId, Criterion};
use scrip_tokens::hazmat::Rfc9474;
use scrip_tokens::{codec, fixtures, Backend, BalanceCertificate, Coin};

const OPERATIONS: [&str; 4] = ["blind_sign", "pss_sign", "pss_verify", "coin_verify"];

fn rsa(c: &mut Criterion) {
    let mut rng = common::rng(18);
    let specimens = fixtures::Specimens::new(&mut rng);

    // Denomination 10: the specimen coin's key, and the key that blind-signs.
    let denomination = fixtures::denomination(10).unwrap();
    let coin = &specimens.blind_coin;
    assert_eq!(coin.key_id, denomination.key_id());
    let coin_message = codec::encode(&coin.message()).unwrap();
    assert_eq!(
        Coin::Blind(coin.clone()).signed_bytes().unwrap(),
        [coin.randomizer.as_slice(), &coin_message].concat()
    );
    let blinded = denomination
        .verifying_key()
        .blind_message(&mut rng, &coin_message)
        .unwrap()
        .blinded;

    // The balance certifier: the specimen certificate is signed by this fixture key.
    let certifier = fixtures::balance_certifier();
    let certificate = &specimens.balance_cert;
    certificate
        .verify_signature(certifier.verifying_key())
        .unwrap();
    let payload = certificate.payload.clone();

    let mut group = c.benchmark_group("rsa");
    if common::quick() {
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(100))
            .measurement_time(Duration::from_millis(300));
    } else {
        group
            .sample_size(50)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(5));
    }
    for &backend in Backend::ALL {
        let name = backend.name();
        let signing = denomination.on_backend(backend).unwrap();
        assert_eq!(signing.backend(), backend);
        let coin_key = denomination.verifying_key().on_backend(backend);
        assert_eq!(coin_key.public_key().backend(), backend);
        let signer = certifier.on_backend(backend).unwrap();
        assert_eq!(signer.backend(), backend);
        let verifier = certifier.verifying_key().on_backend(backend);
        assert_eq!(verifier.public_key().backend(), backend);

        // Each prepared input works on this backend before it is timed.
        signing.sign_blinded(&mut rng, &blinded).unwrap();
        coin_key
            .verify_message(&coin.signature, coin.randomizer, &coin_message)
            .unwrap();
        BalanceCertificate::sign(payload.clone(), &signer, &mut rng)
            .unwrap()
            .verify_signature(&verifier)
            .unwrap();
        certificate.verify_signature(&verifier).unwrap();

        group.bench_function(BenchmarkId::new(name, "blind_sign"), |b| {
            b.iter(|| signing.sign_blinded(&mut rng, black_box(&blinded)).unwrap())
        });
        group.bench_function(BenchmarkId::new(name, "pss_sign"), |b| {
            b.iter(|| {
                BalanceCertificate::sign(black_box(payload.clone()), &signer, &mut rng).unwrap()
            })
        });
        group.bench_function(BenchmarkId::new(name, "pss_verify"), |b| {
            b.iter(|| {
                black_box(certificate)
                    .verify_signature(black_box(&verifier))
                    .unwrap();
            })
        });
        group.bench_function(BenchmarkId::new(name, "coin_verify"), |b| {
            b.iter(|| {
                coin_key
                    .verify_message(
                        black_box(&coin.signature),
                        coin.randomizer,
                        black_box(&coin_message),
                    )
                    .unwrap()
            })
        });
    }
    group.finish();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `cargo bench` passes `--bench`; `cargo test --benches` does not (criterion's test
    // mode: each benchmark runs once), and `--list` only lists. OpenSSL runs only in the
    // first case.
    let benching = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--list");
    let seconds = if common::quick() { 1 } else { 3 };
    let started = SystemTime::now();

    let before = if benching {
        openssl_speed(seconds)
    } else {
        Ok(None)
    };

    let mut criterion = Criterion::default().configure_from_args();
    rsa(&mut criterion);
    criterion.final_summary();

    if !benching {
        return;
    }
    let after = openssl_speed(seconds);
    let dir = criterion_dir();
    let report = report(&dir, started, seconds, before, after);
    println!("\n{report}");
    let file = dir.join("rsa").join("openssl-comparison.md");
    match std::fs::write(&file, &report) {
        Ok(()) => println!("(written to {})", file.display()),
        Err(e) => println!("(could not write {}: {e})", file.display()),
    }
}

/// Seconds per RSA-2048 operation measured by `openssl speed`.
#[derive(Clone, Copy, Debug)]
struct Speed {
    sign: f64,
    verify: f64,
}

/// `openssl speed -seconds S -mr rsa2048`, single-threaded. `Ok(None)`: no `openssl` to
/// run; `Err`: it ran but its answer could not be read.
fn openssl_speed(seconds: u32) -> Result<Option<Speed>, String> {
    let output = match Command::new("openssl")
        .args(["speed", "-seconds", &seconds.to_string(), "-mr", "rsa2048"])
        .output()
    {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("openssl speed did not run: {e}")),
    };
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if !output.status.success() {
        return Err(format!("openssl speed failed ({}): {text}", output.status));
    }
    parse_speed(&text)
        .map(Some)
        .ok_or_else(|| format!("no rsa2048 result in openssl speed's output: {text}"))
}

/// The rates of `openssl speed -mr` (`+F2:<index>:2048:<sign/s>:<verify/s>`), or of the
/// human-readable table (`rsa 2048 bits <sign s> <verify s> <sign/s> <verify/s>`).
fn parse_speed(text: &str) -> Option<Speed> {
    let from_rates = |sign: f64, verify: f64| {
        (sign > 0.0 && verify > 0.0).then_some(Speed {
            sign: 1.0 / sign,
            verify: 1.0 / verify,
        })
    };
    for line in text.lines() {
        let fields: Vec<&str> = line.trim().split(':').collect();
        if fields.len() >= 5 && fields[0] == "+F2" && fields[2] == "2048" {
            return from_rates(fields[3].parse().ok()?, fields[4].parse().ok()?);
        }
    }
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.len() >= 7 && words[..3] == ["rsa", "2048", "bits"] {
            return from_rates(words[5].parse().ok()?, words[6].parse().ok()?);
        }
    }
    None
}

/// Where criterion writes this run, found as criterion finds it: `$CRITERION_HOME`, else
/// `$CARGO_TARGET_DIR/criterion`, else the target directory `cargo metadata` names, else
/// `target/criterion`.
fn criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(target).join("criterion");
    }
    let from_metadata = std::env::var_os("CARGO").and_then(|cargo| {
        let output = Command::new(cargo)
            .args(["metadata", "--format-version", "1", "--no-deps"])
            .output()
            .ok()?;
        let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
        Some(PathBuf::from(metadata["target_directory"].as_str()?))
    });
    from_metadata
        .map(|target| target.join("criterion"))
        .unwrap_or_else(|| PathBuf::from("target/criterion"))
}

/// Criterion's median and its 95 % interval (ns) for `rsa/<backend>/<operation>`, if it
/// was measured in this run (written after `since`).
fn median(dir: &Path, backend: &str, operation: &str, since: SystemTime) -> Option<[f64; 3]> {
    let file = dir
        .join("rsa")
        .join(backend)
        .join(operation)
        .join("new")
        .join("estimates.json");
    let modified = std::fs::metadata(&file).ok()?.modified().ok()?;
    if modified < since {
        return None;
    }
    let estimates: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).ok()?).ok()?;
    let median = &estimates["median"];
    let interval = &median["confidence_interval"];
    Some([
        median["point_estimate"].as_f64()?,
        interval["lower_bound"].as_f64()?,
        interval["upper_bound"].as_f64()?,
    ])
}

/// A duration in ns, in µs below 1 ms and in ms above.
fn time(ns: f64) -> String {
    if ns < 1e6 {
        format!("{:.1} µs", ns / 1e3)
    } else {
        format!("{:.3} ms", ns / 1e6)
    }
}

/// The private-key operations are compared with OpenSSL's sign, the others with its
/// verify; the target of the `fast` backend's ratio, where the issue sets one.
fn reference(operation: &str) -> (bool, Option<f64>) {
    match operation {
        "blind_sign" => (true, Some(1.1)),
        "pss_sign" => (true, None),
        _ => (false, Some(1.2)),
    }
}

fn report(
    dir: &Path,
    since: SystemTime,
    seconds: u32,
    before: Result<Option<Speed>, String>,
    after: Result<Option<Speed>, String>,
) -> String {
    let mut out = String::new();
    let runs: Vec<Speed> = [&before, &after]
        .into_iter()
        .filter_map(|r| r.as_ref().ok().copied().flatten())
        .collect();
    for (when, result) in [("before", &before), ("after", &after)] {
        match result {
            Ok(Some(s)) => writeln!(
                out,
                "openssl speed -seconds {seconds} -mr rsa2048, {when} the criterion groups: \
                 sign {} ({:.0}/s), verify {} ({:.0}/s)",
                time(s.sign * 1e9),
                1.0 / s.sign,
                time(s.verify * 1e9),
                1.0 / s.verify
            ),
            Ok(None) => writeln!(
                out,
                "openssl not found on PATH ({when}): no OpenSSL reference, ratios skipped"
            ),
            Err(e) => writeln!(out, "openssl speed ({when}) unusable: {e}"),
        }
        .ok();
    }
    let mean = (!runs.is_empty()).then(|| {
        let n = runs.len() as f64;
        Speed {
            sign: runs.iter().map(|s| s.sign).sum::<f64>() / n,
            verify: runs.iter().map(|s| s.verify).sum::<f64>() / n,
        }
    });
    let both = match (&before, &after) {
        (Ok(Some(b)), Ok(Some(a))) => Some((*b, *a)),
        _ => None,
    };

    writeln!(out).ok();
    writeln!(
        out,
        "| operation | backend | ours (median) | openssl speed rsa2048 | ratio ours/openssl |"
    )
    .ok();
    writeln!(out, "|---|---|---|---|---|").ok();
    let mut targets = Vec::new();
    for operation in OPERATIONS {
        let (is_sign, target) = reference(operation);
        for backend in Backend::ALL {
            let ours = median(dir, backend.name(), operation, since);
            let pick = |s: &Speed| if is_sign { s.sign } else { s.verify } * 1e9;
            let kind = if is_sign { "sign" } else { "verify" };
            let openssl = match (mean, both) {
                (Some(m), Some((b, a))) => format!(
                    "{kind} {} (before {}, after {})",
                    time(pick(&m)),
                    time(pick(&b)),
                    time(pick(&a))
                ),
                (Some(m), None) => format!("{kind} {} (one run)", time(pick(&m))),
                (None, _) => "—".to_string(),
            };
            let ratio = match (ours, mean) {
                (Some([m, ..]), Some(s)) => Some(m / pick(&s)),
                _ => None,
            };
            let ours_cell = match ours {
                Some([m, lo, hi]) => format!("{} [{}–{}]", time(m), time(lo), time(hi)),
                None => "not measured".to_string(),
            };
            let ratio_cell = ratio.map_or("—".to_string(), |r| format!("{r:.2}×"));
            writeln!(
                out,
                "| `{operation}` | {backend} | {ours_cell} | {openssl} | {ratio_cell} |"
            )
            .ok();
            if backend.name() == "fast" {
                targets.push((operation, target, ratio));
            }
        }
    }

    writeln!(out).ok();
    writeln!(
        out,
        "Targets for the fast backend: blind sign ≤ 1.1× OpenSSL's sign, verification ≤ 1.2× \
         OpenSSL's verify (mean of the two OpenSSL runs)."
    )
    .ok();
    if targets.is_empty() {
        writeln!(out, "- no fast backend compiled in (feature `fast` off)").ok();
    }
    for (operation, target, ratio) in targets {
        let line = match (target, ratio) {
            (None, Some(r)) => format!(
                "- `{operation}`: {r:.2}×, no target (includes the verify-after-sign fault \
                 check: one public-key operation more than OpenSSL's sign)"
            ),
            (Some(t), Some(r)) => format!(
                "- `{operation}`: {r:.2}× (target ≤ {t}×): {}",
                if r <= t { "**met**" } else { "**not met**" }
            ),
            (_, None) => format!("- `{operation}`: no ratio (not measured, or no OpenSSL)"),
        };
        writeln!(out, "{line}").ok();
    }
    out
}
