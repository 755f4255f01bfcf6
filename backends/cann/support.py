"""What each CANN release's ATC accepts per ONNX operator, and a preflight that places every node of a graph.

The table is data: one `OpRule` per operator and release, each with the page it was read from (hiascend.com's
"支持ONNX算子清单" / "Supported ONNX Operators", one page per operator; `checked` says when). Where a release's
own page was not found, the row names the nearest release's page in `source` and that release in `page`. An
operator with rows for other releases but none for this one is "unverified"; one in no table is "refused" until
someone adds its row. Facts the pages do not give are not invented: the ONNX list names no execution engine, so
a documented node is placed on the NPU (AI Core) unless a source says its kernel runs on the AI CPU. The CANN 8.0
list says it covers the Atlas inference series (310P).

ATC picks an operator's parser by the *model's* opset (errors read `optype [ai.onnx::11::grid_sampler]`, see
https://github.com/open-mmlab/mmagic/issues/1068), so opset ranges here are model opsets, not since-versions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ...toolkit.errors import QwdeployError

if TYPE_CHECKING:  # onnx is imported where a graph is read: GGUF-only installs import Placement from here
    import numpy as np
    from onnx import ModelProto, NodeProto

CHECKED = "2026-12"  # when the pages below were read (the month qwdeploy's Ascend facts were gathered)


class Placement(str, Enum):
    """Where a node (ONNX) or a weight type's matmuls (GGUF) run; ordered from best to worst."""

    NPU = "npu"  # AI Core kernels
    AICPU = "aicpu"  # CANN's AI CPU kernels: on the device, but slow
    CPU = "cpu"  # the host CPU (llama.cpp's fallback)
    UNVERIFIED = "unverified"  # no page vouches for this node as written: it may run, fall back or fail
    REFUSED = "refused"  # ATC would not accept it

    @property
    def rank(self) -> int:
        return list(Placement).index(self)


@dataclass(frozen=True)
class Issue:
    placement: Placement
    reason: str
    rewrite: str = ""  # a supported equivalent, by name, when one is known


# An attribute or input limit a page states: (node, view) → an issue, or None when the node is within it.
Limit = Callable[["NodeProto", "GraphView"], "Issue | None"]


@dataclass(frozen=True)
class OpRule:
    opsets: tuple[int, int]  # documented model opsets, inclusive
    dtypes: frozenset[str]  # documented element types of input `dtype_input`
    source: str
    page: str = ""  # the release the page belongs to, when not the table's own
    dtype_input: int = 0
    max_rank: int | None = None
    engine: Placement = Placement.NPU
    limits: tuple[Limit, ...] = ()
    parser_opsets: tuple[int, int] | None = None  # registered by the ONNX parser's source, not documented
    rewrite: str = ""  # a documented equivalent for the nodes this row does not vouch for (dtype, opset)
    note: str = ""
    checked: str = CHECKED


@dataclass(frozen=True)
class Release:
    version: str
    opsets: tuple[int, int]  # the opset range the release's list states overall
    source: str
    rules: dict[str, OpRule] = field(default_factory=dict)
    checked: str = CHECKED


@dataclass(frozen=True)
class Finding:
    op_type: str
    node: str
    cann_version: str
    placement: Placement
    reason: str
    rewrite: str = ""


# --- element types, spelled as the pages spell them: onnx's names in lower case (float16, float, int64, bool)
def dtype_name(elem_type: int) -> str:
    from onnx import TensorProto

    return TensorProto.DataType.Name(elem_type).lower()


def _types(text: str) -> frozenset[str]:
    return frozenset(text.split())


FLOATS = _types("float16 float")
ALL_INTS = _types("int8 int16 int32 int64 uint8 uint16 uint32 uint64")


