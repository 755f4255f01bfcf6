"""The stages of a bench run, each over one shape: exports, runtime, graphs, fidelity, sweeps.

Each stage appends plain dicts (the rows of results.json) and never raises for a tool that fails:
the row says why and the run goes on.
"""

from __future__ import annotations

import resource
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import envs
import fidelity
import runtime
from common import Run, memory_bytes, median, size_bytes
from exports import Ctx, Export, precheck, remove, run_export
from runtime import Runtime, Target

TOKENIZER_FILES = ("tokenizer", "openvino_tokenizer", "openvino_detokenizer", "vocab", "merges")


@dataclass
class Plan:
    exports: tuple[Export, ...]
    runtimes: tuple[Runtime, ...]
    rounds: int
    export_runs: int
    sweep: bool  # batch 1/4/16 and a 1,024-token prefill
    timeout: float  # seconds for any one child
    work: Path
    pythons: dict[str, str]  # env name → interpreter (the project's under None)
    unavailable: dict[str, str]  # env name → why not
    converter: Path | None
    say: object = print
    rss_rates: dict[str, float] = field(default_factory=dict)  # export name → peak RSS bytes per parameter seen


def _python(plan: Plan, env: str | None) -> tuple[str, str]:
    """(interpreter, '') or ('', why the environment is missing)."""
    if env is None:
        return sys.executable, ""
    if env in plan.unavailable:
        return "", f"skipped: environment {env} unavailable ({plan.unavailable[env]})"
    return plan.pythons[env], ""


def _export_row(export: Export, shape: str, parameters: int) -> dict:
    return {"row": export.name, "tool": export.tool, "group": export.group, "ours": export.tool == "qwdeploy",
            "env": export.env or "project", "shape": shape, "parameters": parameters, "runs": [], "skipped": ""}


def _export_reason(plan: Plan, export: Export, parameters: int, out_root: Path) -> str:
    if export.tool == "llama.cpp" and plan.converter is None:
        return f"skipped: {plan.unavailable.get('converter', 'no converter')}"
    # qwdeploy runs at every size (its memory should stay flat); an anchor stops where its measured growth
    # says this machine's memory would not hold it
    rate = 0.0 if export.tool == "qwdeploy" else plan.rss_rates.get(export.name, export.rss_per_param)
    return precheck(replace(export, rss_per_param=rate), parameters, out_root, memory_bytes())


def exports(plan: Plan, shape: str, checkpoint: Path, parameters: int, out_root: Path,
            keep: bool = True) -> list[dict]:
    """Every export of the plan on one checkpoint, interleaved over plan.export_runs runs. Without `keep` each
    artifact goes once measured (nothing runs it later), so the disk holds one at a time."""
    rows = {e.name: _export_row(e, shape, parameters) for e in plan.exports}
    for run in range(plan.export_runs):
        for export in plan.exports:
            row = rows[export.name]
            python, why = _python(plan, export.env)
            row["skipped"] = row["skipped"] or why or _export_reason(plan, export, parameters, out_root)
            if row["skipped"]:
                continue
            plan.say(f"  export {run + 1}/{plan.export_runs}: {export.name} ({shape})")
            ctx = Ctx(checkpoint, out_root / export.artifact, python, out_root / "tmp", plan.converter)
            try:
                measured = run_export(export, ctx)
            except (RuntimeError, OSError) as exc:
                row["skipped"] = f"failed: {exc}"
                remove(ctx.out)
                continue
            row["runs"].append({"seconds": measured.seconds, "peak_rss_mib": measured.peak_rss_mib,
                                "parent_rss_mib": parent_rss_mib()})
            row["size_bytes"], row["artifact"] = size_bytes(ctx.out), str(ctx.out)
            if not keep:
                remove(ctx.out)
    for export in plan.exports:
        row = rows[export.name]
        if row["runs"] and not row["skipped"]:
            m = median([Run(r["seconds"], r["peak_rss_mib"]) for r in row["runs"]])
            row.update(seconds=m.seconds, peak_rss_mib=m.peak_rss_mib)
            plan.rss_rates[export.name] = m.peak_rss_mib * 2**20 / parameters
    return list(rows.values())


def parent_rss_mib() -> float:
    """This process's peak RSS: a floor under the peak each child reports (Linux carries it through fork and exec)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def weight_bytes(path: Path) -> int:
    """The files an engine reads weights from (tokenizer files left out)."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*")
               if p.is_file() and not p.name.startswith(TOKENIZER_FILES) and p.suffix != ".json")


