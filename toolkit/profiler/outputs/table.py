"""Profile documents → (label, value...) rows for the terminal."""

from __future__ import annotations

import statistics
from typing import Callable

Row = tuple[str, ...]


def size(n: float | None) -> str:
    if n is None:
        return "-"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms"


def rate(value: float) -> str:
    return f"{value:.1f} tok/s"


def _stat(stat: dict, show: Callable[[float], str]) -> str:
    return f"{show(stat['median'])} ({show(stat['min'])} .. {show(stat['max'])})"


# One row per figure of --compare: label, how to read it from a document, how to show it.
FIGURES: list[tuple[str, Callable[[dict], float | None], Callable[[float], str]]] = [
    ("TTFT", lambda d: d["summary"]["ttft_s"]["median"], ms),
    ("prefill", lambda d: d["summary"]["prefill_tokens_per_s"]["median"], rate),
    ("decode", lambda d: d["summary"]["decode_tokens_per_s"]["median"], rate),
    ("decode step", lambda d: d["summary"]["decode_step_s"]["median"], ms),
    ("launches / decode step", lambda d: d["launches"]["per_decode_step"], lambda v: f"{v:.0f}"),
    ("peak host RSS", lambda d: d["memory"]["host_peak_bytes"], size),
    ("peak device memory", lambda d: d["memory"]["device_peak_bytes"], size),
    ("weights", lambda d: d["memory"]["weight_bytes"], size),
    ("KV cache", lambda d: d["memory"]["kv_cache_bytes"], size),
    ("roofline share", lambda d: d["roofline"] and d["roofline"]["share"], lambda v: f"{v:.1%}"),
    ("USD / 1M tokens", lambda d: d["cost"] and d["cost"]["usd_per_million_tokens"], lambda v: f"${v:.3f}"),
]


def summary_rows(doc: dict) -> list[Row]:
    s, a = doc["settings"], doc["artifact"]
    rows: list[Row] = [
        ("artifact", f"{a['path']} ({a['kind']})"),
        ("runtime", f"{a['runtime']} on {doc['device']}"),
        ("workload", f"batch {s['batch']}, prompt {s['prompt_len']}, gen {s['gen']}, "
                     f"{s['runs']} runs after {s['warmup_runs']} warm-up"),
        *((label, value) for label, value in a["details"].items()),
        ("TTFT", _stat(doc["summary"]["ttft_s"], ms)),
        ("prefill", _stat(doc["summary"]["prefill_tokens_per_s"], rate)),
        ("decode", _stat(doc["summary"]["decode_tokens_per_s"], rate)),
        ("decode step", _stat(doc["summary"]["decode_step_s"], ms)),
        ("launches / decode step", str(doc["launches"]["per_decode_step"])),
        *((("CPU fallbacks / decode step", str(int(statistics.median(fallbacks)))),)
          if (fallbacks := doc["launches"].get("fallbacks_per_step")) else ()),
        ("peak host RSS", f"{size(doc['memory']['host_peak_bytes'])} "
                          f"(baseline {size(doc['memory']['host_baseline_bytes'])})"),
        ("peak device memory", size(doc["memory"]["device_peak_bytes"])),
        ("weights", f"{size(a['weight_bytes'])} ({size(a['weight_bytes_read_per_token'])} read per decode step)"),
        ("KV cache", f"{size(doc['memory']['kv_cache_bytes'])} at {s['prompt_len'] + s['gen'] - 1} tokens "
                     f"({size(a['kv_bytes_per_token'])} per token)"),
    ]
    roof = doc["roofline"]
    if roof:
        rows.append(("roofline", f"{size(roof['achieved_bytes_per_s'])}/s of {size(roof['bandwidth_bytes_per_s'])}/s "
                                 f"= {roof['share']:.1%} of memory bandwidth"))
    fit = doc["fit"]
    rows.append(("fits " + fit["budget_source"], f"batch <= {fit['max_batch']} at {fit['at_context']} tokens; "
                                                 f"context <= {fit['max_context']} at batch {fit['at_batch']}"))
    if doc["cost"] and doc["cost"]["usd_per_million_tokens"] is not None:
        rows.append(("cost", f"${doc['cost']['usd_per_million_tokens']:.3f} per 1M generated tokens "
                             f"at ${doc['cost']['usd_per_hour']}/h"))
    return rows


def op_rows(doc: dict, top: int = 10) -> list[Row]:
    return [(r["op"], f"{r['count_per_step']:g}", ms(r["total_s"]), f"{r['share']:.1%}") for r in doc["ops"][:top]]


def sweep_rows(doc: dict) -> list[Row]:
    return [(p["axis"], str(p["batch"]), str(p["context"]), rate(p["decode_tokens_per_s"]), ms(p["decode_step_s"]),
             ms(p["ttft_s"]), size(p["host_peak_bytes"]), size(p["kv_cache_bytes"]), "yes" if p["fits"] else "no",
             "-" if p["usd_per_million_tokens"] is None else f"${p['usd_per_million_tokens']:.3f}")
            for p in doc["sweep"]]


def compare_rows(docs: list[dict]) -> list[Row]:
    """Each figure side by side; after the first artifact, value and ratio to the first."""
    rows = []
    for label, read, show in FIGURES:
        values = [read(d) for d in docs]
        if all(v is None for v in values):
            continue
        cells = [label, "-" if values[0] is None else show(values[0])]
        for v in values[1:]:
            ratio = f" ({v / values[0]:.2f}x)" if v is not None and values[0] else ""
            cells.append("-" if v is None else show(v) + ratio)
        rows.append(tuple(cells))
    return rows