class GraphView:
    """Element types, ranks and small constants of a graph's values, from ONNX shape inference."""

    def __init__(self, model: ModelProto):
        from onnx import TensorProto, shape_inference

        try:  # a model over 2 GB with its data inline cannot be inferred: use what the graph declares
            inferred = shape_inference.infer_shapes(model)
        except (ValueError, shape_inference.InferenceError):
            inferred = model
        graph = inferred.graph
        self.types: dict[str, tuple[int, int | None]] = {}
        for value in (*graph.input, *graph.value_info, *graph.output):
            tensor = value.type.tensor_type
            self.types[value.name] = (tensor.elem_type, len(tensor.shape.dim) if tensor.HasField("shape") else None)
        self.constants = {}
        for tensor in graph.initializer:
            self.types[tensor.name] = (tensor.data_type, len(tensor.dims))
            if tensor.data_location != TensorProto.EXTERNAL:
                self.constants[tensor.name] = tensor

    def dtype(self, name: str) -> str | None:
        elem = self.types.get(name, (0, None))[0]
        return dtype_name(elem) if elem else None

    def rank(self, name: str) -> int | None:
        return self.types.get(name, (0, None))[1]

    def constant(self, name: str) -> np.ndarray | None:
        """The value when the graph holds it inline, else None."""
        from onnx import numpy_helper

        return numpy_helper.to_array(self.constants[name]) if name in self.constants else None


def _attr(node: NodeProto, name: str, default=None):
    from onnx import helper

    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


# --- limits the pages state ---------------------------------------------------------------------------------
def gemm_plain(node: NodeProto, view: GraphView) -> Issue | None:
    # CANN 8.0's Gemm page: "C(可选):偏差,该参数暂不支持", alpha and beta likewise not supported yet.
    if len(node.input) > 2 and node.input[2] or _attr(node, "alpha", 1.0) != 1.0 or _attr(node, "beta", 1.0) != 1.0:
        return Issue(Placement.REFUSED, "Gemm's C input, alpha and beta are not supported by this release",
                     "gemm_to_matmul_add (MatMul, then Mul/Add)")
    return None


def reduce_axes_given(node: NodeProto, view: GraphView) -> Issue | None:
    # The ReduceMean/ReduceSum pages: with empty axes ATC does not reduce every axis, unlike ONNX.
    if _attr(node, "axes") is None and (len(node.input) < 2 or not node.input[1]):
        return Issue(Placement.REFUSED, f"{node.op_type} without axes does not reduce every axis on ATC",
                     "list every axis explicitly")
    return None


def batch_dims_zero(node: NodeProto, view: GraphView) -> Issue | None:
    if _attr(node, "batch_dims", 0) != 0:
        return Issue(Placement.REFUSED, "GatherND supports batch_dims=0 only", "fold the batch axes into indices")
    return None


def nonnegative_indices(node: NodeProto, view: GraphView) -> Issue | None:
    indices = view.constant(node.input[1])
    if indices is not None and (indices < 0).any():
        return Issue(Placement.REFUSED, f"{node.op_type} does not accept negative indices",
                     "normalize_indices (add the axis size)")
    return None


def slice_steps(node: NodeProto, view: GraphView) -> Issue | None:
    steps = view.constant(node.input[4]) if len(node.input) > 4 and node.input[4] else None
    axes = view.constant(node.input[3]) if len(node.input) > 3 and node.input[3] else None
    rank = view.rank(node.input[0])
    if steps is not None and rank is not None:
        last = [s for a, s in zip(axes if axes is not None else range(len(steps)), steps) if a in (-1, rank - 1)]
        if any(s != 1 for s in last):
            return Issue(Placement.REFUSED, "Slice needs step 1 on the last axis", "transpose, slice, transpose back")
    if rank == 1:  # "输入Tensor的维度不能为1": read as rank 1; the pages do not say more
        return Issue(Placement.UNVERIFIED, "the Slice page excludes 1-D data (\"维度不能为1\")")
    return None


CAST_OUTPUTS = _types("bool float16 float int8 int16 int32 uint8")


