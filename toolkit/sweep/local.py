"""Running the sweep on this machine with plain processes.

Plain processes rather than Ray's local mode: every native engine already runs in a child of its own (eval's,
the profiler's, the GGUF exporter's quantizer), so a thread per lane only drives them, and a sweep on one
machine needs nothing beyond qwdeploy. Exports and evaluations run beside each other in two lanes;
profiles run one at a time and only while both other lanes are idle, so no timing measures contention.
This machine stands in for every target, and each result says so.
"""

from __future__ import annotations

import platform
import queue
import threading
from pathlib import Path
from typing import Any, Callable

from .matrix import CellSpec
from .plan import Plan
from .results import Built, Where
from .schedule import EvalJob, ExportJob, Job, ProfileJob
from .steps import EVAL_DEVICE, evaluate, export, failure, measure

HERE = "host"  # the one place every local cell runs


class Lane:
    """One daemon thread doing jobs in order (daemon: an interrupted sweep exits without waiting on it)."""

    def __init__(self, done: queue.Queue):
        self._jobs: queue.Queue = queue.Queue()
        self._done = done
        self.load = 0  # jobs given and not yet collected
        threading.Thread(target=self._work, daemon=True).start()

    def put(self, job: Job, do: Callable[[Job], Any]) -> None:
        self.load += 1
        self._jobs.put((job, do))

    def close(self) -> None:
        self._jobs.put(None)

    def _work(self) -> None:
        while (item := self._jobs.get()) is not None:
            job, do = item
            try:
                outcome = do(job)
            except Exception as exc:  # a step fault fails its cells, not the sweep
                outcome = failure(exc)
            self._done.put((job, outcome))


def local_where(device: str) -> Where:
    return Where("local", platform.node(), device, stand_in=True)


class LocalRunner:
    mode = "local"

    def __init__(self, plan: Plan, folder: Path):
        self.plan, self.folder = plan, folder
        self._done: queue.Queue = queue.Queue()
        self._lanes = {kind: Lane(self._done) for kind in (ExportJob, EvalJob, ProfileJob)}
        self._held: list[ProfileJob] = []

    def place(self, cell: CellSpec) -> str:
        return HERE

    def adopt(self, built: Built) -> None:
        pass  # already in the artifacts folder

    def submit(self, job: Job) -> None:
        if isinstance(job, ProfileJob):
            self._held.append(job)
        else:
            self._lanes[type(job)].put(job, self._do)

    def collect(self, timeout: float) -> list[tuple[Job, Any]]:
        self._release()
        try:
            finished = [self._done.get(timeout=timeout)]
        except queue.Empty:
            return []
        while not self._done.empty():
            finished.append(self._done.get())
        for job, _ in finished:
            self._lanes[type(job)].load -= 1
        self._release()
        return finished

    def close(self) -> None:
        for lane in self._lanes.values():
            lane.close()

    def _release(self) -> None:
        if self._held and all(lane.load == 0 for lane in self._lanes.values()):
            self._lanes[ProfileJob].put(self._held.pop(0), self._do)

    def _do(self, job: Job) -> Any:
        if isinstance(job, ExportJob):
            return export(job.artifact, self.folder)
        if isinstance(job, EvalJob):
            paths = {a.name: self.folder / a.name for a in job.artifacts}
            return evaluate(job.checkpoint_dir, paths, self.plan.eval, local_where(EVAL_DEVICE))
        return measure(self.folder / job.artifact.name, job.device, self.plan.profile, local_where(job.device))
