"""qwdeploy's GGUF export next to llama.cpp's convert_hf_to_gguf.py: same checkpoint, same run.

    python bench/gguf_export.py [--runs 3] [--types f16,q8_0] [--work DIR]

Builds a Qwen2.5-0.5B-shaped checkpoint (bf16, seeded) once, fetches llama.cpp's converter from
the llama-cpp-python source distribution matching the installed version (it needs
`pip install sentencepiece`), then runs both tools interleaved and prints the median wall time and
median peak RSS of each process, with ratios against llama.cpp's converter.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tarfile
from importlib import metadata, util
from pathlib import Path

from common import build_checkpoint, machine, measure, median, safetensors_gib

CONVERTER_PARTS = ("/vendor/llama.cpp/convert_hf_to_gguf.py", "/vendor/llama.cpp/conversion/",
                   "/vendor/llama.cpp/gguf-py/")


def llama_converter(work: Path) -> Path:
    version = metadata.version("llama-cpp-python")
    script = work / f"llama_cpp_python-{version}" / "vendor" / "llama.cpp" / "convert_hf_to_gguf.py"
    if not script.is_file():
        subprocess.run([sys.executable, "-m", "pip", "download", f"llama-cpp-python=={version}", "--no-deps",
                        "--no-binary", ":all:", "-q", "-d", str(work)], check=True)
        with tarfile.open(work / f"llama_cpp_python-{version}.tar.gz") as tar:
            members = [m for m in tar.getmembers() if any(part in m.name for part in CONVERTER_PARTS)]
            tar.extractall(work, members=members, filter="data")
    return script


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--types", default="f16,q8_0")
    parser.add_argument("--work", type=Path, default=Path.home() / ".cache" / "qwdeploy" / "bench")
    args = parser.parse_args()
    if util.find_spec("sentencepiece") is None:
        sys.exit("llama.cpp's converter imports sentencepiece: pip install sentencepiece")
    args.work.mkdir(parents=True, exist_ok=True)
    model = build_checkpoint(args.work / "qwen2-small", "qwen2", "small")
    converter = llama_converter(args.work)
    out = args.work / "out.gguf"
    tools = {
        "convert_hf_to_gguf": lambda t: [sys.executable, str(converter), str(model), "--outtype", t,
                                         "--outfile", str(out)],
        "qwdeploy": lambda t: ["qwdeploy", "export", str(model), "--format", "gguf", "--quant", t, "-o", str(out),
                               "--no-verify", "--force"],
    }
    print(f"machine: {machine(('gguf', 'llama-cpp-python', 'torch', 'transformers'))}")
    print(f"model: Qwen2.5-0.5B shape, {safetensors_gib(model):.2f} GiB bf16 safetensors; "
          f"median of {args.runs} interleaved runs")
    print(f"{'type':6} {'tool':20} {'wall s':>8} {'peak RSS MiB':>13} {'time ratio':>11} {'RSS ratio':>10}")
    for qtype in args.types.split(","):
        runs = {name: [] for name in tools}
        for _ in range(args.runs):  # interleaved, so drift hits both tools alike
            for name, cmd in tools.items():
                runs[name].append(measure(cmd(qtype)))
        base = median(runs["convert_hf_to_gguf"])
        for name in tools:
            m = median(runs[name])
            print(f"{qtype:6} {name:20} {m.seconds:8.1f} {m.peak_rss_mib:13.0f} "
                  f"{m.seconds / base.seconds:11.2f} {m.peak_rss_mib / base.peak_rss_mib:10.2f}", flush=True)
    out.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
