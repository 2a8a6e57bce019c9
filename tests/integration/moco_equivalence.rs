//! twoview's MoCo v3 ViT against the PyTorch reference (python/moco_reference.py: timm's
//! VisionTransformer configured as MoCo v3's, heads/loss/momentum from the paper): same initial
//! weights and batch, then features, q/k, loss, every gradient, the momentum update, two AdamW
//! steps and one LARS step must agree to a relative error < 1e-5 in fp32
//! (‖ours − ref‖ / ‖ref‖ per tensor).

use std::collections::HashMap;

use tch::{Device, Kind, Tensor};
use twoview_model::moco::{Moco, MocoConfig, normalize_views};
use twoview_model::optim::{Optimizer, OptimizerConfig};
use twoview_model::vit::VitConfig;

use crate::support;

const TOL: f64 = 1e-5;

fn rel_err(ours: &Tensor, reference: &Tensor) -> f64 {
    let r = reference.to_kind(Kind::Double);
    let d = (ours.to_kind(Kind::Double) - &r).norm().double_value(&[]);
    let n = r.norm().double_value(&[]);
    if n == 0.0 { d } else { d / n }
}

fn check(what: &str, ours: &Tensor, reference: &Tensor, worst: &mut (f64, String)) {
    assert_eq!(ours.size(), reference.size(), "{what}: shape");
    let e = rel_err(ours, reference);
    assert!(e < TOL, "{what}: relative error {e:.3e} ≥ {TOL:.0e}");
    if e > worst.0 {
        *worst = (e, what.to_owned());
    }
}

fn fixture() -> Option<HashMap<String, Tensor>> {
    let dir = support::scratch_dir("moco_equivalence");
    let path = dir.join("fixture.safetensors");
    support::venv_python("moco_reference.py", &["fixture".as_ref(), path.as_os_str()])?;
    Some(Tensor::read_safetensors(&path).unwrap().into_iter().collect())
}

fn prefixed(fx: &HashMap<String, Tensor>, prefix: &str) -> HashMap<String, Tensor> {
    fx.iter()
        .filter_map(|(k, v)| k.strip_prefix(prefix).map(|n| (n.to_owned(), v.shallow_clone())))
        .collect()
}

