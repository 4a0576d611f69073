#!/usr/bin/env python3
"""CPU baseline: Hugging Face CLIPModel with the full CLIP ViT-H/14 geometry (random weights).

    .venv-fixtures/bin/python scripts/bench_torch.py            # full 32 + 24 layers
    .venv-fixtures/bin/python scripts/bench_torch.py --layers 2 # quick check

Times get_image_features (batch 1 and 4) and get_text_features (77 and ~12 tokens) in fp32 after
a warm-up, reports the median, and GFLOP/s from an explicit count: 2*M*N*K for every matmul,
attention QK^T and AV included (LayerNorm, softmax, GELU, embeddings and adds are not counted).

Shapes (vision): T = 257 tokens, D = 1280, H = 16, Dh = 80, F = 5120, 32 layers, patch 14.
Shapes (text):   T = 77 (or the prompt length), D = 1024, H = 16, Dh = 64, F = 4096, 24 layers.
Projection: 1024.
"""

import argparse
import os
import statistics
import time

os.environ["HF_HUB_OFFLINE"] = "1"

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import CLIPConfig, CLIPModel  # noqa: E402

VISION = dict(image_size=224, patch_size=14, hidden_size=1280, num_attention_heads=16,
              num_hidden_layers=32, intermediate_size=5120, hidden_act="gelu")
TEXT = dict(vocab_size=49408, max_position_embeddings=77, hidden_size=1024, num_attention_heads=16,
            num_hidden_layers=24, intermediate_size=4096, hidden_act="gelu")
PROJ = 1024


def encoder_flops(b, t, d, f, layers):
    """Matmul FLOPs of `layers` pre-LN transformer layers on (b, t, d) tokens."""
    qkvo = 4 * 2 * b * t * d * d  # q, k, v, out projections
    attn = 2 * (2 * b * t * t * d)  # QK^T and AV summed over heads: H * (T*T*Dh) = T*T*D each
    mlp = 2 * 2 * b * t * d * f  # fc1, fc2
    return layers * (qkvo + attn + mlp)


def vision_flops(b, layers):
    v = VISION
    n_patch = (v["image_size"] // v["patch_size"]) ** 2
    t = n_patch + 1
    patch = 2 * b * n_patch * (3 * v["patch_size"] ** 2) * v["hidden_size"]  # conv as a matmul
    proj = 2 * b * v["hidden_size"] * PROJ  # pooled class token only
    return patch + encoder_flops(b, t, v["hidden_size"], v["intermediate_size"], layers) + proj


def text_flops(t, layers):
    d = TEXT["hidden_size"]
    # HF runs every position through all layers, then pools one token and projects it.
    return encoder_flops(1, t, d, TEXT["intermediate_size"], layers) + 2 * d * PROJ


def timeit(fn, warmup, runs):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=None,
                    help="run N layers in both towers instead of 32/24 (quick check)")
    ap.add_argument("--runs", type=int, default=3, help="timed runs per case (median reported)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--batches", default="1,4", help="image batch sizes, comma separated")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    vision = dict(VISION)
    text = dict(TEXT)
    if args.layers:
        vision["num_hidden_layers"] = args.layers
        text["num_hidden_layers"] = args.layers
    vl, tl = vision["num_hidden_layers"], text["num_hidden_layers"]

    t0 = time.perf_counter()
    config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=PROJ)
    model = CLIPModel(config).eval().to(torch.float32)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, "
          f"threads {torch.get_num_threads()}, attn {model.config._attn_implementation}")
    print(f"CLIPModel ViT-H/14 geometry: vision {vl} layers, text {tl} layers, "
          f"{n_params / 1e6:.1f} M params fp32, built in {time.perf_counter() - t0:.1f} s")

    results = []
    with torch.inference_mode():
        for b in [int(x) for x in args.batches.split(",") if x]:
            px = torch.randn(b, 3, 224, 224)
            med, _ = timeit(lambda: model.get_image_features(pixel_values=px), args.warmup, args.runs)
            fl = vision_flops(b, vl)
            results.append((f"image  batch {b}", med, b, "image", fl))
        for t in (77, 12):
            # bos, t-2 ordinary tokens, eos (the highest id, so argmax pooling finds it)
            ids = torch.tensor([[49406] + [320 + i for i in range(t - 2)] + [49407]])
            med, _ = timeit(lambda: model.get_text_features(input_ids=ids), args.warmup, args.runs)
            results.append((f"text   {t} tokens", med, 1, "prompt", text_flops(t, tl)))

    print(f"{'case':18s} {'median ms':>10s} {'ms per item':>16s} {'GFLOP':>8s} {'GFLOP/s':>8s}")
    for name, med, n, unit, fl in results:
        print(f"{name:18s} {med * 1e3:10.1f} {med * 1e3 / n:10.1f}/{unit:6s}"
              f"{fl / 1e9:8.1f} {fl / med / 1e9:8.1f}")


if __name__ == "__main__":
    main()
