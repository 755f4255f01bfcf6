"""Fidelity: logit agreement with fp32 transformers on the random-weight shapes, and `qwdeploy eval`
(perplexity ratio, needle grid) on the trained demo checkpoint.

Each artifact's logits come from its own child process (bench/child.py) into a .npy file; the
comparison reads both files a few positions at a time, so the measuring parent stays small (a
parent's peak RSS carries into its children's through fork and exec).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from common import QWDEPLOY
from runtime import Target, run_child

POSITIONS = 128
CHUNK = 8  # positions compared at once: 8 x 151,936 x float64 is ~10 MB


def scored_ids(positions: int = POSITIONS) -> list[int]:
    return np.random.default_rng(4242).integers(0, 100_000, size=positions).tolist()


def dump_logits(engine: str, artifact: Path, python: str, out: Path, timeout: float,
                ids: list[int] | None = None) -> Path:
    job = {"engine": engine, "path": str(artifact), "runs": [], "logits": {"ids": ids or scored_ids(), "out": str(out)}}
    run_child(python, job, timeout)
    return out


def _chunks(path: Path, rows: int):
    """The .npy file's [S, V] logits, `rows` positions at a time, read (not memory-mapped: mapped pages count
    in this process's RSS, and so in every later child's ru_maxrss)."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(f)
        for start in range(0, shape[0], rows):
            count = min(rows, shape[0] - start)
            yield np.fromfile(f, dtype, count=count * shape[1]).reshape(count, shape[1])  # [rows, V]


def agreement(reference: Path, candidate: Path, ids: list[int] | None = None) -> dict:
    """Mean KL(reference || candidate) and top-1 agreement over every position, chunk by chunk; with the ids
    the logits were computed on, also the perplexity ratio (candidate ÷ reference) of each next id."""
    from qwdeploy.toolkit.eval.perplexity import token_nll
    from qwdeploy.toolkit.metrics import per_position

    kl, top1, nll_ref, nll_cand = [], [], [], []
    for i, (ref, cand) in enumerate(zip(_chunks(reference, CHUNK), _chunks(candidate, CHUNK), strict=True)):
        part = per_position(ref, cand)
        kl.append(part.kl)
        top1.append(part.top1)
        if ids is not None:
            targets = ids[i * CHUNK + 1:i * CHUNK + 1 + len(ref)]  # the last position predicts nothing scored
            nll_ref.append(token_nll(ref, targets))
            nll_cand.append(token_nll(cand, targets))
    kls, tops = np.concatenate(kl), np.concatenate(top1)
    out = {"positions": int(len(kls)), "kl_mean": float(kls.mean()), "kl_max": float(kls.max()),
           "top1": float(tops.mean())}
    if ids is not None:
        out["ppl_ratio"] = float(np.exp(np.concatenate(nll_cand).mean() - np.concatenate(nll_ref).mean()))
    return out