def cast_target(node: NodeProto, view: GraphView) -> Issue | None:
    target = dtype_name(_attr(node, "to", 0))
    if target not in CAST_OUTPUTS:
        return Issue(Placement.UNVERIFIED, f"Cast to {target} is not among the documented outputs "
                                           f"({', '.join(sorted(CAST_OUTPUTS))})")
    return None


# --- the tables ---------------------------------------------------------------------------------------------
HIASCEND = "https://www.hiascend.com/document/detail"
C800 = f"{HIASCEND}/zh/canncommercial/800/apiref/aolapi/atlasoxol_09_"
C800_DOC = "https://www.hiascend.com/doc_center/source/zh/canncommercial/800/apiref/aolapi/atlasoxol_09_"
RC3 = f"{HIASCEND}/zh/CANNCommunityEdition/80RC3alpha003/apiref/aolapi/atlasoxol_09_"
C850 = f"{HIASCEND}/en/canncommercial/850/API/aolapi/atlasoxol_09_"
C504 = f"{HIASCEND}/zh/canncommercial/5046/reference/fwoperatorlist/atlasoxol_09_"
C504_DOC = "https://www.hiascend.com/doc_center/source/zh/canncommercial/5046/reference/fwoperatorlist/atlasoxol_09_"
C700 = f"{HIASCEND}/zh/canncommercial/700/oplist/operatorlist/atlasoxol_09_"
OPSET_REWRITE = "re-export at a lower opset (qwdeploy export --profile ascend-*: onnx_opset 13)"
UNSQUEEZE_PARSER = ("github.com/dengguojie/vue-element-admin (a canndev mirror): "
                    "ops/built-in/framework/onnx_plugin/unsqueeze_plugin.cc registers UnsqueezeV3 (axes as an "
                    "input) for ai.onnx::13::Unsqueeze; a later version of the plugin for opsets 13-18")

