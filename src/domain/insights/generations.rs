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
}
