//! Progress display: an indicatif bar on a terminal, a plain line every few seconds otherwise
//! (CI logs, pipes), so long jobs are never silent.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// A progress display over `total` items.
pub struct Progress {
    bar: Option<ProgressBar>,
    what: &'static str,
    total: u64,
    start: Instant,
    last_line: Instant,
    final_printed: bool,
}

impl Progress {
    /// Starts a display of `total` `what`s (e.g. "images").
    pub fn new(total: u64, what: &'static str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template(
                    "{bar:40.cyan/blue} {pos}/{len} {msg} [{elapsed_precise} < {eta_precise}, {per_sec}]",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Self {
            bar,
            what,
            total,
            start: Instant::now(),
            last_line: Instant::now(),
            final_printed: false,
        }
    }

    /// A display that shows nothing (the other ranks of a data-parallel run).
    pub fn hidden() -> Self {
        let mut p = Self::new(0, "");
        if let Some(bar) = p.bar.take() {
            bar.finish_and_clear();
        }
        p.final_printed = true;
        p
    }

    /// Sets the position and a short message (e.g. "3 skipped").
    pub fn update(&mut self, done: u64, msg: String) {
        match &self.bar {
            Some(bar) => {
                bar.set_position(done);
                bar.set_message(msg);
            }
            None if !self.final_printed
                && (self.last_line.elapsed() >= Duration::from_secs(5) || done == self.total) =>
            {
                self.last_line = Instant::now();
                self.final_printed = done == self.total;
                let secs = self.start.elapsed().as_secs_f64();
                let rate = done as f64 / secs.max(1e-9);
                let eta = (self.total.saturating_sub(done)) as f64 / rate.max(1e-9);
                // Slow work (a CPU training step) reads better as seconds per item.
                let pace = if done == 0 {
                    "none done yet".to_string()
                } else if rate >= 1.0 {
                    format!("{rate:.0}/s")
                } else {
                    format!("{:.1} s each", 1.0 / rate.max(1e-9))
                };
                eprintln!(
                    "  {done}/{} {} ({pace}, {msg}, {secs:.0}s elapsed, ~{eta:.0}s left)",
                    self.total, self.what
                );
            }
            None => {}
        }
    }

    /// Prints a line above the bar (or plainly without one).
    pub fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }

    /// Removes the bar.
    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}
