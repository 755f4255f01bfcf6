"""-O attention_bf16 (on by default for CPU int4/int8): our GroupQueryAttention nodes carry bf16_products, which
the kernel honours on prompts where the CPU has AVX512-BF16 (tests/kernels hold it to float32's numbers); a
float build, or the option off, keeps float32."""

import onnx
import pytest
from onnx import helper

from qwdeploy.toolkit.layout import MODEL_FILE


def _bf16_products(folder) -> list[int]:
    model = onnx.load(str(folder / MODEL_FILE), load_external_data=False)
    return [helper.get_attribute_value(a) for n in model.graph.node if n.op_type == "GroupQueryAttention"
            for a in n.attribute if a.name == "bf16_products"]


@pytest.mark.parametrize("quant,options,want", [
    ("int4", {}, 1), ("int8", {}, 1), ("f32", {}, 0), ("int4", {"attention_bf16": "false"}, 0),
])
def test_which_builds_ask_for_bf16_products(exported, quant, options, want):
    marks = _bf16_products(exported("qwen2", "cpu", quant, **options))
    assert marks and set(marks) == {want}
