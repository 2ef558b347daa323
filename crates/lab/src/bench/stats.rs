//! Figures of a set of measurements: count, p50, p99, max (nearest-rank percentiles), and the
//! ratio of two sets.

use serde::{Deserialize, Serialize};

/// The figures of one system's measurements, in milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    /// Measurements.
    pub count: usize,
    /// Median (nearest rank).
    pub p50_ms: f64,
    /// 99th percentile (nearest rank: with fewer than 100 measurements, the maximum).
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
    /// Smallest.
    pub min_ms: f64,
}

impl Figures {
    /// The figures of `samples_ms`; `None` when empty or when a sample is not a finite number.
    pub fn of(samples_ms: &[f64]) -> Option<Self> {
        if samples_ms.is_empty() || samples_ms.iter().any(|sample| !sample.is_finite()) {
            return None;
        }
        let mut sorted = samples_ms.to_vec();
        sorted.sort_by(f64::total_cmp);
        Some(Self {
            count: sorted.len(),
            p50_ms: nearest_rank(&sorted, 50.0)?,
            p99_ms: nearest_rank(&sorted, 99.0)?,
            max_ms: *sorted.last()?,
            min_ms: *sorted.first()?,
        })
    }
}

/// The nearest-rank percentile `percent` of sorted `sorted`: the smallest value with at least
/// `percent`% of the values at or below it.
pub fn nearest_rank(sorted: &[f64], percent: f64) -> Option<f64> {
    if sorted.is_empty() || !(0.0..=100.0).contains(&percent) {
        return None;
    }
    let rank = ((percent / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// `value / reference`, when the reference is positive.
pub fn ratio(value: f64, reference: f64) -> Option<f64> {
    (reference > 0.0 && value.is_finite()).then(|| value / reference)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_table() {
        let sorted: Vec<f64> = (1..=20).map(f64::from).collect();
        let table = [
            (50.0, 10.0),
            (99.0, 20.0),
            (100.0, 20.0),
            (0.0, 1.0),
            (5.0, 1.0),
            (6.0, 2.0),
        ];
        for (percent, want) in table {
            assert_eq!(nearest_rank(&sorted, percent), Some(want), "p{percent}");
        }
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(nearest_rank(&hundred, 99.0), Some(99.0));
        assert_eq!(nearest_rank(&[], 50.0), None);
        assert_eq!(nearest_rank(&sorted, 101.0), None);
    }

    #[test]
    fn figures_sort_their_input() {
        let figures = Figures::of(&[300.0, 100.0, 200.0]).unwrap();
        assert_eq!(figures.count, 3);
        assert_eq!(figures.p50_ms, 200.0);
        assert_eq!(figures.p99_ms, 300.0);
        assert_eq!(figures.max_ms, 300.0);
        assert_eq!(figures.min_ms, 100.0);
        assert_eq!(Figures::of(&[]), None);
        assert_eq!(Figures::of(&[1.0, f64::NAN]), None);
        assert_eq!(ratio(3000.0, 300.0), Some(10.0));
        assert_eq!(ratio(1.0, 0.0), None);
    }
}
