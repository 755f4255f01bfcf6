"""The PNGs: decode tokens/s per artifact, export peak RSS against model size, fidelity against size."""

from __future__ import annotations

from pathlib import Path

OURS, ANCHOR = "#1f6feb", "#8b949e"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def decode_png(doc: dict, out: Path) -> Path | None:
    rows = [r for r in doc["runtime"] if r.get("decode_tps")]
    if not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.5))
    labels = [f"{r['row']} [{r['shape']}]" for r in rows]
    ax.barh(labels, [r["decode_tps"] for r in rows], color=[OURS if r["ours"] else ANCHOR for r in rows])
    for i, r in enumerate(rows):
        ax.text(r["decode_tps"], i, f" {r['decode_tps']:.1f}", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"decode tokens/s (batch 1, {doc['machine']['threads']} threads; median)")
    ax.set_title(f"Decode speed — {doc['machine']['cpu']} (blue: qwdeploy)", fontsize=10)
    return _save(plt, fig, out / "decode.png")


def _by_row(rows: list[dict], x: str, y: str) -> dict[str, tuple[list, list, bool]]:
    series: dict[str, tuple[list, list, bool]] = {}
    for r in rows:
        if r.get(y) is None or r.get("skipped"):
            continue
        xs, ys, _ = series.setdefault(r["row"], ([], [], bool(r.get("ours"))))
        xs.append(r[x] / 1e9)
        ys.append(r[y])
    return series


def _lines(doc: dict, rows: list[dict], y: str, ylabel: str, title: str, path: Path, log: bool) -> Path | None:
    series = _by_row(rows, "parameters", y)
    if not series:
        return None
    if len({x for xs, _, _ in series.values() for x in xs}) == 1:
        return _bars(doc, series, ylabel, title, path)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for name, (xs, ys, ours) in sorted(series.items()):
        ax.plot(xs, ys, marker="o", linewidth=2.5 if ours else 1.2, label=name,
                linestyle="-" if ours else "--")
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("parameters (billions)")
    ax.set_ylabel(ylabel)
    ax.set_title(f"{title} — {doc['machine']['cpu']}", fontsize=10)
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)
    return _save(plt, fig, path)


def _bars(doc: dict, series: dict, label: str, title: str, path: Path) -> Path:
    """One model size: a bar per row (from zero, linear) instead of a line of one point."""
    plt = _pyplot()
    names = list(series)
    values = [series[n][1][0] for n in names]
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(names) + 1.5))
    ax.barh(names, values, color=[OURS if series[n][2] else ANCHOR for n in names])
    for i, value in enumerate(values):
        ax.text(value, i, f" {value:,.0f}" if value >= 10 else f" {value:.3g}", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(label)
    size = series[names[0]][0][0]
    ax.set_title(f"{title}: one size, {size:.2f}B parameters\n{doc['machine']['cpu']} (blue: qwdeploy)", fontsize=10)
    return _save(plt, fig, path)


def _save(plt, fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_plots(doc: dict, out: Path) -> list[Path]:
    written = [
        decode_png(doc, out),
        _lines(doc, doc["exports"], "peak_rss_mib", "export peak RSS (MiB)", "Export peak memory vs model size",
               out / "export_rss.png", log=True),
        _lines(doc, doc["fidelity"], "kl_mean", "mean KL vs transformers fp32 (nats)", "Fidelity vs model size",
               out / "fidelity.png", log=True),
    ]
    return [p for p in written if p is not None]