#[test]
fn moco_v3_matches_pytorch_reference() {
    let Some(fx) = fixture() else { return };
    let vit = VitConfig { image_size: 32, patch: 8, dim: 48, depth: 2, heads: 3, mlp_ratio: 4 };
    let cfg = MocoConfig { vit, mlp_dim: 64, out_dim: 32, temperature: 0.2, freeze_patch: true };
    let moco = Moco::new(cfg, Device::Cpu);
    let init = prefixed(&fx, "init.");
    moco.load_named(&init).unwrap();
    let m = fx["m"].double_value(&[0]);
    let lr = fx["lr"].double_value(&[0]);
    let (x1, x2) = normalize_views(&fx["batch"], Kind::Float);
    let mut worst = (0.0, String::new());

    check("features", &moco.features(&x1), &fx["features"], &mut worst);
    let out = moco.forward(&x1, &x2, m);
    for (name, t) in [("q1", &out.q1), ("q2", &out.q2), ("k1", &out.k1), ("k2", &out.k2)] {
        check(name, t, &fx[name], &mut worst);
    }
    check("loss", &out.loss.reshape([1]), &fx["loss"], &mut worst);
    out.loss.backward();

    // The same parameters train on both sides (the frozen patch projection and pos_embed not).
    let trainable = moco.trainable();
    let grads = prefixed(&fx, "grad.");
    let mut ours: Vec<&str> = trainable.iter().map(|(n, _)| n.as_str()).collect();
    let mut theirs: Vec<&str> = grads.keys().map(String::as_str).collect();
    ours.sort_unstable();
    theirs.sort_unstable();
    assert_eq!(ours, theirs, "trainable parameter sets differ");
    // A gradient that is zero in exact arithmetic is float noise on both sides: the final
    // norm's bias (a constant shift of the features is removed by the BN after the projector's
    // first Linear). Such a tensor (‖ref‖ < 1e-5 × the median gradient norm) must be as small
    // in ours; every other gradient is checked relatively.
    let mut norms: Vec<f64> = grads.values().map(|g| g.norm().double_value(&[])).collect();
    norms.sort_by(f64::total_cmp);
    let median = norms[norms.len() / 2];
    let mut zero_in_exact = Vec::new();
    for (name, p) in &trainable {
        let reference = &grads[name];
        if reference.norm().double_value(&[]) < 1e-5 * median {
            let ours = p.grad().norm().double_value(&[]);
            assert!(ours < 1e-5 * median, "grad {name}: ‖ours‖ {ours:.3e}, reference ≈ 0");
            zero_in_exact.push(name.as_str());
            continue;
        }
        check(&format!("grad {name}"), &p.grad(), reference, &mut worst);
    }
    assert_eq!(
        zero_in_exact,
        ["base_encoder.norm.bias"],
        "only the final norm's bias has no gradient"
    );
    // Momentum update (parameters) and the keys' BN running statistics, after the forward.
    let after = prefixed(&fx, "after_forward.");
    let mom = moco.momentum.variables();
    assert_eq!(after.len(), mom.len());
    for (name, t) in &after {
        check(&format!("momentum {name}"), &mom[name], t, &mut worst);
    }

    // Two AdamW steps (the second one runs a new forward/backward, as the reference does).
    // Adam divides each gradient element by its own magnitude, so where the gradient is zero in
    // exact arithmetic it turns float noise into ±lr on both sides, with independent signs:
    // the key part of every qkv bias (a constant added to all logits of a softmax row) and the
    // final norm's bias (LARS moves them by lr × noise). Those elements (|g| ≤ 1e-6 × the median gradient norm) are asserted to
    // be exactly that set and to move by at most lr (plus decay); all others are compared.
    let dim = vit.dim;
    let mut noise: HashMap<String, Tensor> = HashMap::new();
    for (name, _) in &trainable {
        let g = grads[name].abs();
        let mask = g.le(1e-6 * median);
        let expected = if name.ends_with("attn.qkv.bias") {
            Tensor::cat(
                &[
                    Tensor::zeros([dim], (Kind::Bool, Device::Cpu)),
                    Tensor::ones([dim], (Kind::Bool, Device::Cpu)),
                    Tensor::zeros([dim], (Kind::Bool, Device::Cpu)),
                ],
                0,
            )
        } else if name == "base_encoder.norm.bias" {
            Tensor::ones([dim], (Kind::Bool, Device::Cpu))
        } else {
            mask.zeros_like()
        };
        // Every structural zero is in the mask; beyond them only a few genuinely tiny
        // gradients (e.g. GELU units that are off for every token) may be.
        assert!(
            mask.logical_and(&expected).equal(&expected),
            "{name}: a structural zero has a gradient"
        );
        let extra = mask.logical_and(&expected.logical_not()).sum(Kind::Int64).int64_value(&[]);
        assert!(
            extra * 100 <= mask.numel() as i64,
            "{name}: {extra} unexpected near-zero gradients"
        );
        noise.insert(name.clone(), mask);
    }
    let before: HashMap<String, Tensor> =
        trainable.iter().map(|(n, p)| (n.clone(), p.detach().copy())).collect();
    let check_step = |step: &str,
                      reference: &HashMap<String, Tensor>,
                      prev: &HashMap<String, Tensor>,
                      worst: &mut (f64, String)| {
        for (name, p) in &trainable {
            let keep = noise[name].logical_not();
            check(
                &format!("{step} {name}"),
                &p.masked_select(&keep),
                &reference[name].masked_select(&noise[name].logical_not()),
                worst,
            );
            let moved = (p - &prev[name]).abs().masked_select(&noise[name]);
            if moved.numel() > 0 {
                let most = moved.max().double_value(&[]);
                assert!(
                    most <= lr * 1.001 + 1e-6,
                    "{step} {name}: a zero-gradient element moved {most}"
                );
            }
        }
    };
    let mut opt = Optimizer::new(OptimizerConfig::adamw_reference(), moco.trainable());
    opt.step(lr);
    let a1 = prefixed(&fx, "adamw1.");
    check_step("adamw step 1", &a1, &before, &mut worst);
    let after1: HashMap<String, Tensor> =
        trainable.iter().map(|(n, p)| (n.clone(), p.detach().copy())).collect();
    opt.zero_grad();
    moco.forward(&x1, &x2, m).loss.backward();
    opt.step(lr);
    let a2 = prefixed(&fx, "adamw2.");
    check_step("adamw step 2", &a2, &after1, &mut worst);

    // One LARS step from the initial state.
    moco.load_named(&init).unwrap();
    let mut lars = Optimizer::new(
        OptimizerConfig::Lars { momentum: 0.9, trust_coefficient: 0.001, weight_decay: 0.1 },
        moco.trainable(),
    );
    lars.zero_grad();
    moco.forward(&x1, &x2, m).loss.backward();
    lars.step(lr);
    let l1 = prefixed(&fx, "lars1.");
    check_step("lars step", &l1, &before, &mut worst);
    eprintln!("largest relative error: {:.3e} ({})", worst.0, worst.1);
}

