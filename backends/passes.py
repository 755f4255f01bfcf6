"""Passes over a `Graph`: fusions (pattern → check → rewrite) and whole-graph passes, run in named phases.

A fusion module defines `ANCHOR` (the op type its pattern ends in, or a tuple of them), `match(graph, node, ctx)`
returning what the rewrite needs or raising `Reject` with the reason, and `rewrite(graph, found,
ctx)`. `Fusion` wraps such a module into a pass that returns its count and the rejections.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Callable, Protocol

from ..toolkit.spec import MoESpec
from .graph import Graph, Reject


@dataclass
class Context:
    """What passes may read besides the graph: facts about the model. A backend's passes take its
    subclass, which adds that backend's typed choices (backends/ort/context.py)."""

    num_layers: int = 0
    max_positions: int = 4096
    moe: MoESpec | None = None  # the routing a MoE match must agree with


@dataclass(frozen=True)
class PassReport:
    name: str
    count: int
    rejections: tuple[tuple[str, str], ...] = ()  # (node name, reason)


class Pass(Protocol):
    name: str

    def __call__(self, graph: Graph, ctx: Context) -> PassReport: ...


class Fusion:
    """A pass that rewrites every match of one fusion module's pattern."""

    def __init__(self, module: ModuleType):
        self.module = module
        self.name = module.__name__.rsplit(".", 1)[-1]

    def __call__(self, graph: Graph, ctx: Context) -> PassReport:
        count, rejected = 0, []
        anchors = self.module.ANCHOR if isinstance(self.module.ANCHOR, tuple) else (self.module.ANCHOR,)
        for node in [n for anchor in anchors for n in graph.nodes(*_anchor(anchor))]:
            if not graph.alive(node):
                continue  # removed by an earlier rewrite of this pass
            try:
                found = self.module.match(graph, node, ctx)
            except Reject as why:
                rejected.append((node.name, str(why)))
                continue
            self.module.rewrite(graph, found, ctx)
            count += 1
        if count:
            graph.remove_dead()
        return PassReport(self.name, count, tuple(rejected))


def _anchor(anchor: str) -> tuple[str, str]:
    domain, _, op_type = anchor.rpartition(":")
    return op_type, domain


@dataclass(frozen=True)
class GraphPass:
    """A whole-graph pass given as a function returning how many places it changed."""

    name: str
    fn: Callable[[Graph, Context], int]

    def __call__(self, graph: Graph, ctx: Context) -> PassReport:
        return PassReport(self.name, self.fn(graph, ctx))


Phase = tuple[str, list[Pass]]  # (phase name, passes in order)


def run_phases(graph: Graph, phases: list[Phase], ctx: Context, deferred: bool = False) -> list[tuple[str, PassReport]]:
    """Run every pass of every phase in order; returns (phase, report) per pass. `deferred`: Graph.commit's."""
    reports = []
    for phase, passes in phases:
        for p in passes:
            reports.append((phase, p(graph, ctx)))
    graph.remove_dead()
    graph.sort()
    graph.commit(deferred)
    return reports