def random_weights(targets: list[Target], checkpoint: Path, python: str, timeout: float, say=print) -> list[dict]:
    """Every target's agreement with transformers fp32 on the same ids; failures become rows that say why."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="qwdeploy-bench-logits-") as tmp:
        say("  fidelity: transformers fp32 reference logits")
        reference = dump_logits("transformers", checkpoint, python, Path(tmp) / "reference.npy", timeout)
        for target in targets:
            row = {"row": target.row.name, "shape": target.shape, "group": target.row.group, "ours": target.row.ours,
                   "size_bytes": target.size_bytes}
            if target.row.engine == "transformers":
                continue  # the reference itself
            engine = target.row.logits_engine or target.row.engine
            say(f"  fidelity: {target.row.name}")
            out = Path(tmp) / "candidate.npy"
            try:
                python_for = python if target.row.logits_engine else target.python
                row.update(agreement(reference, dump_logits(engine, target.artifact, python_for, out, timeout)))
            except (RuntimeError, OSError, ValueError) as exc:
                row["skipped"] = f"failed: {exc}"
            out.unlink(missing_ok=True)
            rows.append(row)
    return rows


def _trained_row(name: str, row: dict) -> dict:
    agreement, ppl = row.get("agreement") or {}, row.get("perplexity") or {}
    return {"row": name, "ours": name.startswith("qwdeploy"), "kl_mean": agreement.get("kl_mean"),
            "top1": agreement.get("top1"), "positions": row.get("positions"), "ppl_ratio": ppl.get("ratio"),
            "needle": row.get("needle"), "notes": row.get("notes")}


def _fallback(name: str, path: Path, checkpoint: Path, quick: bool, timeout: float, reason: str) -> dict:
    row = {"row": name, "ours": name.startswith("qwdeploy")}
    if not (path / "model.onnx").is_file():
        return {**row, "skipped": reason}
    try:
        scores = own_scores(checkpoint, path, quick, timeout)
    except (RuntimeError, OSError, ValueError) as exc:
        return {**row, "skipped": f"{reason}; the bench's own ONNX Runtime loop failed too: {exc}"}
    return {**row, **scores, "notes": [f"scored by the bench's ONNX Runtime loop on eval's text, no needle grid: "
                                       f"{reason}"]}


def eval_options(quick: bool) -> list[str]:
    contexts, positions = ("512,1k", 512) if quick else ("512,1k,2k", 2048)
    return ["--positions", str(positions), "--needle", "--contexts", contexts, "--depths", "3" if quick else "5"]


def text_ids(checkpoint: Path, positions: int) -> list[int]:
    """The first `positions` tokens of the text `qwdeploy eval` scores by default (the trained model's text)."""
    from tokenizers import Tokenizer

    from qwdeploy.toolkit.eval.text import load_text

    return Tokenizer.from_file(str(checkpoint / "tokenizer.json")).encode(load_text(None).content).ids[:positions]


def own_scores(checkpoint: Path, artifact: Path, quick: bool, timeout: float) -> dict:
    """KL, top-1 and perplexity ratio on eval's text through the bench's own ONNX Runtime loop, for an ONNX
    folder `qwdeploy eval` cannot run; no needle grid."""
    ids = text_ids(checkpoint, 512 if quick else 2048)
    with tempfile.TemporaryDirectory(prefix="qwdeploy-bench-logits-") as tmp:
        reference = dump_logits("transformers", checkpoint, sys.executable, Path(tmp) / "ref.npy", timeout, ids)
        candidate = dump_logits("ort", artifact, sys.executable, Path(tmp) / "cand.npy", timeout, ids)
        return agreement(reference, candidate, ids)


def trained(checkpoint: Path, artifacts: dict[str, Path], out: Path, quick: bool, timeout: float,
            say=print) -> dict:
    """`qwdeploy eval` of each of the trained checkpoint's artifacts on its own (one that eval cannot run
    fails alone): a row per artifact, named as the bench names it, and eval's own folder per artifact."""
    rows, reference = [], None
    for i, (name, path) in enumerate(artifacts.items()):
        say(f"  qwdeploy eval: {name}")
        folder = out / f"{i}-{path.name}"
        cmd = [QWDEPLOY, "eval", str(path), "--reference", str(checkpoint), *eval_options(quick), "--out",
               str(folder), "--force"]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            rows.append({"row": name, "ours": name.startswith("qwdeploy"), "skipped": f"timed out after {timeout} s"})
            continue
        if done.returncode not in (0, 5):  # 5: a gate failed, and no gates are set
            reason = f"qwdeploy eval exit {done.returncode}: {(done.stderr.strip().splitlines() or ['?'])[-1][-300:]}"
            rows.append(_fallback(name, path, checkpoint, quick, timeout, reason))
            continue
        document = json.loads((folder / "eval.json").read_text())
        reference = (document.get("reference") or {}).get("perplexity")
        rows += [_trained_row(name, row) for row in document.get("artifacts", [])]
    return {"command": "qwdeploy eval ARTIFACT --reference TRAINED " + " ".join(eval_options(quick)),
            "reference_perplexity": reference, "eval_dir": out.name, "rows": rows}
