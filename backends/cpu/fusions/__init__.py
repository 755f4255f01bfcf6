"""Fusions only the CPU pipeline uses."""
