"""Ascend kernels (kernels/ascend/*.mlir) compiled by bishengir-compile through HFusion → HIVM for a profile's
SoC, cached like kernels/build.py: by the sources, the SoC and the compilers' versions.

A build holds, per kernel: the final HIVM IR (`module.hivm.opt.mlir`, from --save-temps), the tensor-level IR
after STAGE_PASS (what kernels/ascend_x86.py lowers to x86 for the numerical check) and, only where the CANN
toolkit's `hivmc` is on PATH, the device object. Without hivmc, bishengir-compile exits 1 with "Cannot find
hivmc under $PATH" after writing the HIVM IR: that outcome is a passed compile. What this does and does not
verify is in kernels/ascend/README.md.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from ..toolkit.atomic import build_once
from ..toolkit.errors import MissingDependencyError, QwdeployError
from .build import tool_version
from .targets import MACHINE_TARGETS
from ..toolkit.layout import cache_root
from ..toolkit.profiles import DeviceProfile, load_profile

SOURCE_DIR = Path(__file__).resolve().parent / "ascend"
INSTALL = "pip install ascendnpu-ir (qwdeploy's 'ascend' extra)"
HIVM_IR = "module.hivm.opt.mlir"  # the name --save-temps gives the final HIVM IR
STAGE_PASS = "convert-hfusion-to-hivm"  # the last stage that is tiled but still on tensors (no memory planning)
STAGE_IR = "stage.mlir"
COMPILE_LOG = "compile.log"
MANIFEST = "ascend.json"
NO_HIVMC = "Cannot find hivmc under $PATH"
HIVMC_NOTE = "compiled to HIVM; the device object needs hivmc from the CANN toolkit"

# Kernel (its .mlir file's stem and host-entry function) → extra bishengir-compile flags.
KERNELS: dict[str, tuple[str, ...]] = {
    "rms_norm": (),
    "add_rms_norm": (),
    "swiglu": (),
    # Auto-schedule counts one unified-buffer tile too few for tensor.concat, so memory planning overflows
    # by exactly one tile; counting one more shrinks the tiles until they fit.
    "rotary": ("--hfusion-max-buffer-count-tuning=1",),
}
_DUMP_HEADER = re.compile(r"^// -----// IR Dump After .*\n", re.M)
_AI_CORES = re.compile(r'"AI_CORE_COUNT", (\d+)')


@dataclass(frozen=True)
class AscendTarget:
    profile: str
    soc: str  # ATC's --soc_version, bishengir-compile's --target
    ai_cores: int  # the launch's block dim: one block per AI core

    def describe(self) -> str:
        return f"{self.profile} ({self.soc}, {self.ai_cores} AI cores)"


@dataclass(frozen=True)
class Tools:
    compile: str
    opt: str
    hivmc: str | None  # from the CANN toolkit; absent here


@dataclass(frozen=True)
class AscendBuild:
    target: AscendTarget
    directory: Path

    def hivm_ir(self, kernel: str) -> Path:
        return self.directory / kernel / HIVM_IR

    def stage_ir(self, kernel: str) -> Path:
        return self.directory / kernel / STAGE_IR

    def device_object(self, kernel: str) -> Path:
        return self.directory / kernel / f"{kernel}.o"

    def exists(self) -> bool:
        return (self.directory / MANIFEST).is_file()

    @property
    def has_device_objects(self) -> bool:
        return bool(json.loads((self.directory / MANIFEST).read_text())["device_objects"])

    def outputs(self) -> list[Path]:
        """What the build made per kernel: the device object where hivmc ran, else the HIVM IR."""
        pick = self.device_object if self.has_device_objects else self.hivm_ir
        return [pick(kernel) for kernel in KERNELS]


def _ascend_profile(target: str) -> DeviceProfile | None:
    """The profile named by target when it has an Ascend accelerator; None for "host", "portable" and other profiles."""
    if target in MACHINE_TARGETS:
        return None
    profile = load_profile(target)
    return profile if profile.accelerator.kind == "ascend" else None


def ascend_soc(target: str) -> str | None:
    """The SoC of an Ascend profile (ATC's --soc_version); None for "host", "portable" and other profiles."""
    profile = _ascend_profile(target)
    return profile.accelerator.soc_version if profile else None


def _bishengir(name: str) -> str:
    """The ascendnpu-ir wheel keeps its binaries inside the package, off PATH; a copy on PATH also serves."""
    spec = importlib.util.find_spec("ascendnpuir")
    if spec is not None and spec.origin:
        packaged = Path(spec.origin).parent / "bin" / name
        if packaged.is_file():
            return str(packaged)
    found = shutil.which(name)
    if not found:
        raise MissingDependencyError(f"'{name}' not found; install it: {INSTALL}")
    return found


def tools() -> Tools:
    return Tools(_bishengir("bishengir-compile"), _bishengir("bishengir-opt"), shutil.which("hivmc"))


def resolve(target: str) -> AscendTarget:
    """An Ascend profile's SoC, checked against the compiler's own targets (which also give its core count)."""
    profile = _ascend_profile(target)
    if profile is None:
        raise QwdeployError(f"'{target}' is not a profile with an Ascend accelerator")
    soc = profile.accelerator.soc_version
    run = subprocess.run([tools().opt, f"--hacc-append-device-spec=target={soc}"], input="module {}",
                         capture_output=True, text=True)
    cores = _AI_CORES.search(run.stdout)
    if run.returncode != 0 or not cores:
        raise QwdeployError(f"{soc} is not a bishengir-compile target (its targets are Ascend910B*, "
                            f"Ascend910_93xx/95xx and Ascend950*): no Ascend kernels for '{profile.name}'")
    return AscendTarget(profile.name, soc, int(cores.group(1)))


def build_key(target: AscendTarget, found: Tools) -> str:
    digest = hashlib.sha256()
    for kernel, flags in KERNELS.items():
        source = SOURCE_DIR / f"{kernel}.mlir"
        digest.update(kernel.encode() + b"\0" + source.read_bytes() + b"\0" + " ".join(flags).encode() + b"\0")
    digest.update(json.dumps([target.soc, target.ai_cores, STAGE_PASS]).encode())
    digest.update(tool_version(found.compile).encode())
    digest.update(tool_version(found.hivmc).encode() if found.hivmc else b"no hivmc")
    return digest.hexdigest()[:16]


def planned(target: AscendTarget) -> AscendBuild:
    """Where this SoC's build lives for the current sources and compilers (built or not)."""
    return AscendBuild(target, cache_root() / "kernels-ascend" / f"{target.soc}-{build_key(target, tools())}")


def build(target: AscendTarget, jobs: int | None = None, force: bool = False) -> AscendBuild:
    """Compiles every kernel into a temporary folder beside the cache entry, renamed into place when all passed."""
    found = tools()
    result = planned(target)
    if result.exists() and not force:
        return result

    def make(staging: Path) -> None:
        with ThreadPoolExecutor(jobs or os.cpu_count() or 1) as pool:
            objects = list(pool.map(lambda kernel: _compile(kernel, target, found, staging / kernel), KERNELS))
        manifest = {"target": asdict(target), "compiler": tool_version(found.compile),
                    "hivmc": tool_version(found.hivmc) if found.hivmc else None, "kernels": list(KERNELS),
                    "device_objects": all(objects)}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2))

    build_once(result.directory, result.exists, force, make)
    return result


