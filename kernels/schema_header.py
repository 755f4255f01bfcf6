"""kernels/ort/schema_io.h, the C++ side of kernels/schemas.py: each op's name and its input and output Port
tables, rendered from the schemas so the adapters cannot register anything else.

The header is checked in, so a plain CMake build needs no Python. After changing a schema run

    python -m qwdeploy.kernels.schema_header

A kernel build and tests/kernels/test_schemas.py refuse a header that differs from what this renders.
"""

from __future__ import annotations

from pathlib import Path

from ..toolkit.errors import QwdeployError
from .schemas import SCHEMAS, Arg

HEADER = Path(__file__).resolve().parent / "ort" / "schema_io.h"
COMMAND = "python -m qwdeploy.kernels.schema_header"
CPP_TYPES = {"float32": "kFloat", "float16": "kFloat16", "uint8": "kUint8", "int32": "kInt32",
             "int64": "kInt64"}  # Arg.dtype → kernels/ort/adapter.h

PREAMBLE = f"""\
// Generated from kernels/schemas.py by kernels/schema_header.py; do not edit. After changing a schema run
//   {COMMAND}
// The adapters' op structs derive from these, so ONNX Runtime sees exactly the schemas' names and types.
#pragma once

#include "adapter.h"

namespace qwd::ort::schema {{
"""
CLOSING = "\n}  // namespace qwd::ort::schema\n"


def _cpp_type(op: str, arg: Arg, varying: str | None) -> str:
    unknown = [d for d in arg.dtypes if d not in CPP_TYPES]
    if unknown:
        raise QwdeployError(f"kernels/schemas.py: {op}.{arg.name} is {arg.dtype}; the kernels know "
                            f"{', '.join(CPP_TYPES)}")
    if len(arg.dtypes) == 1:
        return CPP_TYPES[arg.dtype]
    return "kT" if arg.dtype == varying else "kAnyType"  # kAnyType: the adapter checks which it got


def _varying(op: str) -> str | None:
    """The choice of types an output has, if any: ONNX Runtime infers an output's type from one dynamically
    typed input at most, so such an op is registered once per type, and every argument of exactly that
    choice takes the registration's type (GroupQueryAttention's past and present alike)."""
    choices = {o.dtype for o in SCHEMAS[op].outputs if len(o.dtypes) > 1}
    if len(choices) > 1:
        raise QwdeployError(f"kernels/schemas.py: {op}'s outputs vary over {len(choices)} choices of types; "
                            "the header renders one")
    return choices.pop() if choices else None


def _table(element: str, rows: list[tuple[str, str]]) -> list[str]:
    """A constexpr array member, one row per argument with its schema name beside it."""
    return [f"  static constexpr {element}[] = {{", *(f"      {value},  // {name}" for value, name in rows), "  };"]


def _ports(op: str, args: tuple[Arg, ...], varying: str | None) -> list[tuple[str, str]]:
    return [(f"{{{_cpp_type(op, a, varying)}, {str(a.optional).lower()}}}", a.name) for a in args]


def _op(name: str) -> str:
    schema, varying = SCHEMAS[name], _varying(name)
    head = [f"struct {name} {{"]
    if varying:
        types = " and ".join(CPP_TYPES[d] for d in varying.split("|"))
        head = [f"// Registered once with kT = each of {types}.", "template <ONNXTensorElementDataType kT>", *head]
    lines = [*head, f'  static constexpr const char* kName = "{name}";',
             *_table("Port kInputs", _ports(name, schema.inputs, varying)),
             *_table("Port kOutputs", _ports(name, schema.outputs, varying)), "};"]
    return "\n".join(lines) + "\n"


def render() -> str:
    return PREAMBLE + "\n" + "\n".join(_op(name) for name in SCHEMAS) + CLOSING


def require_current() -> None:
    """Raises QwdeployError naming the command to run when the checked-in header is not render()'s."""
    if not HEADER.is_file() or HEADER.read_text() != render():
        raise QwdeployError(f"does not match kernels/schemas.py; run `{COMMAND}`", HEADER)


if __name__ == "__main__":
    HEADER.write_text(render())
