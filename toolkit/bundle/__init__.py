"""Bundles: an artifact packaged for one device, as a folder or a deterministic .tar.gz of it."""
