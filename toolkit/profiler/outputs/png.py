"""Profile documents → a PNG: per-op time share, per-token decode latency, and sweep curves."""

from __future__ import annotations

from pathlib import Path

from ...errors import MissingDependencyError

TOP_OPS = 12


def pyplot():
    try:
        import matplotlib
    except ImportError:
        raise MissingDependencyError("writing the PNG needs matplotlib: pip install 'qwdeploy[profile]'") from None
    matplotlib.use("Agg")  # files only; never open a window
    import matplotlib.pyplot as plt

    return plt


def write_png(doc: dict, path: Path) -> None:
    plt = pyplot()
    sweeps = sorted({p["axis"] for p in doc["sweep"]})
    fig, axes = plt.subplots(1, 2 + len(sweeps), figsize=(6 * (2 + len(sweeps)), 4.5), squeeze=False)
    ops, latency, *sweep_axes = axes[0]
    top = doc["ops"][:TOP_OPS][::-1]
    ops.barh([r["op"] for r in top], [r["share"] * 100 for r in top], color="#4c72b0")
    ops.set_xlabel("share of decode kernel time (%)")
    ops.set_title(f"ops per decode step ({doc['launches']['per_decode_step']} launches)")
    for i, run in enumerate(doc["runs"]):
        latency.plot([s * 1e3 for s in run["decode_step_s"]], label=f"run {i + 1}", linewidth=1)
    latency.set_xlabel("decode step")
    latency.set_ylabel("latency (ms)")
    latency.set_title("per-token decode latency")
    latency.legend(fontsize="small")
    for ax, axis in zip(sweep_axes, sweeps):
        points = [p for p in doc["sweep"] if p["axis"] == axis]
        xs = [p[axis] for p in points]
        ax.plot(xs, [p["decode_tokens_per_s"] for p in points], "o-", color="#4c72b0")
        ax.set_xlabel(axis)
        ax.set_ylabel("decode tokens/s", color="#4c72b0")
        memory = ax.twinx()
        memory.plot(xs, [p["host_peak_bytes"] / 2**20 for p in points], "s--", color="#dd8452")
        memory.set_ylabel("peak host RSS (MiB)", color="#dd8452")
        ax.set_title(f"{axis} sweep")
    fig.suptitle(f"{Path(doc['artifact']['path']).name} on {doc['device']} ({doc['artifact']['runtime']})",
                 fontsize="medium")
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)
