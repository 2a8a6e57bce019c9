//! The Vision Transformer of MoCo v3: timm's `VisionTransformer` (class token, pre-norm blocks,
//! output = class token after the final LayerNorm) with a fixed 2-D sin-cos position embedding,
//! an optionally frozen patch projection, and MoCo v3's initialisation.
//!
//! Variables are created under the given [`nn::Path`] with timm's state-dict names
//! (`patch_embed.proj.weight`, `blocks.3.attn.qkv.weight`, `norm.bias` …), so a backbone
//! exports to timm by name alone.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor, nn};

/// Shape of a ViT. Presets follow DESIGN.md; any other shape works for small images on CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VitConfig {
    /// Input side in pixels (square inputs).
    pub image_size: i64,
    /// Patch side in pixels; must divide `image_size`.
    pub patch: i64,
    /// Embedding width; a multiple of 4 (the sin-cos embedding) and of `heads`.
    pub dim: i64,
    /// Number of transformer blocks.
    pub depth: i64,
    /// Attention heads per block.
    pub heads: i64,
    /// MLP hidden width as a multiple of `dim` (4 in every preset).
    pub mlp_ratio: i64,
}

impl VitConfig {
    /// A named preset at 224 px, patch 16: `vit_tiny`, `vit_small`, `vit_base`, `vit_large`.
    pub fn preset(name: &str) -> Option<Self> {
        let (dim, depth, heads) = match name {
            "vit_tiny" => (192, 12, 3),
            "vit_small" => (384, 12, 12),
            "vit_base" => (768, 12, 12),
            "vit_large" => (1024, 24, 16),
            _ => return None,
        };
        Some(Self { image_size: 224, patch: 16, dim, depth, heads, mlp_ratio: 4 })
    }

    /// Names accepted by [`VitConfig::preset`].
    pub const PRESETS: [&'static str; 4] = ["vit_tiny", "vit_small", "vit_base", "vit_large"];

    /// Patches per side.
    pub fn grid(&self) -> i64 {
        self.image_size / self.patch
    }

    /// Why this shape cannot be built, if it cannot: the configuration key at fault and the
    /// reason.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let pos = |v: i64, what: &'static str| {
            if v > 0 {
                Ok(())
            } else {
                Err((what, format!("vit {what} must be positive, got {v}")))
            }
        };
        pos(self.image_size, "image_size")?;
        pos(self.patch, "patch")?;
        pos(self.dim, "dim")?;
        pos(self.depth, "depth")?;
        pos(self.heads, "heads")?;
        pos(self.mlp_ratio, "mlp_ratio")?;
        if self.image_size % self.patch != 0 {
            return Err((
                "patch",
                format!("vit patch {} does not divide image_size {}", self.patch, self.image_size),
            ));
        }
        if self.dim % 4 != 0 {
            return Err((
                "dim",
                format!("vit dim {} must be a multiple of 4 (2-D sin-cos embedding)", self.dim),
            ));
        }
        if self.dim % self.heads != 0 {
            return Err((
                "heads",
                format!("vit dim {} is not a multiple of heads {}", self.dim, self.heads),
            ));
        }
        Ok(())
    }

    /// Multiply-accumulates of one forward pass over one image (matmuls and the patch
    /// projection; softmax, norms and activations are not counted). FLOPs = 2 × this.
    pub fn macs_per_image(&self) -> f64 {
        let n = (self.grid() * self.grid() + 1) as f64;
        let d = self.dim as f64;
        let patch = (self.grid() * self.grid()) as f64 * (3 * self.patch * self.patch) as f64 * d;
        let per_block = n * d * 3.0 * d      // qkv
            + 2.0 * n * n * d                 // q·kᵀ and attn·v
            + n * d * d                       // proj
            + 2.0 * n * d * d * self.mlp_ratio as f64; // fc1 + fc2
        patch + self.depth as f64 * per_block
    }
}

impl VitConfig {
    /// Backbone FLOPs of one MoCo v3 step per image: both views forward and backward through
    /// the base encoder (3 × forward each) and forward through the momentum encoder: 8
    /// forwards of 2 × MACs. Heads are not counted (small next to the backbone). Used for MFU.
    pub fn moco_step_flops_per_image(&self) -> f64 {
        16.0 * self.macs_per_image()
    }
}

/// A linear layer (weight `[out, in]`, optional bias).
#[derive(Debug)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

impl Linear {
    /// MoCo v3's ViT init: uniform with the xavier bound of `[fan_out_block, fan_in]`, zero bias.
    fn xavier(p: &nn::Path<'_>, fan_in: i64, fan_out: i64, block_out: i64) -> Self {
        let bound = (6.0 / (block_out + fan_in) as f64).sqrt();
        let weight =
            p.var("weight", &[fan_out, fan_in], nn::Init::Uniform { lo: -bound, up: bound });
        let bias = Some(p.zeros("bias", &[fan_out]));
        Self { weight, bias }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.linear(&self.weight, self.bias.as_ref())
    }
}

/// LayerNorm with timm's eps for ViTs (1e-6).
#[derive(Debug)]
struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    dim: i64,
}

impl LayerNorm {
    fn new(p: &nn::Path<'_>, dim: i64) -> Self {
        Self { weight: p.ones("weight", &[dim]), bias: p.zeros("bias", &[dim]), dim }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        x.layer_norm([self.dim], Some(&self.weight), Some(&self.bias), 1e-6, true)
    }
}

#[derive(Debug)]
struct Block {
    norm1: LayerNorm,
    qkv: Linear,
    proj: Linear,
    norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    heads: i64,
}

