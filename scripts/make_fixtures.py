#!/usr/bin/env python3
"""Write the reference fixtures in tests/fixtures/ from Hugging Face transformers.

Run (from the repository root, offline is fine: nothing is downloaded):

    python3.11 -m venv .venv-fixtures
    .venv-fixtures/bin/pip install -r scripts/requirements-fixtures.txt
    .venv-fixtures/bin/python scripts/make_fixtures.py

What it writes (the Rust tests depend on this layout):

    tests/fixtures/PROVENANCE.json      seed, package versions, notes
    tests/fixtures/prompts.json         the prompt list, in order
    tests/fixtures/images/              images drawn here (PNG/JPEG/WebP/GIF/BMP, several modes)
    tests/fixtures/images.json          [{name, mode, format, size: [w, h], why}] in order
    tests/fixtures/models/<name>/       random Hugging Face CLIPModel folders (tiny224, odd, bf16)
    tests/fixtures/goldens/<name>.json  input_ids, logit_scale, scores, probs, pairs
    tests/fixtures/goldens/<name>.safetensors  F32 activations, pixel values, embeddings
    tests/fixtures/goldens/regions_<name>.json  patch maps and occlusion maps (`sciscore explain`)

Goldens follow the reference usage of SciScore (see shared DESIGN.md):
    ids    = CLIPTokenizerFast.from_pretrained(dir)(prompt, truncation=True, max_length=77)
    pixels = CLIPImageProcessor.from_pretrained(dir)(images=Image.open(path), return_tensors="pt")
    CLIPModel.from_pretrained(dir, torch_dtype=torch.float32) in eval mode, under no_grad.
F16/BF16 folders are reloaded in float32, so the goldens are the exact stored (rounded) weights
computed in f32.

Everything is deterministic: a fixed seed per model and per image, single-threaded torch,
deterministic algorithms. Running the script twice gives byte-identical files.
"""

import gzip
import hashlib
import io
import importlib.util
import json
import math
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

# Offline by construction: the Hugging Face hub is never contacted.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import PIL  # noqa: E402
import safetensors  # noqa: E402
import tokenizers  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import (  # noqa: E402
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    CLIPTokenizerFast,
)

SEED = 20240607
ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures"

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
VOCAB_SIZE = 49408  # 256 bytes + 256 bytes</w> + 48894 merges + 2 specials
MAX_POSITIONS = 77
LOGIT_SCALE = 4.6052  # ln(100), the value CLIP / SciScore checkpoints carry

PROMPTS = [
    "a glass of water with ice cubes floating on top",
    "an apple falling from a tree",
    "a candle flame bending toward an open window on a windy day",
    "café crème brûlée à la française",
    "一只猫坐在窗台上看雨 東京の桜 한국어 문장",
    "a 🐱 on the 🌙",
    "Hello!!! What's up??? (test) [brackets] {braces} -- 'quotes'",
    "3.14159 and 42 apples, 1,000,000 stars",
    "  MIXED   Case\tand\nnewlines  ",
    "it's they're we'll",
    "",
    (
        "A long paragraph about physics: when a block of ice is placed in a warm room it slowly "
        "melts, the water pools around its base, and the temperature of the puddle stays close to "
        "zero degrees Celsius until all of the ice has turned to liquid; meanwhile a metal spoon "
        "left in a cup of hot tea becomes warm at the handle, a ball thrown upward slows down, stops "
        "for an instant at the top of its path and falls back with increasing speed, and a prism "
        "splits white sunlight into a rainbow of colours on the opposite wall of the laboratory."
    ),
]

# (prompt index, [image index a, image index b]) for the two-image softmax goldens, the shape of
# one Science-T2I benchmark row.
PAIRS = [(0, [0, 1]), (1, [4, 11]), (5, [2, 3]), (10, [5, 6]), (11, [7, 12])]


# ----------------------------------------------------------------------------------------------
# Tokenizer files
# ----------------------------------------------------------------------------------------------


def bytes_to_unicode():
    """OpenAI CLIP's byte -> printable unicode map (identical in HF tokenization_clip.py)."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(2**8):
        if b not in bs:
            bs.append(b)
            cs.append(2**8 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def bpe_path():
    """The open_clip package's bundled BPE file, found without importing open_clip."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("open_clip_torch is not installed: pip install -r scripts/requirements-fixtures.txt")
    p = Path(list(spec.submodule_search_locations)[0]) / "bpe_simple_vocab_16e6.txt.gz"
    if not p.is_file():
        sys.exit(f"missing {p}")
    return p


def write_tokenizer(dst: Path):
    """Derive vocab.json + merges.txt like OpenAI CLIP / HF CLIPTokenizer, then tokenizer.json."""
    src = bpe_path()
    lines = gzip.open(src).read().decode("utf-8").split("\n")
    merges = [tuple(m.split()) for m in lines[1 : 49152 - 256 - 2 + 1]]
    assert all(len(m) == 2 for m in merges)
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    assert len(vocab) == VOCAB_SIZE == len(set(vocab)), len(vocab)
    vocab_map = {tok: i for i, tok in enumerate(vocab)}

    slow_dir = Path(tempfile.mkdtemp(prefix="clip_tok_"))
    (slow_dir / "vocab.json").write_text(json.dumps(vocab_map, ensure_ascii=False), encoding="utf-8")
    # HF reads merges.txt as .strip().split("\n")[1:48895]: a version header, then one merge a line.
    merges_txt = "#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n"
    (slow_dir / "merges.txt").write_text(merges_txt, encoding="utf-8")

    tok = CLIPTokenizerFast(
        vocab_file=str(slow_dir / "vocab.json"),
        merges_file=str(slow_dir / "merges.txt"),
        model_max_length=MAX_POSITIONS,
    )
    assert len(tok) == VOCAB_SIZE, len(tok)
    assert tok.backend_tokenizer.get_vocab_size() == VOCAB_SIZE
    ids = tok("a photo of a cat")["input_ids"]
    assert ids == [49406, 320, 1125, 539, 320, 2368, 49407], ids

    dst.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(str(dst))
    # The saved vocab/merges must be the derived ones (the fast tokenizer writes its own copies).
    saved_vocab = json.loads((dst / "vocab.json").read_text(encoding="utf-8"))
    assert saved_vocab == vocab_map
    saved_merges = (dst / "merges.txt").read_text(encoding="utf-8").strip().split("\n")
    assert saved_merges[0].startswith("#version"), saved_merges[0]
    assert [tuple(m.split()) for m in saved_merges[1:]] == merges
    shutil.rmtree(slow_dir)
    # The folder must round-trip through from_pretrained (this is what the goldens use).
    tok2 = CLIPTokenizerFast.from_pretrained(str(dst))
    assert tok2("a photo of a cat")["input_ids"] == ids
    assert tok2.model_max_length == MAX_POSITIONS
    return {
        "bpe_file": "open_clip/bpe_simple_vocab_16e6.txt.gz",
        "bpe_sha256": hashlib.sha256(src.read_bytes()).hexdigest(),
    }


