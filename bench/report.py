"""The results document → results.json and results.md, every row with its ratio to the best anchor.

"Best anchor" is per comparison group (rows that make or run the same kind of artifact) and per
metric: the fastest, or the smallest in time and memory, among the rows that are not qwdeploy's.
A ratio above 1 means more of that metric than the best anchor: good for tokens/s, bad for seconds
and MiB.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

MIB = 2**20
# metric → higher is better
EXPORT_METRICS = {"seconds": False, "peak_rss_mib": False}
RUNTIME_METRICS = {"decode_tps": True, "prefill_tps": True, "ttft_s": False, "peak_rss_mib": False}


def best_anchor(rows: list[dict], metric: str, higher: bool) -> dict | None:
    anchors = [r for r in rows if not r.get("ours") and r.get(metric) is not None and not r.get("skipped")]
    if not anchors:
        return None
    return max(anchors, key=lambda r: r[metric]) if higher else min(anchors, key=lambda r: r[metric])


def add_ratios(rows: list[dict], metrics: dict[str, bool], keys: tuple[str, ...] = ("shape", "group")) -> None:
    """Each row gets `<metric>_vs_best` (its value ÷ the best anchor's in its group) and `best_<metric>`."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(row.get(k) for k in keys), []).append(row)
    for members in groups.values():
        for metric, higher in metrics.items():
            best = best_anchor(members, metric, higher)
            for row in members:
                if best is not None and row.get(metric) is not None and best[metric]:
                    row[f"{metric}_vs_best"] = row[metric] / best[metric]
                    row[f"best_{metric}"] = best["row"]


def _num(value, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and abs(value) < 0.01 and value != 0:
        return f"{value:.1e}"
    return f"{value:,.{digits}f}"


def _ratio(row: dict, metric: str) -> str:
    value = row.get(f"{metric}_vs_best")
    return "-" if value is None else f"{value:.2f}x"


def table(header: list[str], lines: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(cell) for cell in line) + " |" for line in lines]
    return "\n".join(out) + "\n"


def _name(row: dict) -> str:
    return f"**{row['row']}**" if row.get("ours") else row["row"]


def export_table(rows: list[dict]) -> str:
    lines = []
    for r in rows:
        if r.get("skipped"):
            lines.append([r["shape"], r["group"], _name(r), r["skipped"], "", "", "", ""])
            continue
        lines.append([r["shape"], r["group"], _name(r), _num(r["seconds"]), _num(r["peak_rss_mib"], 0),
                      _num(r["size_bytes"] / MIB, 0), _ratio(r, "seconds"), _ratio(r, "peak_rss_mib")])
    return table(["shape", "artifact", "tool", "wall s", "peak RSS MiB", "size MiB", "time ÷ best anchor",
                  "RSS ÷ best anchor"], lines)


def runtime_table(rows: list[dict]) -> str:
    lines = []
    for r in rows:
        if r.get("skipped") and not r.get("samples"):
            lines.append([r["shape"], r["group"], _name(r), r["skipped"]] + [""] * 9)
            continue
        share = r.get("bandwidth_share")
        lines.append([r["shape"], r["group"], _name(r), _num(r.get("bits_per_weight"), 2),
                      _num(r["ttft_s"] * 1000, 0), _num(r["prefill_tps"]), _num(r["decode_tps"]),
                      _num(r["peak_rss_mib"], 0), _num(r["peak_rss_mib"] - r["size_bytes"] / MIB, 0),
                      "-" if share is None else f"{share:.0%}", _ratio(r, "decode_tps"), _ratio(r, "prefill_tps"),
                      _ratio(r, "peak_rss_mib")])
    return table(["shape", "class", "artifact (engine)", "bits/weight", "TTFT ms", "prefill tok/s", "decode tok/s",
                  "peak RSS MiB", "RSS − size MiB", "bandwidth share", "decode ÷ best anchor",
                  "prefill ÷ best anchor", "RSS ÷ best anchor"], lines)


def sweep_table(rows: list[dict]) -> str:
    lines = [[r["shape"], _name(r), r["batch"], r["prompt"], _num(r.get("ttft_s", 0) * 1000, 0),
              _num(r.get("prefill_tps")), _num(r.get("decode_tps")), _num(r.get("peak_rss_mib"), 0),
              r.get("skipped", "")] for r in rows]
    return table(["shape", "artifact", "batch", "prompt", "TTFT ms", "prefill tok/s", "decode tok/s (all sequences)",
                  "peak RSS MiB", "note"], lines)


def graph_table(rows: list[dict]) -> str:
    lines = [[r["shape"], _name(r), _num(r.get("nodes"), 0), _num(r.get("nodes_per_layer"), 0),
              _num(r.get("launches_per_step"), 0), _num(r.get("launches_per_layer"), 1), r.get("skipped", "")]
             for r in rows]
    return table(["shape", "ONNX graph", "nodes", "nodes per decoder layer", "launches per decode step",
                  "launches per layer", "note"], lines)


def fidelity_table(rows: list[dict]) -> str:
    lines = [[r["shape"], r["group"], _name(r), _num(r.get("positions"), 0), _num(r.get("kl_mean"), 4),
              _num(r.get("kl_max"), 3), "-" if r.get("top1") is None else f"{r['top1']:.1%}",
              _ratio(r, "kl_mean"), r.get("skipped", "")] for r in rows]
    return table(["shape", "class", "artifact", "positions", "mean KL (nats)", "max KL", "top-1", "KL ÷ best anchor",
                  "note"], lines)


def trained_table(trained: dict) -> str:
    if trained.get("skipped"):
        return f"Skipped: {trained['skipped']}\n"
    lines = []
    for r in trained["rows"]:
        if r.get("skipped"):
            lines.append([_name(r), r["skipped"], "", "", ""])
            continue
        needle = r.get("needle") or {}
        share = needle.get("share")
        found = "-" if not needle else f"{needle.get('also_passed')}/{needle.get('reference_passed')}"
        lines.append([_name(r), _num(r.get("kl_mean"), 4), "-" if r.get("top1") is None else f"{r['top1']:.1%}",
                      _num(r.get("ppl_ratio"), 4), found if share is None else f"{found} ({share:.0%})"])
        lines[-1][-1] += "".join(f" ({note})" for note in r.get("notes") or [] if note.startswith("scored by"))
    ppl = trained.get("reference_perplexity")
    head = f"`{trained['command']}`; the reference's perplexity: {_num(ppl, 3)}.\n\n"
    skipped = "".join(f"- {name}: {why}\n" for name, why in trained.get("not_run", {}).items())
    return head + table(["artifact", "mean KL", "top-1", "perplexity ÷ reference",
                         "needles the reference finds, found too"], lines) + (f"\nNot exported:\n{skipped}" if skipped else "")


def env_section(doc: dict) -> str:
    parts = []
    for name, env in doc["envs"].items():
        status = f"unavailable: {env['skipped']}" if env.get("skipped") else env.get("folder", "")
        key = ", ".join(f"{k} {v}" for k, v in env.get("key", {}).items())
        every = ", ".join(f"{k} {v}" for k, v in env.get("versions", {}).items())
        parts.append(f"- **{name}** ({status}): {key}\n  <details><summary>every package</summary>{every}</details>")
    return "\n".join(parts) + "\n"


def bandwidth_share(row: dict, bandwidth: float) -> float:
    """Median over the row's runs of decode tok/s × bytes per token ÷ the bandwidth measured just before that
    run (`bandwidth`, the median of the whole bench's samples, where a run has none): a shared VM's memory moves
    between minutes, so each run is held to the bandwidth of its moment, not to a median taken at other times."""
    return statistics.median(s["decode_tps"] * row["bytes_per_token"] / s.get("bandwidth_bps", bandwidth)
                             for s in row["samples"] if s.get("decode_tps"))


def _bandwidth_samples(machine: dict) -> str:
    samples = machine.get("bandwidth_samples_gbs") or [machine["bandwidth_gbs"]]  # older runs measured it once
    if len(samples) == 1:
        return "one measurement"
    return (f"median of {len(samples)} measurements, at the start and before every runtime run, "
            f"{min(samples):.1f} to {max(samples):.1f}")


def _load(machine: dict) -> str:
    load = machine.get("load_average")
    if not load:
        return ""
    return (f"1-minute load average while measuring: {load['min']:.1f} to {load['max']:.1f} (median "
            f"{load['median']:.1f}) on {load['cores']} cores. ")


def markdown(doc: dict) -> str:
    m = doc["machine"]
    core = f", {m['core']}" if m.get("core") else ""  # older runs did not record it
    parts = [f"# qwdeploy against the tools people use today ({doc['created'][:10]}, {m['cpu']}{core})\n",
             f"`{doc['command']}`\n\n{doc['mode'].capitalize()} mode, {doc['duration_s'] / 60:.0f} min. {m['cores']} cores, "
             f"{m['memory_gib']:.0f} GiB, {m['threads']} threads per engine, memory bandwidth "
             f"{m['bandwidth_gbs']:.1f} GB/s (all threads streaming reads; {_bandwidth_samples(m)}). "
             f"{_load(m)}{m.get('note', '')}\n",
             f"Runtime: batch 1, a {doc['settings']['prompt']}-token prompt (different in every run), "
             f"{doc['settings']['gen']} greedy tokens, median of {doc['settings']['rounds']} interleaved runs, each "
             f"in a fresh process after a warm-up. Exports: median of {doc['settings']['export_runs']} interleaved "
             "run(s), whole-process wall time and peak RSS. Ratios: each row ÷ the best anchor (not qwdeploy) of "
             "its group; **bold** rows are qwdeploy's.\n",
             "## Targets\n", "\n".join(f"- {line}" for line in doc["targets"]) + "\n",
             "## Export\n", export_table(doc["exports"]),
             "## Runtime\n", "llama.cpp rows run qwdeploy's GGUF files (the tensor types llama.cpp's converter and "
             "quantizer write): they stand for llama.cpp the engine.\n", runtime_table(doc["runtime"]),
             "Bandwidth share: decode tok/s × bytes of weights read per token (the weight files' size; fp32 "
             "transformers: 4 bytes per parameter) ÷ the bandwidth measured just before the run, median over "
             "the row's runs.\n"]
    if doc.get("batch_sweep"):
        parts += ["## Batch sweep and long prefill (ONNX Runtime, project environment)\n",
                  sweep_table(doc["batch_sweep"] + doc.get("prefill_long", []))]
    parts += ["## ONNX graphs: nodes and launches\n", graph_table(doc["graphs"]),
              "## Fidelity on random weights (against transformers fp32, same ids)\n",
              "Random weights carry quantization noise through every layer undamped, so 4-bit KL is large for "
              "every tool here: compare the rows with each other, and read the trained checkpoint's section for "
              "what the error costs a model that has learned something.\n", fidelity_table(doc["fidelity"]),
              "## Fidelity on the trained demo checkpoint (`qwdeploy eval`)\n", trained_table(doc["trained"]),
              "## Environments\n", f"llama.cpp build: {doc['llama_build']}\n\n", env_section(doc)]
    if doc.get("notes"):
        parts += ["## Notes\n", "\n".join(f"- {n}" for n in doc["notes"]) + "\n"]
    return "\n".join(parts)


def write(doc: dict, out: Path) -> list[Path]:
    from plots import write_plots

    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(doc, indent=1, default=str) + "\n")
    (out / "results.md").write_text(markdown(doc))
    return [out / "results.json", out / "results.md", *write_plots(doc, out)]
