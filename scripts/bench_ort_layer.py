#!/usr/bin/env python3
"""Native onnxruntime on the CLIP ViT-H/14 vision layer that scripts/make_ort_layer.py writes (or
scripts/export_ort_layer.py exports from transformers through torch.onnx; both take x (257, 1280)): ms
per layer (best and median of the runs) on the CPU execution provider, every graph optimization,
at each thread count asked for. The native half of issue 16's comparison (sciscore's own figure:
`sciscore bench --backend cpu --random clip-h --layers 1` against `--layers 5`). Needs
`pip install onnxruntime onnx numpy`; not part of the tests.

    python3 scripts/bench_ort_layer.py LAYER.onnx [THREADS...]   # default: 1 and 2 threads
"""
import statistics
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort

T, D, F = 257, 1280, 5120
FLOP = 2 * T * D * (4 * D + 2 * F) + 4 * T * T * D


def main() -> None:
    path = sys.argv[1]
    threads = [int(t) for t in sys.argv[2:]] or [1, 2]
    # Layers in the graph (two layer norms each): a graph of several layers streams every
    # layer's weights from memory, as a whole tower does; one layer's 79 MB stay in a large L3.
    graph = onnx.load(path, load_external_data=False).graph
    layers = max(1, sum(n.op_type == "LayerNormalization" for n in graph.node) // 2)
    x = (np.sin(np.arange(T * D, dtype=np.float32)) * 0.5).reshape(T, D)
    for n in threads:
        so = ort.SessionOptions()
        so.intra_op_num_threads = n
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        feeds = {sess.get_inputs()[0].name: x}
        sess.run(None, feeds)
        times = []
        for _ in range(10):
            t0 = time.perf_counter()
            sess.run(None, feeds)
            times.append((time.perf_counter() - t0) * 1e3 / layers)
        best, med = min(times), statistics.median(times)
        print(f"onnxruntime {ort.__version__} CPU, {n} thread(s): {best:.1f} ms per vision layer "
              f"(median {med:.1f}; a graph of {layers}), {FLOP / best / 1e6:.0f} GFLOP/s")


if __name__ == "__main__":
    main()
