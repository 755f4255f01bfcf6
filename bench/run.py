"""qwdeploy against the tools people use today: export, scale, runtime, graphs and fidelity, in one run.

    python bench/run.py [--quick] [--shapes qwen2.5-0.5b,qwen3-0.6b,...] [--rounds N] [--out bench/results] [--note TEXT]
                        [--tag T]

Checkpoints are Qwen-shaped with seeded random weights and the real tokenizer (bench/shapes.py),
plus the trained demo checkpoint for perplexity and needle retrieval. Every anchor runs in its own
environment, built once from the package registries (bench/envs.py). All tools are measured
interleaved in one run and reported as ratios to the best anchor: results.json, results.md and PNGs
in OUT/<date>-<cpu>/ (OUT/<date>-<cpu>-quick/ for --quick, -<T> added with --tag).

--quick: the 0.5B shape, one export run, the 4-bit runtime class in three rounds, and the anchors
that matter most (llama.cpp's converter and quantizer, the genai builder int4, OpenVINO int4); about
11 minutes on a shared 2-core machine once the environments exist. The full run adds Qwen3-0.6B,
the 1.5B/3B/7B scale rows, q8_0/Q4_K_M/fp32 artifacts, optimum, the genai fp32 builder, transformers
eager, batch 1/4/16 and a 1,024-token prefill: hours (printed up front). --rounds: runtime rounds (3; more
where the machine is noisy, each round about a minute per shape in quick mode). --exports-only: the export rows
of the chosen shapes alone, one run each (how time and memory grow with size:
--shapes qwen2.5-0.5b,qwen2.5-1.5b,qwen2.5-3b --exports-only --tag scale).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from datetime import date, datetime, timezone
from pathlib import Path

import envs
import exports
import fidelity
import goals
import report
import runtime
import shapes
import stages
from common import cpu_core, cpu_flags, cpu_model, cpu_slug, memory_bytes

WORK = Path.home() / ".cache" / "qwdeploy" / "bench"
RUNTIME_MAX_PARAMS = 1_000_000_000  # runtime, graphs and fidelity on the shapes below this; exports on all
TRAINED_EXPORTS = ("qwdeploy GGUF q4_0", "qwdeploy ONNX CPU int4", "llama.cpp convert f16 + quantize q4_0",
                   "genai builder int4", "qwdeploy GGUF q8_0", "qwdeploy ONNX fp32")  # --quick: the first four
TRAINED_QUICK = 4
FULL_SHAPES = "qwen2.5-0.5b,qwen3-0.6b,qwen2.5-1.5b,qwen2.5-3b,qwen2.5-7b"


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the 0.5B shape, fewer runs, the cheapest anchors")
    parser.add_argument("--shapes", help=f"comma-separated, from: {', '.join(shapes.SHAPES)}")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument("--work", type=Path, default=WORK, help="checkpoints and artifacts (kept between runs)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved runtime rounds (medians over them)")
    parser.add_argument("--note", default="", help="a sentence for the report's machine line")
    parser.add_argument("--keep", action="store_true", help="keep the artifacts (and large checkpoints)")
    parser.add_argument("--exports-only", action="store_true",
                        help="the export and scale rows alone, one run each: no runtime, fidelity or trained model")
    parser.add_argument("--tag", default="", help="a suffix for the results folder (a run over other shapes keeps "
                                                  "the same day's full run)")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds {args.rounds}: at least 1")
    return args


class Progress:
    """Progress lines with the time elapsed; notes the 1-minute load average at each, to report how busy the
    machine was while it was measured."""

    def __init__(self):
        self.start = time.time()
        self.loads: list[float] = []

    def __call__(self, line: str) -> None:
        minutes, seconds = divmod(int(time.time() - self.start), 60)
        self.loads.append(os.getloadavg()[0])
        print(f"[{minutes:3d}:{seconds:02d}] {line}", flush=True)


def expected(args: argparse.Namespace, chosen: list[shapes.Shape]) -> str:
    if args.quick:
        return "expected: 10-15 minutes on 2 cores (plus building the anchors' environments once, ~15 minutes)"
    billions = sum(s.parameters() for s in chosen) / 1e9
    small = 0 if args.exports_only else len([s for s in chosen if s.parameters() < RUNTIME_MAX_PARAMS])
    hours = 0.6 * small + 0.35 * billions + 0.3 * (not args.exports_only)
    return (f"expected: roughly {hours:.0f} hours on 2 cores for {len(chosen)} shapes ({billions:.1f}B parameters in "
            "all); anchors stop where disk or memory would not hold them")


def build_kernels(say: Progress) -> str | None:
    """qwdeploy's portable kernel library, built before anything is timed: a fresh cache would otherwise put the
    one-time build inside the first export's time. Returns why it could not be built (its ONNX rows then run
    ONNX Runtime's ops, as a user's export would), or None."""
    say("building qwdeploy's kernel library (once per source version)")
    code = "from qwdeploy.toolkit.cli.main import main; main()"
    result = subprocess.run([sys.executable, "-c", code, "kernels", "build", "--target", "portable"],
                            capture_output=True, text=True)
    if result.returncode == 0:
        return None
    return (result.stderr.strip().splitlines() or ["no output"])[-1]


def make_plan(args: argparse.Namespace, say: Progress) -> stages.Plan:
    chosen_exports = exports.quick_exports() if args.quick else exports.EXPORTS
    chosen_runtimes = () if args.exports_only else tuple(r for r in runtime.RUNTIMES if r.quick or not args.quick)
    if "amx_int8" in cpu_flags():  # llama.cpp's native build crashes on quantized files there
        chosen_runtimes = tuple(replace(r, env=envs.LLAMA_NO_AMX) if r.engine == "llama" else r
                                for r in chosen_runtimes)
    needed = {e.env for e in chosen_exports if e.env} | {r.env for r in chosen_runtimes if r.env}
    pythons, unavailable, converter = stages.environments(needed, say=say)
    runs = 1 if args.quick or args.exports_only else 3
    return stages.Plan(chosen_exports, chosen_runtimes, rounds=args.rounds, export_runs=runs,
                       sweep=not args.quick, timeout=900 if args.quick else 7200, work=args.work, pythons=pythons,
                       unavailable=unavailable, converter=converter, say=say)


def one_shape(plan: stages.Plan, shape: shapes.Shape, doc: dict, bandwidths: list[float], keep: bool) -> None:
    plan.say(f"shape {shape.name}: checkpoint")
    checkpoint = shapes.checkpoint(shape, plan.work)
    parameters = shape.parameters()
    out_root = plan.work / "artifacts" / shape.name
    runs = plan.export_runs if parameters < RUNTIME_MAX_PARAMS else 1
    run_artifacts = parameters < RUNTIME_MAX_PARAMS and bool(plan.runtimes)
    doc["exports"] += stages.exports(replace(plan, export_runs=runs), shape.name, checkpoint, parameters,
                                     out_root, keep=run_artifacts or keep)
    if run_artifacts:
        found = stages.targets(plan, shape.name, checkpoint, [r for r in doc["exports"] if r["shape"] == shape.name])
        doc["runtime"] += stages.runtime_rows(plan, found, parameters, bandwidths)
        doc["graphs"] += stages.graphs(plan, found, shape.config()["num_hidden_layers"])
        doc["fidelity"] += stages.fidelity_rows(plan, found, checkpoint, parameters)
        if plan.sweep:
            batch_rows, long_rows = stages.sweeps(plan, found, parameters)
            doc["batch_sweep"] += batch_rows
            doc["prefill_long"] += long_rows
    if not keep:
        shutil.rmtree(out_root, ignore_errors=True)
        if parameters >= RUNTIME_MAX_PARAMS:
            shutil.rmtree(checkpoint, ignore_errors=True)


def trained(plan: stages.Plan, quick: bool, out: Path) -> dict:
    """The trained checkpoint's artifacts through `qwdeploy eval` (perplexity ratio, needle grid)."""
    cached = (plan.work / "checkpoints" / shapes.TRAINED / "config.json").is_file()
    if quick and not cached:
        return {"skipped": "--quick does not train the demo checkpoint (a few minutes); run once without --quick, "
                           "or `qwdeploy demo-checkpoint DIR --trained`, to include it"}
    plan.say("trained checkpoint: exports and qwdeploy eval")
    checkpoint = shapes.trained_checkpoint(plan.work)
    parameters = shapes.spec_parameters(checkpoint)
    chosen = tuple(exports.by_name(name) for name in TRAINED_EXPORTS[:TRAINED_QUICK if quick else None])
    out_root = plan.work / "artifacts" / shapes.TRAINED
    rows = stages.exports(replace(plan, exports=chosen, export_runs=1), shapes.TRAINED, checkpoint, parameters,
                          out_root)
    made = {r["row"]: Path(r["artifact"]) for r in rows if r.get("artifact") and not r["skipped"]}
    out.mkdir(parents=True, exist_ok=True)
    try:
        result = fidelity.trained(checkpoint, made, out / "trained-eval", quick, plan.timeout, say=plan.say)
    except (RuntimeError, OSError, ValueError, subprocess.TimeoutExpired) as exc:
        result = {"skipped": f"qwdeploy eval failed: {exc}"}
    result["not_run"] = {r["row"]: r["skipped"] for r in rows if r["skipped"]}
    shutil.rmtree(out_root, ignore_errors=True)
    return result


