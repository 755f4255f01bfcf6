"""The core every qwdeploy step uses: checkpoints, model specs, profiles, registries, CLI."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("qwdeploy")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
