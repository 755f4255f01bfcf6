"""The pass graph's bookkeeping: incremental index, order keys, and the stable topological sort."""

import random

import pytest
from onnx import TensorProto, helper

from qwdeploy.backends.graph import Graph


def _sweeps(nodes, given):
    """The plain definition of the order sort() keeps: sweep the list, take every node whose inputs are ready."""
    ready, pending, ordered = set(given) | {""}, list(nodes), []
    while pending:
        rest = []
        for node in pending:
            if all(i in ready for i in node.input):
                ordered.append(node)
                ready.update(node.output)
            else:
                rest.append(node)
        assert len(rest) < len(pending)
        pending = rest
    return [n.name for n in ordered]


def _random_dag(rng: random.Random, size: int):
    """A DAG over `size` Add nodes in a shuffled order: each node reads the input or earlier values."""
    nodes, values = [], ["x"]
    for i in range(size):
        inputs = [rng.choice(values), rng.choice(values)]
        nodes.append(helper.make_node("Add", inputs, [f"v{i}"], name=f"n{i}"))
        values.append(f"v{i}")
    rng.shuffle(nodes)
    value = helper.make_tensor_value_info
    graph = helper.make_graph(nodes, "dag", [value("x", TensorProto.FLOAT, [1])],
                              [value(f"v{size - 1}", TensorProto.FLOAT, [1])])
    return helper.make_model(graph)


@pytest.mark.parametrize("seed", range(20))
def test_sort_keeps_the_sweep_order_of_any_shuffled_dag(seed):
    rng = random.Random(seed)
    model = _random_dag(rng, rng.randint(2, 120))
    expected = _sweeps(model.graph.node, ["x"])
    graph = Graph(model)
    graph.sort()
    assert [n.name for n in graph.node] == expected


def test_sort_refuses_a_cycle_and_a_missing_input():
    value = helper.make_tensor_value_info
    cycle = helper.make_graph([helper.make_node("Add", ["x", "b"], ["a"], name="A"),
                               helper.make_node("Neg", ["a"], ["b"], name="B")], "cycle",
                              [value("x", TensorProto.FLOAT, [1])], [value("b", TensorProto.FLOAT, [1])])
    with pytest.raises(ValueError, match="cycle"):
        Graph(helper.make_model(cycle)).sort()
    missing = helper.make_graph([helper.make_node("Neg", ["nowhere"], ["y"], name="N")], "missing", [],
                                [value("y", TensorProto.FLOAT, [1])])
    with pytest.raises(ValueError, match="missing input at N: nowhere"):
        Graph(helper.make_model(missing)).sort()


def test_replace_takes_the_slot_of_the_last_node_and_keeps_the_index_current():
    value = helper.make_tensor_value_info
    nodes = [helper.make_node("Neg", ["x"], ["a"], name="A"), helper.make_node("Abs", ["a"], ["b"], name="B"),
             helper.make_node("Neg", ["b"], ["c"], name="C"), helper.make_node("Add", ["b", "c"], ["y"], name="D")]
    graph = Graph(helper.make_model(helper.make_graph(nodes, "g", [value("x", TensorProto.FLOAT, [1])],
                                                      [value("y", TensorProto.FLOAT, [1])])))
    a, b, c, d = graph.node
    fused = graph.make("Relu", ["x"], ["b"], "Fused")
    graph.replace([a, b], [fused])
    assert [n.name for n in graph.node] == ["Fused", "C", "D"]
    assert graph.producer["b"] is fused and not graph.alive(a) and graph.users("a") == []
    assert [n.name for n in graph.users("b")] == ["C", "D"]
    again = graph.make("Sigmoid", ["b"], ["c2"], "Again")
    graph.replace([c], [again], rename={"c": "c2"})
    assert list(d.input) == ["b", "c2"] and graph.users("c2") == [d] and graph.users("c") == []
    assert [n.name for n in graph.node] == ["Fused", "Again", "D"]


def _two_matmuls():
    """y = x @ a, z = x @ b with constant a [4, 3] and b [4, 5]."""
    import numpy as np
    from onnx import numpy_helper

    rng = np.random.default_rng(0)
    value = helper.make_tensor_value_info
    inits = [numpy_helper.from_array(rng.standard_normal((4, n)).astype(np.float32), name) for name, n in (("a", 3), ("b", 5))]
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "a"], ["y"], name="A"),
                               helper.make_node("MatMul", ["x", "b"], ["z"], name="B")], "two",
                              [value("x", TensorProto.FLOAT, [2, 4])],
                              [value("y", TensorProto.FLOAT, None), value("z", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph)


def test_a_lazy_concatenation_reads_as_one_constant_and_is_stored_only_if_used():
    import numpy as np

    model = _two_matmuls()
    g = Graph(model)
    want = np.concatenate([g.const("a"), g.const("b")], axis=1)  # [4, 8]
    packed = g.add_concat("packed", ["a", "b"], axis=1)
    assert g.is_const(packed) and g.elem_type(packed) == TensorProto.FLOAT
    np.testing.assert_array_equal(g.const(packed), want)
    both = g.make("MatMul", ["x", packed], ["yz"], "AB")
    split = g.make("Split", ["yz", g.add_const("sizes", np.array([3, 5], np.int64))], ["y", "z"], "S", axis=-1)
    g.replace([g.producer["y"], g.producer["z"]], [both, split])
    g.remove_dead()  # the parts stay: the packed constant is made from them
    np.testing.assert_array_equal(g.const(packed), want)
    stored = {t.name: t for t in g.commit().graph.initializer}
    assert set(stored) == {packed, "sizes"}  # stored once in use; the parts, read by nothing now, are gone
    assert list(stored[packed].dims) == [4, 8]

    dropped = Graph(_two_matmuls())
    dropped.make("MatMul", ["x", dropped.add_concat("unused", ["a", "b"], axis=1)], 1, "never added")
    assert {t.name for t in dropped.commit().graph.initializer} == {"a", "b"}  # nothing reads it: never made
