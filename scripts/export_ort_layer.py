#!/usr/bin/env python3
"""One CLIP ViT-H/14 vision encoder layer exported by `torch.onnx` from transformers' own
`CLIPEncoderLayer` (random f32 weights): the graph ONNX Runtime gets from an export of
`CLIPModel` (what Optimum and transformers.js ship), for the side-by-side timings against
sciscore's CPU path, native (`scripts/bench_ort_layer.py`) and in the browser
(`tests/browser/bench_ort.mjs`). Input `x` (257, 1280), output `y` (257, 1280), as
`scripts/make_ort_layer.py`'s hand-built graph. Needs the fixtures' environment
(`scripts/requirements-fixtures.txt`) plus `onnx`; not part of the tests.

    python3 scripts/export_ort_layer.py OUT.onnx [LAYERS]

LAYERS (default 1) stacks that many layers: a graph of several streams every layer's weights from
memory, as a whole tower does (one layer's 79 MB can stay in a large L3 cache between runs).

Eager attention (transformers' `CLIPAttention` as written: matmul, softmax, matmul), as Optimum
exports CLIP; ONNX Runtime's graph optimizations then fuse what they recognize (LayerNorm, GELU,
attention) at session creation.
"""
import sys

import torch
import transformers
from transformers import CLIPVisionConfig
from transformers.models.clip.modeling_clip import CLIPEncoderLayer

T, D, H, F = 257, 1280, 16, 5120


class Layers(torch.nn.Module):
    """(T, D) -> (T, D) through `n` `CLIPEncoderLayer`s on a batch of one."""

    def __init__(self, n: int) -> None:
        super().__init__()
        cfg = CLIPVisionConfig(hidden_size=D, num_attention_heads=H, intermediate_size=F,
                               hidden_act="gelu", image_size=224, patch_size=14,
                               num_hidden_layers=n, attn_implementation="eager")
        self.layers = torch.nn.ModuleList(CLIPEncoderLayer(cfg) for _ in range(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.unsqueeze(0)
        for layer in self.layers:
            x = layer(x, None, None)[0]
        return x.squeeze(0)


def main() -> None:
    out = sys.argv[1]
    layers = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    torch.manual_seed(0)
    model = Layers(layers).eval()
    for p in model.parameters():  # transformers' init leaves the projections at N(0, 0.02)
        torch.nn.init.normal_(p, std=0.02)
    x = torch.randn(T, D)
    with torch.no_grad():
        torch.onnx.export(model, (x,), out, input_names=["x"], output_names=["y"],
                          opset_version=17, dynamo=False)
    print(f"{out}: {layers} x CLIPEncoderLayer (transformers {transformers.__version__}, "
          f"torch {torch.__version__}), exported by torch.onnx, opset 17")


if __name__ == "__main__":
    main()
