//! Weighted k-NN classification on frozen features (the protocol DINO reports: cosine
//! similarity, the k nearest train features vote for their class with weight exp(sim / T)).

use tch::{Kind, Tensor};

/// Top-1 and top-5 accuracy in percent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KnnResult {
    pub top1: f64,
    pub top5: f64,
    pub k: i64,
    pub n: i64,
}

/// Features `[N, D]` with their labels `[N]` (int64, in `0..classes`).
#[derive(Debug, Clone, Copy)]
pub struct Labeled<'a> {
    pub features: &'a Tensor,
    pub labels: &'a Tensor,
}

/// How to vote: `k` neighbours weighted by exp(sim / `temperature`) over `classes` classes;
/// `chunk` test rows at a time, so memory stays `chunk × N` similarities.
#[derive(Debug, Clone, Copy)]
pub struct KnnParams {
    pub classes: i64,
    pub k: i64,
    pub temperature: f64,
    pub chunk: i64,
}

/// Classifies `test` against `train`.
pub fn knn(train: Labeled<'_>, test: Labeled<'_>, p: KnnParams) -> KnnResult {
    let (train_labels, test_labels) = (train.labels, test.labels);
    let (classes, k, temperature, chunk) = (p.classes, p.k, p.temperature, p.chunk);
    let (train, test) = (train.features, test.features);
    tch::no_grad(|| {
        let train = crate::moco::l2_normalize(&train.to_kind(Kind::Float));
        let test = crate::moco::l2_normalize(&test.to_kind(Kind::Float));
        let n = train.size()[0];
        let m = test.size()[0];
        let k = k.min(n).max(1);
        let (mut c1, mut c5) = (0i64, 0i64);
        let mut start = 0;
        while start < m {
            let len = chunk.min(m - start);
            let sim = test.narrow(0, start, len).matmul(&train.tr());
            let (vals, idx) = sim.topk(k, 1, true, true);
            let neighbours = train_labels.index_select(0, &idx.view([-1])).view([len, k]);
            let weights = (vals / temperature).exp();
            let votes = Tensor::zeros([len, classes], (Kind::Float, train.device())).scatter_add(
                1,
                &neighbours,
                &weights,
            );
            let top = votes.topk(5.min(classes), 1, true, true).1;
            let truth = test_labels.narrow(0, start, len).view([len, 1]);
            let hits = top.eq_tensor(&truth);
            c1 += hits.narrow(1, 0, 1).sum(Kind::Int64).int64_value(&[]);
            c5 += hits.sum(Kind::Int64).int64_value(&[]);
            start += len;
        }
        let pct = |c: i64| if m == 0 { 0.0 } else { 100.0 * c as f64 / m as f64 };
        KnnResult { top1: pct(c1), top5: pct(c5), k, n: m }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separable_clusters_are_classified_and_noise_is_not() {
        let _rng = crate::torch_rng();
        tch::manual_seed(0);
        let centres = Tensor::randn([4, 16], (Kind::Float, tch::Device::Cpu)) * 5.0;
        let make = |per: i64| {
            let labels = Tensor::arange(4, (Kind::Int64, tch::Device::Cpu))
                .repeat_interleave_self_int(per, 0, None);
            let x = centres.index_select(0, &labels)
                + Tensor::randn([4 * per, 16], (Kind::Float, tch::Device::Cpu));
            (x, labels)
        };
        let (tr, trl) = make(50);
        let (te, tel) = make(20);
        let p = KnnParams { classes: 4, k: 20, temperature: 0.07, chunk: 7 };
        let r = knn(
            Labeled { features: &tr, labels: &trl },
            Labeled { features: &te, labels: &tel },
            p,
        );
        assert_eq!(r.n, 80);
        assert!(r.top1 > 95.0, "{r:?}");
        assert_eq!(r.top5, 100.0, "4 classes: top-5 always hits");
        // Random features: near chance (25 %).
        let noise = Tensor::randn([80, 16], (Kind::Float, tch::Device::Cpu));
        let r = knn(
            Labeled { features: &tr, labels: &trl },
            Labeled { features: &noise, labels: &tel },
            p,
        );
        assert!(r.top1 < 50.0, "{r:?}");
    }
}
