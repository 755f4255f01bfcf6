"""Running the sweep on a Ray cluster whose nodes advertise the devices they are.

A node joins as a target by naming the target's profile as a custom resource
(`ray start --address=HEAD --resources='{"rpi5": 1}'`). Evaluations ask for a sliver of it and may share
the device; a profile asks for all of it, so it runs alone there. Exports go to any node with the Ray
`memory` they need. A task whose node dies is retried by Ray on another node that qualifies; while no
live node qualifies, its cells fail with a line saying so, and the sweep goes on.
"""

from __future__ import annotations

import logging
import platform
import socket
import tempfile
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..engines import one_line
from ..errors import MissingDependencyError, QwdeployError
from ..spec import ModelSpec
from . import steps
from .matrix import ArtifactSpec, CellSpec
from .plan import EvalSettings, Plan, ProfileSettings
from .results import Built, Quality, Speed, Where
from .schedule import EvalJob, ExportJob, Job
from .state import digest, fingerprint
from .transfer import Parcel, arrived, pack, unpack

INSTALL = "--ray needs Ray, which is not installed: pip install 'qwdeploy[ray]'"
EVAL_SHARE = 0.01  # of a device's resource per evaluation; a profile takes 1, the whole device
RETRIES = 1  # a task lost with its node runs once more, on another node that qualifies
# Exporters stream one tensor at a time; the largest, the embedding, is held as float32 while quantized
# (source, float32 copy, quantized blocks), plus the interpreter and libraries.
EXPORT_BASE_BYTES = 1 << 30
CONNECT_TIMEOUT_S = 10


def require_ray():
    try:
        import ray
    except ImportError:
        raise MissingDependencyError(INSTALL) from None
    return ray


def export_memory(spec: ModelSpec) -> int:
    return EXPORT_BASE_BYTES + 3 * 4 * spec.vocab_size * spec.hidden_size


def _here(device: str) -> Where:
    return Where(require_ray().get_runtime_context().get_node_id(), platform.node(), device, stand_in=False)


def export_task(spec: ArtifactSpec, checkpoint: Parcel, shared: Path | None) -> tuple[Built, bytes | None]:
    """On an export node: the artifact's record, and its packed bytes unless it was written to `shared`."""
    with arrived(checkpoint) as folder, tempfile.TemporaryDirectory(prefix="qwdeploy-sweep-") as scratch:
        out = shared if shared is not None else Path(scratch)
        built = steps.export(replace(spec, checkpoint_dir=folder), out)
        return built, None if shared is not None else pack(out / spec.name)


def eval_task(checkpoint: Parcel, artifacts: tuple[Parcel, ...], settings: EvalSettings,
              text: bytes | None) -> dict[str, Quality | steps.Failure]:
    with ExitStack() as stack:
        folder = stack.enter_context(arrived(checkpoint))
        paths = {parcel.name: stack.enter_context(arrived(parcel)) for parcel in artifacts}
        if text is not None:  # the plan's text file lies on the driver
            scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="qwdeploy-sweep-")))
            (scratch / "text.txt").write_bytes(text)
            settings = replace(settings, text=scratch / "text.txt")
        return steps.evaluate(folder, paths, settings, _here(steps.EVAL_DEVICE))


def profile_task(artifact: Parcel, device: str, settings: ProfileSettings) -> Speed:
    with arrived(artifact) as path:
        return steps.measure(path, device, settings, _here(device))


