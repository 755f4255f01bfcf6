"""profile(): artifacts in, validated profile documents (and the raw measurements) out."""

from __future__ import annotations

from pathlib import Path

from ..profiles import DeviceProfile
from ..layout import artifact_kind
from .artifacts import preflight
from .bandwidth import device_bandwidth
from .collectors import collector_for
from .document import build_document, host_memory_bytes, this_host
from .runner import Measurement, Settings, measure
from .schema import validate
from .sweeps import Budget
from .worker import Job


def budget_for(profile: DeviceProfile | None) -> Budget:
    if profile is None:
        return Budget(host_memory_bytes(), "host memory")
    return Budget(int(profile.memory.budget_gib * 2**30), f"profile {profile.name}")


def profile(artifacts: list[Path], device: str = "cpu", settings: Settings = Settings(), threads: int | None = None,
            options: dict[str, str] | None = None, device_profile: DeviceProfile | None = None,
            usd_per_hour: float | None = None, isolate: bool = True, progress: bool = True,
            roofline: bool = True) -> tuple[list[dict], list[Measurement]]:
    """Measure each artifact (interleaved when several) and return one schema-valid document each."""
    jobs = []
    for path in artifacts:
        kind = artifact_kind(Path(path))
        collector_for(kind, device)  # fail here, before any child starts, when the device is absent
        integrity = preflight(Path(path), kind)
        jobs.append(Job(Path(path), kind, device, threads, tuple(sorted((options or {}).items())), integrity))
    if usd_per_hour is None and device_profile is not None and device_profile.deploy.usd_per_hour > 0:
        usd_per_hour = device_profile.deploy.usd_per_hour
    measurements = measure(jobs, settings, isolate=isolate, progress=progress)
    host = this_host(device_bandwidth(device) if roofline else None)
    budget = budget_for(device_profile)
    docs = [build_document(m, settings, host, budget, usd_per_hour) for m in measurements]
    for doc in docs:
        validate(doc)
    return docs, measurements
