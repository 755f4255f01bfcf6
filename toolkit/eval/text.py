"""The text perplexity and agreement are measured on: --text FILE, or the built-in one (no download)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import QwdeployError
from ..files import read_regular

MAX_TEXT_BYTES = 64 * 1024 * 1024
BUILT_IN = "built-in"


@dataclass(frozen=True)
class Text:
    source: str  # the file's path, or BUILT_IN
    content: str


def _default_text() -> str:
    # The trained demo checkpoint models this text, so its perplexity means something.
    from ..training import default_text

    return default_text()


def load_text(path: Path | None) -> Text:
    if path is None:
        return Text(BUILT_IN, _default_text())
    try:
        content = read_regular(path, MAX_TEXT_BYTES, QwdeployError).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise QwdeployError(f"--text must be UTF-8 (byte {exc.start} is not)", path) from None
    return Text(str(path), content)
