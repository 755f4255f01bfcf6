"""`qwdeploy package` and `verify` on the tiny fixtures: what a bundle holds, the fit numbers, and tampering.

The memory plan is checked against numbers computed here from the config, not from the code under test.
"""

import json
import os

import pytest
from click.testing import CliRunner

from qwdeploy.exporters.gguf.exporter import export as export_gguf
from qwdeploy.exporters.onnx.exporter import export as export_onnx
from qwdeploy.exporters.request import ExportRequest
from qwdeploy.toolkit.bundle.package import package
from qwdeploy.toolkit.bundle.plan import DEFAULT_CONTEXT, OVERHEAD_BYTES, OVERHEAD_SHARE
from qwdeploy.toolkit.bundle.verify import verify_bundle
from qwdeploy.toolkit.checkpoint import open_checkpoint
from qwdeploy.toolkit.cli.main import cli
from qwdeploy.toolkit.errors import QwdeployError
from qwdeploy.toolkit.profiles import load_profile


@pytest.fixture(scope="module")
def artifacts(make_checkpoint, tmp_path_factory):
    root = tmp_path_factory.mktemp("bundle-artifacts")
    checkpoint = open_checkpoint(make_checkpoint("qwen2"))
    export_gguf(ExportRequest(checkpoint, root / "m.gguf", quant="f16", show_progress=False, verify=False))
    export_onnx(ExportRequest(checkpoint, root / "onnx", target="cpu", quant="int4", show_progress=False,
                              verify=False))
    return {"gguf": root / "m.gguf", "onnx": root / "onnx", "config": json.loads(
        (make_checkpoint("qwen2") / "config.json").read_text())}


def _one_line(result, message: str) -> None:
    assert result.exit_code != 0, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.output, result.stderr


def test_a_gguf_bundle_holds_model_modelfile_readme_and_a_manifest_that_adds_up(artifacts, tmp_path):
    made = package(artifacts["gguf"], load_profile("rpi5"), tmp_path / "b")
    names = sorted(p.name for p in (tmp_path / "b").iterdir())
    assert names == ["Modelfile", "README.md", "manifest.json", "model.gguf"]
    assert (tmp_path / "b" / "Modelfile").read_text() == 'FROM ./model.gguf\nPARAMETER stop "<|im_end|>"\n'
    config, plan = artifacts["config"], made.manifest.memory
    head_dim = config["hidden_size"] // config["num_attention_heads"]
    kv_per_token = config["num_hidden_layers"] * config["num_key_value_heads"] * 2 * head_dim * 2  # K+V, f16
    assert plan.context == DEFAULT_CONTEXT and plan.kv_cache == kv_per_token * DEFAULT_CONTEXT
    import gguf

    assert plan.weights == sum(int(t.n_bytes) for t in gguf.GGUFReader(artifacts["gguf"]).tensors)  # gguf-py's count
    assert plan.runtime_overhead == OVERHEAD_BYTES + int(OVERHEAD_SHARE * plan.weights)
    assert plan.total == plan.weights + plan.kv_cache + plan.runtime_overhead and plan.fits
    assert plan.budget == int(load_profile("rpi5").memory.budget_gib * 2**30)
    rows = dict(verify_bundle(tmp_path / "b"))
    assert rows["files"].startswith("3 files") and rows["runtime"].startswith("llama-cpp-python 0.3")


def test_an_onnx_backend_folder_bundles_with_its_backend_facts(artifacts, tmp_path):
    made = package(artifacts["onnx"], load_profile("x86-server"), tmp_path / "b", context=512)
    assert made.manifest.export["backend"] == "cpu" and made.manifest.export["quant"] == "int4"
    assert made.manifest.memory.context == 512 and made.manifest.runtime.name == "onnxruntime"
    assert (tmp_path / "b" / "model" / "model.onnx").is_file()
    assert dict(verify_bundle(tmp_path / "b"))["made for"].startswith("x86-server")


def test_a_bundle_that_does_not_fit_is_refused_with_the_numbers(artifacts, tmp_path):
    small = tmp_path / "small.toml"
    small.write_text(load_profile("rpi5").source.read_text().replace("budget_gib = ", "budget_gib = 0.01 #"))
    with pytest.raises(QwdeployError, match=r"does not fit small: weights .* MiB \+ KV cache 1\.0 MiB at 4096 tokens"):
        package(artifacts["gguf"], load_profile(small), tmp_path / "b")
    assert not (tmp_path / "b").exists()
    package(artifacts["gguf"], load_profile(small), tmp_path / "b", allow_misfit=True)
    with pytest.raises(QwdeployError, match="does not fit profile small"):
        verify_bundle(tmp_path / "b")
    assert dict(verify_bundle(tmp_path / "b", load_profile("rpi5")))["fits"].endswith("(profile rpi5)")


