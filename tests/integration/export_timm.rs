//! `twoview export`'s metadata rebuilds the exact model in timm: MoCo v3's ViT-S (12 heads,
//! where timm's `vit_small_patch16_224` has 6 -- same shapes, so a strict load by name alone
//! passes and computes other features). The model is built from the emitted JSON only
//! (python/timm_export_check.py) and must give our features.

use tch::{Device, Kind, Tensor};
use twoview_model::export::{timm_metadata, timm_tensors};
use twoview_model::moco::{Moco, MocoConfig};
use twoview_model::vit::VitConfig;

use crate::support;

#[test]
fn vit_small_rebuilt_from_the_export_metadata_gives_our_features() {
    let vit = VitConfig::preset("vit_small").unwrap();
    assert_eq!(vit.heads, 12, "MoCo v3's ViT-S");
    tch::manual_seed(3);
    let cfg = MocoConfig { vit, mlp_dim: 64, out_dim: 32, temperature: 0.2, freeze_patch: true };
    let moco = Moco::new(cfg, Device::Cpu);
    let dir = support::scratch_dir("export_timm");
    let (weights, meta, inp, out) = (
        dir.join("vit.safetensors"),
        dir.join("vit.json"),
        dir.join("x.safetensors"),
        dir.join("features.safetensors"),
    );
    Tensor::write_safetensors(&timm_tensors(&moco), &weights).unwrap();
    let json = serde_json::json!({ "timm": timm_metadata(&vit) });
    std::fs::write(&meta, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    let x = Tensor::randn([2, 3, 224, 224], (Kind::Float, Device::Cpu));
    Tensor::write_safetensors(&[("x", &x)], &inp).unwrap();
    let args = [&weights, &meta, &inp, &out].map(|p| p.as_os_str());
    if support::venv_python("timm_export_check.py", &args).is_none() {
        return;
    }
    let theirs = &Tensor::read_safetensors(&out).unwrap()[0].1;
    let ours = moco.features(&x);
    let rel = (&ours - theirs).norm().double_value(&[]) / theirs.norm().double_value(&[]);
    assert!(rel < 1e-5, "timm's model from the metadata differs: relative error {rel:.3e}");
}
