"""PyTorch reference of the MoCo v3 ViT method, for twoview's equivalence tests and benches.

The backbone is timm's VisionTransformer configured as MoCo v3's ViT (class token, LayerNorm
eps 1e-6, fixed 2-D sin-cos position embedding, frozen patch projection, MoCo v3's init); the
heads, loss and momentum update are written here from the paper and ../shared/DESIGN.md.

    python moco_reference.py fixture OUT.safetensors [--image 32 --patch 8 --dim 48 ...]

writes initial weights (under twoview's names: base_encoder.*, predictor.*, momentum_encoder.*),
a fixed u8 two-view batch, and what the reference computes from them: backbone features, q/k,
loss, every gradient, the momentum-updated encoder, and parameters after AdamW (two steps) and
after one LARS step. tests/integration/moco_equivalence.rs compares twoview against it.

    python moco_reference.py trajectory IN.safetensors OUT.safetensors --steps-per-epoch 20 ...

trains the reference from its seed's initial weights on the u8 batches of IN (`batches`,
[S, B, 2, H, W, 3], twoview's own) as main_moco.py does -- lr by adjust_learning_rate and the
momentum by adjust_moco_momentum at the fractional epoch, torch.optim.AdamW over the model's
parameters -- and writes the initial and final weights, every step's loss, lr and momentum, and a snapshot
(weights, momentum encoder, BN statistics, AdamW moments) every `--snapshot-every` steps.
"""

import argparse
import math
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from timm.models.vision_transformer import VisionTransformer

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def sincos_2d(grid, dim, temperature=10000.0):
    """[grid², dim]: the reference's meshgrid ("ij") order, columns [sin w, cos w, sin h, cos h]."""
    gw, gh = torch.meshgrid(torch.arange(grid, dtype=torch.float32),
                            torch.arange(grid, dtype=torch.float32), indexing="ij")
    q = dim // 4
    omega = 1.0 / temperature ** (torch.arange(q, dtype=torch.float32) / q)
    ow = gw.flatten()[:, None] * omega[None]
    oh = gh.flatten()[:, None] * omega[None]
    return torch.cat([ow.sin(), ow.cos(), oh.sin(), oh.cos()], dim=1)


def make_vit(image, patch, dim, depth, heads, mlp_ratio=4, freeze_patch=True):
    vit = VisionTransformer(img_size=image, patch_size=patch, embed_dim=dim, depth=depth,
                            num_heads=heads, mlp_ratio=mlp_ratio, qkv_bias=True,
                            norm_layer=partial(nn.LayerNorm, eps=1e-6), num_classes=0,
                            global_pool="token", class_token=True)
    grid = image // patch
    with torch.no_grad():
        pe = torch.zeros(1, grid * grid + 1, dim)
        pe[0, 1:] = sincos_2d(grid, dim)
        vit.pos_embed = nn.Parameter(pe, requires_grad=False)
        # MoCo v3 init: every Linear xavier-uniform (qkv as three [dim, dim] blocks), zero bias;
        # class token N(0, 1e-6); patch conv xavier-uniform as a linear map 3·p² → dim.
        for name, m in vit.named_modules():
            if isinstance(m, nn.Linear):
                fan_out = m.weight.shape[0] // 3 if "qkv" in name else m.weight.shape[0]
                bound = math.sqrt(6.0 / (fan_out + m.weight.shape[1]))
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)
        nn.init.normal_(vit.cls_token, std=1e-6)
        bound = math.sqrt(6.0 / (3 * patch * patch + dim))
        nn.init.uniform_(vit.patch_embed.proj.weight, -bound, bound)
        nn.init.zeros_(vit.patch_embed.proj.bias)
    if freeze_patch:
        vit.patch_embed.proj.weight.requires_grad = False
        vit.patch_embed.proj.bias.requires_grad = False
    return vit


