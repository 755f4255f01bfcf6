"""Host memory high-water marks of this process (Linux /proc), resettable between measurements."""

from __future__ import annotations

import re
from pathlib import Path

STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kib(field: str) -> int | None:
    try:
        match = re.search(rf"^{field}:\s+(\d+) kB", STATUS.read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) if match else None


def rss_bytes() -> int:
    kib = _status_kib("VmRSS")
    if kib is None:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return kib * 1024


def reset_peak() -> bool:
    """Start a new high-water mark at the current RSS ("5" to clear_refs); False where unsupported."""
    try:
        CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def peak_rss_bytes() -> int:
    """VmHWM: the most RSS this process held since it started or since the last reset_peak()."""
    kib = _status_kib("VmHWM")
    return kib * 1024 if kib is not None else rss_bytes()