/// With random features the loss starts near its chance value: each direction is a B-way
/// cross-entropy over nearly equal logits, so loss ≈ 2 · 2τ · ln B.
#[test]
fn initial_loss_is_near_chance() {
    tch::manual_seed(3);
    let vit = VitConfig { image_size: 32, patch: 8, dim: 64, depth: 2, heads: 4, mlp_ratio: 4 };
    let moco = Moco::new(MocoConfig::new(vit), Device::Cpu);
    let b = 64;
    let batch = Tensor::randint(256, [b, 2, 32, 32, 3], (Kind::Uint8, Device::Cpu));
    let (x1, x2) = normalize_views(&batch, Kind::Float);
    let loss = moco.forward(&x1, &x2, 0.99).loss.double_value(&[]);
    let chance = 4.0 * 0.2 * (b as f64).ln();
    assert!((loss - chance).abs() < 0.05 * chance, "initial loss {loss:.4}, 4τ·ln B = {chance:.4}");
}

/// moco-v3's model as main_moco.py builds and optimises it, against ours: which tensors AdamW
/// updates and decays (the frozen patch projection and the momentum encoder untouched), what
/// the momentum update moves (parameters; BN statistics are each encoder's own), and every
/// BatchNorm's eps, momentum, affine and train mode.
#[test]
fn what_is_trained_decayed_and_momentum_updated_is_the_reference_s() {
    use twoview_model::optim::OptimizerConfig;
    use twoview_model::train::TrainConfig;
    let out = support::scratch_dir("audit").join("audit.json");
    let Some(()) = support::venv_python("moco_reference.py", &["audit".as_ref(), out.as_os_str()])
    else {
        return;
    };
    let theirs: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let names = |key: &str| -> Vec<String> {
        theirs[key].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect()
    };
    let vit = VitConfig { image_size: 32, patch: 8, dim: 48, depth: 2, heads: 3, mlp_ratio: 4 };
    let moco = Moco::new(
        MocoConfig { vit, mlp_dim: 64, out_dim: 32, temperature: 0.2, freeze_patch: true },
        Device::Cpu,
    );
    let ours: Vec<String> = moco.trainable().into_iter().map(|(n, _)| n).collect();
    assert_eq!(ours, names("trainable"), "the tensors AdamW updates");
    // The reference decays every parameter AdamW sees; so does our default.
    let OptimizerConfig::Adamw { weight_decay, decay_norms_and_biases, .. } =
        TrainConfig::default().plan(1000, Device::Cpu).unwrap().optimizer
    else {
        panic!("the ViT recipe is AdamW")
    };
    assert!(decay_norms_and_biases && weight_decay == 0.1);
    assert_eq!(names("decayed"), names("trainable"));
    let prefixed = |v: Vec<String>| -> Vec<String> {
        let mut v: Vec<String> = v.into_iter().map(|n| format!("momentum_encoder.{n}")).collect();
        v.sort();
        v
    };
    assert_eq!(moco.momentum_updated(), prefixed(names("momentum_updated")), "momentum update");
    let buffers: Vec<String> = moco
        .named_tensors()
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| n.starts_with("momentum_encoder.") && twoview_model::moco::is_buffer(n))
        .collect();
    assert_eq!(
        buffers,
        prefixed(names("momentum_buffers_own")),
        "the momentum encoder's own BN stats"
    );
    let bns = theirs["bn"].as_array().unwrap();
    assert_eq!(bns.len(), 8, "3 projector BNs per encoder + 2 predictor BNs");
    for bn in bns {
        let name = bn["name"].as_str().unwrap();
        assert_eq!(bn["eps"].as_f64(), Some(twoview_model::moco::BN_EPS), "{name}");
        assert_eq!(bn["momentum"].as_f64(), Some(twoview_model::moco::BN_MOMENTUM), "{name}");
        assert_eq!(bn["training"].as_bool(), Some(true), "{name}: train mode in both encoders");
        // Ours: affine exactly where the reference is (every BN but each MLP's last).
        let affine = moco.named_tensors().iter().any(|(n, _)| *n == format!("{name}.weight"));
        assert_eq!(bn["affine"].as_bool(), Some(affine), "{name}: affine");
    }
}
