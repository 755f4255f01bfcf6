"""`qwdeploy run`: the artifact's engine generates what transformers generates from the same prompt ids."""

from __future__ import annotations

from pathlib import Path

import llama_cpp  # noqa: F401  (the dev install has every engine: missing is a failure, not a skip)
import onnxruntime  # noqa: F401
import pytest
import torch
import transformers
from click.testing import CliRunner

from qwdeploy.exporters.request import ExportRequest
from qwdeploy.toolkit.checkpoint import open_checkpoint
from qwdeploy.toolkit.cli.main import cli
from qwdeploy.toolkit.runtimes.generate import OnnxTokenizer, generate_ids, render_chat

PROMPT = "Hello world, this is"
NEW_TOKENS = 12


@pytest.fixture(scope="module")
def checkpoint(make_checkpoint) -> Path:
    return make_checkpoint("qwen2", dtype="float32")


@pytest.fixture(scope="module")
def onnx_folder(checkpoint, tmp_path_factory) -> Path:
    from qwdeploy.exporters.onnx.exporter import export

    out = tmp_path_factory.mktemp("run") / "onnx"
    return export(ExportRequest(open_checkpoint(checkpoint), out, show_progress=False, verify=False)).path


@pytest.fixture(scope="module")
def gguf_file(checkpoint, tmp_path_factory) -> Path:
    from qwdeploy.exporters.gguf.exporter import export

    out = tmp_path_factory.mktemp("run") / "model.gguf"
    return export(ExportRequest(open_checkpoint(checkpoint), out, quant="f16", show_progress=False,
                                verify=False)).path


@pytest.fixture(scope="module")
def reference(checkpoint):
    model = transformers.AutoModelForCausalLM.from_pretrained(checkpoint, torch_dtype=torch.float32).eval()

    def greedy(prompt: list[int], new_tokens: int) -> list[int]:
        with torch.no_grad():
            out = model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                                 do_sample=False, max_new_tokens=new_tokens, min_new_tokens=new_tokens)
        return out[0, len(prompt):].tolist()

    return greedy


def invoke(*args):
    return CliRunner().invoke(cli, ["run", *map(str, args)])


def test_onnx_greedy_matches_transformers(onnx_folder, reference):
    prompt = OnnxTokenizer(onnx_folder).encode(PROMPT)
    ids = generate_ids(onnx_folder, "onnx", prompt, NEW_TOKENS)
    assert ids == reference(prompt, len(ids))
    assert len(ids) == NEW_TOKENS or ids[-1] in OnnxTokenizer(onnx_folder).eos


def test_gguf_greedy_matches_transformers(gguf_file, onnx_folder, reference):
    # The GGUF carries the same vocabulary, so the ONNX folder's tokenizer gives the ids it would.
    prompt = OnnxTokenizer(onnx_folder).encode(PROMPT)
    ids = generate_ids(gguf_file, "gguf", prompt, NEW_TOKENS)
    assert ids == reference(prompt, len(ids))


def test_cli_streams_the_greedy_text_and_timings(onnx_folder, reference):
    tokenizer = OnnxTokenizer(onnx_folder)
    prompt = tokenizer.encode(PROMPT)
    expected = tokenizer.decode(reference(prompt, 5))
    result = invoke(onnx_folder, "--prompt", PROMPT, "--max-tokens", 5)
    assert result.exit_code == 0, result.output
    assert result.stdout == expected + "\n"
    assert "time to first token:" in result.stderr and "tokens/s" in result.stderr
    assert "(5 tokens generated)" in result.stderr


def test_gguf_cli_honours_max_tokens_in_a_child(gguf_file):
    result = invoke(gguf_file, "--prompt", PROMPT, "--max-tokens", 3, "--isolate")
    assert result.exit_code == 0, result.output
    assert "(3 tokens generated)" in result.stderr and "time to first token:" in result.stderr


def test_chat_applies_the_template(onnx_folder):
    tokenizer = OnnxTokenizer(onnx_folder)
    rendered = tokenizer.encode(render_chat(tokenizer.chat_template, PROMPT))
    head = tokenizer.encode(render_chat(tokenizer.chat_template, PROMPT).split(PROMPT)[0])
    assert rendered[:len(head)] == head and head[0] == tokenizer.encode("<|im_start|>")[0]
    result = invoke(onnx_folder, "--prompt", PROMPT, "--chat", "--max-tokens", 2, "--in-process")
    assert result.exit_code == 0, result.output
    assert f"({len(rendered)} prompt tokens)" in result.stderr


def test_sampling_is_reproducible_with_a_seed(gguf_file, onnx_folder):
    prompt = OnnxTokenizer(onnx_folder).encode(PROMPT)
    first = generate_ids(gguf_file, "gguf", prompt, 8, temperature=1.5, seed=3)
    assert first == generate_ids(gguf_file, "gguf", prompt, 8, temperature=1.5, seed=3)


@pytest.mark.parametrize("args, message", [
    (["missing-artifact", "--prompt", "x"], "no such file or directory"),
    (["{checkpoint}", "--prompt", "x"], "not a hf artifact"),
    (["{onnx}", "--prompt", "x", "--max-tokens", "0"], "--max-tokens"),
    (["{onnx}", "--prompt", "x", "--temperature", "-1"], "--temperature"),
    (["{onnx}", "--prompt", "x", "--temperature", "nan", "--in-process"], "--temperature"),
])
def test_user_mistakes_are_one_line(args, message, tmp_path, checkpoint, onnx_folder, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = [a.format(checkpoint=checkpoint, onnx=onnx_folder) for a in args]
    result = CliRunner().invoke(cli, ["run", *args], standalone_mode=True)
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.stderr


def test_a_conversation_keeps_its_turns_in_the_chat_template(checkpoint, onnx_folder, reference):
    """No --prompt: each stdin line is a turn; the second is generated after the first turn and its reply,
    rendered as transformers' tokenizer renders the same messages."""
    tokenizer = OnnxTokenizer(onnx_folder)
    first, second = "Hello there", "And then?"
    ids1 = tokenizer.encode(render_chat(tokenizer.chat_template, first))
    reply1 = tokenizer.decode(reference(ids1, 4))
    rendered = render_chat(tokenizer.chat_template, second, ((first, reply1),))
    hf = transformers.AutoTokenizer.from_pretrained(checkpoint)
    assert rendered == hf.apply_chat_template(
        [{"role": "user", "content": first}, {"role": "assistant", "content": reply1},
         {"role": "user", "content": second}], tokenize=False, add_generation_prompt=True)
    ids2 = tokenizer.encode(rendered)
    result = CliRunner().invoke(cli, ["run", str(onnx_folder), "--max-tokens", "4"], input=f"{first}\n{second}\n")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{reply1}\n{tokenizer.decode(reference(ids2, 4))}\n"
    assert f"({len(ids1)} prompt tokens)" in result.stderr and f"({len(ids2)} prompt tokens)" in result.stderr