class ClusterRunner:
    mode = "ray"

    def __init__(self, plan: Plan, folder: Path, address: str, specs: dict[str, ModelSpec]):
        self.ray = require_ray()
        self.plan, self.folder, self.address, self.specs = plan, folder, address, specs
        _check_reachable(address)
        try:
            self.ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        except Exception as exc:  # ConnectionError, ValueError for a malformed address, and Ray's own
            raise QwdeployError(f"--ray {address}: cannot join the cluster ({one_line(exc)})") from None
        self._tasks = {name: self.ray.remote(fn) for name, fn in
                       (("export", export_task), ("eval", eval_task), ("profile", profile_task))}
        self._parcels: dict[str, Parcel] = {}  # artifact name → how it travels
        self._adopted: dict[str, str] = {}  # artifact name → sha256, for those an earlier run left
        self._checkpoints: dict[Path, Parcel] = {}
        self._pending: dict[Any, tuple[Job, dict[str, float], Any]] = {}  # ref → (job, resources, blob ref)
        self._refused: list[tuple[Job, Any]] = []
        self._text = plan.eval.text.read_bytes() if plan.eval.text is not None else None

    def place(self, cell: CellSpec) -> str:
        return cell.profile.name

    def adopt(self, built: Built) -> None:
        self._adopted[built.name] = built.sha256  # packed when a task first needs it, where errors are caught

    def _artifact(self, name: str) -> Parcel:
        if name not in self._parcels:
            self._parcels[name] = self._parcel(self.folder / name, self._adopted[name])
        return self._parcels[name]

    def _parcel(self, path: Path, check: str) -> Parcel:
        if self.plan.cluster.shared is not None:
            return Parcel(path.name, check, path=path)
        return Parcel(path.name, check, blob=self.ray.put(pack(path)))

    def _checkpoint(self, folder: Path) -> Parcel:
        if folder not in self._checkpoints:
            shared = self.plan.cluster.shared is not None
            self._checkpoints[folder] = (Parcel(folder.name, fingerprint(folder), path=folder, light=True) if shared
                                         else self._parcel(folder, digest(folder)))
        return self._checkpoints[folder]

    def submit(self, job: Job) -> None:
        try:
            ref, need, blob = self._start(job)
        except Exception as exc:  # a checkpoint the driver cannot read, or an object store too small for it
            self._refused.append((job, steps.failure(exc)))
            return
        self._pending[ref] = (job, need, blob)

    def _start(self, job: Job) -> tuple[Any, dict[str, float], Any]:
        """(the ref that answers, the resources the task holds, the packed artifact's ref for an export)."""
        if isinstance(job, ExportJob):
            need = {"CPU": 1, "memory": export_memory(self.specs[job.artifact.checkpoint])}
            task = self._tasks["export"].options(num_cpus=1, memory=need["memory"], num_returns=2,
                                                 max_retries=RETRIES)
            meta, blob = task.remote(job.artifact, self._checkpoint(job.artifact.checkpoint_dir),
                                     self.plan.cluster.shared)
            return meta, need, blob
        share = EVAL_SHARE if isinstance(job, EvalJob) else 1
        task = self._tasks["eval" if isinstance(job, EvalJob) else "profile"].options(
            num_cpus=1, resources={job.place: share}, max_retries=RETRIES)
        if isinstance(job, EvalJob):
            ref = task.remote(self._checkpoint(job.checkpoint_dir),
                              tuple(self._artifact(a.name) for a in job.artifacts), self.plan.eval, self._text)
        else:
            ref = task.remote(self._artifact(job.artifact.name), job.device, self.plan.profile)
        return ref, {"CPU": 1, job.place: share}, None

    def collect(self, timeout: float) -> list[tuple[Job, Any]]:
        finished, self._refused = self._refused, []
        if self._pending:
            ready, _ = self.ray.wait(list(self._pending), num_returns=1, timeout=timeout)
            if ready:
                ready, _ = self.ray.wait(list(self._pending), num_returns=len(self._pending), timeout=0)
            finished += [self._outcome(ref) for ref in ready]
        return finished + self._unplaceable()

    def _outcome(self, ref: Any) -> tuple[Job, Any]:
        job, _, blob = self._pending.pop(ref)
        try:
            outcome = self.ray.get(ref)
            if isinstance(job, ExportJob):
                outcome = self._arrived(job, outcome, blob)
        except Exception as exc:  # the task's own error (Ray wraps it), or its node's loss
            outcome = steps.failure(getattr(exc, "cause", None) or exc)
        return job, outcome

    def _arrived(self, job: ExportJob, built: Built, blob: Any) -> Built:
        """The driver keeps a checked copy in the artifacts folder (what a rerun reuses); others fetch the blob."""
        if self.plan.cluster.shared is None:
            unpack(self.ray.get(blob), self.folder, built.name, built.sha256)
            self._parcels[built.name] = Parcel(built.name, built.sha256, blob=blob)
        else:
            self._parcels[built.name] = Parcel(built.name, built.sha256, path=self.folder / built.name)
        return built

    def _unplaceable(self) -> list[tuple[Job, Any]]:
        """Jobs no live node can take (the one that could left, or none ever could): failed, not waited on."""
        nodes = [n["Resources"] for n in self.ray.nodes() if n["Alive"]]
        lost = []
        for ref, (job, need, _) in list(self._pending.items()):
            if any(all(node.get(key, 0) >= amount for key, amount in need.items()) for node in nodes):
                continue
            try:
                self.ray.cancel(ref, force=True)
            except Exception:  # already gone with its node: nothing left to cancel
                pass
            del self._pending[ref]
            lost.append((job, steps.Failure(_why_unplaceable(job, need, self.address))))
        return lost

    def close(self) -> None:
        self.ray.shutdown()


def _check_reachable(address: str) -> None:
    """Fail in seconds on a HOST:PORT nothing listens at (ray.init retries for minutes); "auto" and ray://
    addresses are Ray's to resolve."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or "://" in address:
        return
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise QwdeployError(f"--ray {address}: nothing answers there ({exc.strerror or exc}); give the head node's "
                            "address as `ray start --head` printed it") from None


def _why_unplaceable(job: Job, need: dict[str, float], address: str) -> str:
    if isinstance(job, ExportJob):
        return (f"no live node has the {need['memory'] / 2**30:.1f} GiB of Ray memory and 1 CPU this export needs")
    return (f"no live node advertises '{job.place}' (a node that did left the cluster, or none joined); start one "
            f"on that device with: ray start --address={address} --resources='{{\"{job.place}\": 1}}'")
