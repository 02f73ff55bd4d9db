//! The aggregates of one metric over a group of installations' period values.
//!
//! Percentiles are nearest-rank: the p-th percentile of n sorted values is the value at rank
//! ⌈p/100 · n⌉ (1-based), so it is always one of the reported values.

use serde::Serialize;

/// Aggregates of one group in one period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricSummary {
    /// Installations with a (non-special) period value.
    pub installations_reporting: u64,
    /// Installations whose period value is greater than 0.
    pub adopting: u64,
    /// Sum of the period values.
    pub sum: f64,
    /// Nearest-rank median.
    pub median: Option<f64>,
    /// Nearest-rank 90th percentile.
    pub p90: Option<f64>,
    /// Special values left out.
    pub excluded_special: u64,
}

/// The nearest-rank `p`-th percentile (0 < p ≤ 100) of ascending `sorted` values.
pub fn nearest_rank(sorted: &[f64], p: u32) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len() as u64;
    let rank = (u64::from(p) * n).div_ceil(100).max(1);
    sorted.get((rank - 1) as usize).copied()
}

/// Summarises period values (already free of special values) and the count of excluded ones.
pub fn summarize(mut values: Vec<f64>, excluded_special: u64) -> MetricSummary {
    values.sort_by(f64::total_cmp);
    MetricSummary {
        installations_reporting: values.len() as u64,
        adopting: values.iter().filter(|v| **v > 0.0).count() as u64,
        sum: values.iter().sum(),
        median: nearest_rank(&values, 50),
        p90: nearest_rank(&values, 90),
        excluded_special,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(nearest_rank(&v, 50), Some(5.0));
        assert_eq!(nearest_rank(&v, 90), Some(9.0));
        assert_eq!(nearest_rank(&v, 100), Some(10.0));
        assert_eq!(nearest_rank(&[7.0], 90), Some(7.0));
        assert_eq!(nearest_rank(&[1.0, 2.0, 3.0], 50), Some(2.0));
        assert_eq!(nearest_rank(&[1.0, 2.0], 50), Some(1.0));
        assert_eq!(nearest_rank(&[], 50), None);
    }

    #[test]
    fn summary_counts_adoption_and_exclusions() {
        let s = summarize(vec![0.0, 5.0, 3.0, 0.0], 2);
        assert_eq!(s.installations_reporting, 4);
        assert_eq!(s.adopting, 2);
        assert_eq!(s.sum, 8.0);
        assert_eq!(s.median, Some(0.0));
        assert_eq!(s.p90, Some(5.0));
        assert_eq!(s.excluded_special, 2);
        assert_eq!(summarize(vec![], 1).median, None);
    }
}