impl Block {
    fn new(p: &nn::Path<'_>, c: &VitConfig) -> Self {
        let d = c.dim;
        let hidden = d * c.mlp_ratio;
        Self {
            norm1: LayerNorm::new(&(p / "norm1"), d),
            // Three xavier blocks (q, k, v), each [d, d]: the bound uses d, not 3d.
            qkv: Linear::xavier(&(p / "attn" / "qkv"), d, 3 * d, d),
            proj: Linear::xavier(&(p / "attn" / "proj"), d, d, d),
            norm2: LayerNorm::new(&(p / "norm2"), d),
            fc1: Linear::xavier(&(p / "mlp" / "fc1"), d, hidden, hidden),
            fc2: Linear::xavier(&(p / "mlp" / "fc2"), hidden, d, d),
            heads: c.heads,
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let (b, n, d) = x.size3().expect("tokens are [B, N, D]");
        let hd = d / self.heads;
        let qkv = self
            .qkv
            .forward(&self.norm1.forward(x))
            .reshape([b, n, 3, self.heads, hd])
            .permute([2, 0, 3, 1, 4]);
        let (q, k, v) = (qkv.get(0), qkv.get(1), qkv.get(2));
        let a = Tensor::scaled_dot_product_attention(
            &q,
            &k,
            &v,
            None::<Tensor>,
            0.0,
            false,
            None,
            false,
        );
        let x = x + self.proj.forward(&a.transpose(1, 2).reshape([b, n, d]));
        let h = self.fc2.forward(&self.fc1.forward(&self.norm2.forward(&x)).gelu("none"));
        x + h
    }
}

/// The backbone. [`Vit::forward`] maps `[B, 3, S, S]` float images to `[B, dim]` features.
#[derive(Debug)]
pub struct Vit {
    pub config: VitConfig,
    patch_w: Tensor,
    patch_b: Tensor,
    cls_token: Tensor,
    pos_embed: Tensor,
    blocks: Vec<Block>,
    norm: LayerNorm,
}

impl Vit {
    /// Creates the variables under `p` with MoCo v3's init. With `freeze_patch` the patch
    /// projection never receives gradients (MoCo v3's stability trick).
    pub fn new(p: &nn::Path<'_>, config: VitConfig, freeze_patch: bool) -> Self {
        config.check().expect("VitConfig::check before building");
        let d = config.dim;
        let k = 3 * config.patch * config.patch;
        let bound = (6.0 / (k + d) as f64).sqrt();
        let pe = p / "patch_embed" / "proj";
        let patch_w = pe.var(
            "weight",
            &[d, 3, config.patch, config.patch],
            nn::Init::Uniform { lo: -bound, up: bound },
        );
        let patch_b = pe.zeros("bias", &[d]);
        if freeze_patch {
            let _ = patch_w.set_requires_grad(false);
            let _ = patch_b.set_requires_grad(false);
        }
        let cls_token = p.var("cls_token", &[1, 1, d], nn::Init::Randn { mean: 0.0, stdev: 1e-6 });
        let pos = sincos_2d(config.grid(), d).to_device(p.device());
        let pos_embed = p.zeros_no_train("pos_embed", &[1, config.grid() * config.grid() + 1, d]);
        tch::no_grad(|| pos_embed.narrow(1, 1, config.grid() * config.grid()).copy_(&pos));
        let blocks = (0..config.depth).map(|i| Block::new(&(p / "blocks" / i), &config)).collect();
        let norm = LayerNorm::new(&(p / "norm"), d);
        Self { config, patch_w, patch_b, cls_token, pos_embed, blocks, norm }
    }

    /// `[B, 3, S, S]` → class token after the final norm, `[B, dim]`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let p = self.config.patch;
        let t = x.conv2d(&self.patch_w, Some(&self.patch_b), [p, p], [0, 0], [1, 1], 1);
        let b = t.size()[0];
        let t = t.flatten(2, -1).transpose(1, 2);
        let cls = self.cls_token.expand([b, 1, self.config.dim], false).to_kind(t.kind());
        let mut t = Tensor::cat(&[cls, t], 1) + &self.pos_embed;
        for block in &self.blocks {
            t = block.forward(&t);
        }
        self.norm.forward(&t).select(1, 0)
    }

    /// The patch projection's weight and bias (for the first-layer gradient norm).
    pub fn patch_params(&self) -> [&Tensor; 2] {
        [&self.patch_w, &self.patch_b]
    }
}

/// MoCo v3's fixed 2-D sin-cos embedding, `[grid², dim]` (without the class token's zero row).
///
/// Built as the reference builds it: `meshgrid(arange(w), arange(h))` in "ij" order, so token
/// `m` gets the first half from `m / grid` and the second from `m % grid`; frequencies
/// `1 / 10000^(i / (dim/4))`; columns `[sin w, cos w, sin h, cos h]`.
pub fn sincos_2d(grid: i64, dim: i64) -> Tensor {
    let quarter = dim / 4;
    let omega: Vec<f32> =
        (0..quarter).map(|i| 1.0 / 10000f32.powf(i as f32 / quarter as f32)).collect();
    let mut out = vec![0f32; (grid * grid * dim) as usize];
    for m in 0..grid * grid {
        let (gw, gh) = ((m / grid) as f32, (m % grid) as f32);
        let row = &mut out[(m * dim) as usize..((m + 1) * dim) as usize];
        for (i, &w) in omega.iter().enumerate() {
            let q = quarter as usize;
            row[i] = (gw * w).sin();
            row[q + i] = (gw * w).cos();
            row[2 * q + i] = (gh * w).sin();
            row[3 * q + i] = (gh * w).cos();
        }
    }
    Tensor::from_slice(&out).reshape([grid * grid, dim]).to_kind(Kind::Float)
}
