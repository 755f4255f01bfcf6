"""Huawei Ascend NPUs through CANN: ATC-ready static decoders, an op-support preflight, ATC scripts."""