CANN_80 = Release("8.0", (8, 18), f"{HIASCEND}/zh/canncommercial/80RC22/apiref/operatorlist/operatorlist_0004.html"
                  " (ONNX 1.12, opset per operator, Atlas inference series only)", {
    "Add": OpRule((8, 18), _types("int8 int16 int32 int64 uint8 float double float16"), RC3 + "0006.html", "8.0.RC3"),
    "And": OpRule((8, 18), _types("bool"), RC3 + "0009.html", "8.0.RC3"),
    "Cast": OpRule((8, 18), _types("float float16 int8 int32 int64 uint8 bool"), RC3 + "0031.html", "8.0.RC3",
                   limits=(cast_target,)),
    "Concat": OpRule((8, 18), FLOATS | ALL_INTS, C800_DOC + "0037.html"),
    "ConstantOfShape": OpRule((8, 16), _types("int64"), C800 + "0039.html"),
    "Cos": OpRule((8, 18), FLOATS | {"double"}, C800 + "0043.html"),
    "Div": OpRule((8, 18), FLOATS | _types("double int32 int64"), f"{HIASCEND}/zh/canncommercial/900/API/aolapi/"
                  "atlasoxol_09_0049.html", "9.0"),
    "Equal": OpRule((8, 18), FLOATS | ALL_INTS | _types("bool double"), C850 + "0055.html", "8.5"),
    "Gather": OpRule((8, 18), FLOATS | ALL_INTS | _types("bool"), C850 + "0062.html", "8.5",
                     limits=(nonnegative_indices,)),
    "GatherND": OpRule((11, 18), FLOATS | _types("double int32 int64"), C800 + "0064.html",
                       limits=(batch_dims_zero,)),
    "Gemm": OpRule((8, 18), FLOATS, C800 + "0065.html", limits=(gemm_plain,),
                   note="opsets 8-10 refuse float inputs under --precision_mode=must_keep_origin_dtype"),
    "LessOrEqual": OpRule((12, 18), FLOATS, f"{HIASCEND}/zh/canncommercial/80RC22/apiref/operatorlist/"
                          "atlasoxol_09_0080.html", "8.0.RC2",
                          rewrite="cast_inputs_to_float (positions are exact in float below 2^24)"),
    "MatMul": OpRule((8, 18), _types("float16"), C800 + "0092.html", max_rank=6),
    "Mul": OpRule((8, 18), FLOATS | _types("int8 int32"), f"{HIASCEND}/zh/CANNCommunityEdition/81RC1alpha002/apiref/"
                  "aolapi/atlasoxol_09_0102.html", "8.1.RC1"),
    "Neg": OpRule((8, 18), FLOATS | _types("int32"), C800 + "0104.html"),
    # The engine: ops-nn 9.1.0's NonZero op_api (gitcode.com/cann/ops-nn/blob/9.1.0/index/non_zero/op_api/
    # nonzero.cpp) lists AI Core dtypes for the 910B (and the 950) only and launches the AI CPU kernel otherwise;
    # the 310P, which this list covers, takes the AI CPU path.
    "NonZero": OpRule((9, 18), FLOATS | _types("int32 int8 uint8"), C800 + "0107.html", engine=Placement.AICPU,
                      rewrite="cast_input_to_uint8"),
    "Pow": OpRule((8, 18), FLOATS | _types("double int32"), RC3 + "0112.html", "8.0.RC3"),
    "Range": OpRule((8, 18), FLOATS | _types("int32 int64"), RC3 + "0117.html", "8.0.RC3"),
    "ReduceMean": OpRule((8, 16), FLOATS, C800 + "0123.html", limits=(reduce_axes_given,)),
    "ReduceSum": OpRule((8, 18), FLOATS, "https://www.hiascend.com/doc_center/source/zh/canncommercial/850/API/"
                        "aolapi/atlasoxol_09_0127.html", "8.5", limits=(reduce_axes_given,)),
    # The page lists no float32 data; Reshape moves no data, but the page is what we go by.
    "Reshape": OpRule((8, 18), ALL_INTS | _types("float16 bool double"), C850 + "0130.html", "8.5"),
    "ScatterND": OpRule((11, 18), FLOATS, f"{HIASCEND}/zh/CANNCommunityEdition/80RC2alpha002/apiref/operatorlist/"
                        "atlasoxol_09_0138.html", "8.0.RC2", limits=(nonnegative_indices,)),
    "Shape": OpRule((8, 18), FLOATS | ALL_INTS | _types("bool double"), C850 + "0143.html", "8.5"),
    "Sigmoid": OpRule((8, 18), FLOATS, C800 + "0145.html"),
    "Sin": OpRule((8, 18), FLOATS | {"double"}, f"{HIASCEND}/zh/CANNCommunityEdition/81RC1beta1/API/aolapi/"
                  "atlasoxol_09_0147.html", "8.1.RC1"),
    "Slice": OpRule((8, 18), FLOATS | ALL_INTS | _types("bool double"), C800 + "0150.html", limits=(slice_steps,)),
    "Softmax": OpRule((8, 18), FLOATS | {"double"}, f"{HIASCEND}/zh/CANNCommunityEdition/82RC1alpha001/API/aolapi/"
                      "atlasoxol_09_0151.html", "8.2.RC1"),
    "Sqrt": OpRule((8, 18), FLOATS, C800 + "0157.html"),
    "Squeeze": OpRule((8, 18), FLOATS | ALL_INTS | _types("bool double"), C800_DOC + "0158.html"),
    "Sub": OpRule((8, 15), FLOATS | _types("int32"), C800_DOC + "0159.html", rewrite="cast_inputs_to_int32"),
    "TopK": OpRule((8, 18), FLOATS, RC3 + "0166.html", "8.0.RC3"),
    "Transpose": OpRule((8, 18), FLOATS | ALL_INTS | _types("bool"), C850 + "0167.html", "8.5"),
    # Documented for opsets 8-12 only (axes as an attribute), in every release up to 9.0.
    "Unsqueeze": OpRule((8, 12), FLOATS | ALL_INTS | _types("double"), C800_DOC + "0169.html",
                        parser_opsets=(13, 18), note=UNSQUEEZE_PARSER,
                        rewrite="unsqueeze_to_reshape (Reshape is documented for opsets 8-18)"),
    "Where": OpRule((8, 18), FLOATS | _types("uint8 int8 int32"), C850 + "0170.html", "8.5", dtype_input=1),
})

