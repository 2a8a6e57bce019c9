//! A whole run against the reference: moco-v3's training loop (python/moco_reference.py
//! `trajectory`: timm ViT + heads, main_moco.py's per-iteration lr and momentum schedules,
//! torch.optim.AdamW over the model's parameters) and twoview's `Trainer`, from the same
//! initial weights, on exactly the same 200 u8 batches made by twoview's augmenter (mocov3_vit
//! recipe, 32-px views), fp32 on the CPU. This isolates model + optimizer + schedules from data:
//! every step's lr and momentum must be the reference's to 1e-12, every loss within the stated
//! float-drift tolerance, and the final weights too.

use std::collections::HashMap;

use tch::{Device, Kind, Tensor};
use twoview_model::train::{TrainConfig, Trainer};
use twoview_pipeline::RgbImage;
use twoview_pipeline::augment::{Augmenter, Recipe};

use crate::support;

const STEPS: usize = 200;
const BATCH: usize = 8;
const SIZE: u32 = 32;

/// 16 textured 64×48 sources; batch s, sample i is an augmented pair of source (8s + i) mod 16,
/// keyed (seed 0, epoch s, sample i) as the loader keys it.
fn batches() -> Tensor {
    let sources: Vec<RgbImage> = (0..16u32)
        .map(|k| {
            let (w, h) = (64u32, 48u32);
            let data = (0..h)
                .flat_map(|y| {
                    (0..w).flat_map(move |x| {
                        let stripe = ((x * (k % 5 + 1) + y * (k % 3)) / 3 % 2) as u8 * 100;
                        [stripe.wrapping_add((k * 15) as u8), (x * 4 + k) as u8, (y * 5) as u8]
                    })
                })
                .collect();
            RgbImage::try_from_vec(data, w, h).unwrap()
        })
        .collect();
    let recipe = Recipe::mocov3_vit();
    let mut aug = Augmenter::new();
    let mut bytes = Vec::with_capacity(STEPS * BATCH * 2 * (SIZE * SIZE * 3) as usize);
    let (mut v1, mut v2) = (RgbImage::new(SIZE, SIZE), RgbImage::new(SIZE, SIZE));
    for s in 0..STEPS {
        for i in 0..BATCH {
            let src = &sources[(BATCH * s + i) % sources.len()];
            let key = (0, s as u64, i as u64);
            aug.two_views(&recipe, src.view(), key, &mut v1.view_mut(), &mut v2.view_mut())
                .unwrap();
            bytes.extend_from_slice(v1.data());
            bytes.extend_from_slice(v2.data());
        }
    }
    let s = SIZE as i64;
    Tensor::from_slice(&bytes).view([STEPS as i64, BATCH as i64, 2, s, s, 3])
}

fn rel(a: &Tensor, b: &Tensor) -> f64 {
    let b = b.to_kind(Kind::Double);
    let d = (a.to_kind(Kind::Double) - &b).norm().double_value(&[]);
    d / b.norm().double_value(&[]).max(1e-12)
}

