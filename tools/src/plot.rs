//! `twoview plot RUN_DIR`: the curves of a run (loss, lr, momentum, img/s, data-wait, gradient
//! norms with spikes marked, kNN accuracy) from metrics.jsonl into one PNG.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use twoview_model::metrics::{self, Record, TrainRecord};
use twoview_pipeline::chart::{PALETTE, Panel, Series, render};

#[derive(clap::Args)]
pub struct Args {
    /// A run folder (holds metrics.jsonl).
    run: PathBuf,
    /// Output PNG (default: RUN_DIR/plot.png).
    #[arg(long)]
    out: Option<PathBuf>,
}

fn series<R>(rows: &[R], v: impl Fn(&R) -> (u64, f64), label: &str, color: usize) -> Series {
    let points = rows.iter().map(v).map(|(s, y)| (s as f64, y)).collect();
    Series { label: label.to_owned(), points, color: PALETTE[color] }
}

/// Renders RUN_DIR/metrics.jsonl to `out`; returns how many train and kNN records it drew.
pub fn plot_run(run: &Path, out: &Path) -> anyhow::Result<(usize, usize)> {
    let mut train = Vec::new();
    let mut knn = Vec::new();
    for r in metrics::read(&run.join("metrics.jsonl"))? {
        match r {
            Record::Train(t) => train.push(t),
            Record::Knn(k) => knn.push(k),
            _ => {}
        }
    }
    let one = |title: &str, v: fn(&TrainRecord) -> f64| Panel {
        title: title.to_owned(),
        series: vec![series(&train, |r| (r.step, v(r)), "", 0)],
        markers: vec![],
    };
    let spikes =
        train.iter().filter(|r| r.spike).map(|r| (r.step as f64, r.grad_norm_first)).collect();
    let panels = [
        one("loss", |r| r.loss),
        Panel {
            title: "kNN accuracy (val, %)".into(),
            series: vec![
                series(&knn, |r| (r.step, r.top1), "top-1", 2),
                series(&knn, |r| (r.step, r.top5), "top-5", 3),
            ],
            markers: vec![],
        },
        one("learning rate", |r| r.lr),
        one("momentum (encoder)", |r| r.momentum),
        Panel {
            title: "gradient norm".into(),
            series: vec![
                series(&train, |r| (r.step, r.grad_norm), "global", 0),
                series(&train, |r| (r.step, r.grad_norm_first), "first layer", 1),
            ],
            markers: spikes,
        },
        one("images/s", |r| r.img_per_s),
        one("data-wait (%)", |r| 100.0 * r.data_wait),
    ];
    let img = render(&panels, 2, 600, 300);
    img.save_png(out)?;
    Ok((train.len(), knn.len()))
}

pub fn run(a: &Args) -> anyhow::Result<ExitCode> {
    let out = a.out.clone().unwrap_or_else(|| a.run.join("plot.png"));
    let (t, k) = plot_run(&a.run, &out)?;
    eprintln!("plot: {t} train and {k} kNN records → {}", out.display());
    Ok(ExitCode::SUCCESS)
}
