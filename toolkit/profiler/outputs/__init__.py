"""Renderings of profile documents: terminal rows, JSON, Chrome trace, PNG; `write_outputs` writes them all."""
