"""A session behind a uniform call interface, in this process or in a fresh child process.

A fresh child (spawned, not forked) holds nothing but the runtime and the artifact, so its RSS
high-water mark is the artifact's own; several children let `--compare` interleave runs.
"""

from __future__ import annotations

import multiprocessing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..engines import death_message, one_line
from ..errors import EngineError, QwdeployError
from . import memory
from .artifacts import ENGINES
from .collectors import collector_for
from .contract import ArtifactInfo, OpReport, RunSample, Session


DOING = {"info": "loading", "run": "running", "instrument": "instrumenting"}  # for "... while <doing> <artifact>"


@dataclass(frozen=True)
class Job:
    """One artifact measured on one device: what a worker opens."""

    artifact: Path
    kind: str
    device: str
    threads: int | None = None
    options: tuple[tuple[str, str], ...] = ()
    integrity: str = ""  # how the artifact was checked before loading (artifacts.preflight)


class Measured:
    """Wraps a session: every run records the process's RSS high-water mark during that run."""

    def __init__(self, job: Job):
        self.baseline_bytes = memory.rss_bytes()
        collector = collector_for(job.kind, job.device)
        self.session: Session = collector.open(job.artifact, job.threads, dict(job.options))
        self.loaded_bytes = memory.rss_bytes()
        # Read after loaded_bytes and before any reset, so it covers loading's transient peak and is >= loaded.
        self.load_peak_bytes = memory.peak_rss_bytes()

    def info(self) -> tuple[ArtifactInfo, int, int, int]:
        return self.session.info, self.baseline_bytes, self.loaded_bytes, self.load_peak_bytes

    def run(self, prompt: np.ndarray, gen: int) -> RunSample:
        memory.reset_peak()
        sample = self.session.run(prompt, gen)
        sample.host_peak_bytes = memory.peak_rss_bytes()
        return sample

    def instrument(self, prompt: np.ndarray, steps: int) -> OpReport:
        return self.session.instrument(prompt, steps)

    def close(self) -> None:
        self.session.close()


class InProcessWorker:
    def __init__(self, job: Job):
        self._measured = Measured(job)

    def call(self, method: str, *args: Any) -> Any:
        return getattr(self._measured, method)(*args)

    def close(self) -> None:
        self._measured.close()


def _serve(conn, job: Job) -> None:
    try:
        measured = Measured(job)
        conn.send(("ok", None))
    except BaseException as exc:  # reported to the parent, which raises it
        conn.send(("error", _portable(exc)))
        return
    while True:
        message = conn.recv()
        if message is None:
            measured.close()
            return
        method, args = message
        try:
            conn.send(("ok", getattr(measured, method)(*args)))
        except BaseException as exc:
            conn.send(("error", _portable(exc)))


def _portable(exc: BaseException) -> BaseException:
    if isinstance(exc, QwdeployError):
        return type(exc)(str(exc))
    return EngineError(f"profiling failed in the child process: {one_line(exc)}")


class ChildWorker:
    def __init__(self, job: Job):
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child, job), daemon=True)
        self._process.start()
        self._job = job
        child.close()
        self._receive(DOING["info"])

    def _receive(self, doing: str) -> Any:
        try:
            status, value = self._conn.recv()
        except (EOFError, OSError):
            self._process.join()
            engine = ENGINES[self._job.kind]
            raise EngineError(death_message(engine, self._process.exitcode, f"{doing} {self._job.artifact.name}",
                                            "profile it with another runtime, or report this engine fault"),
                              self._job.artifact) from None
        if status == "error":
            raise value
        return value

    def call(self, method: str, *args: Any) -> Any:
        try:
            self._conn.send((method, args))
        except OSError:
            pass  # the child is gone; _receive says how it died
        return self._receive(DOING[method])

    def close(self) -> None:
        if self._process.is_alive():
            try:
                self._conn.send(None)
            except OSError:
                pass
            self._process.join(timeout=30)
        self._conn.close()


def start_worker(job: Job, isolate: bool) -> InProcessWorker | ChildWorker:
    return ChildWorker(job) if isolate else InProcessWorker(job)
