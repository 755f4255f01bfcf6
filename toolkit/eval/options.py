"""What an evaluation is asked to do: typed options, parsed from the command line's strings here."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import QwdeployError

DEFAULT_POSITIONS = 2048
DEFAULT_CONTEXTS = "1k,4k,16k"
DEFAULT_DEPTHS = 5
SIZE_SUFFIX = {"": 1, "k": 1024}


@dataclass(frozen=True)
class NeedleOptions:
    contexts: tuple[int, ...]  # prompt + answer tokens of each row of the grid
    depths: int  # columns: needle positions spread evenly from the start of the filler to its end
    seed: int = 0  # picks the filler and the keys


@dataclass(frozen=True)
class Gates:
    max_kl: float | None = None  # mean KL(reference || artifact) over every scored position, nats
    max_ppl_ratio: float | None = None  # artifact perplexity / the reference's on the same tokens
    min_needle: float | None = None  # share of the cells the reference retrieves that the artifact retrieves too


@dataclass(frozen=True)
class EvalOptions:
    artifacts: tuple[Path, ...]
    reference: Path | None = None  # None: the first checkpoint among the artifacts
    text: Path | None = None  # None: the built-in text
    positions: int = DEFAULT_POSITIONS  # scored per artifact, capped by the text and the artifact's context
    needle: NeedleOptions | None = None
    profiles: tuple[Path, ...] = ()  # profile.json documents of `qwdeploy profile`, for tokens/s
    gates: Gates = field(default_factory=Gates)
    progress: bool = True


def parse_contexts(value: str) -> tuple[int, ...]:
    """'1k,4k,16k' → (1024, 4096, 16384); plain integers are token counts."""
    contexts = []
    for part in value.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*([kK]?)\s*", part)
        if not match or int(match[1]) == 0:
            raise QwdeployError(f"--contexts takes comma-separated token counts such as 1k,4k,16k or 512; "
                                f"got '{value}'")
        contexts.append(int(match[1]) * SIZE_SUFFIX[match[2].lower()])
    return tuple(sorted(set(contexts)))


def check_gates(gates: Gates, needle: NeedleOptions | None) -> None:
    for name, limit in (("--max-kl", gates.max_kl), ("--max-ppl-ratio", gates.max_ppl_ratio),
                        ("--min-needle", gates.min_needle)):
        if limit is not None and (not math.isfinite(limit) or limit < 0):
            raise QwdeployError(f"{name} must be a finite number >= 0, not {limit}")
    if gates.min_needle is not None and needle is None:
        raise QwdeployError("--min-needle gates the needle grid: add --needle")
    if gates.min_needle is not None and gates.min_needle > 1:
        raise QwdeployError(f"--min-needle is a share between 0 and 1, not {gates.min_needle}")
