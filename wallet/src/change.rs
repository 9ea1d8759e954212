//! Exact change: choosing coins that add up to exactly the requested amount, since no
//! change can be given offline. Fewest coins wins; when no subset adds up, the caller is
//! told the closest amounts the coins can make.

/// Above this many minor units (total value of the coins considered) the exact search is
/// replaced by a greedy largest-first pass, which is exact for the usual 1-2-5 series.
const EXACT_SEARCH_LIMIT: u64 = 200_000;

/// The result of a search.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Change {
    /// Indices of the coins to hand over.
    Exact(Vec<usize>),
    /// No subset adds up to the amount.
    Impossible {
        /// Largest reachable sum below the amount.
        below: u64,
        /// Smallest reachable sum above the amount.
        above: Option<u64>,
    },
}

/// Picks coins (by index into `values`) adding up to exactly `amount`, fewest first.
///
/// Coins of equal value are interchangeable, so the search runs over denominations with
/// counts: `fewest[s]` after denomination `k` is the fewest coins of the first `k`
/// denominations summing to `s`, and `used[k][s]` how many of denomination `k` that takes.
pub(crate) fn exact_change(values: &[u64], amount: u64) -> Change {
    let total: u64 = values.iter().fold(0u64, |acc, v| acc.saturating_add(*v));
    if amount > total {
        return Change::Impossible {
            below: total,
            above: None,
        };
    }
    if total > EXACT_SEARCH_LIMIT {
        return greedy(values, amount);
    }
    let mut by_value: std::collections::BTreeMap<u64, Vec<usize>> = Default::default();
    for (i, v) in values.iter().enumerate().filter(|(_, v)| **v > 0) {
        by_value.entry(*v).or_default().push(i);
    }
    let size = total as usize + 1; // total <= EXACT_SEARCH_LIMIT
    const UNREACHABLE: u32 = u32::MAX;
    let mut fewest = vec![UNREACHABLE; size];
    fewest[0] = 0;
    let mut used: Vec<Vec<u16>> = Vec::with_capacity(by_value.len());
    for (value, coins) in &by_value {
        let v = *value as usize;
        let count = coins.len().min(usize::from(u16::MAX));
        let mut next = vec![UNREACHABLE; size];
        let mut took = vec![0u16; size];
        for s in 0..size {
            let mut best = fewest[s];
            let mut best_m = 0usize;
            for m in 1..=count {
                let Some(rest) = s.checked_sub(m * v) else {
                    break;
                };
                let prev = fewest[rest];
                if prev != UNREACHABLE && prev + (m as u32) < best {
                    best = prev + m as u32;
                    best_m = m;
                }
            }
            next[s] = best;
            took[s] = best_m as u16;
        }
        fewest = next;
        used.push(took);
    }
    let target = amount as usize;
    if fewest[target] != UNREACHABLE {
        let mut picked = Vec::new();
        let mut s = target;
        for ((value, coins), took) in by_value.iter().zip(&used).rev() {
            let m = usize::from(took[s]);
            picked.extend(coins.iter().take(m));
            s -= m * (*value as usize);
        }
        return Change::Exact(picked);
    }
    let reachable = |s: &usize| fewest[*s] != UNREACHABLE;
    let below = (0..target).rev().find(reachable).unwrap_or(0) as u64;
    let above = (target + 1..size).find(reachable).map(|s| s as u64);
    Change::Impossible { below, above }
}

/// `amount` in `denominations` (largest first), greedily: exact for the 1-2-5 series
/// keysets use; `None` if it leaves a remainder or needs more than `max` coins.
pub(crate) fn split(amount: u64, denominations: &[u64], max: usize) -> Option<Vec<u64>> {
    let mut left = amount;
    let mut values = Vec::new();
    for d in denominations.iter().copied().filter(|d| *d > 0) {
        while left >= d {
            if values.len() == max {
                return None;
            }
            left -= d;
            values.push(d);
        }
    }
    (left == 0).then_some(values)
}

/// The default denomination mix for `amount` (the wallet's change when it splits coins
/// ahead of going offline): a *ladder* of small coins first, then the rest in the largest
/// denominations. Of each denomination (smallest first) the ladder takes as many as make
/// every amount below the next denomination payable exactly with the coins taken so far:
/// for the 1-2-5 series that is 1, 2, 2, 5, 10, 20, 20, 50, ... (each decade 1+2+2+5),
/// so with the ladder complete every whole amount up to its total (and, with the larger
/// coins, most amounts beyond) can be paid without change. `denominations` is largest
/// first; `None` as for [`split`].
pub(crate) fn ladder(amount: u64, denominations: &[u64], max: usize) -> Option<Vec<u64>> {
    let mut ascending: Vec<u64> = denominations.iter().copied().filter(|d| *d > 0).collect();
    ascending.sort_unstable();
    ascending.dedup();
    let mut left = amount;
    let mut values = Vec::new();
    let mut covered = 0u64;
    for (i, d) in ascending.iter().copied().enumerate() {
        let next = ascending.get(i + 1).copied().unwrap_or(u64::MAX);
        while covered.saturating_add(1) < next && d <= left && values.len() < max {
            values.push(d);
            left -= d;
            covered = covered.saturating_add(d);
        }
    }
    let mut descending = ascending;
    descending.reverse();
    let rest = split(left, &descending, max.checked_sub(values.len())?)?;
    values.extend(rest);
    values.sort_unstable_by(|a, b| b.cmp(a));
    Some(values)
}