CANN_70 = Release("7.0", (9, 18), f"{HIASCEND}/zh/canncommercial/700/inferapplicationdev/atctool/atlasatc_16_0201.html"
                  " (ONNX 1.12, opset v9-v18)", {
    "And": OpRule((8, 18), _types("bool"), C700 + "0009.html"),
    "MatMul": OpRule((8, 18), _types("float16"), C700 + "0091.html", max_rank=6),
    "Sigmoid": OpRule((8, 18), FLOATS, C700 + "0141.html"),
    "TopK": OpRule((8, 18), FLOATS, C700 + "0162.html"),
})

# CANN 6.0.1 states ONNX 1.8, opset v9-v13 (its per-operator pages were not found); 5.0.4 states the same
# range, and its pages stand in for 6.0's.
CANN_60 = Release("6.0", (9, 13), f"{HIASCEND}/zh/canncommercial/601/inferapplicationdev/atctool/atctool_0178.html"
                  " (ONNX 1.8, opset v9-v13)", {
    "Add": OpRule((8, 13), _types("int8 int16 int32 int64 uint8 float double float16"), C504 + "0006.html", "5.0.4"),
    "And": OpRule((8, 13), _types("bool"), C504 + "0009.html", "5.0.4"),
    "ConstantOfShape": OpRule((9, 13), _types("int64"), C504_DOC + "0035.html", "5.0.4"),
    "Gather": OpRule((8, 13), FLOATS | ALL_INTS | _types("bool"), C504_DOC + "0050.html", "5.0.4",
                     limits=(nonnegative_indices,)),
    "Neg": OpRule((8, 13), FLOATS | _types("int32"), C504 + "0081.html", "5.0.4"),
    "Slice": OpRule((8, 13), FLOATS | _types("int32 uint8 bool int8"), C504_DOC + "0110.html", "5.0.4",
                    limits=(slice_steps,)),
    "Sqrt": OpRule((8, 13), FLOATS, C504 + "0116.html", "5.0.4"),
    "Squeeze": OpRule((8, 13), FLOATS | ALL_INTS | _types("bool double"), C504_DOC + "0117.html", "5.0.4"),
    "TopK": OpRule((8, 13), FLOATS, C504_DOC + "0127.html", "5.0.4"),
})

RELEASES = {r.version: r for r in (CANN_60, CANN_70, CANN_80)}
# Every operator some table has a row for: one absent from a release's table is unverified there, not refused.
RESEARCHED = frozenset(op for r in RELEASES.values() for op in r.rules)
ONNX_DOMAINS = ("", "ai.onnx")


def release(cann_version: str) -> Release:
    """The table for a CANN version as profiles spell it ("8.0", "8.0.RC2", "8.0.0")."""
    key = ".".join(cann_version.strip().split(".")[:2])
    if key not in RELEASES:
        raise QwdeployError(f"no op-support table for CANN {cann_version!r}; known: {', '.join(RELEASES)}")
    return RELEASES[key]


def model_opset(model: ModelProto) -> int:
    versions = [o.version for o in model.opset_import if o.domain in ONNX_DOMAINS]
    if not versions:
        raise QwdeployError("the graph imports no ai.onnx opset")
    return versions[0]


