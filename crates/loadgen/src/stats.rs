//! Latency samples (microseconds) and their summary.

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// What one worker measured.
#[derive(Default)]
pub struct Samples {
    /// Whole-operation latencies of the successful operations.
    pub ops: Vec<u32>,
    /// Per-phase latencies (e.g. `post`, `wait`, `get` of W1).
    pub phases: BTreeMap<&'static str, Vec<u32>>,
    pub errors: u64,
    pub error_samples: Vec<String>,
    pub polls: u64,
    pub requests: u64,
}

impl Samples {
    pub fn phase(&mut self, name: &'static str, micros: u32) {
        self.phases.entry(name).or_default().push(micros);
    }

    pub fn error(&mut self, message: String) {
        self.errors += 1;
        if self.error_samples.len() < 3 {
            self.error_samples.push(message);
        }
    }

    pub fn merge(&mut self, other: Samples) {
        self.ops.extend(other.ops);
        for (name, values) in other.phases {
            self.phases.entry(name).or_default().extend(values);
        }
        self.errors += other.errors;
        for message in other.error_samples {
            if self.error_samples.len() < 5 {
                self.error_samples.push(message);
            }
        }
        self.polls += other.polls;
        self.requests += other.requests;
    }
}

/// Percentiles of a list of microsecond samples, in milliseconds.
pub struct Summary {
    pub n: usize,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Summary {
    pub fn of(values: &mut [u32]) -> Summary {
        values.sort_unstable();
        let n = values.len();
        let at = |q: f64| -> f64 {
            if n == 0 {
                return 0.0;
            }
            let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
            values[rank - 1] as f64 / 1000.0
        };
        let mean = if n == 0 { 0.0 } else { values.iter().map(|&v| v as f64).sum::<f64>() / n as f64 / 1000.0 };
        Summary { n, mean_ms: mean, p50_ms: at(0.50), p90_ms: at(0.90), p99_ms: at(0.99), max_ms: at(1.0) }
    }

    pub fn json(&self) -> Value {
        json!({
            "n": self.n,
            "mean_ms": round3(self.mean_ms),
            "p50_ms": round3(self.p50_ms),
            "p90_ms": round3(self.p90_ms),
            "p99_ms": round3(self.p99_ms),
            "max_ms": round3(self.max_ms),
        })
    }
}

pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut values: Vec<u32> = (1..=100).rev().map(|ms| ms * 1000).collect();
        let s = Summary::of(&mut values);
        assert_eq!((s.n, s.p50_ms, s.p90_ms, s.p99_ms, s.max_ms), (100, 50.0, 90.0, 99.0, 100.0));
        assert_eq!(s.mean_ms, 50.5);
        let empty = Summary::of(&mut []);
        assert_eq!((empty.n, empty.p99_ms), (0, 0.0));
    }
}