#[test]
fn two_hundred_steps_follow_the_reference_training_loop() {
    let dir = support::scratch_dir("trajectory");
    let (input, output) = (dir.join("batches.safetensors"), dir.join("reference.safetensors"));
    let all = batches();
    Tensor::write_safetensors(&[("batches", &all)], &input).unwrap();
    let args = ["trajectory".as_ref(), input.as_os_str(), output.as_os_str()];
    if support::venv_python("moco_reference.py", &args).is_none() {
        return;
    }
    let reference: HashMap<String, Tensor> =
        Tensor::read_safetensors(&output).unwrap().into_iter().collect();
    let under = |prefix: &str| -> HashMap<String, Tensor> {
        reference
            .iter()
            .filter_map(|(k, v)| k.strip_prefix(prefix).map(|n| (n.to_owned(), v.shallow_clone())))
            .collect()
    };

    // The reference's configuration in our keys: 160 images / batch 8 = 20 steps per epoch,
    // 10 epochs (2 warmup) = 200 steps; lr = 0.1 × 8 / 256; AdamW wd 0.1 on everything.
    let cfg = TrainConfig {
        image_size: Some(32),
        patch: Some(8),
        dim: Some(48),
        depth: Some(2),
        heads: Some(3),
        mlp_dim: 64,
        out_dim: 32,
        batch_size: BATCH,
        epochs: 10.0,
        warmup_epochs: 2.0,
        base_lr: 0.1,
        amp: "off".into(),
        ..TrainConfig::default()
    };
    let plan = cfg.plan(160, Device::Cpu).unwrap();
    assert_eq!(plan.steps as usize, STEPS);
    let mut t = Trainer::new(plan.clone(), Device::Cpu);
    t.moco.load_named(&under("init.")).unwrap();
    let want_loss = Vec::<f64>::try_from(&reference["loss"]).unwrap();
    let want_lr = Vec::<f64>::try_from(&reference["lr"]).unwrap();
    let want_m = Vec::<f64>::try_from(&reference["m"]).unwrap();
    let fell = want_loss[STEPS - 20..].iter().sum::<f64>() < want_loss[..20].iter().sum::<f64>();
    assert!(fell, "the reference's loss falls over the run (the test trains something)");

    // 1. Free run, 200 steps from the same start. The schedules agree exactly. The losses agree
    // to 1e-5 over 10 steps and 1e-4 over 20; after that this tiny contrastive problem (batch 8) is
    // chaotic: two PyTorch runs differing only in AdamW's kernel (fused vs foreach) drift apart
    // by ~9 % at step 40 (measured), so only the first 20 steps are held to a tolerance.
    let mut drift = Vec::new();
    for s in 0..STEPS {
        let st = t.train_step(&all.get(s as i64)).unwrap();
        let lr_ok = (st.lr - want_lr[s]).abs() <= 1e-12 * want_lr[s].abs().max(1e-12);
        assert!(lr_ok, "step {}: lr {} vs the reference's {}", s + 1, st.lr, want_lr[s]);
        let m_ok = (st.momentum - want_m[s]).abs() <= 1e-12;
        assert!(m_ok, "step {}: momentum {} vs {}", s + 1, st.momentum, want_m[s]);
        let r = (st.loss - want_loss[s]).abs() / want_loss[s].abs();
        let tol = if s < 10 { 1e-5 } else { 1e-4 };
        if s < 20 {
            assert!(r <= tol, "step {}: loss {} vs {} (rel {r:.2e})", s + 1, st.loss, want_loss[s]);
        }
        drift.push(r);
    }

    // 2. Teacher-forced windows over the whole schedule: from the reference's state every 10
    // steps (weights, momentum encoder, BN statistics, AdamW moments and step), 10 steps of
    // ours must land on the reference's next snapshot: per-step loss within 1e-4, every weight
    // and AdamW moment within 1e-4 (zero-gradient noise elements aside), BN statistics within
    // 1e-2, warmup and cosine alike.
    let mut worst = (0.0f64, String::new());
    for k in (0..STEPS).step_by(10) {
        let snap = under(&format!("snap{k}."));
        restore(&mut t, &plan, snap, k as u64);
        for (s, want) in want_loss.iter().enumerate().skip(k).take(10) {
            let st = t.train_step(&all.get(s as i64)).unwrap();
            let r = (st.loss - want).abs() / want.abs();
            assert!(
                r <= 1e-4,
                "window {k}: step {}: loss {} vs {want} (rel {r:.2e})",
                s + 1,
                st.loss
            );
        }
        let next = under(&format!("snap{}.", k + 10));
        for (name, ours) in t.state_tensors() {
            let Some(theirs) = next.get(&name) else { continue };
            let e = rel(&ours, theirs);
            let max = (&ours - theirs).abs().max().double_value(&[]);
            let noise = name.contains("qkv.bias") || name.contains("encoder.norm.bias");
            // BatchNorm running statistics: the first projector BN's running mean is a mean of
            // linear outputs with much cancellation, which turns the weights' ~1e-5 drift over
            // 10 steps into ~1e-3 (it agrees to 5e-8 after one step): 1e-2 for statistics.
            let stats = name.ends_with("running_mean") || name.ends_with("running_var");
            let tol = if stats { 1e-2 } else { 1e-4 };
            let ok = e <= tol || max < 1e-6 || (noise && max <= 20.0 * plan.schedule.lr);
            assert!(
                ok,
                "window {k}: {name}: rel {e:.2e}, max {max:.2e} from the reference's step {}",
                k + 10
            );
            if !noise && !stats && max >= 1e-6 && e > worst.0 {
                worst = (e, format!("{name} at step {}", k + 10));
            }
        }
    }
    let at = |s: usize| drift[s - 1];
    eprintln!(
        "trajectory: reference loss {:.4} -> {:.4}; free run: loss differs by {:.1e} at step 20, \
         {:.1e} at 40, {:.1e} at 200 (chaotic drift); teacher-forced windows: worst state \
         difference {:.2e} ({})",
        want_loss[0],
        want_loss[STEPS - 1],
        at(20),
        at(40),
        at(200),
        worst.0,
        worst.1
    );
}

/// Puts the reference's state after `step` steps into `t` (as a checkpoint would).
fn restore(
    t: &mut Trainer,
    plan: &twoview_model::train::Plan,
    tensors: HashMap<String, Tensor>,
    step: u64,
) {
    use twoview_model::checkpoint::{Cursor, Loaded, RunState, STATE_VERSION};
    let state = RunState {
        version: STATE_VERSION,
        step,
        cursor: Cursor::default(),
        plan: plan.clone(),
        optimizer_steps: step as i64,
        data: None,
        recipe: None,
    };
    let mut tensors = tensors;
    if step == 0 {
        // No AdamW moments before the first step: zeros, as PyTorch starts them.
        for (n, x) in t.opt.state_tensors() {
            tensors.insert(format!("optim.{n}"), x.zeros_like());
        }
    }
    let loaded = Loaded { dir: "reference".into(), step, tensors, state };
    t.restore(&loaded).unwrap();
}