def mlp(layers, d_in, hidden, d_out):
    mods = []
    for i in range(layers):
        a = d_in if i == 0 else hidden
        b = d_out if i == layers - 1 else hidden
        mods.append(nn.Linear(a, b, bias=False))
        if i < layers - 1:
            mods += [nn.BatchNorm1d(b), nn.ReLU(inplace=True)]
        else:
            mods.append(nn.BatchNorm1d(b, affine=False))
    return nn.Sequential(*mods)


class MocoV3(nn.Module):
    def __init__(self, image, patch, dim, depth, heads, mlp_dim, out_dim, tau=0.2):
        super().__init__()
        self.tau = tau
        self.base_encoder = make_vit(image, patch, dim, depth, heads)
        self.base_encoder.head = mlp(3, dim, mlp_dim, out_dim)
        self.predictor = mlp(2, out_dim, mlp_dim, out_dim)
        self.momentum_encoder = make_vit(image, patch, dim, depth, heads)
        self.momentum_encoder.head = mlp(3, dim, mlp_dim, out_dim)
        for pb, pm in zip(self.base_encoder.parameters(), self.momentum_encoder.parameters()):
            pm.data.copy_(pb.data)
            pm.requires_grad = False
        for bb, bm in zip(self.base_encoder.buffers(), self.momentum_encoder.buffers()):
            bm.copy_(bb)

    @torch.no_grad()
    def update_momentum(self, m):
        for pb, pm in zip(self.base_encoder.parameters(), self.momentum_encoder.parameters()):
            pm.data = pm.data * m + pb.data * (1.0 - m)

    def ctr(self, q, k):
        q = F.normalize(q, dim=1)
        k = F.normalize(k, dim=1)
        logits = q @ k.t() / self.tau
        labels = torch.arange(logits.shape[0], dtype=torch.long)
        return F.cross_entropy(logits, labels) * (2 * self.tau)

    def forward(self, x1, x2, m):
        q1 = self.predictor(self.base_encoder(x1))
        q2 = self.predictor(self.base_encoder(x2))
        with torch.no_grad():
            self.update_momentum(m)
            k1 = self.momentum_encoder(x1)
            k2 = self.momentum_encoder(x2)
        loss = self.ctr(q1, k2) + self.ctr(q2, k1)
        return loss, q1, q2, k1, k2


def normalize_views(u8):
    """[B, 2, S, S, 3] u8 → two [B, 3, S, S] float batches, as ToTensor + Normalize."""
    x = u8.float() / 255.0
    x = (x - torch.tensor(MEAN)) / torch.tensor(STD)
    x = x.permute(1, 0, 4, 2, 3)
    return x[0].contiguous(), x[1].contiguous()


def lars_step(params, lr, weight_decay, momentum=0.9, trust=0.001, state=None):
    """MoCo v3's LARS: decay and trust ratio only for parameters with more than one dim."""
    with torch.no_grad():
        for p in params:
            if p.grad is None:
                continue
            dp = p.grad
            if p.ndim > 1:
                dp = dp.add(p, alpha=weight_decay)
                pn, un = torch.norm(p), torch.norm(dp)
                one = torch.ones_like(pn)
                q = torch.where(pn > 0.0, torch.where(un > 0, trust * pn / un, one), one)
                dp = dp.mul(q)
            mu = state.setdefault(p, torch.zeros_like(p))
            mu.mul_(momentum).add_(dp)
            p.add_(mu, alpha=-lr)


def named_state(model):
    out = {}
    for n, t in model.state_dict().items():
        if n.endswith("num_batches_tracked"):
            continue
        out[n] = t.detach().clone().contiguous()
    return out


