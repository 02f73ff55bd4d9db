//! When a cached period of an insights view is still valid.
//!
//! Every write that changes what a period shows adds 1 to that period's change counter (per
//! source), and a write that may touch any period adds 1 to one shared counter. A view's
//! rows for period P depend on P and on earlier periods (the previous period's baseline, an
//! installation's first period), never on later ones. So P's token is the shared counter
//! plus every counter of a period starting at or before P: it grows with every change a
//! view of P could see, and with nothing later. Sums only grow, so a token read before a
//! change can never equal one read after it, whichever process committed first.

use chrono::NaiveDate;
use std::collections::BTreeMap;

/// The token of each of `periods`: `all` plus the sum of the `counters` (period start,
/// count) of periods starting at or before it. `counters` may come in any order.
pub(crate) fn tokens(counters: &[(NaiveDate, i64)], all: i64, periods: &[NaiveDate]) -> Vec<i64> {
    let mut sorted = counters.to_vec();
    sorted.sort_unstable();
    let mut prefix = Vec::with_capacity(sorted.len());
    let mut sum = all;
    for (start, count) in &sorted {
        sum += count;
        prefix.push((*start, sum));
    }
    periods
        .iter()
        .map(|p| {
            let at_or_before = prefix.partition_point(|(start, _)| start <= p);
            if at_or_before == 0 {
                all
            } else {
                prefix[at_or_before - 1].1
            }
        })
        .collect()
}

/// The periods from `from` on whose counter in `current` differs from the one in `held`
/// (a period missing from `held` differs): the ones whose rows must be read again. Unlike
/// [`tokens`], each period counts alone: for rows that depend on their own period only.
pub(crate) fn stale_periods(
    held: &BTreeMap<NaiveDate, i64>,
    current: &[(NaiveDate, i64)],
    from: NaiveDate,
) -> Vec<NaiveDate> {
    let mut out: Vec<NaiveDate> = current
        .iter()
        .filter(|(start, count)| *start >= from && held.get(start) != Some(count))
        .map(|(start, _)| *start)
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn a_period_token_sums_its_own_and_earlier_counters_and_the_shared_one() {
        let counters = [
            (day("2026-03-09"), 4),
            (day("2026-03-02"), 2),
            (day("2026-03-16"), 1),
        ];
        let periods = [
            day("2026-02-23"),
            day("2026-03-02"),
            day("2026-03-09"),
            day("2026-03-16"),
            day("2026-03-23"),
        ];
        assert_eq!(tokens(&counters, 10, &periods), vec![10, 12, 16, 17, 17]);
    }

    #[test]
    fn a_change_moves_the_token_of_its_period_and_later_ones_only() {
        let periods = [day("2026-03-02"), day("2026-03-09"), day("2026-03-16")];
        let before = tokens(&[(day("2026-03-09"), 1)], 0, &periods);
        let after = tokens(&[(day("2026-03-09"), 2)], 0, &periods);
        assert_eq!(before[0], after[0]);
        assert_ne!(before[1], after[1]);
        assert_ne!(before[2], after[2]);
        let shared = tokens(&[(day("2026-03-09"), 1)], 1, &periods);
        assert!(before.iter().zip(&shared).all(|(b, s)| b != s));
    }

    #[test]
    fn stale_periods_are_the_changed_and_the_new_ones_from_the_start_on() {
        let held: BTreeMap<NaiveDate, i64> = [
            (day("2026-03-02"), 4),
            (day("2026-03-09"), 2),
            (day("2026-03-16"), 1),
        ]
        .into();
        let current = [
            (day("2026-02-23"), 9), // before the start: not read
            (day("2026-03-16"), 1), // unchanged
            (day("2026-03-09"), 3), // changed
            (day("2026-03-23"), 1), // new
            (day("2026-03-02"), 4), // unchanged
        ];
        assert_eq!(
            stale_periods(&held, &current, day("2026-03-02")),
            vec![day("2026-03-09"), day("2026-03-23")]
        );
        assert!(stale_periods(&held, &[], day("2026-03-02")).is_empty());
    }
}
