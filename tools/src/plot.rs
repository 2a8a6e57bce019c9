//! `twoview plot RUN_DIR`: the curves of a run (loss, lr, momentum, img/s, data-wait, gradient
//! norms with spikes marked, kNN accuracy) from metrics.jsonl into one PNG.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use twoview_pipeline::chart::{PALETTE, Panel, Series, render};

#[derive(clap::Args)]
pub struct Args {
    /// A run folder (holds metrics.jsonl).
    run: PathBuf,
    /// Output PNG (default: RUN_DIR/plot.png).
    #[arg(long)]
    out: Option<PathBuf>,
}

fn series(rows: &[serde_json::Value], key: &str, label: &str, scale: f64, color: usize) -> Series {
    let points = rows
        .iter()
        .filter_map(|r| Some((r["step"].as_f64()?, r[key].as_f64().unwrap_or(f64::NAN) * scale)))
        .collect();
    Series { label: label.to_owned(), points, color: PALETTE[color] }
}

/// Renders RUN_DIR/metrics.jsonl to `out`; returns how many train and kNN records it drew.
pub fn plot_run(run: &Path, out: &Path) -> anyhow::Result<(usize, usize)> {
    let path = run.join("metrics.jsonl");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut train = Vec::new();
    let mut knn = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("{}: line {} is not JSON", path.display(), i + 1))?;
        match v["kind"].as_str() {
            Some("train") => train.push(v),
            Some("knn") => knn.push(v),
            _ => {}
        }
    }
    let one = |title: &str, key: &str, scale: f64| Panel {
        title: title.to_owned(),
        series: vec![series(&train, key, "", scale, 0)],
        markers: vec![],
    };
    let spikes = train
        .iter()
        .filter(|r| r["spike"].as_bool() == Some(true))
        .filter_map(|r| Some((r["step"].as_f64()?, r["grad_norm_first"].as_f64()?)))
        .collect();
    let panels = [
        one("loss", "loss", 1.0),
        Panel {
            title: "kNN accuracy (val, %)".into(),
            series: vec![
                series(&knn, "top1", "top-1", 1.0, 2),
                series(&knn, "top5", "top-5", 1.0, 3),
            ],
            markers: vec![],
        },
        one("learning rate", "lr", 1.0),
        one("momentum (encoder)", "momentum", 1.0),
        Panel {
            title: "gradient norm".into(),
            series: vec![
                series(&train, "grad_norm", "global", 1.0, 0),
                series(&train, "grad_norm_first", "first layer", 1.0, 1),
            ],
            markers: spikes,
        },
        one("images/s", "img_per_s", 1.0),
        one("data-wait (%)", "data_wait", 100.0),
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
