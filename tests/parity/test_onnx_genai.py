"""onnxruntime-genai runs the exported folder as is and greedy-decodes what transformers does."""

from __future__ import annotations

import onnxruntime_genai as og
import torch
import transformers

from qwdeploy.exporters.onnx.exporter import export
from qwdeploy.exporters.request import ExportRequest
from qwdeploy.toolkit.checkpoint import open_checkpoint

PROMPT = [9707, 1879, 11, 358]
MAX_LENGTH = 20


def test_genai_greedy_generation_matches_transformers(tiny, arch, tmp_path):
    out = tmp_path / "onnx"
    export(ExportRequest(open_checkpoint(tiny), out, show_progress=False, verify=False))
    model = og.Model(str(out))
    assert og.Tokenizer(model).encode("Hello world").tolist() == [9707, 1879]
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=MAX_LENGTH, do_sample=False)
    generator = og.Generator(model, params)
    generator.append_tokens(PROMPT)
    while not generator.is_done():
        generator.generate_next_token()
    ours = [int(t) for t in generator.get_sequence(0)]

    reference = transformers.AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32)
    ids = torch.tensor([PROMPT])
    theirs = reference.generate(ids, attention_mask=torch.ones_like(ids), max_length=MAX_LENGTH, do_sample=False)
    assert ours == theirs[0].tolist()
    assert len(ours) > len(PROMPT)
