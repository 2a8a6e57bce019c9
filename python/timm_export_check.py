"""Loads a `twoview export` file into timm's VisionTransformer with strict loading and writes
the features it computes for a given input, for tools/tests/eval_export.rs to compare.

    python timm_export_check.py VIT.safetensors VIT.json INPUT.safetensors OUT.safetensors

INPUT holds `x` ([N, 3, S, S] float, already normalised); OUT gets `features` ([N, dim]).
"""

import json
import sys
from functools import partial

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file
from timm.models.vision_transformer import VisionTransformer


def main():
    weights, config, inp, out = sys.argv[1:5]
    cfg = json.load(open(config))["timm_vision_transformer"]
    model = VisionTransformer(norm_layer=partial(nn.LayerNorm, eps=1e-6), **cfg)
    missing = model.load_state_dict(load_file(weights), strict=True)
    model.eval()
    x = load_file(inp)["x"]
    with torch.no_grad():
        feats = model(x)
    save_file({"features": feats.contiguous()}, out)
    print(f"timm VisionTransformer({cfg}) loaded strictly ({missing}); features {tuple(feats.shape)}")


if __name__ == "__main__":
    main()