def fixture(a):
    torch.manual_seed(a.seed)
    model = MocoV3(a.image, a.patch, a.dim, a.depth, a.heads, a.mlp_dim, a.out_dim)
    model.train()
    init = named_state(model)
    batch = torch.randint(0, 256, (a.batch, 2, a.image, a.image, 3), dtype=torch.uint8)
    x1, x2 = normalize_views(batch)
    out = {f"init.{k}": v for k, v in init.items()}
    out["batch"] = batch
    out["m"] = torch.tensor([a.m], dtype=torch.float64)
    out["lr"] = torch.tensor([a.lr], dtype=torch.float64)
    with torch.no_grad():
        out["features"] = model.base_encoder.forward_head(model.base_encoder.forward_features(x1),
                                                          pre_logits=True).clone()
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]

    def run_step(tag):
        model.zero_grad(set_to_none=True)
        loss, q1, q2, k1, k2 = model(x1, x2, a.m)
        loss.backward()
        return loss, q1, q2, k1, k2

    loss, q1, q2, k1, k2 = run_step("first")
    out.update(loss=loss.detach().reshape(1), q1=q1.detach(), q2=q2.detach(), k1=k1.detach(), k2=k2.detach())
    for n, p in params:
        out[f"grad.{n}"] = p.grad.detach().clone()
    for n, t in named_state(model).items():
        if n.startswith("momentum_encoder."):
            out[f"after_forward.{n}"] = t
    # AdamW, two steps (the second checks the saved moments and bias correction).
    opt = torch.optim.AdamW([p for _, p in params], lr=a.lr, betas=(0.9, 0.999), eps=1e-8,
                            weight_decay=0.1, foreach=False)
    opt.step()
    for n, p in params:
        out[f"adamw1.{n}"] = p.detach().clone()
    run_step("second")
    opt.step()
    for n, p in params:
        out[f"adamw2.{n}"] = p.detach().clone()
    # LARS from the initial state.
    model.load_state_dict({**model.state_dict(), **init})
    run_step("lars")
    lars_step([p for _, p in params], a.lr, weight_decay=0.1, state={})
    for n, p in params:
        out[f"lars1.{n}"] = p.detach().clone()
    save_file({k: v.contiguous() for k, v in out.items()}, a.out)
    print(f"wrote {len(out)} tensors to {a.out}; loss {loss.item():.6f}")


def adjust_learning_rate(lr, warmup_epochs, epochs, epoch):
    """main_moco.py: linear warmup, then half-cycle cosine (per iteration, fractional epoch)."""
    if epoch < warmup_epochs:
        return lr * epoch / warmup_epochs
    return lr * 0.5 * (1.0 + math.cos(math.pi * (epoch - warmup_epochs) / (epochs - warmup_epochs)))


def adjust_moco_momentum(m, epochs, epoch):
    """main_moco.py: the momentum rises from m to 1 on a half-cycle cosine."""
    return 1.0 - 0.5 * (1.0 + math.cos(math.pi * epoch / epochs)) * (1.0 - m)


def trajectory(a):
    batches = load_file(a.input)["batches"]
    torch.manual_seed(a.seed)
    model = MocoV3(a.image, a.patch, a.dim, a.depth, a.heads, a.mlp_dim, a.out_dim)
    model.train()
    out = {f"init.{k}": v for k, v in named_state(model).items()}
    lr0 = a.base_lr * batches.shape[1] / 256
    opt = torch.optim.AdamW(model.parameters(), lr0, betas=(0.9, 0.999), eps=1e-8,
                            weight_decay=a.weight_decay)
    losses, lrs, ms = [], [], []
    names = {p: n for n, p in model.named_parameters()}

    def snapshot(step):
        for k, v in named_state(model).items():
            out[f"snap{step}.{k}"] = v
        for p, st in opt.state.items():
            for key in ("exp_avg", "exp_avg_sq"):
                out[f"snap{step}.optim.{names[p]}.{key}"] = st[key].detach().clone()

    for i in range(batches.shape[0]):
        if i % a.snapshot_every == 0:
            snapshot(i)
        epoch = i / a.steps_per_epoch
        lr = adjust_learning_rate(lr0, a.warmup_epochs, a.epochs, epoch)
        for g in opt.param_groups:
            g["lr"] = lr
        m = adjust_moco_momentum(a.m, a.epochs, epoch)
        x1, x2 = normalize_views(batches[i])
        loss = model(x1, x2, m)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        lrs.append(lr)
        ms.append(m)
    snapshot(batches.shape[0])
    out.update({f"final.{k}": v for k, v in named_state(model).items()})
    out["loss"] = torch.tensor(losses, dtype=torch.float64)
    out["lr"] = torch.tensor(lrs, dtype=torch.float64)
    out["m"] = torch.tensor(ms, dtype=torch.float64)
    save_file({k: v.contiguous() for k, v in out.items()}, a.out)
    print(f"trajectory: {len(losses)} steps, loss {losses[0]:.4f} -> {losses[-1]:.4f}")