def _flip(folder):
    data = bytearray((folder / "model.gguf").read_bytes())
    data[len(data) // 2] ^= 0x01
    (folder / "model.gguf").write_bytes(bytes(data))


def _manifest(change):
    def edit(folder):
        path = folder / "manifest.json"
        data = json.loads(path.read_text())
        change(data)
        path.write_text(json.dumps(data))
    return edit


@pytest.mark.parametrize(("tamper", "message"), [
    (_flip, "model.gguf does not match its size and sha256"),
    (lambda f: (f / "extra.txt").write_text("hello"), "extra.txt is not in manifest.json"),
    (lambda f: (f / "Modelfile").unlink(), "Modelfile is listed in manifest.json but missing"),
    (lambda f: (f / "link").symlink_to(f / "README.md"), "link is a link or special file"),
    (lambda f: os.mkfifo(f / "pipe"), "pipe is a link or special file"),
    (_manifest(lambda m: m["files"][0].update(size=m["files"][0]["size"] + 1)), "does not match its size"),
    (_manifest(lambda m: m.update(signed=True)), "unknown key 'signed' in BundleManifest"),
    (_manifest(lambda m: m["memory"].pop("budget")), "missing key 'budget' in MemoryPlan"),
    (_manifest(lambda m: m.update(format_version=9)), "this qwdeploy reads qwdeploy.bundle version 1"),
])
def test_tampering_is_refused_in_one_line_naming_what(artifacts, tmp_path, tamper, message):
    runner = CliRunner()
    made = runner.invoke(cli, ["package", str(artifacts["gguf"]), "--profile", "rpi5", "-o", str(tmp_path / "b")])
    assert made.exit_code == 0, made.output
    assert runner.invoke(cli, ["verify", str(tmp_path / "b")]).exit_code == 0
    tamper(tmp_path / "b")
    _one_line(runner.invoke(cli, ["verify", str(tmp_path / "b")]), message)


def test_package_refuses_a_missing_artifact(tmp_path):
    runner = CliRunner()
    _one_line(runner.invoke(cli, ["package", str(tmp_path / "nothing"), "--profile", "rpi5", "-o",
                                  str(tmp_path / "b")]), "no such file or directory")


def test_a_tar_gz_bundle_packs_verifies_and_runs(artifacts, tmp_path):
    """The archive form end to end through the CLI: package, verify, run (greedy, as from the GGUF itself)."""
    runner = CliRunner()
    archive = tmp_path / "b.tar.gz"
    made = runner.invoke(cli, ["package", str(artifacts["gguf"]), "--profile", "rpi5", "-o", str(archive)])
    assert made.exit_code == 0 and archive.is_file(), made.output
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no scratch left behind
    checked = runner.invoke(cli, ["verify", str(archive)])
    assert checked.exit_code == 0 and "3 files, sizes and sha256 as listed" in checked.output, checked.output
    args = ["--prompt", "The capital of France is", "--max-tokens", "5", "--in-process"]
    from_bundle = runner.invoke(cli, ["run", str(archive), *args])
    direct = runner.invoke(cli, ["run", str(artifacts["gguf"]), *args])
    assert from_bundle.exit_code == 0 and from_bundle.stdout and from_bundle.stdout == direct.stdout


def test_an_rpi5_bundle_with_our_ops_carries_an_aarch64_kernel_library(make_checkpoint, tmp_path):
    """The library is built for the profile's CPU (cross-compiled here), not copied from this x86 host."""
    folder = tmp_path / "onnx"
    export_onnx(ExportRequest(open_checkpoint(make_checkpoint("qwen2")), folder, target="cpu", quant="int4",
                              profile=load_profile("rpi5"), show_progress=False, verify=False,
                              options={"custom_ops": "on"}))
    package(folder, load_profile("rpi5"), tmp_path / "b")
    library = tmp_path / "b" / "model" / "libqwdeploy_kernels.so"
    header = library.read_bytes()[:20]
    assert header[:4] == b"\x7fELF" and int.from_bytes(header[18:20], "little") == 183  # EM_AARCH64
    assert json.loads((tmp_path / "b" / "manifest.json").read_text())["reference"] is None  # cannot run here
    custom = json.loads((tmp_path / "b" / "model" / "qwdeploy_backend.json").read_text())["custom_ops"]
    assert custom["library"] == library.name and custom["target"].startswith("rpi5 (aarch64")
    assert "libqwdeploy_kernels.so" in {f["path"].rsplit("/", 1)[-1] for f in json.loads(
        (tmp_path / "b" / "manifest.json").read_text())["files"]}
    # On this x86 machine the bundle verifies, and says where it runs instead of crashing in a loader.
    assert dict(verify_bundle(tmp_path / "b"))["runs here"].startswith("no: its kernel library is built for rpi5")
    runner = CliRunner()
    _one_line(runner.invoke(cli, ["verify", str(tmp_path / "b"), "--run"]), "verify --run on the device")
    _one_line(runner.invoke(cli, ["run", str(tmp_path / "b"), "--prompt", "Hi"]),
              "cannot run here: its kernel library is built for rpi5")


def test_an_ascend_bundle_carries_the_cann_graph_and_generates_what_transformers_does(make_checkpoint, tmp_path):
    """The static CANN graph (for ATC on the board) runs on ONNX Runtime's CPU provider here."""
    import torch
    import transformers

    checkpoint = make_checkpoint("qwen2", dtype="float32")
    made = package(checkpoint, load_profile("ascend-310b"), tmp_path / "b")
    manifest = made.manifest
    assert manifest.export["chosen"] == "onnx f16 for ascend-310b" and manifest.export["backend"] == "cann"
    assert manifest.runtime.name == "onnxruntime-cann" and (tmp_path / "b" / "model" / "atc.sh").is_file()
    rows = dict(verify_bundle(tmp_path / "b", run=True))
    assert rows["runtime"].startswith("onnxruntime-cann >=1.20 needed; not installed here") and rows["runs here"] == "yes"
    model = transformers.AutoModelForCausalLM.from_pretrained(checkpoint, torch_dtype=torch.float32)
    prompt = manifest.reference.prompt
    expected = model.generate(torch.tensor([prompt]), max_new_tokens=len(manifest.reference.tokens),
                              do_sample=False)[0, len(prompt):].tolist()
    assert manifest.reference.tokens == expected[:len(manifest.reference.tokens)]  # f16 graph vs fp32, greedy
    ran = CliRunner().invoke(cli, ["run", str(tmp_path / "b"), "--prompt", "Hello world", "--max-tokens", "6"])
    assert ran.exit_code == 0 and "(6 tokens generated)" in ran.stderr, ran.output


def test_verify_run_regenerates_the_tokens_recorded_at_packaging(artifacts, make_checkpoint, tmp_path):
    import torch
    import transformers

    made = package(artifacts["gguf"], load_profile("rpi5"), tmp_path / "b")
    reference = made.manifest.reference
    model = transformers.AutoModelForCausalLM.from_pretrained(make_checkpoint("qwen2"), torch_dtype=torch.float32)
    expected = model.generate(torch.tensor([reference.prompt]), max_new_tokens=len(reference.tokens),
                              do_sample=False)[0, len(reference.prompt):].tolist()
    assert reference.tokens == expected[:len(reference.tokens)]  # llama.cpp f16 vs transformers fp32, greedy
    assert dict(verify_bundle(tmp_path / "b", run=True))["run"].startswith(f"{len(reference.tokens)} greedy tokens")
    _manifest(lambda m: m["reference"]["tokens"].__setitem__(3, m["reference"]["tokens"][3] + 1))(tmp_path / "b")
    with pytest.raises(QwdeployError, match="greedy tokens differ from those recorded at packaging from position 3"):
        verify_bundle(tmp_path / "b", run=True)


@pytest.mark.parametrize(("profile", "model", "facts"), [
    ("rpi5", "model.gguf", {"type": "q8_0", "chosen": "gguf q8_0 for rpi5"}),
    ("x86-server", "model", {"backend": "cpu", "quant": "int4", "chosen": "onnx int4 for x86-server"}),
])
def test_a_checkpoint_is_exported_with_the_profiles_defaults_then_bundled(make_checkpoint, tmp_path, profile, model,
                                                                         facts):
    checkpoint = make_checkpoint("qwen2")
    made = package(checkpoint, load_profile(profile), tmp_path / "b")
    manifest = made.manifest
    assert manifest.model == model and (tmp_path / "b" / model).exists()
    assert facts.items() <= manifest.export.items()
    assert manifest.export["vs transformers" if model.endswith(".gguf") else "verify"]  # the export's own check
    config = checkpoint / "config.json"
    import hashlib

    assert manifest.source["config_sha256"] == hashlib.sha256(config.read_bytes()).hexdigest()
    assert manifest.source["weights"] == {p.name: p.stat().st_size for p in checkpoint.glob("*.safetensors")}
    assert dict(verify_bundle(tmp_path / "b"))["made for"].startswith(profile)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # the export's scratch is gone
