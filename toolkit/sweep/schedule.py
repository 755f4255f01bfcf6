"""The sweep's jobs and the order they become ready in, the same for every runner.

A job is keyed by what it does and where it runs, so cells that need the same work share it: an artifact is
exported once; one evaluation per checkpoint and place covers all its artifacts (the reference pass runs once);
one profile per artifact, place and device. Locally every cell runs in one place, this machine; on Ray the
place is the target's own resource. Evaluations start when their checkpoint's exports are done, profiles as
soon as their artifact is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Union

from .matrix import ArtifactSpec, CellSpec
from .progress import Progress
from .results import Built, Quality, Speed
from .steps import Failure


@dataclass(frozen=True)
class ExportJob:
    artifact: ArtifactSpec


@dataclass(frozen=True)
class EvalJob:
    checkpoint_dir: Path
    artifacts: tuple[ArtifactSpec, ...]
    place: str  # Runner.place: "host" locally, the target's resource name on Ray


@dataclass(frozen=True)
class ProfileJob:
    artifact: ArtifactSpec
    place: str  # Runner.place: "host" locally, the target's resource name on Ray
    device: str


Job = Union[ExportJob, EvalJob, ProfileJob]


class Runner(Protocol):
    mode: str  # "local" or "ray": part of every cell's key

    def place(self, cell: CellSpec) -> str: ...

    def adopt(self, built: Built) -> None: ...  # an artifact an earlier run left, valid

    def submit(self, job: Job) -> None: ...

    def collect(self, timeout: float) -> list[tuple[Job, Any]]: ...  # (job, its result or a Failure)

    def close(self) -> None: ...


@dataclass
class Work:
    """Jobs this run did: zero of each on a rerun with nothing changed."""

    exports: int = 0
    evals: int = 0
    profiles: int = 0


@dataclass
class Outcomes:
    built: dict[str, Built | Failure] = field(default_factory=dict)  # artifact name
    quality: dict[tuple[str, str], Quality | Failure] = field(default_factory=dict)  # (artifact, place)
    speed: dict[tuple[str, str, str], Speed | Failure] = field(default_factory=dict)  # (artifact, place, device)


class Schedule:
    def __init__(self, cells: list[CellSpec], runner: Runner, evaluate: bool,
                 on_cell: Callable[[CellSpec, Outcomes, str], None], progress: Progress):
        self.cells, self.runner, self.evaluate, self.on_cell, self.progress = cells, runner, evaluate, on_cell, progress
        self.places = {c.id: runner.place(c) for c in cells}
        self.outcomes, self.work = Outcomes(), Work()
        self._open = {c.id: c for c in cells}
        self._evals_sent: set[tuple[str, str]] = set()
        self._pending = 0

    def run(self, reusable: dict[str, Built]) -> Work:
        artifacts = {c.artifact.name: c.artifact for c in self.cells}
        for name, artifact in artifacts.items():
            if name in reusable:
                self.runner.adopt(reusable[name])
                self._built(artifact, reusable[name])
            else:
                self._submit(ExportJob(artifact))
        while self._pending:
            for job, outcome in self.runner.collect(timeout=1.0):
                self._pending -= 1
                self._finished(job, outcome)
        return self.work

    def _submit(self, job: Job) -> None:
        self._pending += 1
        self.runner.submit(job)

    def _finished(self, job: Job, outcome: Any) -> None:
        if isinstance(job, ExportJob):
            self.work.exports += 1
            self._step([c for c in self._open.values() if c.artifact.name == job.artifact.name], "exported")
            self._built(job.artifact, outcome)
        elif isinstance(job, EvalJob):
            self.work.evals += 1
            for artifact in job.artifacts:
                result = outcome.get(artifact.name) if isinstance(outcome, dict) else outcome
                self.outcomes.quality[artifact.name, job.place] = result
            names = {a.name for a in job.artifacts}
            self._step([c for c in self._open.values() if c.artifact.name in names
                        and self.places[c.id] == job.place], "evaluated")
        else:
            self.work.profiles += 1
            self.outcomes.speed[job.artifact.name, job.place, job.device] = outcome
            self._step([c for c in self._open.values() if c.artifact.name == job.artifact.name
                        and self.places[c.id] == job.place and c.device == job.device], "profiled")
        self._close_finished()

    def _step(self, cells: list[CellSpec], label: str) -> None:
        for cell in cells:
            self.progress.step(cell.id, label)

    def _built(self, artifact: ArtifactSpec, outcome: Built | Failure) -> None:
        self.outcomes.built[artifact.name] = outcome
        if isinstance(outcome, Built):
            wanted = {(self.places[c.id], c.device) for c in self.cells if c.artifact.name == artifact.name}
            for place, device in sorted(wanted):
                self._submit(ProfileJob(artifact, place, device))
        if self.evaluate:
            self._send_evals(artifact.checkpoint)
        self._close_finished()

    def _send_evals(self, checkpoint: str) -> None:
        """One evaluation per place, once every artifact of `checkpoint` wanted there is exported."""
        for place in sorted({self.places[c.id] for c in self.cells if c.artifact.checkpoint == checkpoint}):
            wanted = {c.artifact.name: c.artifact for c in self.cells
                      if c.artifact.checkpoint == checkpoint and self.places[c.id] == place}
            if (checkpoint, place) in self._evals_sent or any(n not in self.outcomes.built for n in wanted):
                continue
            self._evals_sent.add((checkpoint, place))
            ready = tuple(a for n, a in wanted.items() if isinstance(self.outcomes.built[n], Built))
            if ready:
                self._submit(EvalJob(ready[0].checkpoint_dir, ready, place))

    def _close_finished(self) -> None:
        for cell in list(self._open.values()):
            built = self.outcomes.built.get(cell.artifact.name)
            place = self.places[cell.id]
            done = built is not None and (isinstance(built, Failure) or (
                (not self.evaluate or (cell.artifact.name, place) in self.outcomes.quality)
                and (cell.artifact.name, place, cell.device) in self.outcomes.speed))
            if done:
                del self._open[cell.id]
                self.on_cell(cell, self.outcomes, place)
                self.progress.cell_done(cell.id)
