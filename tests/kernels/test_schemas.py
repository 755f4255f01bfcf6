"""kernels/schemas.py and the C++ adapters cannot drift apart: the I/O tables are rendered from the schemas
(kernels/ort/schema_io.h), every adapter takes its name and tables from there, and the attributes each
adapter reads are the ones its schema declares."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from qwdeploy.kernels import schema_header
from qwdeploy.kernels.build import build
from qwdeploy.kernels.schema_header import COMMAND, HEADER, render
from qwdeploy.kernels.schemas import SCHEMAS
from qwdeploy.kernels.targets import resolve_target
from qwdeploy.toolkit.errors import QwdeployError

ADAPTERS = sorted(p for p in HEADER.parent.iterdir() if p.suffix in (".h", ".cc") and p != HEADER)
# An op struct's line, e.g. `struct MoEOp : std::conditional_t<kQuantized, schema::QMoE, schema::MoE> {`.
STRUCT = re.compile(r"^struct (\w+) : ([^{;]*)\{", re.MULTILINE)
# info.GetAttribute<int64_t>("K"), attr_int(info, "normalize_topk", 0), attr_float(info, "epsilon", ...); a type
# other than these two reads as itself, which no schema declares.
ATTRIBUTE_READ = re.compile(r'(?:GetAttribute\w*<(?P<ctype>[^>]+)>\(|attr_(?P<kind>\w+)\(\w+,\s*)"(?P<name>\w+)"')
KINDS = {"int64_t": "int", "float": "float"}  # the C++ type read → schemas.py's attribute kind
# What schema_io.h gives each op struct; declared anywhere else it would shadow the generated one.
GENERATED_MEMBERS = re.compile(r"constexpr[^;(]*\b(kName|kInputs|kOutputs)\b")


@dataclass(frozen=True)
class Reader:
    """A stretch of an adapter source from one struct line to the next, and the attributes read there."""

    where: str
    ops: frozenset[str]  # the schema:: structs it derives from (two for a std::conditional_t pair)
    reads: dict[str, str]  # attribute name → "int" | "float"


def _reads(text: str) -> dict[str, str]:
    return {m["name"]: KINDS.get(m["ctype"], m["ctype"]) if m["ctype"] else m["kind"]
            for m in ATTRIBUTE_READ.finditer(text)}


def readers(path: Path) -> list[Reader]:
    text = path.read_text()
    structs = list(STRUCT.finditer(text))
    ends = [m.start() for m in structs[1:]] + [len(text)]
    first = structs[0].start() if structs else len(text)
    found = [Reader(f"{path.name}: before any struct", frozenset(), _reads(text[:first]))]
    for struct, end in zip(structs, ends):
        ops = frozenset(re.findall(r"schema::(\w+)", struct[2]))
        found.append(Reader(f"{path.name}: struct {struct[1]}", ops, _reads(text[struct.start():end])))
    return found


ALL_READERS = [r for path in ADAPTERS for r in readers(path)]


def test_header_is_rendered_from_the_schemas():
    assert HEADER.read_text() == render(), f"kernels/ort/schema_io.h is stale: run `{COMMAND}`"


def test_every_op_has_an_adapter_on_its_generated_tables():
    assert set().union(*(r.ops for r in ALL_READERS)) == set(SCHEMAS)
    for path in ADAPTERS:
        declared = GENERATED_MEMBERS.findall(path.read_text())
        assert not declared, f"{path.name} declares {declared}: op structs take them from schema_io.h"


def test_every_adapter_reads_exactly_its_schemas_attributes():
    """A struct serving two ops (MoE/QMoE) is held to their union; reads outside an op struct match nothing."""
    problems = []
    for reader in ALL_READERS:
        declared = {name: kind for op in sorted(reader.ops)
                    for name, kind in (SCHEMAS[op].attributes | SCHEMAS[op].optional_attributes).items()}
        if reader.reads != declared:
            problems.append(f"{reader.where} reads {reader.reads}; {sorted(reader.ops)} declare {declared}")
    assert not problems, "\n".join(problems)


def test_build_refuses_a_stale_header(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    stale = tmp_path / HEADER.name
    stale.write_text(render() + "// edited by hand\n")
    monkeypatch.setattr(schema_header, "HEADER", stale)
    with pytest.raises(QwdeployError, match=re.escape(f"does not match kernels/schemas.py; run `{COMMAND}`")):
        build(resolve_target("host"))
