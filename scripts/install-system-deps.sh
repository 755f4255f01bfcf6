#!/usr/bin/env bash
# System packages qwdeploy's kernel builds and tests use: CMake, the host and aarch64 cross C++
# compilers, qemu-user to run aarch64 test binaries, and LLVM 19's mlir-translate/llc to lower the Ascend
# kernels to x86 for their numerical check (bishengir, from pip's ascendnpu-ir, is built on LLVM 19).
# Idempotent: installs only what is missing.
# CUDA (nvcc) is not installed here; CUDA builds need the CUDA toolkit at /usr/local/cuda or on PATH.
set -euo pipefail

packages=(cmake ninja-build g++ g++-aarch64-linux-gnu qemu-user mlir-19-tools llvm-19)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "installed: ${missing[*]}"
