"""Text generation from an exported artifact: its own tokenizer, its engine, greedy or seeded sampling.

An ONNX folder runs on ONNX Runtime through OrtSession and is tokenized with the `tokenizers`
library from the folder's tokenizer.json; a GGUF file runs on llama.cpp through LlamaSession and
is tokenized by llama.cpp from the vocabulary inside the file. Both engines sit behind the same
two calls (prefill, step), so the loop, the sampling and the streaming are written once.

`stream_isolated` runs it all in a spawned child and pipes the text back: a fault in a native
engine then ends the child, not the CLI, and becomes one line.
"""

from __future__ import annotations

import ctypes
import math
import multiprocessing
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Protocol

import numpy as np

from ..engines import death_message, one_line, quiet_native_output
from ..errors import ArtifactError, EngineError, MissingDependencyError, QwdeployError
from ..files import read_json_object
from ..layout import GENERATION_CONFIG
from ..profiler.artifacts import ENGINES
from ..profiler.collectors import collector_for

TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
REPLACEMENT = "\ufffd"  # what a decoder prints for the first bytes of a character not yet complete


@dataclass(frozen=True)
class Request:
    artifact: Path
    kind: str  # layout.artifact_kind: "onnx" or "gguf"
    device: str
    prompt: str
    chat: bool
    max_tokens: int
    temperature: float
    seed: int | None


@dataclass(frozen=True)
class Stats:
    prompt_tokens: int
    generated: int
    ttft_s: float  # prefill and the first token
    tokens_per_s: float | None  # the tokens after the first over the time after the first; None for one token


class Tokenizer(Protocol):
    chat_template: str | None
    eos: frozenset[int]

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...


class Engine(Protocol):
    context_length: int | None

    def reserve(self, tokens: int) -> None: ...  # room for the prompt and every token to come

    def prefill(self, ids: list[int]) -> np.ndarray: ...  # logits [vocab] after the last prompt token

    def step(self, token: int) -> np.ndarray: ...  # logits [vocab] after `token`

    def close(self) -> None: ...


def render_chat(template: str, prompt: str) -> str:
    """The prompt as one user turn, ready for the assistant's reply, the way transformers renders it."""
    import jinja2.sandbox

    # Templates come with the artifact: sandboxed, as transformers does.
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    try:
        return env.from_string(template).render(messages=[{"role": "user", "content": prompt}],
                                                add_generation_prompt=True)
    except jinja2.TemplateError as exc:
        raise ArtifactError(f"the chat template does not render: {one_line(exc)}") from None


class OnnxTokenizer:
    """tokenizer.json with the chat template and stop ids an exported ONNX folder carries."""

    def __init__(self, folder: Path):
        try:
            from tokenizers import Tokenizer as HFTokenizer
        except ImportError:
            raise MissingDependencyError("running ONNX needs tokenizers: pip install 'qwdeploy[onnx]'") from None
        path = folder / TOKENIZER_FILE
        if not path.is_file():
            raise ArtifactError(f"{TOKENIZER_FILE} is missing; export the folder again", folder)
        self._tokenizer = HFTokenizer.from_file(str(path))
        config = self._json(folder / TOKENIZER_CONFIG)
        template = config.get("chat_template")
        self.chat_template = template if isinstance(template, str) else None
        eos = self._json(folder / GENERATION_CONFIG).get("eos_token_id")
        ids = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
        # The template's turn end stops a chat reply even where generation_config.json omits it.
        named = config.get("eos_token")
        named = named.get("content") if isinstance(named, dict) else named
        if isinstance(named, str) and self._tokenizer.token_to_id(named) is not None:
            ids.add(self._tokenizer.token_to_id(named))
        self.eos = frozenset(i for i in ids if isinstance(i, int))

    @staticmethod
    def _json(path: Path) -> dict:
        return read_json_object(path, path.name, ArtifactError) if path.is_file() else {}

    def encode(self, text: str) -> list[int]:
        return self._tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self._tokenizer.decode(ids, skip_special_tokens=True)


