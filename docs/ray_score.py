#!/usr/bin/env python3
"""Score a sciscore manifest with Ray Data, then merge and check it with `sciscore merge`.

    python docs/ray_score.py --sciscore /shared/bin/sciscore --model /shared/models/SciScore \
        --manifest /shared/data/manifest.jsonl --out /shared/data/scores.jsonl --actors 8

The manifest's non-blank lines become a Ray dataset of (line number, line bytes); `map_batches`
hands batches of them to a pool of GPU actors (one GPU each), and each actor runs the sciscore
CLI (`sciscore batch`) on its batch: the same binary, the same scores and the same record
format as every other way of running sciscore, with no Python binding to build. Records come
back to the driver, which writes them to one file and runs `sciscore merge` on it: that checks
that every manifest line is there exactly once and writes them in manifest order, with the
summary `batch` prints.

The cost of the CLI: each batch loads the model again (a few seconds for SciScore's 3.9 GB from
a local or page-cached disk), so batches should be large (`--rows-per-batch`, default 4096
images, minutes of GPU work each). The model folder and the images must be readable at the same
paths on every worker: a shared filesystem (NFS, Lustre, a mounted bucket), or copy the model to
each node first (for example from an object store in a Ray runtime_env or a node setup script).
Relative image paths are resolved against the manifest's folder, as `sciscore batch` does.

A batch whose sciscore run exits 75 (lost GPU device, an output that could not be written) is
retried by its actor, up to --retries times; exit 1 (bad model folder or manifest) fails the job.
Needs `pip install "ray[data]"`. Run by tests/shard.rs where Ray is importable.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import ray

RETRY = 75  # sciscore's exit status for "run me again"


def manifest_rows(path):
    """(line number, bytes) of each non-blank line, numbered as sciscore numbers them (from 0,
    blank lines counted)."""
    rows = []
    with open(path, "rb") as f:
        for n, raw in enumerate(f):
            raw = raw.rstrip(b"\n")
            if raw.strip():
                rows.append({"line": n, "raw": raw})
    return rows


def absolute_image(raw, base):
    """The line with a relative `image` made absolute (the batch's manifest lives elsewhere),
    and the original path to put back into its record; other lines are left as they are."""
    try:
        v = json.loads(raw)
    except ValueError:
        return raw, None
    if not isinstance(v, dict) or not isinstance(v.get("image"), str):
        return raw, None
    image = v["image"]
    if os.path.isabs(image):
        return raw, None
    v["image"] = os.path.join(base, image)
    return json.dumps(v).encode(), image


class Scorer:
    """A Ray Data actor: runs `sciscore batch` over one batch of manifest lines at a time."""

    def __init__(self, sciscore, model, base, backend, batch, retries):
        self.cmd = [sciscore, "batch", "--model", model, "--backend", backend,
                    "--batch", str(batch), "--json"]
        self.base, self.retries = base, retries

    def __call__(self, rows):
        lines, originals = list(rows["line"]), []
        with tempfile.TemporaryDirectory() as d:
            manifest, out = os.path.join(d, "batch.jsonl"), os.path.join(d, "out.jsonl")
            with open(manifest, "wb") as f:
                for raw in rows["raw"]:
                    raw, image = absolute_image(bytes(raw), self.base)
                    originals.append(image)
                    f.write(raw + b"\n")
            for attempt in range(self.retries + 1):
                # --out makes a retry resume where the failed run stopped.
                p = subprocess.run(self.cmd + ["--manifest", manifest, "--out", out],
                                   capture_output=True, text=True)
                if p.returncode != RETRY:
                    break
                time.sleep(min(60, 2 ** attempt))
            if p.returncode != 0:
                raise RuntimeError(f"sciscore exited {p.returncode}: {p.stderr.strip()}")
            with open(out, encoding="utf-8") as f:
                records = [json.loads(line) for line in f]
        for r in records:
            # The batch's manifest has no blank lines: its line j is row j.
            j = r["line"]
            r["line"] = int(lines[j])
            if originals[j] is not None:
                r["image"] = originals[j]
        return {"record": [json.dumps(r) for r in records]}


def main():
    a = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    a.add_argument("--sciscore", default="sciscore", help="the sciscore binary on the workers")
    a.add_argument("--model", required=True, help="model folder, at this path on every worker")
    a.add_argument("--manifest", required=True)
    a.add_argument("--out", required=True, help="the merged output (JSONL, or .parquet)")
    a.add_argument("--actors", type=int, default=1, help="scoring actors (one GPU each)")
    a.add_argument("--num-gpus", type=float, default=1, help="GPUs per actor (0: CPU)")
    a.add_argument("--cpus-per-actor", type=float, default=1)
    a.add_argument("--backend", default="gpu", choices=["gpu", "cpu"])
    a.add_argument("--rows-per-batch", type=int, default=4096)
    a.add_argument("--sciscore-batch", type=int, default=8, help="images per forward pass")
    a.add_argument("--retries", type=int, default=3, help="reruns of a batch that exits 75")
    args = a.parse_args()

    ray.init()
    base = os.path.dirname(os.path.abspath(args.manifest))
    ds = ray.data.from_items(manifest_rows(args.manifest))
    scored = ds.map_batches(
        Scorer,
        fn_constructor_kwargs=dict(sciscore=args.sciscore, model=args.model, base=base,
                                   backend=args.backend, batch=args.sciscore_batch,
                                   retries=args.retries),
        batch_size=args.rows_per_batch,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=args.actors),
        num_gpus=args.num_gpus,
        num_cpus=args.cpus_per_actor,
    )
    records = args.out + ".ray.jsonl"
    with open(records, "w", encoding="utf-8") as f:
        for row in scored.iter_rows():
            f.write(row["record"] + "\n")
    fmt = "parquet" if args.out.endswith(".parquet") else "jsonl"
    p = subprocess.run([args.sciscore, "merge", "--manifest", args.manifest, "--out", args.out,
                        "--format", fmt, records])
    if p.returncode == 0:
        os.remove(records)
    sys.exit(p.returncode)


if __name__ == "__main__":
    main()
