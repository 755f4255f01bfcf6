"""The engines that run artifacts (ONNX Runtime, llama.cpp, transformers), found per device in toolkit/devices.py.

A runtime never runs in the CLI's own process when it loads native code: see toolkit/engines.py.
"""
