"""Fusions into ONNX Runtime contrib ops (com.microsoft) and our `qwdeploy` ops, one module per fusion."""

MS = "com.microsoft"