def _compile(kernel: str, target: AscendTarget, found: Tools, out: Path) -> bool:
    """One kernel through bishengir-compile; True when hivmc also built its device object."""
    out.mkdir()
    device_object = out / f"{kernel}.o"
    command = [found.compile, str(SOURCE_DIR / f"{kernel}.mlir"), "--enable-hfusion-compile", "--enable-hivm-compile",
               f"--target={target.soc}", f"--block-dim={target.ai_cores}", f"--save-temps={out}",
               "-o", str(device_object), f"--mlir-print-ir-after={STAGE_PASS}", "--mlir-print-ir-module-scope",
               "--mlir-disable-threading", *KERNELS[kernel]]
    run = subprocess.run(command, capture_output=True, text=True)
    stage, log = _split_dump(run.stderr)
    (out / COMPILE_LOG).write_text(log)
    (out / STAGE_IR).write_text(stage)
    if run.returncode == 0 and device_object.is_file():
        return True
    if run.returncode != 0 and NO_HIVMC in log and stage and (out / HIVM_IR).is_file():
        return False
    lines = log.splitlines()
    errors = [line for line in lines if "error:" in line][:5] or lines[-5:]  # MLIR's diagnostics, not [ERROR] chatter
    raise QwdeployError(f"{kernel}: bishengir-compile failed for {target.soc}:\n  " + "\n  ".join(errors))


def _split_dump(stderr: str) -> tuple[str, str]:
    """(the last IR dump, the messages around the dumps): the dumps share stderr with the messages, and a
    pipeline that retries memory planning prints its stage again."""
    stage, log, position = "", [], 0
    for header in _DUMP_HEADER.finditer(stderr):
        end = stderr.find("\n}\n", header.end())  # the module's closing brace, alone at column 0
        end = len(stderr) if end < 0 else end + 3
        log.append(stderr[position:header.start()])
        stage, position = stderr[header.end():end], end
    log.append(stderr[position:])
    return stage, "".join(log)