def llama_python(plan: stages.Plan) -> str:
    """The interpreter whose llama-cpp-python runs the llama.cpp rows."""
    env = next((r.env for r in plan.runtimes if r.engine == "llama"), None)
    return plan.pythons.get(env, sys.executable) if env else sys.executable


def skeleton(args: argparse.Namespace, plan: stages.Plan) -> dict:
    amx = "amx_int8" in cpu_flags()
    env_info = {}
    for name in sorted({e.env for e in plan.exports if e.env} | {r.env for r in plan.runtimes if r.env}):
        env = envs.ENVS[name]
        versions = envs.env_versions(env)
        env_info[name] = {"folder": str(env.folder), "spec": [*env.first, *env.packages],
                          "skipped": plan.unavailable.get(name, ""), "versions": versions,
                          "key": {k: versions[k] for k in env.key if k in versions}}
    project = envs.project_versions()
    env_info = {"project": {"folder": sys.prefix, "versions": project,
                            "key": {k: project[k] for k in envs.PROJECT_KEY if k in project}}, **env_info}
    return {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": shlex.join(["python", "bench/run.py", *sys.argv[1:]]), "mode": "quick" if args.quick else "full",
            "machine": {"cpu": cpu_model(), "core": cpu_core(), "amx": amx, "cores": len(os.sched_getaffinity(0)),
                        "memory_gib": memory_bytes() / 2**30, "threads": runtime.THREADS, "note": args.note},
            "settings": {"prompt": runtime.PROMPT, "gen": runtime.GEN, "warmup_gen": runtime.WARM_GEN,
                         "rounds": plan.rounds, "export_runs": plan.export_runs, "fidelity_positions": fidelity.POSITIONS},
            "envs": env_info, "llama_build": envs.llama_build_in_child(llama_python(plan)), "exports": [],
            "runtime": [], "graphs": [], "fidelity": [], "batch_sweep": [], "prefill_long": [], "trained": {},
            "notes": []}