def _opset_issue(node: NodeProto, rule: OpRule, opset: int, version: str) -> Issue | None:
    low, high = rule.opsets
    if low <= opset <= high:
        return None
    if rule.parser_opsets and rule.parser_opsets[0] <= opset <= rule.parser_opsets[1]:
        return Issue(Placement.UNVERIFIED, f"documented for opsets {low}-{high} only; the ONNX parser's source "
                                           f"registers {rule.parser_opsets[0]}-{rule.parser_opsets[1]}", rule.rewrite)
    return Issue(Placement.REFUSED, f"CANN {version} documents {node.op_type} for opsets {low}-{high}, "
                                    f"not {opset}", OPSET_REWRITE if opset > high else "re-export at opset 13")


def _rule_issues(node: NodeProto, rule: OpRule, view: GraphView, opset: int, version: str) -> list[Issue]:
    issues = [i for i in (_opset_issue(node, rule, opset, version),) if i]
    issues += [i for i in (limit(node, view) for limit in rule.limits) if i]
    if len(node.input) > rule.dtype_input:
        dtype = view.dtype(node.input[rule.dtype_input])
        if dtype and dtype not in rule.dtypes:
            listed = rule.dtypes
            documented = ", ".join(sorted(listed)) if len(listed) <= 4 else f"the page lists {len(listed)}"
            issues.append(Issue(Placement.UNVERIFIED, f"{dtype} input is not a documented type ({documented})",
                                rule.rewrite))
    ranks = [view.rank(v) for v in (*node.input, *node.output) if v]
    if rule.max_rank and any(r is not None and r > rule.max_rank for r in ranks):
        issues.append(Issue(Placement.REFUSED, f"{node.op_type} takes 1-{rule.max_rank}-D tensors",
                            "reshape to fewer dimensions"))
    return issues


def place(node: NodeProto, view: GraphView, opset: int, table: Release) -> Finding:
    """Where one node runs under one CANN release, and why."""
    def finding(placement: Placement, reason: str, rewrite: str = "") -> Finding:
        return Finding(node.op_type, node.name, table.version, placement, reason, rewrite)

    if node.domain not in ONNX_DOMAINS:
        return finding(Placement.REFUSED, f"domain {node.domain!r}: ATC parses ai.onnx operators only",
                       "use the portable graph (standard ops only)")
    rule = table.rules.get(node.op_type)
    if rule is None:
        low, high = table.opsets
        if node.op_type not in RESEARCHED:
            return finding(Placement.REFUSED, "not in qwdeploy's CANN op table (add a row with its hiascend.com "
                                              "page if ATC accepts it)")
        if not low <= opset <= high:
            return finding(Placement.REFUSED, f"CANN {table.version} documents opsets {low}-{high}", OPSET_REWRITE)
        return finding(Placement.UNVERIFIED, f"CANN {table.version}'s page for {node.op_type} was not checked")
    issues = _rule_issues(node, rule, view, opset, table.version)
    if not issues:
        return finding(rule.engine, "documented" if rule.engine is Placement.NPU else "documented; AI CPU kernel")
    worst = max(i.placement.rank for i in issues)
    chosen = [i for i in issues if i.placement.rank == worst]
    return finding(chosen[0].placement, "; ".join(i.reason for i in chosen),
                   "; ".join(dict.fromkeys(i.rewrite for i in chosen if i.rewrite)))


def preflight(model: ModelProto, cann_version: str) -> list[Finding]:
    """One finding per node: where CANN `cann_version`'s ATC puts it (NPU, AI CPU), whether the pages vouch for
    it as written, or whether ATC refuses it."""
    table = release(cann_version)
    opset = model_opset(model)
    view = GraphView(model)
    return [place(node, view, opset, table) for node in model.graph.node]


def require_supported(model: ModelProto, cann_version: str, path: str | Path | None = None) -> None:
    """Raise for the first node ATC would refuse, naming it; unverified and AI CPU nodes pass."""
    for found in preflight(model, cann_version):
        if found.placement is Placement.REFUSED:
            hint = f"; {found.rewrite}" if found.rewrite else ""
            raise QwdeployError(f"CANN {found.cann_version}'s ATC would refuse {found.op_type} node "
                                f"{found.node!r}: {found.reason}{hint}", path)