fn greedy(values: &[u64], amount: u64) -> Change {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by_key(|i| std::cmp::Reverse(values[*i]));
    let mut left = amount;
    let mut picked = Vec::new();
    for i in order {
        if values[i] <= left && values[i] > 0 {
            left -= values[i];
            picked.push(i);
        }
    }
    if left == 0 {
        Change::Exact(picked)
    } else {
        Change::Impossible {
            below: amount - left,
            above: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sum(values: &[u64], picked: &[usize]) -> u64 {
        picked.iter().map(|i| values[*i]).sum()
    }

    #[test]
    fn picks_the_fewest_coins_for_the_exact_amount() {
        let coins = [1, 2, 2, 5, 10, 10, 20];
        match exact_change(&coins, 27) {
            Change::Exact(p) => {
                assert_eq!(sum(&coins, &p), 27);
                assert_eq!(p.len(), 3); // 20 + 5 + 2
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(exact_change(&coins, 0), Change::Exact(vec![]));
    }

    #[test]
    fn says_what_it_can_do_when_exact_change_is_impossible() {
        assert_eq!(
            exact_change(&[5, 5, 10], 7),
            Change::Impossible {
                below: 5,
                above: Some(10)
            }
        );
        assert_eq!(
            exact_change(&[5, 5], 11),
            Change::Impossible {
                below: 10,
                above: None
            }
        );
        assert_eq!(
            exact_change(&[], 1),
            Change::Impossible {
                below: 0,
                above: None
            }
        );
    }

    #[test]
    fn the_ladder_keeps_small_coins_and_puts_the_rest_in_large_ones() {
        let series = [500, 200, 100, 50, 20, 10, 5, 2, 1];
        assert_eq!(
            ladder(100, &series, 200),
            Some(vec![20, 20, 20, 20, 10, 5, 2, 2, 1])
        );
        assert_eq!(ladder(0, &series, 200), Some(vec![]));
        // Short of a whole rung: the ladder stops where the amount ends.
        assert_eq!(ladder(4, &series, 200), Some(vec![2, 1, 1]));
        assert_eq!(ladder(1_000, &series, 5), None);
        assert_eq!(split(3, &[10, 5, 2], 200), None);
        assert_eq!(ladder(3, &[10, 5, 2], 200), None);
    }

    proptest! {
        #[test]
        fn a_ladder_adds_up_and_pays_every_amount_up_to_its_rungs(amount in 0u64..3_000) {
            let series = [500, 200, 100, 50, 20, 10, 5, 2, 1];
            let mix = ladder(amount, &series, 200).unwrap();
            prop_assert_eq!(mix.iter().sum::<u64>(), amount);
            // Every amount up to min(amount, 10) is payable exactly from the mix.
            for pay in 1..=amount.min(10) {
                prop_assert!(matches!(exact_change(&mix, pay), Change::Exact(_)), "{} from {:?}", pay, mix);
            }
        }
    }

    proptest! {
        #[test]
        fn any_answer_is_exact_and_uses_each_coin_once(
            coins in prop::collection::vec(prop::sample::select(vec![1u64, 2, 5, 10, 20, 50]), 0..30),
            amount in 0u64..400,
        ) {
            match exact_change(&coins, amount) {
                Change::Exact(p) => {
                    prop_assert_eq!(sum(&coins, &p), amount);
                    let mut seen = p.clone();
                    seen.sort_unstable();
                    seen.dedup();
                    prop_assert_eq!(seen.len(), p.len());
                }
                Change::Impossible { below, above } => {
                    // Brute force over small inputs agrees that no subset works.
                    if coins.len() <= 14 {
                        let n = coins.len();
                        let exists = (0u32..(1 << n)).any(|m| {
                            (0..n).filter(|i| m & (1 << i) != 0).map(|i| coins[i]).sum::<u64>() == amount
                        });
                        prop_assert!(!exists);
                    }
                    prop_assert!(below < amount);
                    prop_assert!(above.is_none_or(|a| a > amount));
                }
            }
        }
    }
}
