"""Warm-up, counted runs interleaved across artifacts, sweeps, then one instrumented run each."""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from ..errors import QwdeployError
from .contract import ArtifactInfo, OpReport, RunSample
from .worker import Job, start_worker

MAX_PROMPT_ID = 100_000  # ids below every Qwen vocabulary's size, away from the special tokens


@dataclass(frozen=True)
class Settings:
    prompt_len: int = 128
    gen: int = 64
    runs: int = 5
    batch: int = 1
    instrument_steps: int = 4
    batches: tuple[int, ...] = ()  # sweep: batch sizes at prompt_len
    contexts: tuple[int, ...] = ()  # sweep: KV length reached at the end of generation, at batch 1
    seed: int = 0


@dataclass(frozen=True)
class Point:
    axis: str  # "batch" or "context"
    batch: int
    prompt_len: int
    gen: int

    @property
    def context(self) -> int:
        return self.prompt_len + self.gen - 1


@dataclass
class Measurement:
    job: Job
    info: ArtifactInfo
    baseline_rss_bytes: int  # before the runtime and artifact were loaded
    loaded_rss_bytes: int  # right after loading
    load_peak_rss_bytes: int  # high-water mark while loading
    samples: list[RunSample] = field(default_factory=list)
    report: OpReport | None = None
    sweep: list[tuple[Point, list[RunSample]]] = field(default_factory=list)


def sweep_points(s: Settings) -> list[Point]:
    points = [Point("batch", b, s.prompt_len, s.gen) for b in s.batches]
    for context in s.contexts:
        if context <= s.gen:
            raise QwdeployError(f"--context {context} must exceed --gen {s.gen}: it is the KV length after generating")
        points.append(Point("context", 1, context - s.gen + 1, s.gen))
    return points


def check_fits(info: ArtifactInfo, s: Settings, job: Job) -> None:
    limit = info.context_length
    if limit is None:
        return
    needed = s.prompt_len + s.gen - 1  # the last generated token is never fed back
    if needed > limit:
        raise QwdeployError(f"a prompt of {s.prompt_len} tokens plus {s.gen} generated needs {needed} positions; "
                            f"the artifact's context is {limit}", job.artifact)
    for point in sweep_points(s):
        if point.context > limit:
            raise QwdeployError(f"--context {point.context} exceeds the artifact's context of {limit}",
                                job.artifact)


def prompt_ids(vocab_size: int, batch: int, length: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, min(vocab_size, MAX_PROMPT_ID), size=(batch, length), dtype=np.int64)  # [batch, length]


def measure(jobs: list[Job], s: Settings, isolate: bool = True, progress: bool = True) -> list[Measurement]:
    """Profile every job; with several, each counted run visits them in turn so drift hits all alike."""
    if s.gen < 2:
        raise QwdeployError("--gen must be at least 2: one token from prefill, the rest from decode steps")
    if s.runs < 1 or s.prompt_len < 1 or s.batch < 1:
        raise QwdeployError("--runs, --prompt-len and --batch must be positive")
    points = sweep_points(s)
    total = len(jobs) * (2 + s.runs + len(points) * s.runs)
    with ExitStack() as stack:
        bar = stack.enter_context(tqdm(total=total, desc="profile", unit="run", disable=not progress, leave=False))
        workers, results = [], []
        for job in jobs:
            bar.set_postfix_str(f"loading {job.artifact.name}")
            worker = start_worker(job, isolate)
            stack.callback(worker.close)
            info, baseline, loaded, load_peak = worker.call("info")
            check_fits(info, s, job)
            workers.append(worker)
            results.append(Measurement(job, info, baseline, loaded, load_peak))

        def prompt(m: Measurement, batch: int, length: int) -> np.ndarray:
            return prompt_ids(m.info.vocab_size, batch, length, s.seed)

        for worker, m in zip(workers, results):
            bar.set_postfix_str(f"warm-up {m.job.artifact.name}")
            worker.call("run", prompt(m, s.batch, s.prompt_len), s.gen)
            bar.update()
        for run in range(s.runs):
            for worker, m in zip(workers, results):
                bar.set_postfix_str(f"run {run + 1}/{s.runs} {m.job.artifact.name}")
                m.samples.append(worker.call("run", prompt(m, s.batch, s.prompt_len), s.gen))
                bar.update()
        for point in points:
            samples: list[list[RunSample]] = [[] for _ in results]
            for run in range(s.runs):
                for i, (worker, m) in enumerate(zip(workers, results)):
                    bar.set_postfix_str(f"{point.axis} {point.batch if point.axis == 'batch' else point.context}")
                    samples[i].append(worker.call("run", prompt(m, point.batch, point.prompt_len), point.gen))
                    bar.update()
            for m, runs in zip(results, samples):
                m.sweep.append((point, runs))
        for worker, m in zip(workers, results):
            bar.set_postfix_str(f"instrumented {m.job.artifact.name}")
            steps = min(s.instrument_steps, s.gen - 1)
            m.report = worker.call("instrument", prompt(m, s.batch, s.prompt_len), steps)
            bar.update()
    return results
