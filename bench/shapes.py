"""The model shapes the bench measures: Qwen configs with seeded random weights and the real tokenizer.

0.5B and 0.6B are the demo builder's "small" presets; 1.5B, 3B and 7B take Qwen2.5's published
configs. Checkpoints are written in a child process (`python bench/shapes.py NAME OUT`), so the
measuring parent never grows: Linux carries a parent's peak RSS into its children's ru_maxrss.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from common import QWDEPLOY

QWEN25 = dict(rope_theta=1000000.0, max_position_embeddings=32768, max_window_layers=28)


@dataclass(frozen=True)
class Shape:
    name: str
    arch: str  # the demo builder's family
    size: str  # the demo preset the config starts from
    overrides: tuple[tuple[str, object], ...] = ()

    def config(self) -> dict:
        from qwdeploy.toolkit.demo import demo_config

        return {**demo_config(self.arch, self.size), **dict(self.overrides)}

    def parameters(self) -> int:
        from qwdeploy.toolkit.spec import spec_from_config
        from qwdeploy.toolkit.tensors import parameter_count

        return parameter_count(spec_from_config(self.config()))


def _qwen25(hidden: int, intermediate: int, layers: int, heads: int, kv: int, tied: bool, vocab: int = 151936):
    return tuple({**QWEN25, "hidden_size": hidden, "intermediate_size": intermediate, "num_hidden_layers": layers,
                  "num_attention_heads": heads, "num_key_value_heads": kv, "tie_word_embeddings": tied,
                  "vocab_size": vocab}.items())


SHAPES = {shape.name: shape for shape in (
    Shape("qwen2.5-0.5b", "qwen2", "small"),
    Shape("qwen3-0.6b", "qwen3", "small"),
    Shape("qwen2.5-1.5b", "qwen2", "small", _qwen25(1536, 8960, 28, 12, 2, True)),
    Shape("qwen2.5-3b", "qwen2", "small", _qwen25(2048, 11008, 36, 16, 2, True)),
    Shape("qwen2.5-7b", "qwen2", "small", _qwen25(3584, 18944, 28, 28, 4, False, vocab=152064)),
)}
SCALE = ("qwen2.5-0.5b", "qwen2.5-1.5b", "qwen2.5-3b", "qwen2.5-7b")
TRAINED = "trained-qwen2"


def parse(names: str) -> list[Shape]:
    shapes = []
    for name in filter(None, (n.strip() for n in names.split(","))):
        if name not in SHAPES:
            raise SystemExit(f"unknown shape '{name}'; known: {', '.join(SHAPES)}")
        shapes.append(SHAPES[name])
    return shapes


def write(shape: Shape, out: Path) -> None:
    """The checkpoint itself (runs in the child): the demo builder's metadata and streamed weights."""
    from qwdeploy.toolkit.atomic import atomic_directory
    from qwdeploy.toolkit.demo import write_metadata, write_weights
    from qwdeploy.toolkit.spec import spec_from_config

    config = shape.config()
    with atomic_directory(out, force=True) as tmp:
        write_metadata(tmp, config)
        write_weights(tmp, spec_from_config(config), config["torch_dtype"], seed=0, max_shard_bytes=2 * 1024**3)


def checkpoint(shape: Shape, work: Path) -> Path:
    """The shape's checkpoint under `work`, built once in a child process."""
    out = work / "checkpoints" / shape.name
    if not (out / "config.json").is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, __file__, shape.name, str(out)], check=True)
    return out


def trained_checkpoint(work: Path) -> Path:
    """The trained demo checkpoint (qwen2), trained once in a child process and kept under `work`."""
    out = work / "checkpoints" / TRAINED
    if not (out / "config.json").is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([QWDEPLOY, "demo-checkpoint", str(out), "--arch", "qwen2", "--trained", "--force"],
                       check=True, stdout=subprocess.DEVNULL)
    return out


def spec_parameters(checkpoint: Path) -> int:
    from qwdeploy.toolkit.checkpoint import open_checkpoint
    from qwdeploy.toolkit.tensors import parameter_count

    return parameter_count(open_checkpoint(checkpoint).spec)


if __name__ == "__main__":
    write(SHAPES[sys.argv[1]], Path(sys.argv[2]))
