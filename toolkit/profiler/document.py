"""A Measurement → the versioned JSON document (the one schema every artifact and device shares)."""

from __future__ import annotations

import os
import platform
import statistics
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone

from .. import __version__
from .contract import ArtifactInfo, OpReport, RunSample
from .runner import Measurement, Settings
from .stats import summary
from .sweeps import Budget, fit, fits, kv_cache_bytes, usd_per_million_tokens

SCHEMA_ID = "qwdeploy.profile"
SCHEMA_VERSION = 3


@dataclass(frozen=True)
class Host:
    hostname: str
    machine: str
    cpu_count: int
    memory_bytes: int
    bandwidth_bytes_per_s: float | None  # of the profiled device's memory (the GPU's for cuda); None: no roofline


def host_memory_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def this_host(bandwidth: float | None) -> Host:
    return Host(platform.node(), platform.machine(), os.cpu_count() or 1, host_memory_bytes(), bandwidth)


def decode_tokens_per_s(sample: RunSample) -> float:
    return sample.batch * len(sample.step_s) / sum(sample.step_s)


def run_record(sample: RunSample) -> dict:
    return {
        "batch": sample.batch,
        "prompt_len": sample.prompt_len,
        "ttft_s": sample.ttft_s,
        "prefill_tokens_per_s": sample.batch * sample.prompt_len / sample.ttft_s,
        "decode_tokens_per_s": decode_tokens_per_s(sample),
        "decode_step_s": list(sample.step_s),
        "host_peak_bytes": sample.host_peak_bytes,
        "device_peak_bytes": sample.device_peak_bytes,
    }


def _summaries(runs: list[dict]) -> dict:
    keys = ("ttft_s", "prefill_tokens_per_s", "decode_tokens_per_s", "host_peak_bytes")
    result = {key: summary(r[key] for r in runs) for key in keys}
    result["decode_step_s"] = summary(statistics.median(r["decode_step_s"]) for r in runs)
    return result


def _ops(report: OpReport) -> list[dict]:
    counts: dict[str, int] = defaultdict(int)
    times: dict[str, float] = defaultdict(float)
    for event in report.events:
        counts[event.op] += 1
        times[event.op] += event.dur_s
    total = sum(times.values()) or 1.0
    steps = max(len(report.launches_per_step), 1)
    rows = [{"op": op, "count": counts[op], "count_per_step": counts[op] / steps, "total_s": times[op],
             "share": times[op] / total} for op in counts]
    return sorted(rows, key=lambda r: (-r["total_s"], r["op"]))


def _roofline(info: ArtifactInfo, s: Settings, step_s: float, host: Host) -> dict | None:
    if host.bandwidth_bytes_per_s is None:
        return None
    mean_context = s.prompt_len + (s.gen - 1) / 2  # KV length averaged over the decode steps
    step_bytes = info.weight_bytes_read_per_token + s.batch * info.kv_bytes_per_token * mean_context
    achieved = step_bytes / step_s
    return {"bandwidth_bytes_per_s": host.bandwidth_bytes_per_s, "bytes_per_decode_step": int(step_bytes),
            "achieved_bytes_per_s": achieved, "share": achieved / host.bandwidth_bytes_per_s}


def _sweep(m: Measurement, budget: Budget, usd_per_hour: float | None) -> list[dict]:
    points = []
    for point, samples in m.sweep:
        runs = [run_record(x) for x in samples]
        tokens_per_s = statistics.median(r["decode_tokens_per_s"] for r in runs)
        points.append({
            "axis": point.axis, "batch": point.batch, "context": point.context, "prompt_len": point.prompt_len,
            "gen": point.gen,
            "ttft_s": statistics.median(r["ttft_s"] for r in runs),
            "decode_tokens_per_s": tokens_per_s,
            "decode_step_s": statistics.median(statistics.median(r["decode_step_s"]) for r in runs),
            "host_peak_bytes": max(r["host_peak_bytes"] for r in runs),
            "device_peak_bytes": _max_or_none(r["device_peak_bytes"] for r in runs),
            "kv_cache_bytes": kv_cache_bytes(m.info, point.batch, point.context),
            "fits": fits(m.info, budget, point.batch, point.context),
            "usd_per_million_tokens": usd_per_million_tokens(usd_per_hour, tokens_per_s),
        })
    return points


def _max_or_none(values) -> int | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def build_document(m: Measurement, s: Settings, host: Host, budget: Budget, usd_per_hour: float | None) -> dict:
    runs = [run_record(x) for x in m.samples]
    summaries = _summaries(runs)
    context = s.prompt_len + s.gen - 1
    assert m.report is not None
    launches = m.report.launches_per_step
    largest_context = max([p.context for p, _ in m.sweep] + [context])
    largest_batch = max([p.batch for p, _ in m.sweep] + [s.batch])
    return {
        "schema": SCHEMA_ID,
        "schema_version": SCHEMA_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "qwdeploy_version": __version__,
        "host": {"hostname": host.hostname, "machine": host.machine, "cpu_count": host.cpu_count,
                 "memory_bytes": host.memory_bytes},
        "artifact": {"path": str(m.job.artifact), "kind": m.job.kind, "runtime": m.info.runtime,
                     "weight_bytes": m.info.weight_bytes,
                     "weight_bytes_read_per_token": m.info.weight_bytes_read_per_token,
                     "kv_bytes_per_token": m.info.kv_bytes_per_token, "context_length": m.info.context_length,
                     "vocab_size": m.info.vocab_size, "details": {**m.info.details, "integrity": m.job.integrity}},
        "device": m.job.device,
        "settings": {"prompt_len": s.prompt_len, "gen": s.gen, "runs": s.runs, "warmup_runs": 1, "batch": s.batch,
                     "threads": m.job.threads, "seed": s.seed, "options": dict(m.job.options)},
        "runs": runs,
        "summary": summaries,
        "launches": {"per_decode_step": int(statistics.median(launches)) if launches else 0,
                     "per_step": list(launches), "method": m.report.method,
                     "fallbacks_per_step": m.report.fallbacks_per_step},
        "ops": _ops(m.report),
        "memory": {"host_baseline_bytes": m.baseline_rss_bytes, "host_loaded_bytes": m.loaded_rss_bytes,
                   "host_load_peak_bytes": m.load_peak_rss_bytes,
                   # A run can peak below what loading held (load-time garbage freed since), so the
                   # process peak a device must provide is the larger of the two.
                   "host_peak_bytes": max([m.load_peak_rss_bytes] + [r["host_peak_bytes"] for r in runs]),
                   "device_peak_bytes": _max_or_none(r["device_peak_bytes"] for r in runs),
                   "weight_bytes": m.info.weight_bytes,
                   "kv_cache_bytes": kv_cache_bytes(m.info, s.batch, context)},
        "roofline": _roofline(m.info, s, summaries["decode_step_s"]["median"], host),
        "cost": None if not usd_per_hour else {
            "usd_per_hour": usd_per_hour,
            "usd_per_million_tokens": usd_per_million_tokens(usd_per_hour,
                                                             summaries["decode_tokens_per_s"]["median"])},
        "fit": fit(m.info, budget, largest_context, largest_batch),
        "sweep": _sweep(m, budget, usd_per_hour),
    }