def main() -> None:
    args = parse()
    say = Progress()
    chosen = shapes.parse(args.shapes or ("qwen2.5-0.5b" if args.quick else FULL_SHAPES))
    say(f"{'quick' if args.quick else 'full'} run over {', '.join(s.name for s in chosen)}; "
        f"{expected(args, chosen)}")
    plan = make_plan(args, say)
    kernels_failed = build_kernels(say)
    env_seconds = time.time() - say.start
    bandwidths = [runtime.bandwidth_now()]  # and one before every runtime run
    doc = skeleton(args, plan)
    if kernels_failed:
        doc["notes"].append(f"qwdeploy's kernel library could not be built ({kernels_failed}): its ONNX rows ran "
                            "ONNX Runtime's ops")
    # A quick run has a folder of its own: it must not overwrite the same day's full run.
    out = args.out / "-".join(filter(None, (date.today().isoformat(), cpu_slug(), "quick" if args.quick else "", args.tag)))
    for shape in chosen:
        one_shape(plan, shape, doc, bandwidths, args.keep)
    doc["trained"] = {"skipped": "--exports-only"} if args.exports_only else trained(plan, args.quick, out)
    finish(doc, env_seconds, bandwidths, say)
    for path in report.write(doc, out):
        say(f"wrote {path}")


def finish(doc: dict, env_seconds: float, bandwidths: list[float], say: Progress) -> None:
    bandwidth = statistics.median(bandwidths)
    doc["machine"].update(bandwidth_gbs=bandwidth / 1e9, bandwidth_samples_gbs=[b / 1e9 for b in bandwidths])
    for row in doc["runtime"]:
        if row.get("bytes_per_token") and row.get("decode_tps"):
            row["bandwidth_share"] = report.bandwidth_share(row, bandwidth)
    report.add_ratios(doc["exports"], report.EXPORT_METRICS)
    report.add_ratios(doc["runtime"], report.RUNTIME_METRICS)
    report.add_ratios(doc["fidelity"], {"kl_mean": False})
    doc["targets"] = goals.lines(doc)
    doc["duration_s"] = time.time() - say.start
    doc["environment_setup_s"] = env_seconds
    parent = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    doc["machine"]["parent_peak_rss_mib"] = parent
    loads = sorted(say.loads)
    doc["machine"]["load_average"] = {"min": loads[0], "median": loads[len(loads) // 2], "max": loads[-1],
                                      "cores": os.cpu_count()}
    during = max((run.get("parent_rss_mib", 0) for row in doc["exports"] for run in row["runs"]), default=0)
    doc["notes"].append(f"environment setup took {env_seconds / 60:.1f} min of the {doc['duration_s'] / 60:.1f} min")
    doc["notes"].append(f"the measuring parent's own peak RSS, a floor under every child's (Linux carries it through "
                        f"fork and exec), was at most {during:.0f} MiB while exports ran ({parent:.0f} MiB by the end)")
    json.dumps(doc, default=str)  # fail here, not halfway through writing


if __name__ == "__main__":
    main()
