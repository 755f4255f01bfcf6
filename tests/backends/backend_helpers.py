"""Helpers the backend tests share: run exported folders and small graphs, fuse with chosen passes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

PROMPT = [9707, 1879, 11, 358, 1079, 264, 3460]  # "Hello world, I am a ..." ids


class Decoder:
    """Runs an exported folder's graph step by step, carrying the KV cache between calls."""

    def __init__(self, folder: Path, session: ort.InferenceSession | None = None):
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = session or ort.InferenceSession(str(folder / "model.onnx"), options,
                                                       providers=["CPUExecutionProvider"])
        self.past = {i.name: i for i in self.session.get_inputs() if i.name.startswith("past_key_values")}
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.cache: dict[str, np.ndarray] | None = None

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        """ids [batch, new] (unpadded) → logits [batch, new, vocab]."""
        batch = ids.shape[0]
        if self.cache is None:
            dtype = np.float16 if "float16" in next(iter(self.past.values())).type else np.float32
            self.cache = {n: np.zeros((batch, i.shape[1], 0, i.shape[3]), dtype) for n, i in self.past.items()}
            self.length = 0
        total = self.length + ids.shape[1]
        positions = np.broadcast_to(np.arange(self.length, total), ids.shape).astype(np.int64)
        feeds = {"input_ids": ids, "attention_mask": np.ones((batch, total), np.int64), "position_ids": positions,
                 **self.cache}
        feeds = {k: v for k, v in feeds.items() if k in self.inputs}
        names = [o.name for o in self.session.get_outputs()]
        outputs = dict(zip(names, self.session.run(names, feeds)))
        self.cache = {n: outputs[n.replace("past_key_values", "present")] for n in self.past}
        self.length = total
        return outputs["logits"]


def greedy_logits(folder: Path, prompt: list[int] = PROMPT, steps: int = 4,
                  forced: list[int] | None = None,
                  session: ort.InferenceSession | None = None) -> tuple[np.ndarray, list[int]]:
    """Prefill + `steps` decode steps; returns (logits [positions, vocab], tokens fed after the prompt).

    `forced` feeds those tokens instead of the graph's own argmax, so two graphs see the same ids."""
    decoder = Decoder(folder, session)
    logits = [decoder(np.array([prompt], np.int64))[0]]
    fed = []
    for step in range(steps):
        token = forced[step] if forced is not None else int(logits[-1][-1].argmax())
        fed.append(token)
        logits.append(decoder(np.array([[token]], np.int64))[0])
    return np.concatenate(logits), fed


def run(model, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Outputs of `model` with ONNX Runtime's own graph optimizations off, so only our rewrite differs."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def fuse(model, *modules, **options):
    """(fused copy of `model`, reports) after running the fusion modules in order."""
    import onnx

    from qwdeploy.backends.graph import Graph
    from qwdeploy.backends.passes import Context, Fusion, run_phases

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    graph = Graph(copy)
    reports = run_phases(graph, [("test", [Fusion(m) for m in modules])], Context(options=options))
    return graph.model, [r for _, r in reports]


def ops(model) -> list[str]:
    return [n.op_type for n in model.graph.node]
