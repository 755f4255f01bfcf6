"""Native engines run where their crash becomes one line: a spawned child process.

llama.cpp and ONNX Runtime with our kernel library are C/C++; a fault in them kills whatever
process they run in. Everything qwdeploy asks of them goes through `run_isolated`, which runs a
module-level function in a fresh child and turns a signal death into an EngineError naming the
engine, the signal, the artifact and what to do.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import EngineError, QwdeployError


@contextlib.contextmanager
def quiet_native_output() -> Iterator[None]:
    """Native engines log from C straight to fds 1 and 2; keep the terminal for our own output."""
    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, "w") as null:
        for fd in (1, 2):
            os.dup2(null.fileno(), fd)
        try:
            yield
        finally:
            for fd, copy in zip((1, 2), saved):
                os.dup2(copy, fd)
                os.close(copy)


def death_message(engine: str, exitcode: int | None, doing: str, advice: str) -> str:
    """One line for a child that ended without answering."""
    if exitcode is not None and exitcode < 0:
        try:
            how = f"crashed with {signal.Signals(-exitcode).name}"
        except ValueError:
            how = f"was killed by signal {-exitcode}"
    else:
        how = f"exited with status {exitcode} without an answer"
    return f"{engine} {how} while {doing}; {advice}"


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _child(conn, fn: Callable[..., Any], args: tuple) -> None:
    try:
        with quiet_native_output():
            result = ("ok", fn(*args))
    except QwdeployError as exc:
        result = ("user", str(exc))
    except BaseException as exc:  # reported to the parent as one line
        result = ("error", one_line(exc))
    conn.send(result)
    conn.close()


def run_isolated(engine: str, artifact: Path, doing: str, advice: str, fn: Callable[..., Any], *args: Any) -> Any:
    """fn(*args) in a fresh spawned process; its return value, or one line when it raises or dies.

    `fn` must be importable by name (module level); `doing` finishes "... while <doing>".
    """
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(send, fn, args), daemon=True)
    process.start()
    send.close()
    try:
        status, value = receive.recv()
        process.join(timeout=5)  # an engine that faults while exiting has already answered
    except EOFError:
        process.join()
        raise EngineError(death_message(engine, process.exitcode, doing, advice), artifact) from None
    finally:
        receive.close()
        if process.is_alive():
            process.kill()
            process.join()
    if status == "user":
        raise QwdeployError(value)
    if status == "error":
        raise EngineError(f"{engine} failed while {doing}: {value}", artifact)
    return value
