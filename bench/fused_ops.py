"""Each qwdeploy kernel against the unfused ONNX Runtime subgraph it replaces, same inputs, one run.

    python bench/fused_ops.py [--runs 20] [--experts 128] [--threads 0] [--only QuantSwiGLU]
                              [--block-size 32] [--zero-points]

Shapes: Qwen2.5-0.5B's MLP (H 896, I 4864), Qwen3-0.6B's attention heads (16 q / 8 kv, head_dim 128),
Qwen3-30B-A3B's MoE layer (H 2048, 128 experts, I 768, top-8, renormalised); decode (1 token) and
prefill (128 tokens). Times are medians of --runs calls after warm-up; ratio = unfused / fused.
The unfused MoE is the dense formulation a static graph uses (every expert on every token, weighted
by the scattered top-k weights); QMoE (int4) is timed against that same fp32 graph.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

from common import machine
from qwdeploy.kernels import library_path
from qwdeploy.kernels.graphs import node_model
from qwdeploy.kernels.quantize import quantize_blocks

F = TensorProto.FLOAT


def _model(nodes: list, inputs: dict[str, np.ndarray], outputs: list[str], opsets: dict[str, int],
           constants: tuple[str, ...] = ()) -> bytes:
    """constants: inputs stored as initializers instead, so ONNX Runtime may prepack them as it would weights."""
    from onnx import numpy_helper

    graph = helper.make_graph(nodes, "unfused", [helper.make_tensor_value_info(
        n, helper.np_dtype_to_tensor_dtype(v.dtype), list(v.shape)) for n, v in inputs.items() if n not in constants],
        [helper.make_tensor_value_info(o, F, None) for o in outputs],
        initializer=[numpy_helper.from_array(inputs[n], n) for n in constants])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()])
    model.ir_version = 8
    return model.SerializeToString()


def _const(name: str, values: list[int]):
    return helper.make_node("Constant", [], [name], value=helper.make_tensor(name, TensorProto.INT64, [len(values)],
                                                                             values))


def _swiglu_nodes(src: str, out: str) -> list:
    return [helper.make_node("Split", [src], ["g", "u"], axis=-1, num_outputs=2),
            helper.make_node("Sigmoid", ["g"], ["sg"]), helper.make_node("Mul", ["g", "sg"], ["silu"]),
            helper.make_node("Mul", ["silu", "u"], [out])]


def unfused_swiglu(inputs: dict[str, np.ndarray], attrs: dict) -> bytes:
    return _model(_swiglu_nodes("gate_up", "Y"), inputs, ["Y"], {"": 18})


def unfused_quant_swiglu(inputs: dict[str, np.ndarray], attrs: dict) -> bytes:
    weights = tuple(n for n in ("B", "scales", "zero_points") if n in inputs)
    mm = helper.make_node("MatMulNBits", ["X", *weights], ["gate_up"], domain="com.microsoft", K=attrs["K"],
                          N=attrs["N"], bits=attrs["bits"], block_size=attrs["block_size"])
    model = _model([mm, *_swiglu_nodes("gate_up", "Y")], inputs, ["Y"], {"": 18, "com.microsoft": 1},
                   constants=weights)
    return model, {"X": inputs["X"]}


def unfused_moe(inputs: dict[str, np.ndarray], attrs: dict) -> bytes:
    E, two_i, H = inputs["gate_up_weights"].shape
    nodes = [
        helper.make_node("Softmax", ["router_logits"], ["probs"], axis=-1),                       # [T, E]
        _const("k", [attrs["top_k"]]),
        helper.make_node("TopK", ["probs", "k"], ["top_p", "top_i"], axis=-1),                   # [T, k]
        helper.make_node("ReduceSum", ["top_p"], ["top_sum"], keepdims=1),
        helper.make_node("Div", ["top_p", "top_sum"], ["top_w"]),
        helper.make_node("ConstantOfShape", ["probs_shape"], ["zeros"]),
        helper.make_node("Shape", ["probs"], ["probs_shape"]),
        helper.make_node("ScatterElements", ["zeros", "top_i", "top_w"], ["dense_w"], axis=1),  # [T, E]
        helper.make_node("Unsqueeze", ["X", "ax0"], ["x3"]), _const("ax0", [0]),                  # [1, T, H]
        helper.make_node("Transpose", ["gate_up_weights"], ["gu_t"], perm=[0, 2, 1]),            # [E, H, 2I]
        helper.make_node("MatMul", ["x3", "gu_t"], ["gate_up"]),                                 # [E, T, 2I]
        *_swiglu_nodes("gate_up", "h"),                                                          # [E, T, I]
        helper.make_node("Transpose", ["down_weights"], ["dn_t"], perm=[0, 2, 1]),               # [E, I, H]
        helper.make_node("MatMul", ["h", "dn_t"], ["expert_out"]),                               # [E, T, H]
        helper.make_node("Transpose", ["dense_w"], ["w_t"], perm=[1, 0]),                        # [E, T]
        helper.make_node("Unsqueeze", ["w_t", "ax2"], ["w3"]), _const("ax2", [2]),               # [E, T, 1]
        helper.make_node("Mul", ["expert_out", "w3"], ["weighted"]),
        helper.make_node("ReduceSum", ["weighted", "ax0"], ["Y"], keepdims=0),                   # [T, H]
    ]
    # Weights are constant in a real graph: pre-transposing them is free, so keep only the MatMuls timed.
    nodes = [n for n in nodes if n.output[0] not in ("gu_t", "dn_t")]
    feeds = {"X": inputs["X"], "router_logits": inputs["router_logits"],
             "gu_t": np.ascontiguousarray(inputs["gate_up_weights"].transpose(0, 2, 1)),
             "dn_t": np.ascontiguousarray(inputs["down_weights"].transpose(0, 2, 1))}
    return _model(_toposort(nodes), feeds, ["Y"], {"": 18}), feeds


def unfused_qk_norm_rotary(inputs: dict[str, np.ndarray], attrs: dict) -> bytes:
    nodes = [_const("ax", [-1]), _const("heads_shape", [0, 0, -1,
             inputs["q_norm_weight"].shape[0]]), _const("flat", [0, 0, -1]), _const("ax2", [2]),
             helper.make_node("Gather", ["cos_cache", "position_ids"], ["cos2"]),  # [B, S, D/2]
             helper.make_node("Gather", ["sin_cache", "position_ids"], ["sin2"]),
             helper.make_node("Unsqueeze", ["cos2", "ax2"], ["cos"]), helper.make_node("Unsqueeze", ["sin2", "ax2"],
                                                                                      ["sin"]),
             helper.make_node("Constant", [], ["eps"], value=helper.make_tensor("eps", F, [], [attrs["epsilon"]]))]
    for x, w, out in (("Q", "q_norm_weight", "Q_out"), ("K", "k_norm_weight", "K_out")):
        p = x.lower()
        nodes += [helper.make_node("Reshape", [x, "heads_shape"], [f"{p}h"]),                 # [B, S, heads, D]
                  helper.make_node("Mul", [f"{p}h", f"{p}h"], [f"{p}sq"]),
                  helper.make_node("ReduceMean", [f"{p}sq", "ax"], [f"{p}ms"], keepdims=1),
                  helper.make_node("Add", [f"{p}ms", "eps"], [f"{p}mse"]),
                  helper.make_node("Sqrt", [f"{p}mse"], [f"{p}rms"]),
                  helper.make_node("Div", [f"{p}h", f"{p}rms"], [f"{p}n0"]),
                  helper.make_node("Mul", [f"{p}n0", w], [f"{p}n"]),
                  helper.make_node("Split", [f"{p}n"], [f"{p}a", f"{p}b"], axis=-1, num_outputs=2),
                  helper.make_node("Neg", [f"{p}b"], [f"{p}nb"]),
                  helper.make_node("Concat", [f"{p}nb", f"{p}a"], [f"{p}rot"], axis=-1),     # rotate_half
                  helper.make_node("Concat", ["cos", "cos"], [f"{p}cos"], axis=-1),
                  helper.make_node("Concat", ["sin", "sin"], [f"{p}sin"], axis=-1),
                  helper.make_node("Mul", [f"{p}n", f"{p}cos"], [f"{p}c"]),
                  helper.make_node("Mul", [f"{p}rot", f"{p}sin"], [f"{p}s"]),
                  helper.make_node("Add", [f"{p}c", f"{p}s"], [f"{p}y"]),
                  helper.make_node("Reshape", [f"{p}y", "flat"], [out])]
    return _model(nodes, inputs, ["Q_out", "K_out"], {"": 18})


def _toposort(nodes: list) -> list:
    produced, ordered, pending = set(), [], list(nodes)
    while pending:
        ready = [n for n in pending if all(i in produced or i in ("X", "router_logits", "gu_t", "dn_t", "")
                                           for i in n.input)]
        for n in ready:
            ordered.append(n)
            produced.update(n.output)
            pending.remove(n)
    return ordered


def _time(model: bytes, feeds: dict[str, np.ndarray], runs: int, threads: int, library: str | None) -> float:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    if library:
        options.register_custom_ops_library(library)
    sess = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    for _ in range(3):
        sess.run(None, feeds)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        sess.run(None, feeds)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def _cases(experts: int, block_size: int, zero_points: bool) -> list[tuple[str, str, dict, dict, Callable]]:
    rng = np.random.default_rng(0)
    rand = lambda *s, scale=1.0: (rng.standard_normal(s) * scale).astype(np.float32)  # noqa: E731
    cases = []
    H, I = 896, 4864
    w = rand(2 * I, H, scale=H ** -0.5)
    quantized = {bits: quantize_blocks(w, bits, block_size, symmetric=not zero_points) for bits in (4, 8)}
    for T in (1, 128):
        cases.append(("SwiGLU", f"0.5B T={T}", {"gate_up": rand(1, T, 2 * I)}, {}, unfused_swiglu))
        x = rand(1, T, H)
        for bits, (w_q, w_s, w_zp) in quantized.items():
            zp = {} if w_zp is None else {"zero_points": w_zp}
            cases.append(("QuantSwiGLU", f"0.5B int{bits} b{block_size}{' zp' if zp else ''} T={T}",
                          {"X": x, "B": w_q, "scales": w_s.reshape(-1), **zp},
                          {"K": H, "N": 2 * I, "bits": bits, "block_size": block_size}, unfused_quant_swiglu))
        inv = 1.0 / 1e6 ** (np.arange(64) / 64)
        ang = np.arange(4096)[:, None] * inv
        cases.append(("QKNormRotary", f"0.6B T={T}", {
            "Q": rand(1, T, 16 * 128), "K": rand(1, T, 8 * 128), "q_norm_weight": rand(128) + 1,
            "k_norm_weight": rand(128) + 1, "position_ids": np.arange(T, dtype=np.int64)[None] + 100,
            "cos_cache": np.cos(ang).astype(np.float32), "sin_cache": np.sin(ang).astype(np.float32)},
            {"num_heads": 16, "kv_num_heads": 8, "epsilon": 1e-6}, unfused_qk_norm_rotary))
    H, I, k = 2048, 768, 8
    gate_up, down = rand(experts, 2 * I, H, scale=H ** -0.5), rand(experts, H, I, scale=I ** -0.5)
    packed = [quantize_blocks(gate_up[e], 4, 32) for e in range(experts)]
    packed_down = [quantize_blocks(down[e], 4, 32) for e in range(experts)]
    q_inputs = {"gate_up_weights": np.stack([p for p, _, _ in packed]), "gate_up_scales": np.stack([s for _, s, _ in packed]),
                "down_weights": np.stack([p for p, _, _ in packed_down]),
                "down_scales": np.stack([s for _, s, _ in packed_down])}
    for T in (1, 128):
        x, logits = rand(T, H), rand(T, experts)
        attrs = {"top_k": k, "normalize_topk": 1}
        cases.append(("MoE", f"30B-A3B E={experts} T={T}", {"X": x, "router_logits": logits,
                      "gate_up_weights": gate_up, "down_weights": down}, attrs, unfused_moe))
        cases.append(("QMoE", f"30B-A3B int4 E={experts} T={T}", {"X": x, "router_logits": logits, **q_inputs},
                      {**attrs, "bits": 4, "block_size": 32},
                      lambda _i, a, fp={"X": x, "router_logits": logits, "gate_up_weights": gate_up,
                                        "down_weights": down}: unfused_moe(fp, a)))
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--experts", type=int, default=128, help="fewer experts for a quicker run")
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: all cores)")
    parser.add_argument("--only", nargs="+", help="run only these kernels (e.g. QuantSwiGLU)")
    parser.add_argument("--block-size", type=int, default=32, help="QuantSwiGLU weight block size")
    parser.add_argument("--zero-points", action="store_true", help="QuantSwiGLU with asymmetric zero points")
    args = parser.parse_args()
    library = str(library_path(target="host", build_if_missing=True))
    print(machine(("onnxruntime", "onnx", "numpy")))
    print(f"library: {library}\n")
    print(f"{'kernel':<13} {'shape':<28} {'fused ms':>9} {'unfused ms':>11} {'ratio':>7}")
    for op, label, inputs, attrs, unfused in _cases(args.experts, args.block_size, args.zero_points):
        if args.only and op not in args.only:
            continue
        fused_ms = _time(node_model(op, inputs, attrs), inputs, args.runs, args.threads, library)
        model = unfused(inputs, attrs)
        model, feeds = model if isinstance(model, tuple) else (model, inputs)
        unfused_ms = _time(model, feeds, args.runs, args.threads, None)
        print(f"{op:<13} {label:<28} {fused_ms:9.3f} {unfused_ms:11.3f} {unfused_ms / fused_ms:6.2f}x", flush=True)


if __name__ == "__main__":
    main()
