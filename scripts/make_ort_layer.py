#!/usr/bin/env python3
"""One CLIP ViT-H/14 vision encoder layer (pre-norm, 257 tokens x 1280, 16 heads of 80, MLP 5120,
exact-erf GELU) as an ONNX model with random f32 weights, for timing ONNX Runtime Web on the same
browser and machine as sciscore's CPU path (tests/browser/bench_ort.mjs). Needs `pip install onnx
numpy`; not part of the tests.

    python3 scripts/make_ort_layer.py OUT.onnx [LAYERS]
"""
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

T, D, H, F = 257, 1280, 16, 5120
DH = D // H


def main() -> None:
    out = sys.argv[1]
    layers = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    rng = np.random.default_rng(0)
    inits, nodes = [], []

    def const(name, arr):
        inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def weight(name, shape, scale):
        return const(name, (rng.standard_normal(shape) * scale).astype(np.float32))

    def node(op, ins, outs, **attrs):
        nodes.append(helper.make_node(op, ins, outs, **attrs))
        return outs[0]

    heads_shape = const("heads_shape", np.array([T, H, DH], dtype=np.int64))
    flat_shape = const("flat_shape", np.array([T, D], dtype=np.int64))
    scale = const("scale", np.array(DH**-0.5, dtype=np.float32))
    half = const("half", np.array(0.5, dtype=np.float32))
    one = const("one", np.array(1.0, dtype=np.float32))
    rsqrt2 = const("rsqrt2", np.array(2**-0.5, dtype=np.float32))

    def linear(p, x, n_in, n_out):
        w = weight(f"{p}.w", (n_in, n_out), (1.0 / n_in) ** 0.5)
        b = weight(f"{p}.b", (n_out,), 0.01)
        return node("Add", [node("MatMul", [x, w], [f"{p}.mm"]), b], [f"{p}.y"])

    def layer_norm(p, x):
        g = const(f"{p}.g", np.ones(D, dtype=np.float32))
        b = const(f"{p}.b", np.zeros(D, dtype=np.float32))
        return node("LayerNormalization", [x, g, b], [f"{p}.y"], axis=-1, epsilon=1e-5)

    def heads(p, x):  # (T, D) -> (H, T, DH)
        r = node("Reshape", [x, heads_shape], [f"{p}.r"])
        return node("Transpose", [r], [f"{p}.t"], perm=[1, 0, 2])

    x = "x"
    for i in range(layers):
        p = f"l{i}"
        h = layer_norm(f"{p}.ln1", x)
        q = heads(f"{p}.q", node("Mul", [linear(f"{p}.q", h, D, D), scale], [f"{p}.qs"]))
        k = heads(f"{p}.k", linear(f"{p}.k", h, D, D))
        v = heads(f"{p}.v", linear(f"{p}.v", h, D, D))
        kt = node("Transpose", [k], [f"{p}.kt"], perm=[0, 2, 1])
        s = node("MatMul", [q, kt], [f"{p}.s"])
        a = node("Softmax", [s], [f"{p}.a"], axis=-1)
        c = node("MatMul", [a, v], [f"{p}.c"])
        c = node("Transpose", [c], [f"{p}.ct"], perm=[1, 0, 2])
        c = node("Reshape", [c, flat_shape], [f"{p}.cf"])
        x = node("Add", [x, linear(f"{p}.o", c, D, D)], [f"{p}.x1"])
        h = linear(f"{p}.fc1", layer_norm(f"{p}.ln2", x), D, F)
        # GELU(h) = 0.5 h (1 + erf(h / sqrt 2)), as CLIP-H's exact-erf "gelu"
        e = node("Erf", [node("Mul", [h, rsqrt2], [f"{p}.hs"])], [f"{p}.e"])
        g = node("Mul", [node("Mul", [h, half], [f"{p}.hh"]), node("Add", [e, one], [f"{p}.e1"])], [f"{p}.g"])
        x = node("Add", [x, linear(f"{p}.fc2", g, F, D)], [f"{p}.x2"])
    graph = helper.make_graph(
        nodes,
        "clip_h_vision_layers",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [T, D])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, [T, D])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, out)


if __name__ == "__main__":
    main()