def targets(plan: Plan, shape: str, checkpoint: Path, export_rows: list[dict]) -> list[Target]:
    made = {r["row"]: r for r in export_rows}
    out = []
    for row in plan.runtimes:
        python, why = _python(plan, row.env)
        source = made.get(row.source) if row.source else None
        if row.source and (source is None or source.get("skipped") or "artifact" not in source):
            why = why or f"skipped: no artifact ({(source or {}).get('skipped') or row.source + ' not run'})"
        artifact = Path(source["artifact"]) if source and not why else checkpoint
        out.append(Target(row, shape, artifact, python, 0 if why else size_bytes(artifact), skipped=why))
    return out


def runtime_rows(plan: Plan, found: list[Target], parameters: int, bandwidths: list[float]) -> list[dict]:
    """Also measures the bandwidth before every run: kept in the run's sample and added to `bandwidths`."""
    def bandwidth() -> dict:
        bandwidths.append(runtime.bandwidth_now())
        return {"bandwidth_bps": bandwidths[-1]}

    runtime.interleave(found, plan.rounds, 1, runtime.PROMPT, runtime.GEN, plan.timeout, say=plan.say,
                       each_run=bandwidth)
    rows = []
    for target in found:
        row = runtime.summary(target)
        row["parameters"] = parameters
        if target.samples:
            read = parameters * 4 if target.row.engine == "transformers" else weight_bytes(target.artifact)
            row.update(bits_per_weight=8 * read / parameters, bytes_per_token=read)
            if not target.row.source:
                row["size_bytes"] = parameters * 4  # what it holds in memory: fp32 weights
        rows.append(row)
    return rows


def graphs(plan: Plan, found: list[Target], layers: int) -> list[dict]:
    rows = []
    for target in found:
        if not target.row.onnx:
            continue
        row = {"row": target.row.name, "shape": target.shape, "ours": target.row.ours, "skipped": target.skipped}
        if not target.skipped:
            plan.say(f"  launches: {target.row.name}")
            try:
                launches, nodes = runtime.launches(target.artifact, sys.executable, plan.timeout)
                row.update(nodes=nodes, nodes_per_layer=runtime.nodes_per_layer(target.artifact),
                           launches_per_step=launches, launches_per_layer=launches / layers)
            except (RuntimeError, OSError, ValueError, KeyError) as exc:
                row["skipped"] = f"failed: {exc}"
        rows.append(row)
    return rows


def fidelity_rows(plan: Plan, found: list[Target], checkpoint: Path, parameters: int) -> list[dict]:
    live = [t for t in found if not t.skipped]
    try:
        rows = fidelity.random_weights(live, checkpoint, sys.executable, plan.timeout, say=plan.say)
    except (RuntimeError, OSError, ValueError) as exc:
        return [{"row": "transformers fp32 reference", "shape": found[0].shape, "group": "fp32", "ours": False,
                 "skipped": f"failed: {exc}"}]
    for row in rows:
        row["parameters"] = parameters
    return rows


def sweeps(plan: Plan, found: list[Target], parameters: int) -> tuple[list[dict], list[dict]]:
    """Batch 1/4/16 of the ONNX folders in onnxruntime, and every row's 1,024-token prefill."""
    onnx = [Target(replace(t.row, engine="ort", env=None), t.shape, t.artifact, sys.executable, t.size_bytes)
            for t in found if t.row.onnx and not t.skipped and t.row.engine != "optimum"]
    batch_rows = []
    for batch in (1, 4, 16):
        group = [replace(t, samples=[]) for t in onnx]
        runtime.interleave(group, plan.rounds, batch, runtime.PROMPT, runtime.GEN, plan.timeout, say=plan.say,
                           label=f"batch {batch} ")
        batch_rows += [{**runtime.summary(t), "batch": batch, "prompt": runtime.PROMPT} for t in group]
    long = [replace(t, samples=[]) for t in found if not t.skipped]
    runtime.interleave(long, plan.rounds, 1, 1024, 2, plan.timeout, say=plan.say, label="prefill 1024 ")
    long_rows = [{**runtime.summary(t), "batch": 1, "prompt": 1024, "decode_tps": None} for t in long]  # 1 step
    return batch_rows, long_rows


def environments(names: set[str], say=print) -> tuple[dict[str, str], dict[str, str], Path | None]:
    """Build (or reuse) the anchors' environments and fetch llama.cpp's converter; failures are reasons."""
    pythons, unavailable = {}, {}
    for name in sorted(names):
        try:
            pythons[name] = str(envs.ensure(envs.ENVS[name], say=say))
        except (envs.EnvUnavailable, OSError) as exc:
            unavailable[name] = str(exc)
            say(f"  environment {name} unavailable: {exc}")
    converter = None
    if "llamacpp" in pythons:
        try:
            converter = envs.llama_converter()
        except (envs.EnvUnavailable, OSError) as exc:
            unavailable["converter"] = str(exc)
    return pythons, unavailable, converter