class LlamaTokenizer:
    """The vocabulary inside a GGUF file, through llama.cpp's tokenizer."""

    def __init__(self, lib, model):
        self._lib, self._vocab = lib, lib.llama_model_get_vocab(model)
        template = lib.llama_model_chat_template(model, None)
        self.chat_template = template.decode(errors="replace") if template else None
        size = lib.llama_vocab_n_tokens(self._vocab)
        self.eos = frozenset(i for i in range(size) if lib.llama_vocab_is_eog(self._vocab, i))

    def encode(self, text: str) -> list[int]:
        data = text.encode()
        room = len(data) + 8
        tokens = (self._lib.llama_token * room)()
        # add_special follows the file's own add_bos flag; parse_special reads <|im_start|> as one token.
        n = self._lib.llama_tokenize(self._vocab, data, len(data), tokens, room, True, True)
        return list(tokens[:n])

    def decode(self, ids: list[int]) -> str:
        tokens = (self._lib.llama_token * len(ids))(*ids)
        room = 16 * len(ids) + 16
        while True:
            buffer = ctypes.create_string_buffer(room)
            n = self._lib.llama_detokenize(self._vocab, tokens, len(ids), buffer, room, True, False)
            if n >= 0:
                return buffer.raw[:n].decode(errors="replace")
            room = -n  # llama.cpp answers how much room it needed


class OrtEngine:
    def __init__(self, folder: Path, device: str):
        from .ort.session import PREFILL_CHUNK

        self._chunk = PREFILL_CHUNK
        self._session = collector_for("onnx", device).open(folder, None, {})
        self._cache = self._session.new_cache(1)
        self.context_length = self._session.info.context_length

    def reserve(self, tokens: int) -> None:
        pass  # the cache grows with each call, or is the static graph's fixed size (checked against context_length)

    def _forward(self, ids: list[int]) -> np.ndarray:
        logits = self._session.forward(self._session.session, np.array([ids], dtype=np.int64), self._cache)
        return logits[0, -1].astype(np.float32)

    def prefill(self, ids: list[int]) -> np.ndarray:
        for start in range(0, len(ids), self._chunk):
            logits = self._forward(ids[start:start + self._chunk])
        return logits

    def step(self, token: int) -> np.ndarray:
        return self._forward([token])

    def close(self) -> None:
        self._session.close()


class LlamaEngine:
    def __init__(self, path: Path, device: str):
        self._session = collector_for("gguf", device).open(path, None, {})
        self.lib, self.model = self._session.lib, self._session.model
        self.context_length = self._session.info.context_length
        self._ctx = self._batch = None
        self._n_batch = 0
        self._position = 0

    def reserve(self, tokens: int) -> None:
        """A context for `tokens` positions; called once the prompt and the budget are known."""
        self._ctx, self._n_batch = self._session.new_context(1, tokens)
        self._batch = self.lib.llama_batch_init(self._n_batch, 0, 1)

    def _forward(self, ids: list[int]) -> np.ndarray:
        self._session.decode(self._ctx, self._batch, np.array([ids], dtype=np.int64), self._position, True)
        self._position += len(ids)
        row = self.lib.llama_get_logits_ith(self._ctx, len(ids) - 1)
        return np.ctypeslib.as_array(row, shape=(self._session.vocab,)).copy()

    def prefill(self, ids: list[int]) -> np.ndarray:
        for start in range(0, len(ids), self._n_batch):
            logits = self._forward(ids[start:start + self._n_batch])
        return logits

    def step(self, token: int) -> np.ndarray:
        return self._forward([token])

    def close(self) -> None:
        if self._batch is not None:
            self.lib.llama_batch_free(self._batch)
            self.lib.llama_free(self._ctx)
        self._session.close()


RUNNABLE = ("onnx", "gguf")


def check_runnable(artifact: Path, kind: str) -> None:
    if kind not in RUNNABLE:
        raise QwdeployError(f"run takes an ONNX folder or a GGUF file, not a {kind} artifact; export it first",
                            artifact)


def open_artifact(artifact: Path, kind: str, device: str) -> tuple[Engine, Tokenizer]:
    check_runnable(artifact, kind)
    if kind == "onnx":
        engine = OrtEngine(artifact, device)
        return engine, OnnxTokenizer(artifact)
    engine = LlamaEngine(artifact, device)
    return engine, LlamaTokenizer(engine.lib, engine.model)


def picker(temperature: float, seed: int | None) -> Callable[[np.ndarray], int]:
    """Greedy at temperature 0, else a draw from softmax(logits / temperature) seeded once."""
    if not math.isfinite(temperature) or temperature < 0:
        raise QwdeployError(f"--temperature must be a finite number >= 0, not {temperature}")
    if temperature == 0:
        return lambda logits: int(np.argmax(logits))
    rng = np.random.default_rng(seed)

    def sample(logits: np.ndarray) -> int:
        scaled = logits.astype(np.float64) / temperature
        probs = np.exp(scaled - scaled.max())
        return int(rng.choice(len(probs), p=probs / probs.sum()))

    return sample


