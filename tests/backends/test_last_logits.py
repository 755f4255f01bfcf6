"""logits_to_keep (backends/ort/last_logits.py): one fed 1 gives the last position's logits, computed
from the same hidden states as the full graph's; fed nothing, every position, as before."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from qwdeploy.toolkit.runtimes.ort.session import OrtSession

from backend_helpers import folder_session

PROMPT = np.array([[9707, 11, 1879, 0, 358, 1079, 264, 1273, 13]], np.int64)  # [1, 9]


def _feeds(session: ort.InferenceSession, ids: np.ndarray) -> dict[str, np.ndarray]:
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "position_ids": np.arange(ids.shape[1])[None]}
    for i in session.get_inputs():
        if i.name.startswith("past_key_values"):
            shape = [ids.shape[0] if d == "batch_size" else 0 if isinstance(d, str) else d for d in i.shape]
            feeds[i.name] = np.zeros(shape, np.float16 if "float16" in i.type else np.float32)
    return feeds


@pytest.mark.parametrize("arch_quant", [("qwen2", "fp32"), ("qwen3", "int4")], ids="-".join)
def test_one_kept_position_is_the_last_row(exported, arch_quant):
    folder = exported(arch_quant[0], "cpu", arch_quant[1])
    graph = onnx.load(str(folder / "model.onnx"), load_external_data=False).graph
    assert "logits_to_keep" in {i.name for i in graph.input}
    session = folder_session(folder)
    feeds = _feeds(session, PROMPT)
    every = session.run(["logits"], feeds)[0]  # [1, 9, vocab]
    last = session.run(["logits"], {**feeds, "logits_to_keep": np.array([1])})[0]
    three = session.run(["logits"], {**feeds, "logits_to_keep": np.array([3])})[0]
    assert every.shape[1] == PROMPT.shape[1] and last.shape[1] == 1 and three.shape[1] == 3
    assert np.abs(every[:, -1]).max() > 1.0  # not a degenerate all-zero row
    np.testing.assert_allclose(last[:, 0], every[:, -1], atol=1e-5)
    np.testing.assert_allclose(three, every[:, -3:], atol=1e-5)


def test_generation_asks_for_the_last_position_only(exported):
    session = OrtSession(exported("qwen2", "cpu", "int4"), "CPUExecutionProvider", 1, {})
    full = session.forward(session.session, PROMPT, session.new_cache(1))
    last = session.forward(session.session, PROMPT, session.new_cache(1), last_only=True)
    assert full.shape[1] == PROMPT.shape[1] and last.shape[1] == 1
    np.testing.assert_allclose(last[:, 0], full[:, -1], atol=1e-5)
