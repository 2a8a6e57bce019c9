"""Builds the timm model a `twoview export` describes -- from its JSON alone, as a user would --
loads the weights strictly, and writes the features it computes for a given input, for the
tests to compare (tools/tests/eval_export.rs, tests/integration/export_timm.rs).

    python timm_export_check.py VIT.safetensors VIT.json INPUT.safetensors OUT.safetensors

INPUT holds `x` ([N, 3, S, S] float, already normalised); OUT gets `features` ([N, dim]).
Also checks that timm's own `resolve_data_config` reads the evaluation transform from the
metadata (input size, crop_pct, interpolation, mean, std).
"""

import json
import sys

import timm
import torch
from safetensors.torch import load_file, save_file
from timm.data import resolve_data_config


def main():
    weights, config, inp, out = sys.argv[1:5]
    meta = json.load(open(config))["timm"]
    model = timm.create_model(
        meta["model_name"],
        pretrained=False,
        pretrained_cfg_overlay=meta["pretrained_cfg"],
        **meta["kwargs"],
    )
    missing = model.load_state_dict(load_file(weights), strict=True)
    model.eval()
    data = resolve_data_config(model=model)
    want = meta["pretrained_cfg"]
    norm = lambda v: tuple(v) if isinstance(v, (list, tuple)) else v  # noqa: E731
    for key in ("input_size", "crop_pct", "interpolation", "mean", "std"):
        if norm(data[key]) != norm(want[key]):
            raise SystemExit(f"resolve_data_config: {key} = {data[key]}, the export says {want[key]}")
    x = load_file(inp)["x"]
    with torch.no_grad():
        feats = model(x)
    save_file({"features": feats.contiguous()}, out)
    heads = model.blocks[0].attn.num_heads
    print(f"timm.create_model({meta['model_name']!r}, **{meta['kwargs']}) loaded strictly "
          f"({missing}); {heads} heads; data config {data}; features {tuple(feats.shape)}")


if __name__ == "__main__":
    main()