def audit(a):
    """What main_moco.py's model trains, decays, updates by momentum, and how its BNs are set."""
    import json
    model = MocoV3(a.image, a.patch, a.dim, a.depth, a.heads, a.mlp_dim, a.out_dim)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), 1e-3, weight_decay=0.1)  # as main_moco.py
    names = {p: n for n, p in model.named_parameters()}
    decayed = sorted(names[p] for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]
                     if p.requires_grad)
    bns = [{"name": n, "eps": m.eps, "momentum": m.momentum, "affine": m.affine, "training": m.training}
           for n, m in model.named_modules() if isinstance(m, nn.BatchNorm1d)]
    out = {
        "trainable": sorted(n for n, p in model.named_parameters() if p.requires_grad),
        "decayed": decayed,
        "momentum_updated": sorted(n for n, _ in model.momentum_encoder.named_parameters()),
        "momentum_buffers_own": sorted(n for n, _ in model.momentum_encoder.named_buffers()
                                       if not n.endswith("num_batches_tracked")),
        "bn": bns,
    }
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fixture")
    f.add_argument("out")
    f.add_argument("--image", type=int, default=32)
    f.add_argument("--patch", type=int, default=8)
    f.add_argument("--dim", type=int, default=48)
    f.add_argument("--depth", type=int, default=2)
    f.add_argument("--heads", type=int, default=3)
    f.add_argument("--mlp-dim", type=int, default=64)
    f.add_argument("--out-dim", type=int, default=32)
    f.add_argument("--batch", type=int, default=8)
    f.add_argument("--m", type=float, default=0.99)
    f.add_argument("--lr", type=float, default=1e-3)
    f.add_argument("--seed", type=int, default=0)
    t = sub.add_parser("trajectory")
    t.add_argument("input")
    t.add_argument("out")
    for name, kind, default in [("image", int, 32), ("patch", int, 8), ("dim", int, 48),
                                ("depth", int, 2), ("heads", int, 3), ("mlp-dim", int, 64),
                                ("out-dim", int, 32), ("steps-per-epoch", int, 20),
                                ("epochs", float, 10.0), ("warmup-epochs", float, 2.0),
                                ("base-lr", float, 0.1), ("weight-decay", float, 0.1),
                                ("m", float, 0.99), ("seed", int, 0), ("snapshot-every", int, 10)]:
        t.add_argument(f"--{name}", type=kind, default=default)
    u = sub.add_parser("audit")
    u.add_argument("out")
    for name, default in [("image", 32), ("patch", 8), ("dim", 48), ("depth", 2), ("heads", 3),
                          ("mlp-dim", 64), ("out-dim", 32)]:
        u.add_argument(f"--{name}", type=int, default=default)
    a = ap.parse_args()
    torch.set_num_threads(1)
    if a.cmd == "fixture":
        fixture(a)
    elif a.cmd == "trajectory":
        trajectory(a)
    elif a.cmd == "audit":
        audit(a)


if __name__ == "__main__":
    main()
