//! Per-iteration schedules of MoCo v3: learning rate with linear warmup then half cosine to 0,
//! and the momentum coefficient rising from m₀ to 1 on a half cosine. Both are functions of the
//! fractional epoch `step / steps_per_epoch`, as the reference's `adjust_learning_rate` and
//! `adjust_moco_momentum` are.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// Peak learning rate, already scaled (base_lr × batch / 256).
    pub lr: f64,
    pub warmup_epochs: f64,
    pub epochs: f64,
    pub steps_per_epoch: u64,
    /// Momentum at step 0 (0.99).
    pub momentum: f64,
}

impl Schedule {
    fn epoch(&self, step: u64) -> f64 {
        step as f64 / self.steps_per_epoch.max(1) as f64
    }

    /// Learning rate at `step` (0-based, before the step is taken).
    pub fn lr(&self, step: u64) -> f64 {
        let e = self.epoch(step);
        if e < self.warmup_epochs {
            self.lr * e / self.warmup_epochs
        } else {
            let span = (self.epochs - self.warmup_epochs).max(f64::MIN_POSITIVE);
            self.lr * 0.5 * (1.0 + (std::f64::consts::PI * (e - self.warmup_epochs) / span).cos())
        }
    }

    /// Momentum coefficient at `step`: 1 − ½(1 + cos(π e / epochs))(1 − m₀).
    pub fn momentum(&self, step: u64) -> f64 {
        let e = self.epoch(step);
        1.0 - 0.5 * (1.0 + (std::f64::consts::PI * e / self.epochs).cos()) * (1.0 - self.momentum)
    }

    /// Total optimizer steps of the run.
    pub fn total_steps(&self) -> u64 {
        (self.epochs * self.steps_per_epoch as f64).round() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine_and_momentum_ends() {
        let s = Schedule {
            lr: 1.0,
            warmup_epochs: 2.0,
            epochs: 10.0,
            steps_per_epoch: 5,
            momentum: 0.99,
        };
        assert_eq!(s.lr(0), 0.0);
        assert!((s.lr(5) - 0.5).abs() < 1e-12);
        assert!((s.lr(10) - 1.0).abs() < 1e-12);
        assert!((s.lr(30) - 0.5).abs() < 1e-12, "half way through the cosine");
        assert!(s.lr(50).abs() < 1e-12);
        assert!((s.momentum(0) - 0.99).abs() < 1e-12);
        assert!((s.momentum(25) - 0.995).abs() < 1e-12);
        assert!((s.momentum(50) - 1.0).abs() < 1e-12);
        assert_eq!(s.total_steps(), 50);
        // Monotone where it should be.
        for i in 10..50 {
            assert!(s.lr(i + 1) <= s.lr(i));
            assert!(s.momentum(i + 1) >= s.momentum(i));
        }
    }
}