TOKENIZER_FILES = [
    "tokenizer.json",
    "vocab.json",
    "merges.txt",
    "tokenizer_config.json",
    "special_tokens_map.json",
]


# ----------------------------------------------------------------------------------------------
# Images
# ----------------------------------------------------------------------------------------------


def _grad(w, h):
    """Float grids x, y in [0, 1], shape (h, w)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    return x / max(w - 1, 1), y / max(h - 1, 1)


def _u8(a):
    return np.clip(np.round(a), 0, 255).astype(np.uint8)


def _shapes(draw, w, h, colors):
    """A few deterministic shapes: circle, rectangle, triangle, lines (no text)."""
    draw.ellipse([w * 0.1, h * 0.15, w * 0.45, h * 0.6], fill=colors[0])
    draw.rectangle([w * 0.55, h * 0.1, w * 0.9, h * 0.45], fill=colors[1])
    draw.polygon([(w * 0.2, h * 0.9), (w * 0.5, h * 0.55), (w * 0.8, h * 0.92)], fill=colors[2])
    for k in range(5):
        draw.line([(0, h * (0.1 + 0.18 * k)), (w - 1, h * (0.2 + 0.15 * k))], fill=colors[3], width=2)


def img_rgb_gradient(rng):
    w, h = 224, 224
    x, y = _grad(w, h)
    a = np.stack([255 * x, 255 * y, 255 * (1 - (x + y) / 2)], -1)
    im = Image.fromarray(_u8(a), "RGB")
    _shapes(ImageDraw.Draw(im), w, h, [(250, 200, 20), (20, 60, 200), (200, 30, 120), (255, 255, 255)])
    return im


def img_rgba_alpha(rng):
    w, h = 300, 180
    x, y = _grad(w, h)
    # Vivid colours everywhere, including under fully transparent pixels: PIL's convert("RGB")
    # (what CLIPImageProcessor does) drops alpha without compositing, so they must come through.
    rgb = np.stack([255 * (0.5 + 0.5 * np.sin(12 * x)), 255 * y, 255 * (0.5 + 0.5 * np.cos(9 * y))], -1)
    rgb[:, : w // 4] = [255, 0, 255]  # magenta block, fully transparent below
    alpha = 255 * x  # horizontal alpha ramp 0..255
    alpha[:, : w // 4] = 0
    alpha[h // 2 :, w // 2 :] = 128  # a half-transparent quadrant
    im = Image.fromarray(np.concatenate([_u8(rgb), _u8(alpha)[..., None]], -1), "RGBA")
    d = ImageDraw.Draw(im)
    d.ellipse([150, 20, 260, 130], fill=(10, 220, 40, 200))
    d.rectangle([20, 100, 120, 170], fill=(255, 255, 0, 0))  # transparent yellow over magenta
    return im


def img_gray_l(rng):
    w, h = 180, 301
    x, y = _grad(w, h)
    r = np.sqrt((x - 0.5) ** 2 + (y - 0.4) ** 2)
    im = Image.fromarray(_u8(255 * (1 - np.clip(r * 1.6, 0, 1))), "L")
    _shapes(ImageDraw.Draw(im), w, h, [30, 220, 90, 255])
    return im


def img_palette_p(rng):
    w, h = 200, 150
    im = Image.new("P", (w, h), 0)
    pal = []
    for i in range(16):
        pal += [(i * 53) % 256, (i * 97 + 40) % 256, (i * 151 + 90) % 256]
    im.putpalette(pal)
    d = ImageDraw.Draw(im)
    for k in range(8):
        d.rectangle([k * 25, 0, k * 25 + 24, h - 1], fill=k + 1)
    _shapes(d, w, h, [9, 10, 11, 12])
    d.ellipse([60, 40, 140, 120], fill=15)
    return im


def img_photo_rgb(rng):
    w, h = 320, 240
    x, y = _grad(w, h)
    sky = np.stack([80 + 100 * y, 140 + 80 * y, 250 - 40 * y], -1)
    a = sky + rng.normal(0, 4, (h, w, 3))  # mild sensor-like noise, texture for the JPEG coder
    im = Image.fromarray(_u8(a), "RGB")
    d = ImageDraw.Draw(im)
    d.rectangle([0, int(h * 0.65), w, h], fill=(60, 140, 50))
    d.ellipse([220, 30, 280, 90], fill=(255, 220, 80))
    d.polygon([(40, 160), (110, 60), (180, 160)], fill=(120, 110, 100))
    return im


def img_gray_jpg(rng):
    w, h = 257, 193
    x, y = _grad(w, h)
    a = 128 + 100 * np.sin(6 * x) * np.cos(4 * y) + rng.normal(0, 3, (h, w))
    im = Image.fromarray(_u8(a), "L")
    _shapes(ImageDraw.Draw(im), w, h, [240, 20, 180, 0])
    return im


def img_webp_lossless(rng):
    w, h = 240, 160
    x, y = _grad(w, h)
    a = np.stack([255 * (1 - x), 128 + 100 * np.sin(8 * y), 255 * x * y], -1)
    im = Image.fromarray(_u8(a), "RGB")
    _shapes(ImageDraw.Draw(im), w, h, [(0, 0, 0), (255, 128, 0), (0, 200, 200), (255, 0, 0)])
    return im


def img_webp_lossy(rng):
    w, h = 160, 240
    x, y = _grad(w, h)
    a = np.stack([200 * y + 30, 255 * np.abs(np.sin(5 * x)), 100 + 100 * x], -1)
    a += rng.normal(0, 5, a.shape)
    im = Image.fromarray(_u8(a), "RGB")
    _shapes(ImageDraw.Draw(im), w, h, [(255, 255, 255), (20, 20, 20), (240, 60, 60), (60, 240, 60)])
    return im


def img_gif(rng):
    w, h = 150, 150
    im = Image.new("P", (w, h), 0)
    pal = []
    for i in range(32):
        pal += [(i * 8) % 256, 255 - (i * 8) % 256, (i * 37) % 256]
    im.putpalette(pal)
    d = ImageDraw.Draw(im)
    for k in range(16):
        d.ellipse([k * 4, k * 4, w - 1 - k * 4, h - 1 - k * 4], fill=2 * k + 1)
    d.line([(0, 0), (w - 1, h - 1)], fill=31, width=3)
    return im


def img_bmp(rng):
    w, h = 99, 77  # odd width: BMP rows are padded to 4 bytes
    x, y = _grad(w, h)
    a = np.stack([255 * x, 255 * (1 - y), 128 + 127 * np.sin(10 * x * y)], -1)
    im = Image.fromarray(_u8(a), "RGB")
    _shapes(ImageDraw.Draw(im), w, h, [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)])
    return im


def img_tiny(rng):
    w, h = 17, 11
    a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    a[::2, ::2] = [255, 255, 255]
    return Image.fromarray(a, "RGB")


def img_large(rng):
    w, h = 1600, 1200
    x, y = _grad(w, h)
    a = np.stack(
        [255 * x, 255 * (0.5 + 0.5 * np.sin(3 * y + 2 * x)), 255 * (1 - y) * (0.6 + 0.4 * x)], -1
    )
    im = Image.fromarray(_u8(a), "RGB")
    _shapes(ImageDraw.Draw(im), w, h, [(250, 240, 230), (30, 30, 90), (200, 90, 20), (0, 0, 0)])
    return im


def img_noise(rng):
    return Image.fromarray(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8), "RGB")


def _noise(w, h):
    return lambda rng: Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")


# (file name, draw function, save kwargs, why). Order here is the order everywhere.
IMAGES = [
    ("rgb_gradient.png", img_rgb_gradient, dict(format="PNG"),
     "PNG RGB, exactly 224x224: resize is the identity size, crop is a no-op"),
    ("rgba_alpha.png", img_rgba_alpha, dict(format="PNG"),
     "PNG RGBA 300x180 (landscape), varying alpha and vivid colours under transparent pixels: "
     "convert('RGB') drops alpha without compositing"),
    ("gray_l.png", img_gray_l, dict(format="PNG"),
     "PNG grayscale L, 180x301 (portrait, odd height), upscaled to 224 on the short side"),
    ("palette_p.png", img_palette_p, dict(format="PNG"),
     "PNG palette P (16 colours, no transparency), 200x150"),
    ("photo_rgb.jpg", img_photo_rgb, dict(format="JPEG", quality=90, subsampling=0, optimize=False,
                                          progressive=False),
     "JPEG RGB baseline q90, 4:4:4 (no chroma subsampling), 320x240, mild noise"),
    ("gray.jpg", img_gray_jpg, dict(format="JPEG", quality=90, optimize=False, progressive=False),
     "JPEG grayscale (1 component) baseline q90, 257x193"),
    ("lossless.webp", img_webp_lossless, dict(format="WEBP", lossless=True, quality=100, method=4),
     "WebP lossless (VP8L) RGB, 240x160"),
    ("lossy.webp", img_webp_lossy, dict(format="WEBP", lossless=False, quality=80, method=4),
     "WebP lossy (VP8, YUV 4:2:0) RGB, 160x240 (portrait)"),
    ("frame.gif", img_gif, dict(format="GIF"),
     "GIF, single frame, 32-colour palette, no transparency, 150x150"),
    ("bitmap.bmp", img_bmp, dict(format="BMP"),
     "BMP 24-bit RGB, 99x77 (odd width: padded rows, bottom-up storage)"),
    ("tiny.png", img_tiny, dict(format="PNG"),
     "PNG RGB 17x11, tiny: upscaled ~20x by bicubic"),
    ("large.jpg", img_large, dict(format="JPEG", quality=90, optimize=False, progressive=False),
     "JPEG RGB baseline q90, default 4:2:0 chroma subsampling, 1600x1200 (large downscale)"),
    ("noise.png", img_noise, dict(format="PNG"),
     "PNG RGB 96x64 uniform noise: high-frequency content stresses the resampling filter"),
    # Tall noise: Pillow 13 resizes vertically first when the height shrinks by more than twice
    # the pixels the width does (earlier Pillows always horizontally first); noise shows any
    # difference in the intermediate 8-bit image.
    ("noise_tall.png", _noise(300, 1000), dict(format="PNG"),
     "PNG RGB 300x1000 noise (portrait): vertical pass first at 224 px and at 36 px"),
    ("noise_tall_thin.png", _noise(130, 457), dict(format="PNG"),
     "PNG RGB 130x457 noise (portrait): width upscaled at 224 px (horizontal first), vertical "
     "pass first at 36 px"),
    ("noise_portrait.png", _noise(333, 500), dict(format="PNG"),
     "PNG RGB 333x500 noise (portrait, both sides shrink): horizontal pass first at 224 and 36 px"),
]


def write_images(img_dir: Path):
    img_dir.mkdir(parents=True, exist_ok=True)
    meta = []
    for k, (name, fn, save_kw, why) in enumerate(IMAGES):
        rng = np.random.default_rng(SEED + 1000 + k)
        im = fn(rng)
        im.save(img_dir / name, **save_kw)
        with Image.open(img_dir / name) as back:
            meta.append(
                {"name": name, "mode": back.mode, "format": back.format, "size": list(back.size), "why": why}
            )
        size_kb = (img_dir / name).stat().st_size / 1024
        print(f"  image {name:18s} {meta[-1]['format']:4s} {meta[-1]['mode']:4s} "
              f"{meta[-1]['size']} {size_kb:7.1f} KiB")
    return meta


# ----------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------

MODELS = {
    "tiny224": dict(
        seed=SEED + 1,
        dtype=torch.float32,
        shard=None,
        preprocessor="old",
        mean=CLIP_MEAN,
        std=CLIP_STD,
        projection_dim=40,
        vision=dict(image_size=224, patch_size=14, hidden_size=64, num_attention_heads=4,
                    num_hidden_layers=2, intermediate_size=128, hidden_act="gelu"),
        # eos_token_id 2 is the legacy value real CLIP-H / SciScore configs carry: HF then pools
        # the text tower at argmax(input_ids).
        text=dict(hidden_size=32, num_attention_heads=4, num_hidden_layers=2, intermediate_size=64,
                  hidden_act="gelu", bos_token_id=0, eos_token_id=2, pad_token_id=1),
    ),
    "odd": dict(
        seed=SEED + 2,
        dtype=torch.float16,
        shard="sharded",
        preprocessor="new",
        mean=[0.5, 0.5, 0.5],
        std=[0.5, 0.5, 0.5],
        projection_dim=22,
        vision=dict(image_size=36, patch_size=6, hidden_size=42, num_attention_heads=3,
                    num_hidden_layers=3, intermediate_size=90, hidden_act="quick_gelu",
                    layer_norm_eps=1e-6),
        text=dict(hidden_size=30, num_attention_heads=2, num_hidden_layers=2, intermediate_size=74,
                  hidden_act="quick_gelu", layer_norm_eps=1e-6,
                  bos_token_id=49406, eos_token_id=49407, pad_token_id=1),
    ),
    "bf16": dict(
        seed=SEED + 3,
        dtype=torch.bfloat16,
        shard=None,
        preprocessor="old",
        mean=CLIP_MEAN,
        std=CLIP_STD,
        projection_dim=40,
        # Same geometry as tiny224 except hidden sizes 32 (keeps the committed fixtures small).
        vision=dict(image_size=224, patch_size=14, hidden_size=32, num_attention_heads=4,
                    num_hidden_layers=2, intermediate_size=128, hidden_act="gelu"),
        text=dict(hidden_size=32, num_attention_heads=4, num_hidden_layers=2, intermediate_size=64,
                  hidden_act="gelu", bos_token_id=0, eos_token_id=2, pad_token_id=1),
    ),
}


def build_config(spec):
    text = dict(vocab_size=VOCAB_SIZE, max_position_embeddings=MAX_POSITIONS,
                projection_dim=spec["projection_dim"], **spec["text"])
    vision = dict(num_channels=3, projection_dim=spec["projection_dim"], **spec["vision"])
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=spec["projection_dim"],
                      logit_scale_init_value=LOGIT_SCALE)


@torch.no_grad()
def perturb(model: CLIPModel, seed: int):
    """Move the weights far from HF's init, where attention is near-uniform and LayerNorm is the
    identity, so a kernel bug cannot hide behind symmetric weights."""
    g = torch.Generator().manual_seed(seed)

    def randn(shape):
        return torch.randn(shape, generator=g, dtype=torch.float32)

    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.LayerNorm):
            mod.weight.copy_(1 + 0.3 * randn(mod.weight.shape))
            mod.bias.copy_(0.2 * randn(mod.bias.shape))
        elif isinstance(mod, torch.nn.Linear):
            fan_in = mod.weight.shape[1]
            # q/k get a larger gain so attention logits are O(1-5), far from uniform.
            gain = 1.5 if name.endswith(("q_proj", "k_proj")) else 1.0
            mod.weight.copy_(gain * randn(mod.weight.shape) / math.sqrt(fan_in))
            if mod.bias is not None:
                mod.bias.copy_(0.2 * randn(mod.bias.shape))
        elif isinstance(mod, torch.nn.Embedding):
            mod.weight.copy_(0.5 * randn(mod.weight.shape))
        elif isinstance(mod, torch.nn.Conv2d):
            c, p = mod.weight.shape[1], mod.weight.shape[2]
            mod.weight.copy_(randn(mod.weight.shape) / math.sqrt(c * p * p))
    emb = model.vision_model.embeddings
    emb.class_embedding.copy_(randn(emb.class_embedding.shape))
    model.logit_scale.fill_(LOGIT_SCALE)


def preprocessor_config(spec):
    size = spec["vision"]["image_size"]
    if spec["preprocessor"] == "old":
        # The form that openai/laion CLIP-H / SciScore folders carry: ints, no rescale keys.
        return {
            "crop_size": size,
            "do_center_crop": True,
            "do_convert_rgb": True,
            "do_normalize": True,
            "do_resize": True,
            "image_mean": spec["mean"],
            "image_processor_type": "CLIPImageProcessor",
            "image_std": spec["std"],
            "resample": 3,
            "size": size,
        }
    return {
        "crop_size": {"height": size, "width": size},
        "do_center_crop": True,
        "do_convert_rgb": True,
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": spec["mean"],
        "image_processor_type": "CLIPImageProcessor",
        "image_std": spec["std"],
        "resample": 3,
        "rescale_factor": 0.00392156862745098,
        "size": {"shortest_edge": size},
    }


def save_model(name, spec, model_dir: Path, tok_dir: Path):
    torch.manual_seed(spec["seed"])
    model = CLIPModel(build_config(spec)).eval()
    perturb(model, spec["seed"])
    model = model.to(spec["dtype"])
    if spec["shard"]:
        # The token embedding alone is ~3 MB in f16; everything else ~150 KB. A shard limit of
        # 100 KB puts the embedding in its own shard and splits the rest in two: 3 shards.
        model.save_pretrained(str(model_dir), safe_serialization=True, max_shard_size="100KB")
        index = json.loads((model_dir / "model.safetensors.index.json").read_text())
        shards = sorted(set(index["weight_map"].values()))
        assert len(shards) == 3, shards
    else:
        model.save_pretrained(str(model_dir), safe_serialization=True)
        assert (model_dir / "model.safetensors").is_file()
    (model_dir / "preprocessor_config.json").write_text(
        json.dumps(preprocessor_config(spec), indent=2) + "\n", encoding="utf-8"
    )
    for f in TOKENIZER_FILES:
        shutil.copyfile(tok_dir / f, model_dir / f)


# ----------------------------------------------------------------------------------------------
# Goldens
# ----------------------------------------------------------------------------------------------


def check_attention(model, ids, pixels):
    """Print how peaked attention is (eager attention, output_attentions) and return it."""
    eager = CLIPModel.from_pretrained(model.name_or_path, torch_dtype=torch.float32,
                                      attn_implementation="eager").eval()
    out = {}
    t = eager.text_model(input_ids=ids, output_attentions=True)
    ratios = []
    for a in t.attentions:  # (1, H, T, T), causal
        a = a[0]
        T = a.shape[-1]
        valid = torch.arange(1, T + 1, dtype=torch.float32)  # keys visible to each query row
        ratios.append((a.max(-1).values * valid).mean().item())
    out["text_max_prob_x_keys"] = ratios
    v = eager.vision_model(pixel_values=pixels, output_attentions=True)
    ratios = []
    for a in v.attentions:
        T = a.shape[-1]
        ratios.append((a[0].max(-1).values * T).mean().item())
    out["vision_max_prob_x_T"] = ratios
    # Uniform attention gives 1.0 for these ratios.
    assert min(out["text_max_prob_x_keys"]) > 1.5, out
    assert min(out["vision_max_prob_x_T"]) > 5.0, out
    return out


@torch.no_grad()
def goldens(name, spec, model_dir: Path, img_dir: Path, images_meta, gold_dir: Path):
    tok = CLIPTokenizerFast.from_pretrained(str(model_dir))
    proc = CLIPImageProcessor.from_pretrained(str(model_dir))
    assert type(proc) is CLIPImageProcessor, type(proc)
    model = CLIPModel.from_pretrained(str(model_dir), torch_dtype=torch.float32).eval()
    assert all(p.dtype == torch.float32 for p in model.parameters())

    tensors = {}
    input_ids = []
    text_embeds = []
    for p, prompt in enumerate(PROMPTS):
        ids = tok(prompt, truncation=True, max_length=MAX_POSITIONS)["input_ids"]
        input_ids.append(ids)
        x = torch.tensor([ids], dtype=torch.long)
        out = model.text_model(input_ids=x, output_hidden_states=True)
        hs = out.hidden_states
        tensors[f"text.{p}.hidden.0"] = hs[0][0]
        tensors[f"text.{p}.hidden.1"] = hs[1][0]
        tensors[f"text.{p}.hidden.last"] = hs[-1][0]
        tensors[f"text.{p}.last_hidden_state"] = out.last_hidden_state[0]
        tensors[f"text.{p}.pooled"] = out.pooler_output[0]
        te = model.get_text_features(input_ids=x)[0]
        assert torch.allclose(te, model.text_projection(out.pooler_output)[0], atol=1e-6, rtol=0)
        text_embeds.append(te)

    pixels = []
    image_embeds = []
    names = [m["name"] for m in images_meta]
    for img_name in names:
        with Image.open(img_dir / img_name) as im:
            pv = proc(images=im, return_tensors="pt").pixel_values
        size = spec["vision"]["image_size"]
        assert pv.shape == (1, 3, size, size), pv.shape
        pixels.append(pv)
        if name != "bf16":  # bf16 shares tiny224's preprocessor and image size
            tensors[f"pixel_values.{img_name}"] = pv[0]
        out = model.vision_model(pixel_values=pv, output_hidden_states=True)
        hs = out.hidden_states
        tensors[f"vision.{img_name}.hidden.0"] = hs[0][0]
        tensors[f"vision.{img_name}.hidden.1"] = hs[1][0]
        tensors[f"vision.{img_name}.hidden.last"] = hs[-1][0]
        tensors[f"vision.{img_name}.pooled"] = out.pooler_output[0]
        image_embeds.append(model.get_image_features(pixel_values=pv)[0])
    tensors["text_embeds"] = torch.stack(text_embeds)
    tensors["image_embeds"] = torch.stack(image_embeds)
    all_pixels = torch.cat(pixels)

    # Scores exactly as CLIPModel.forward's logits_per_text, one prompt against all images.
    scores, probs = [], []
    for ids in input_ids:
        o = model(input_ids=torch.tensor([ids]), pixel_values=all_pixels)
        scores.append(o.logits_per_text[0])
        probs.append(o.logits_per_text[0].softmax(-1))
    scores = torch.stack(scores)
    probs = torch.stack(probs)
    # Cross-check against the per-image embeddings written above.
    t = tensors["text_embeds"] / tensors["text_embeds"].norm(dim=-1, keepdim=True)
    v = tensors["image_embeds"] / tensors["image_embeds"].norm(dim=-1, keepdim=True)
    mine = model.logit_scale.exp() * t @ v.T
    score_diff = (mine - scores).abs().max().item()
    assert score_diff < 1e-3, score_diff

    pairs = []
    for p, (ia, ib) in PAIRS:
        o = model(input_ids=torch.tensor([input_ids[p]]), pixel_values=all_pixels[[ia, ib]])
        pairs.append({"prompt": p, "images": [ia, ib], "probs": o.logits_per_text[0].softmax(-1).tolist()})

    # Diagnostics: attention is peaked, embeddings are not degenerate.
    att = check_attention(model, torch.tensor([input_ids[0]]), pixels[0])
    cos_img = (v @ v.T)[~torch.eye(len(names), dtype=torch.bool)]
    cos_txt = (t @ t.T)[~torch.eye(len(PROMPTS), dtype=torch.bool)]
    diag = {
        "attention": att,
        "image_embed_cos_offdiag": [cos_img.min().item(), cos_img.mean().item(), cos_img.max().item()],
        "text_embed_cos_offdiag": [cos_txt.min().item(), cos_txt.mean().item(), cos_txt.max().item()],
        "score_range": [scores.min().item(), scores.max().item()],
        "score_std_over_images": scores.std(-1).mean().item(),
        "logits_vs_embeds_maxdiff": score_diff,
    }
    assert cos_img.max().item() < 0.999 and cos_txt.max().item() < 0.999, diag
    print(f"  {name}: " + json.dumps(diag))

    # sdpa (the default, used above) vs eager attention: a sanity bound, not a golden.
    eager = CLIPModel.from_pretrained(str(model_dir), torch_dtype=torch.float32,
                                      attn_implementation="eager").eval()
    e = eager.get_image_features(pixel_values=all_pixels[:1])[0]
    print(f"  {name}: sdpa vs eager image_embeds[0] max abs diff "
          f"{(e - tensors['image_embeds'][0]).abs().max().item():.3g}")

    tensors = {k: v.detach().to(torch.float32).contiguous() for k, v in tensors.items()}
    save_file(tensors, str(gold_dir / f"{name}.safetensors"), metadata={"model": name})
    doc = {
        "model": name,
        "prompts": PROMPTS,
        "images": names,
        "input_ids": input_ids,
        "logit_scale": model.logit_scale.item(),
        "scores": scores.tolist(),
        "probs": probs.tolist(),
        "pairs": pairs,
    }
    (gold_dir / f"{name}.json").write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n",
                                           encoding="utf-8")
    return diag


# ----------------------------------------------------------------------------------------------


# Extra tokenizer cases: ids only (no model), to pin the hand-written tokenizer to
# CLIPTokenizerFast on unicode corners: case mapping, normalization, whitespace, specials, length.
TOKENIZER_CASES = [
    "a photo of a cat", "A PHOTO OF A CAT", "ΟΔΟΣ ΣΟΦΙΑΣ", "İstanbul Straße ǅemal", "ﬁne ﬂow ﬀ",
    "e\u0301cole vs \u00e9cole", "Ａｂｃ１２３ full width", "tab\there\u00a0nbsp\u2003em space",
    "zero\u200bwidth joiner 👨\u200d👩\u200d👧 family", "flags 🇫🇷🇯🇵 and skin 👍🏽",
    "मानक हिन्दी", "العربية الفصحى", "中文分词测试，标点。", "日本語のテキスト", "한국어 문장",
    "x² + y³ = z⁴, ½ + ¼", "١٢٣ arabic-indic digits", "Ⅻ roman numeral", "H₂O and CO₂",
    "don't can't won't I'M YOU'RE", "'s 't 're 've 'm 'll 'd", "''quoted'' \"double\"",
    "<|startoftext|>hello<|endoftext|>", "before <|endoftext|> after", "<|endoftext|>",
    "email@example.com https://example.org/path?q=1&b=2", "#hashtag @mention $100 50% 3.5e-10",
    "...!!!???---___***", "\n\n\n", "   ", "a" * 300, "word " * 100,
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "ice floats on water because it is less dense than liquid water at 0°C",
]


def tokenizer_cases(model_dir: Path, gold_dir: Path):
    tok = CLIPTokenizerFast.from_pretrained(str(model_dir))
    cases = [{"text": t, "input_ids": tok(t, truncation=True, max_length=77)["input_ids"]}
             for t in TOKENIZER_CASES]
    (gold_dir / "tokenizer_cases.json").write_text(
        json.dumps(cases, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# A tiny Science-T2I split: the schema of the Hugging Face parquet shards of Science-T2I-S/-C
# (image lists as list<struct<bytes: binary, path: string>>), in two shards with small row
# groups so readers must stream, and the accuracies transformers gives on it per model.
BENCH_LAWS = [
    ("physics", "buoyancy", "ice cubes in a glass of water", "ice floating at the top", "ice sunk at the bottom"),
    ("physics", "refraction", "a straw in a glass of water", "the straw looks bent at the surface", "a perfectly straight straw"),
    ("chemistry", "oxidation", "an old iron nail left outside for years", "a rusty orange nail", "a shiny silver nail"),
    ("chemistry", "combustion", "a candle burning for three hours", "a short melted candle", "a tall unburnt candle"),
    ("biology", "phototropism", "a plant on a windowsill for weeks", "the plant leaning toward the window", "the plant growing straight up"),
    ("biology", "ripening", "a banana left on the counter for two weeks", "a brown spotted banana", "a bright green banana"),
]
BENCH_CANDIDATES = 40
BENCH_ROWS = 14
# Rows whose two scores are closer than this (in logit units, for every model) are skipped:
# the benchmark decision is a strict comparison and a near-tie is decided by rounding noise,
# which no test across backends can pin.
BENCH_MIN_MARGIN = 0.05


def _bench_image(rng, fmt):
    w, h = int(rng.integers(40, 90)), int(rng.integers(40, 90))
    x, y = _grad(w, h)
    base = np.stack([x, y, (x + y) / 2], axis=-1) * 255 * rng.uniform(0.3, 1.0, size=3)
    im = Image.fromarray(_u8(base), "RGB")
    cols = [tuple(int(c) for c in rng.integers(0, 256, size=3)) for _ in range(4)]
    _shapes(ImageDraw.Draw(im), w, h, cols)
    buf = io.BytesIO()
    if fmt == "JPEG":
        im.save(buf, format="JPEG", quality=92, subsampling=0)
    else:
        im.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def write_benchmark(gold_dir: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(SEED + 100)
    cands = []
    for i in range(BENCH_CANDIDATES):
        cat, law, scene, right, wrong = BENCH_LAWS[i % len(BENCH_LAWS)]
        fmt = "JPEG" if i % 3 == 0 else "PNG"
        ext = "jpg" if fmt == "JPEG" else "png"
        cands.append({
            "implicit_prompt": f"{scene}, picture {i}",
            "explicit_prompt": f"{scene}, {right}",
            "superficial_prompt": f"{scene}, {wrong}",
            "explicit_image": [{"bytes": _bench_image(rng, fmt), "path": f"{i:03d}_explicit.{ext}"}],
            "superficial_image": [{"bytes": _bench_image(rng, fmt), "path": f"{i:03d}_superficial.{ext}"}],
            "category": cat,
            "law": law,
        })

    # Score every candidate with every model, as the authors' eval script does.
    margins = {}
    for name in MODELS:
        d = OUT / "models" / name
        tok = CLIPTokenizerFast.from_pretrained(str(d))
        proc = CLIPImageProcessor.from_pretrained(str(d))
        model = CLIPModel.from_pretrained(str(d), torch_dtype=torch.float32).eval()
        rows = []
        for c in cands:
            ims = [Image.open(io.BytesIO(c[k][0]["bytes"])) for k in ("explicit_image", "superficial_image")]
            x = tok(c["implicit_prompt"], truncation=True, max_length=MAX_POSITIONS, return_tensors="pt")
            pv = proc(images=ims, return_tensors="pt").pixel_values
            logits = model(input_ids=x.input_ids, pixel_values=pv).logits_per_text[0]
            probs = logits.softmax(-1)
            rows.append((float(logits[0]), float(logits[1]), float(probs[0]), float(probs[1])))
        margins[name] = rows
    keep = [i for i in range(BENCH_CANDIDATES)
            if all(abs(margins[n][i][0] - margins[n][i][1]) > BENCH_MIN_MARGIN for n in MODELS)][:BENCH_ROWS]
    assert len(keep) == BENCH_ROWS, len(keep)

    schema = pa.schema([
        ("implicit_prompt", pa.string()), ("explicit_prompt", pa.string()), ("superficial_prompt", pa.string()),
        ("explicit_image", pa.list_(pa.struct([("bytes", pa.binary()), ("path", pa.string())]))),
        ("superficial_image", pa.list_(pa.struct([("bytes", pa.binary()), ("path", pa.string())]))),
        ("category", pa.string()), ("law", pa.string()),
    ])
    bench_dir = OUT / "science_t2i"
    shutil.rmtree(bench_dir, ignore_errors=True)
    bench_dir.mkdir(parents=True)
    half = BENCH_ROWS // 2
    for s, part in enumerate([keep[:half], keep[half:]]):
        table = pa.Table.from_pylist([cands[i] for i in part], schema=schema)
        pq.write_table(table, bench_dir / f"test-{s:05d}-of-00002.parquet", row_group_size=3,
                       compression="snappy")

    # Bad inputs: a shard without the `law` column, and one whose row 1 has undecodable bytes.
    bad_dir = OUT / "science_t2i_bad"
    shutil.rmtree(bad_dir, ignore_errors=True)
    bad_dir.mkdir(parents=True)
    rows = [dict(cands[i]) for i in keep[:3]]
    no_law = pa.Table.from_pylist(rows, schema=schema).drop_columns(["law"])
    pq.write_table(no_law, bad_dir / "missing_column.parquet")
    rows[1]["explicit_image"] = [{"bytes": b"definitely not an image", "path": "broken.png"}]
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), bad_dir / "bad_image.parquet", row_group_size=2)

    for name in MODELS:
        per_row, cat_ok, law_ok = [], {}, {}
        for r, i in enumerate(keep):
            s0, s1, p0, p1 = margins[name][i]
            correct = p0 > p1
            c = cands[i]
            per_row.append({"row": r, "category": c["category"], "law": c["law"], "score_explicit": s0,
                            "score_superficial": s1, "prob_explicit": p0, "prob_superficial": p1,
                            "correct": correct})
            cat_ok.setdefault(c["category"], []).append(correct)
            law_ok.setdefault(c["law"], []).append(correct)
        out = {
            "rows": len(per_row),
            "overall_accuracy": sum(x["correct"] for x in per_row) / len(per_row),
            "category_accuracy": {k: sum(v) / len(v) for k, v in sorted(cat_ok.items())},
            "law_accuracy": {k: sum(v) / len(v) for k, v in sorted(law_ok.items())},
            "per_row": per_row,
        }
        (gold_dir / f"eval_{name}.json").write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
        print(f"  eval {name}: {out['overall_accuracy']:.4f} over {len(per_row)} rows")


# ---------------------------------------------------------------------------------------------
# Region maps (`sciscore explain`, issue 15 section 2), for a few (prompt, image) pairs per model:
#   patch_map[i] = exp(logit_scale) * cos(visual_projection(post_layernorm(h[1 + i])), t)
# with h the vision tower's last hidden state (output_hidden_states, before post_layernorm) and
# t = get_text_features(prompt), over the patch grid row-major; and
#   occlusion[r * G + c] = score(original) - score(cell (r, c) set to 0 in normalized pixels)
# with cell (r, c) covering rows floor(r S / G) .. floor((r + 1) S / G) - 1 and the same columns.
# Written after everything else, from the files already there, so adding these changes no other
# file.
REGION_PROMPTS = [0, 2]
REGION_IMAGES = ["rgb_gradient.png", "photo_rgb.jpg", "tiny.png"]
# (image, G) occlusion maps per model: a small grid on every model, the default 7 on two (odd's
# 36 px crop does not divide by 7, so its cells have uneven edges).
REGION_OCCLUSION = {
    "tiny224": [("rgb_gradient.png", 3), ("rgb_gradient.png", 7)],
    "odd": [("rgb_gradient.png", 3), ("photo_rgb.jpg", 7)],
    "bf16": [("photo_rgb.jpg", 3)],
}


def occluded(pv, g):
    """(G*G, 3, S, S): pv (1, 3, S, S) with each cell in turn set to 0 (the mean colour)."""
    s = pv.shape[-1]
    out = pv.repeat(g * g, 1, 1, 1)
    for r in range(g):
        for c in range(g):
            y0, y1 = (r * s) // g, ((r + 1) * s) // g
            x0, x1 = (c * s) // g, ((c + 1) * s) // g
            out[r * g + c, :, y0:y1, x0:x1] = 0.0
    return out


@torch.no_grad()
def region_goldens(name, model_dir: Path, img_dir: Path, gold_dir: Path):
    tok = CLIPTokenizerFast.from_pretrained(str(model_dir))
    proc = CLIPImageProcessor.from_pretrained(str(model_dir))
    model = CLIPModel.from_pretrained(str(model_dir), torch_dtype=torch.float32).eval()
    vm = model.vision_model
    scale = model.logit_scale.exp()
    entries = []
    for img_name in REGION_IMAGES:
        with Image.open(img_dir / img_name) as im:
            pv = proc(images=im, return_tensors="pt").pixel_values
        out = vm(pixel_values=pv, output_hidden_states=True)
        h = out.hidden_states[-1][0]  # (T, D), before post_layernorm
        assert torch.equal(h, out.last_hidden_state[0])
        patches = model.visual_projection(vm.post_layernorm(h[1:]))  # (N, P)
        g = int(round(math.sqrt(patches.shape[0])))
        assert g * g == patches.shape[0]
        image = model.get_image_features(pixel_values=pv)[0]
        for p in REGION_PROMPTS:
            ids = tok(PROMPTS[p], truncation=True, max_length=MAX_POSITIONS, return_tensors="pt").input_ids
            t = model.get_text_features(input_ids=ids)[0]
            t = t / t.norm()
            pm = scale * (patches / patches.norm(dim=-1, keepdim=True)) @ t
            score = model(input_ids=ids, pixel_values=pv).logits_per_text[0, 0]
            mine = scale * (image / image.norm()) @ t
            assert abs(mine.item() - score.item()) < 1e-3
            entry = {"prompt": p, "image": img_name, "score": score.item(), "patch_grid": [g, g],
                     "patch_map": pm.tolist(), "occlusion": []}
            for occ_img, grid in REGION_OCCLUSION[name]:
                if occ_img != img_name or p != REGION_PROMPTS[0]:
                    continue
                logits = model(input_ids=ids, pixel_values=occluded(pv, grid)).logits_per_text[0]
                entry["occlusion"].append({"grid": grid, "drop": (score - logits).tolist()})
            entries.append(entry)
    doc = {
        "model": name,
        "definition": "patch_map[i] = exp(logit_scale) * cos(visual_projection(post_layernorm("
                      "h[1 + i])), get_text_features(prompt)), h = vision_model(...).hidden_states[-1]"
                      "; occlusion drop[r*G + c] = score(original) - score(pixels of cell (r, c) = 0),"
                      " cell rows floor(r*S/G)..floor((r+1)*S/G)-1, columns alike",
        "entries": entries,
    }
    (gold_dir / f"regions_{name}.json").write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n",
                                                   encoding="utf-8")
    print(f"  regions {name}: {len(entries)} patch maps, "
          f"{sum(len(e['occlusion']) for e in entries)} occlusion maps")


def main():
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)  # one thread: the same reduction order on every machine

    # Clear only what this script owns.
    for sub in ["images", "models", "goldens", "science_t2i", "science_t2i_bad"]:
        shutil.rmtree(OUT / sub, ignore_errors=True)
    for f in ["PROVENANCE.json", "prompts.json", "images.json"]:
        (OUT / f).unlink(missing_ok=True)
    OUT.mkdir(parents=True, exist_ok=True)

    print("tokenizer")
    tok_dir = Path(tempfile.mkdtemp(prefix="clip_tokenizer_"))
    tok_info = write_tokenizer(tok_dir)

    print("images")
    images_meta = write_images(OUT / "images")
    (OUT / "images.json").write_text(json.dumps(images_meta, indent=1) + "\n", encoding="utf-8")
    (OUT / "prompts.json").write_text(json.dumps(PROMPTS, ensure_ascii=False, indent=1) + "\n",
                                      encoding="utf-8")

    gold_dir = OUT / "goldens"
    gold_dir.mkdir(parents=True)
    diags = {}
    for name, spec in MODELS.items():
        print(f"model {name}")
        model_dir = OUT / "models" / name
        save_model(name, spec, model_dir, tok_dir)
        diags[name] = goldens(name, spec, model_dir, OUT / "images", images_meta, gold_dir)
    tokenizer_cases(OUT / "models" / "tiny224", gold_dir)
    print("benchmark split")
    write_benchmark(gold_dir)
    print("region maps")
    for name in MODELS:
        region_goldens(name, OUT / "models" / name, OUT / "images", gold_dir)
    shutil.rmtree(tok_dir)

    provenance = {
        "seed": SEED,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__,
            "pillow": PIL.__version__,
            "numpy": np.__version__,
            "safetensors": safetensors.__version__,
            "open_clip_torch": _dist_version("open_clip_torch"),
            "pyarrow": _dist_version("pyarrow"),
        },
        "script": "scripts/make_fixtures.py",
        "notes": (
            "Random CLIPModel weights (seed + 1/2/3 for tiny224/odd/bf16), perturbed away from HF "
            "init (LayerNorm 1+0.3N/0.2N, Linear N/sqrt(fan_in) with 1.5x on q/k, biases 0.2N, "
            "embeddings 0.5N, class_embedding N, patch conv N/sqrt(3p^2), logit_scale ln 100). "
            "Goldens: CLIPTokenizerFast(prompt, truncation=True, max_length=77) per prompt, no "
            "padding; slow CLIPImageProcessor on Image.open(path); CLIPModel.from_pretrained(dir, "
            "torch_dtype=float32) (F16/BF16 folders upcast, so goldens are the stored weights in "
            "f32), default sdpa attention, eval, no_grad, 1 torch thread, deterministic algorithms. "
            "Tokenizer: vocab.json/merges.txt derived from open_clip's bpe_simple_vocab_16e6.txt.gz "
            "as OpenAI CLIP does, tokenizer.json converted from them by CLIPTokenizerFast."
        ),
        "tokenizer": tok_info,
        "models": {
            n: {"seed": s["seed"], "dtype": str(s["dtype"]).replace("torch.", ""),
                "sharded": bool(s["shard"]), "preprocessor_config": s["preprocessor"]}
            for n, s in MODELS.items()
        },
    }
    (OUT / "PROVENANCE.json").write_text(json.dumps(provenance, indent=1) + "\n", encoding="utf-8")

    total = sum(f.stat().st_size for f in OUT.rglob("*") if f.is_file())
    print(f"wrote {OUT.relative_to(ROOT)}: {total / 2**20:.2f} MiB")


def _dist_version(dist):
    from importlib.metadata import version

    return version(dist)


if __name__ == "__main__":
    main()
