"""Measurements → a Chrome / Perfetto trace (traceEvents JSON, microseconds).

Per artifact two processes: the counted runs (one thread each: prefill, then every decode step)
and the instrumented decode steps (one event per kernel launch, named by op type).
"""

from __future__ import annotations

from ..runner import Measurement

US = 1e6


def _meta(pid: int, tid: int | None, name: str) -> dict:
    kind = "process_name" if tid is None else "thread_name"
    return {"ph": "M", "name": kind, "pid": pid, "tid": tid or 0, "args": {"name": name}}


def _span(pid: int, tid: int, name: str, start_s: float, dur_s: float, **args) -> dict:
    return {"ph": "X", "cat": "qwdeploy", "name": name, "pid": pid, "tid": tid, "ts": start_s * US,
            "dur": dur_s * US, "args": args}


def trace_events(measurements: list[Measurement]) -> dict:
    events: list[dict] = []
    for i, m in enumerate(measurements):
        runs_pid, ops_pid = 2 * i + 1, 2 * i + 2
        label = f"{m.job.artifact.name} ({m.job.kind}, {m.job.device})"
        events += [_meta(runs_pid, None, f"{label}: counted runs"), _meta(ops_pid, None, f"{label}: kernel launches")]
        for run, sample in enumerate(m.samples):
            events.append(_meta(runs_pid, run + 1, f"run {run + 1}"))
            events.append(_span(runs_pid, run + 1, "prefill", 0.0, sample.ttft_s, tokens=sample.batch * sample.prompt_len))
            clock = sample.ttft_s
            for step, dur in enumerate(sample.step_s):
                events.append(_span(runs_pid, run + 1, "decode", clock, dur, step=step))
                clock += dur
        if m.report is not None:
            events.append(_meta(ops_pid, 1, "instrumented decode steps"))
            events += [_span(ops_pid, 1, e.op, e.start_s, e.dur_s, node=e.name, step=e.step) for e in m.report.events]
    return {"traceEvents": events, "displayTimeUnit": "ms"}
