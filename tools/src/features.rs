//! Frozen-encoder features of shard rows (centre views, batched), and k-NN over them: shared by
//! `train` (monitoring) and `eval knn`.

use tch::{Device, Kind, Tensor};
use twoview_model::amp::Autocast;
use twoview_model::knn::{KnnParams, KnnResult, Labeled, knn};
use twoview_model::moco::{Moco, normalize_images};
use twoview_pipeline::formats::ShardSet;
use twoview_pipeline::loader::eval::{EvalViews, spread_rows};

/// Features `[N, dim]` (fp32, on the CPU) and labels `[N]` of `rows` of `set`.
pub fn features(
    moco: &Moco,
    autocast: bool,
    set: &ShardSet,
    rows: Vec<u64>,
) -> anyhow::Result<(Tensor, Tensor)> {
    let size = moco.config.vit.image_size;
    let device = moco.online.device();
    let mut feats = Vec::new();
    let mut labels = Vec::new();
    for b in EvalViews::new(set, rows, size as u32, 256) {
        let b = b?;
        let x = Tensor::from_slice(&b.pixels).view([b.len as i64, size, size, 3]).to_device(device);
        let f = {
            let _amp = autocast.then(|| Autocast::new(device, Kind::BFloat16));
            moco.features(&normalize_images(&x, Kind::Float))
        };
        feats.push(f.to_kind(Kind::Float).to_device(Device::Cpu));
        labels.extend(b.labels.iter().map(|&l| l as i64));
    }
    if feats.is_empty() {
        anyhow::bail!(
            "{} split {:?}: no rows to take features of",
            set.dir().display(),
            set.split()
        );
    }
    Ok((Tensor::cat(&feats, 0), Tensor::from_slice(&labels)))
}

/// k-NN top-1/top-5 of `val` against `train` (at most `limits` rows of each, evenly spread).
pub fn knn_eval(
    moco: &Moco,
    autocast: bool,
    train: &ShardSet,
    val: &ShardSet,
    limits: (usize, usize),
    p: KnnParams,
) -> anyhow::Result<KnnResult> {
    let (tf, tl) = features(moco, autocast, train, spread_rows(train.len(), limits.0))?;
    let (vf, vl) = features(moco, autocast, val, spread_rows(val.len(), limits.1))?;
    Ok(knn(Labeled { features: &tf, labels: &tl }, Labeled { features: &vf, labels: &vl }, p))
}
