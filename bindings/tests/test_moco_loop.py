"""A real PyTorch loop: the repo's MoCo v3 reference (python/moco_reference.py: timm's ViT,
MoCo v3's heads, loss and momentum schedule) trained by twoview.Loader instead of a DataLoader."""

import math

import torch

import twoview
from moco_reference import MocoV3, adjust_learning_rate, adjust_moco_momentum, normalize_views


def test_moco_v3_trains_on_twoview_batches(shards):
    torch.manual_seed(0)
    model = MocoV3(image=32, patch=8, dim=48, depth=2, heads=3, mlp_dim=64, out_dim=32).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    loader = twoview.Loader(shards, batch_size=16, size=32, seed=0, threads=2)
    epochs, steps_per_epoch = 40, len(loader)
    before = {n: p.detach().clone() for n, p in model.base_encoder.named_parameters()}
    losses = []
    for epoch in range(epochs):
        for i, (views, labels, *_) in enumerate(loader):
            t = epoch + i / steps_per_epoch
            for g in opt.param_groups:
                g["lr"] = adjust_learning_rate(1e-3, 2, epochs, t)
            x1, x2 = normalize_views(views)
            loss = model(x1, x2, adjust_moco_momentum(0.99, epochs, t))[0]
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    assert len(losses) == epochs * steps_per_epoch == 120
    assert all(math.isfinite(x) for x in losses)
    first, last = sum(losses[:15]) / 15, sum(losses[-15:]) / 15
    print(f"loss {first:.3f} -> {last:.3f}")
    assert last < first - 0.1, f"the loss did not fall: {first:.3f} -> {last:.3f} ({losses})"
    frozen = {"patch_embed.proj.weight", "patch_embed.proj.bias", "pos_embed"}
    for n, p in model.base_encoder.named_parameters():
        if n not in frozen and p.requires_grad:
            assert not torch.equal(p, before[n]), f"{n} did not train"
    loader.close()
