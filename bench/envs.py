"""The anchors' environments: one virtual environment per tool, built from the package registries.

Each lives in ~/.cache/qwdeploy/bench-envs/<name>-<hash of its pip spec>, so a changed spec gets a
fresh one and an unchanged one is reused. torch's CPU wheel goes in first: with no torch present, a
plain `torch` requirement pulls the newest release with several GB of CUDA packages. An environment
that cannot be built is reported with the reason, and the rows that need it are skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

ROOT = Path.home() / ".cache" / "qwdeploy" / "bench-envs"
TORCH = "torch==2.13.0"
LLAMA_CPP_PYTHON = "0.3.36"
LLAMA_NO_AMX = "llama-no-amx"
NO_AMX_CMAKE = ("-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON "
                "-DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON "
                "-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF")
DONE = "bench-env.json"  # written last: its presence means the environment is complete


@dataclass(frozen=True)
class Env:
    name: str
    first: tuple[str, ...]  # installed before `packages`
    packages: tuple[str, ...]
    probe: str  # what must import for the environment to count as working
    key: tuple[str, ...]  # the packages the report names
    drop: tuple[str, ...] = ()  # uninstalled afterwards: required on paper, broken here, unused by the bench
    build: tuple[tuple[str, str], ...] = ()  # environment variables while `packages` build from source

    @property
    def folder(self) -> Path:
        spec = json.dumps([self.first, self.packages, self.drop, self.build, sys.version_info[:2]])
        return ROOT / f"{self.name}-{hashlib.sha256(spec.encode()).hexdigest()[:10]}"

    @property
    def python(self) -> Path:
        return self.folder / "bin" / "python"


ENVS = {env.name: env for env in (
    Env("genai", (TORCH,), ("onnxruntime-genai==0.18.0", "transformers==5.23.0", "onnx", "onnx-ir",
                             "sentencepiece"),
        "import onnxruntime_genai, onnxruntime_genai.models.builder",
        ("onnxruntime-genai", "onnxruntime", "transformers", "torch", "onnx")),
    Env("optimum", (TORCH,), ("optimum-onnx==0.1.0", "onnxruntime"),
        "import optimum.exporters.onnx, optimum.onnxruntime",
        ("optimum", "optimum-onnx", "onnxruntime", "transformers", "torch", "onnx")),
    Env("openvino", (TORCH,), ("optimum-intel[openvino,nncf]==2.2.0", "openvino-genai==2026.4.1.0"),
        "import openvino_genai, nncf; from optimum.exporters.openvino import main_export",
        ("optimum-intel", "openvino", "openvino-genai", "openvino-tokenizers", "nncf", "transformers", "torch"),
        # PyPI's torchvision is the CUDA build: next to the CPU torch its import fails, and transformers with
        # it; optimum-intel requires it but exports and runs language models without it
        drop=("torchvision",)),
    Env("llamacpp", (TORCH,), ("transformers==4.57.6", "sentencepiece", "numpy", "protobuf"),
        "import torch, transformers, sentencepiece",
        ("transformers", "torch", "sentencepiece", "numpy")),
    # llama.cpp the engine on a CPU with AMX: the native build crashes on quantized files there (README,
    # "llama.cpp crashes"), so this one is built as a user of that CPU would, with every ISA but AMX
    Env(LLAMA_NO_AMX, (), (f"llama-cpp-python=={LLAMA_CPP_PYTHON}", "numpy"), "import llama_cpp",
        ("llama-cpp-python", "numpy"), build=(("CMAKE_ARGS", NO_AMX_CMAKE),)),
)}

PROJECT_KEY = ("qwdeploy", "onnxruntime", "onnx", "gguf", "llama_cpp_python", "numpy", "torch", "transformers",
               "matplotlib")


class EnvUnavailable(RuntimeError):
    """The environment could not be built or does not work; the message says why."""


def _pip(python: Path, args: list[str], log: Path, build: tuple[tuple[str, str], ...] = ()) -> None:
    if not args:
        return
    fresh = ["--no-cache-dir"] if build else []  # pip's wheel cache ignores CMAKE_ARGS: it would reuse a native build
    with log.open("a") as out:
        done = subprocess.run([str(python), "-m", "pip", "install", "-q", *fresh, *args], stdout=out, stderr=out,
                              env={**os.environ, **dict(build)})
    if done.returncode:
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        raise EnvUnavailable(f"pip install {' '.join(args)} failed: {' | '.join(tail)[-400:]}")


def ensure(env: Env, say=print) -> Path:
    """The environment's interpreter, building the environment first when it is missing or incomplete."""
    folder = env.folder
    if (folder / DONE).is_file():
        return env.python
    shutil.rmtree(folder, ignore_errors=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder.parent).free / 2**30
    if free < 8:
        raise EnvUnavailable(f"only {free:.1f} GiB free under {folder.parent}; an environment needs ~3 GiB")
    say(f"  building environment {env.name} in {folder} (once; a few minutes)")
    log = folder.with_suffix(".log")
    log.write_text("")
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    pins = folder / "pins.txt"  # what `first` installed stays: a later requirement may not swap torch for CUDA's
    pins.write_text("\n".join(env.first) + "\n")
    _pip(env.python, list(env.first), log)
    _pip(env.python, ["-c", str(pins), *env.packages], log, env.build)
    if env.drop:
        subprocess.run([str(env.python), "-m", "pip", "uninstall", "-y", "-q", *env.drop], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    probe = subprocess.run([str(env.python), "-c", env.probe], capture_output=True, text=True)
    if probe.returncode:
        raise EnvUnavailable(f"{env.probe!r} fails: {(probe.stderr.strip().splitlines() or ['?'])[-1]}")
    (folder / DONE).write_text(json.dumps(installed(env.python), indent=1, sort_keys=True))
    return env.python


def installed(python: Path) -> dict[str, str]:
    """Every distribution in the environment with its version."""
    code = ("import json; from importlib import metadata; print(json.dumps({d.metadata['Name'].lower(): d.version "
            "for d in metadata.distributions()}))")
    done = subprocess.run([str(python), "-I", "-c", code], capture_output=True, text=True, check=True)  # -I: not cwd's
    return dict(sorted(json.loads(done.stdout).items()))


def project_versions() -> dict[str, str]:
    versions = {}
    for dist in metadata.distributions():
        versions[dist.metadata["Name"].lower().replace("_", "-")] = dist.version
    return dict(sorted(versions.items()))


def env_versions(env: Env) -> dict[str, str]:
    try:
        return json.loads((env.folder / DONE).read_text())
    except (OSError, ValueError):
        return {}


CONVERTER_PARTS = ("/vendor/llama.cpp/convert_hf_to_gguf.py", "/vendor/llama.cpp/conversion/",
                   "/vendor/llama.cpp/gguf-py/")


def llama_converter() -> Path:
    """llama.cpp's convert_hf_to_gguf.py from the source distribution of the installed llama-cpp-python."""
    try:
        version = metadata.version("llama-cpp-python")
    except metadata.PackageNotFoundError as exc:
        raise EnvUnavailable("llama-cpp-python is not installed in the project's environment") from exc
    work = ROOT / "llama-cpp-python-sdist"
    script = work / f"llama_cpp_python-{version}" / "vendor" / "llama.cpp" / "convert_hf_to_gguf.py"
    if script.is_file():
        return script
    work.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, "-m", "pip", "download", f"llama-cpp-python=={version}", "--no-deps",
                           "--no-binary", ":all:", "-q", "-d", str(work)], capture_output=True, text=True)
    if done.returncode:
        raise EnvUnavailable(f"pip download llama-cpp-python=={version} --no-binary failed: "
                             f"{(done.stderr.strip().splitlines() or ['?'])[-1]}")
    with tarfile.open(work / f"llama_cpp_python-{version}.tar.gz") as tar:
        members = [m for m in tar.getmembers() if any(part in m.name for part in CONVERTER_PARTS)]
        tar.extractall(work, members=members, filter="data")
    return script


def llama_build_in_child(python: str = sys.executable) -> str:
    """Which llama.cpp build runs: llama-cpp-python's version and the CPU features it was compiled with.
    Asked in a child (of `python`), so the library never loads into the measuring parent."""
    code = ("import llama_cpp; from importlib import metadata; print('llama-cpp-python', "
            "metadata.version('llama-cpp-python') + ':', llama_cpp.llama_print_system_info().decode().strip())")
    done = subprocess.run([python, "-c", code], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else f"unknown ({(done.stderr.strip().splitlines() or ['?'])[-1]})"


def main() -> None:
    """`python bench/envs.py [NAME ...]`: build the environments ahead of a run."""
    for name in sys.argv[1:] or list(ENVS):
        try:
            print(name, ensure(ENVS[name]))
        except EnvUnavailable as exc:
            print(name, "unavailable:", exc)


if __name__ == "__main__":
    main()
