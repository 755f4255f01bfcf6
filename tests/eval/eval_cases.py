"""Constants the eval tests and their fixtures share."""

ARCH = "qwen3"
STATIC_CONTEXT = 128  # the CANN static graph's KV buffer: shorter than the text scored and than some needle rows
DAMAGED_TENSOR = "model.layers.0.mlp.down_proj.weight"  # zeroed in the damaged artifact: one MLP gone