def tokens(engine: Engine, prompt: list[int], max_tokens: int, pick: Callable[[np.ndarray], int],
           stop: frozenset[int]) -> Iterator[int]:
    """Generated ids, one at a time, ending with the first stop id or after max_tokens."""
    if not prompt:
        raise QwdeployError("the prompt is empty after tokenization")
    total = len(prompt) + max_tokens
    if engine.context_length and total > engine.context_length:
        raise QwdeployError(f"{len(prompt)} prompt tokens + {max_tokens} new ones exceed the artifact's "
                            f"context of {engine.context_length}; lower --max-tokens")
    engine.reserve(total)
    logits = engine.prefill(prompt)
    for produced in range(1, max_tokens + 1):
        token = pick(logits)
        yield token
        if token in stop or produced == max_tokens:
            return
        logits = engine.step(token)


def generate_ids(artifact: Path, kind: str, prompt: list[int], max_tokens: int, device: str = "cpu",
                 temperature: float = 0.0, seed: int | None = None) -> list[int]:
    """The ids generated after `prompt` (stop id included), in this process."""
    engine, tokenizer = open_artifact(Path(artifact), kind, device)
    try:
        return list(tokens(engine, prompt, max_tokens, picker(temperature, seed), tokenizer.eos))
    finally:
        engine.close()


def prompt_ids(tokenizer: Tokenizer, prompt: str, chat: bool) -> list[int]:
    if not chat:
        return tokenizer.encode(prompt)
    if not tokenizer.chat_template:
        raise QwdeployError("this artifact carries no chat template; run without --chat")
    return tokenizer.encode(render_chat(tokenizer.chat_template, prompt))


def stream(request: Request) -> Iterator[str | Stats]:
    """Text as it is generated, then the Stats. Decoding the whole reply each time and printing the
    new suffix keeps characters split over several tokens whole."""
    engine, tokenizer = open_artifact(request.artifact, request.kind, request.device)
    try:
        prompt = prompt_ids(tokenizer, request.prompt, request.chat)
        generated: list[int] = []
        printed = ""
        start = time.perf_counter()
        first = last = start
        for token in tokens(engine, prompt, request.max_tokens, picker(request.temperature, request.seed),
                            tokenizer.eos):
            last = time.perf_counter()
            if not generated:
                first = last
            generated.append(token)
            text = tokenizer.decode(generated)
            if not text.endswith(REPLACEMENT) and len(text) > len(printed):
                yield text[len(printed):]
                printed = text
        text = tokenizer.decode(generated)
        if len(text) > len(printed):
            yield text[len(printed):]
        rate = (len(generated) - 1) / (last - first) if len(generated) > 1 and last > first else None
        yield Stats(len(prompt), len(generated), first - start, rate)
    finally:
        engine.close()


def _child(conn, request: Request) -> None:
    try:
        with quiet_native_output():
            for item in stream(request):
                conn.send(("item", item))
        conn.send(("end", None))
    except QwdeployError as exc:
        conn.send(("user", str(exc)))
    except BaseException as exc:  # reported to the parent as one line
        conn.send(("error", one_line(exc)))
    finally:
        conn.close()


def stream_isolated(request: Request) -> Iterator[str | Stats]:
    """`stream` in a fresh spawned process; its death or failure is one QwdeployError line."""
    engine = ENGINES[request.kind]
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(send, request), daemon=True)
    process.start()
    send.close()
    try:
        while True:
            try:
                status, value = receive.recv()
            except EOFError:
                process.join()
                raise EngineError(death_message(engine, process.exitcode, f"generating from {request.artifact.name}",
                                                "try the other artifact kind or --device, or report this engine "
                                                "fault"), request.artifact) from None
            if status == "item":
                yield value
            elif status == "end":
                return
            elif status == "user":
                raise QwdeployError(value)
            else:
                raise EngineError(f"{engine} failed while generating: {value}", request.artifact)
    finally:
        receive.close()
        process.join(timeout=5)  # an engine that faults while exiting has already answered
        if process.is_alive():
            process.kill()
            process.join()


def describe(stats: Stats) -> list[str]:
    """The closing lines for stderr."""
    rate = f"{stats.tokens_per_s:.1f} tokens/s" if stats.tokens_per_s is not None else "n/a (one token)"
    return [f"time to first token: {stats.ttft_s * 1000:.1f} ms ({stats.prompt_tokens} prompt tokens)",
            f"decode: {rate} ({stats.generated} tokens generated)"]

