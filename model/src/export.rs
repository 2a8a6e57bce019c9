//! The backbone under timm's names, and the metadata timm needs to rebuild it exactly.
//!
//! timm's `vit_small_patch16_224` has 6 heads; MoCo v3's ViT-S has 12. Same parameter shapes,
//! so a strict load by model name alone succeeds and computes other features. The metadata
//! therefore gives every architecture argument as `kwargs` for `timm.create_model`, and the
//! evaluation transform as a timm `pretrained_cfg` (what `resolve_data_config` reads).

use tch::Tensor;

use crate::moco::{MEAN, Moco, STD};
use crate::vit::VitConfig;

/// The online backbone's tensors (no projection head), under timm's names.
pub fn timm_tensors(moco: &Moco) -> Vec<(String, Tensor)> {
    moco.named_tensors()
        .into_iter()
        .filter_map(|(n, t)| {
            let n = n.strip_prefix("base_encoder.")?;
            (!n.starts_with("head.")).then(|| (n.to_owned(), t))
        })
        .collect()
}

/// `{"model_name", "kwargs", "pretrained_cfg"}`: build with
/// `timm.create_model(model_name, pretrained=False, pretrained_cfg_overlay=pretrained_cfg,
/// **kwargs)`, then `load_state_dict(..., strict=True)`.
pub fn timm_metadata(v: &VitConfig) -> serde_json::Value {
    // Any ViT entry point builds the same model once every argument is given (the kwargs
    // override the entry point's); a preset width and depth keeps its familiar name.
    let name = VitConfig::PRESETS
        .iter()
        .find(|p| VitConfig::preset(p).is_some_and(|q| q.dim == v.dim && q.depth == v.depth))
        .map_or("vit_base", |p| p);
    serde_json::json!({
        "model_name": format!("{name}_patch16_224"),
        "kwargs": {
            "img_size": v.image_size, "patch_size": v.patch, "embed_dim": v.dim,
            "depth": v.depth, "num_heads": v.heads, "mlp_ratio": v.mlp_ratio,
            "qkv_bias": true, "class_token": true, "global_pool": "token", "num_classes": 0,
        },
        // twoview's evaluation view (loader/eval.rs): shorter side to size / 0.875, bilinear,
        // centre crop, ImageNet mean/std.
        "pretrained_cfg": {
            "input_size": [3, v.image_size, v.image_size],
            "crop_pct": 0.875,
            "crop_mode": "center",
            "interpolation": "bilinear",
            "mean": MEAN,
            "std": STD,
            "num_classes": 0,
        },
    })
}
