"""Text generation from an exported artifact: its own tokenizer, its engine, greedy or seeded sampling.

An ONNX folder runs on ONNX Runtime through OrtSession and is tokenized with the `tokenizers`
library from the folder's tokenizer.json; a GGUF file runs on llama.cpp through LlamaSession and
is tokenized by llama.cpp from the vocabulary inside the file. Both engines sit behind the same
two calls (prefill, step), so the loop, the sampling and the streaming are written once.

`Isolated` keeps the model in a spawned child that answers request after request (a conversation
loads it once) and pipes the text back: a fault in a native engine then ends the child, not the
CLI, and becomes one line.
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
    chat: bool | None  # None: the chat template when the artifact has one, else plain text
    max_tokens: int
    temperature: float
    seed: int | None
    history: tuple[tuple[str, str], ...] = ()  # earlier (user, reply) turns of the conversation


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

    def reset(self) -> None: ...  # forget every position: the next prefill starts a new sequence

    def close(self) -> None: ...


def render_chat(template: str, prompt: str, history: tuple[tuple[str, str], ...] = ()) -> str:
    """The earlier turns and the prompt as the next user turn, ready for the assistant's reply, the way
    transformers renders it."""
    import jinja2.sandbox

    messages = [{"role": role, "content": text} for turn in history for role, text in zip(("user", "assistant"), turn)]
    # Templates come with the artifact: sandboxed, as transformers does.
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    try:
        return env.from_string(template).render(messages=[*messages, {"role": "user", "content": prompt}],
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
        self._cache.reserve(tokens)

    def _forward(self, ids: list[int]) -> np.ndarray:
        logits = self._session.forward(self._session.session, np.array([ids], dtype=np.int64), self._cache,
                                       last_only=True)
        return logits[0, -1].astype(np.float32)

    def prefill(self, ids: list[int]) -> np.ndarray:
        for start in range(0, len(ids), self._chunk):
            logits = self._forward(ids[start:start + self._chunk])
        return logits

    def step(self, token: int) -> np.ndarray:
        return self._forward([token])

    def reset(self) -> None:
        self._cache = self._session.new_cache(1)

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
        self._free()
        self._ctx, self._n_batch = self._session.new_context(1, tokens)
        self._batch = self.lib.llama_batch_init(self._n_batch, 0, 1)
        self._position = 0

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

    def reset(self) -> None:
        self._free()

    def _free(self) -> None:
        if self._batch is not None:
            self.lib.llama_batch_free(self._batch)
            self.lib.llama_free(self._ctx)
            self._ctx = self._batch = None

    def close(self) -> None:
        self._free()
        self._session.close()


RUNNABLE = ("onnx", "gguf")


def check_runnable(artifact: Path, kind: str) -> None:
    if kind not in RUNNABLE:
        raise QwdeployError(f"run takes an ONNX folder or a GGUF file, not a {kind} artifact; export it first",
                            artifact)
    reason = why_not_here(artifact, kind)
    if reason:
        raise QwdeployError(f"cannot run here: {reason}; run it on the device it was made for", artifact)


def why_not_here(artifact: Path, kind: str) -> str | None:
    """Why this machine cannot run the artifact (e.g. its kernel library is for the device's CPU), or None."""
    if kind != "onnx":
        return None
    from .ort.facts import foreign_kernels

    return foreign_kernels(artifact)


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


def prompt_ids(tokenizer: Tokenizer, request: Request) -> list[int]:
    chat = request.chat if request.chat is not None else tokenizer.chat_template is not None
    if not chat:
        return tokenizer.encode("".join(user + reply for user, reply in request.history) + request.prompt)
    if not tokenizer.chat_template:
        raise QwdeployError("this artifact carries no chat template; run without --chat")
    return tokenizer.encode(render_chat(tokenizer.chat_template, request.prompt, request.history))


def reply(engine: Engine, tokenizer: Tokenizer, request: Request) -> Iterator[str | Stats]:
    """Text as it is generated, then the Stats. Decoding the whole reply each time and printing the
    new suffix keeps characters split over several tokens whole."""
    prompt = prompt_ids(tokenizer, request)
    engine.reset()
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


class Generator(Protocol):
    def reply(self, request: Request) -> Iterator[str | Stats]: ...

    def close(self) -> None: ...


class InProcess:
    """The engine in this process: a native crash takes the CLI with it (--in-process)."""

    def __init__(self, artifact: Path, kind: str, device: str):
        self._engine, self._tokenizer = open_artifact(artifact, kind, device)

    def reply(self, request: Request) -> Iterator[str | Stats]:
        return reply(self._engine, self._tokenizer, request)

    def close(self) -> None:
        self._engine.close()


def _serve(conn, artifact: Path, kind: str, device: str) -> None:
    """The child's loop: load once, then answer each request sent until None."""
    try:
        with quiet_native_output():
            model = InProcess(artifact, kind, device)
            conn.send(("ready", None))
            while (request := conn.recv()) is not None:
                try:
                    for item in model.reply(request):
                        conn.send(("item", item))
                    conn.send(("end", None))
                except QwdeployError as exc:
                    conn.send(("user", str(exc)))
            model.close()
    except QwdeployError as exc:
        conn.send(("user", str(exc)))
    except BaseException as exc:  # reported to the parent as one line
        conn.send(("error", one_line(exc)))
    finally:
        conn.close()


class Isolated:
    """The engine in a spawned child that keeps the model loaded between requests; its death or
    failure is one QwdeployError line."""

    def __init__(self, artifact: Path, kind: str, device: str):
        self._artifact, self._engine = artifact, ENGINES[kind]
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child, artifact, kind, device), daemon=True)
        self._process.start()
        child.close()
        try:
            self._receive()
        except BaseException:
            self.close()
            raise

    def _receive(self) -> tuple[str, object]:
        try:
            status, value = self._conn.recv()
        except EOFError:
            self._process.join()
            raise EngineError(death_message(self._engine, self._process.exitcode,
                                            f"generating from {self._artifact.name}", "try the other artifact kind "
                                            "or --device, or report this engine fault"), self._artifact) from None
        if status == "user":
            raise QwdeployError(value)
        if status == "error":
            raise EngineError(f"{self._engine} failed while generating: {value}", self._artifact)
        return status, value

    def reply(self, request: Request) -> Iterator[str | Stats]:
        self._conn.send(request)
        while (received := self._receive())[0] == "item":
            yield received[1]

    def close(self) -> None:
        try:
            self._conn.send(None)
        except (BrokenPipeError, OSError):
            pass  # the child is gone already
        self._conn.close()
        self._process.join(timeout=5)  # an engine that faults while exiting has already answered
        if self._process.is_alive():
            self._process.kill()
            self._process.join()


def describe(stats: Stats) -> list[str]:
    """The closing lines for stderr."""
    rate = f"{stats.tokens_per_s:.1f} tokens/s" if stats.tokens_per_s is not None else "n/a (one token)"
    return [f"time to first token: {stats.ttft_s * 1000:.1f} ms ({stats.prompt_tokens} prompt tokens)",
            f"decode: {rate} ({stats.generated} tokens generated)"]

