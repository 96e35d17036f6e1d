#!/usr/bin/env bash
# Installs the system packages mmesid builds against, on Debian bookworm, when they are missing:
# libtorch (CPU) for mmesid_torch.node, OpenBLAS with its OpenMP threading (one thread pool shared with
# libtorch and our kernels; the pthread variant makes libtorch ~40x slower at GEMM here), ccache and
# ninja for the build, Gloo for c10d, clang-format for the lint, nlohmann-json (header-only) for the
# safetensors headers and Hugging Face config files read natively.
# Safe to re-run: it does nothing when everything is present. Needs root (or sudo) for apt-get.
set -euo pipefail

packages=(libtorch-dev libopenblas0-openmp libopenblas-openmp-dev ccache ninja-build libgloo-dev clang-format nlohmann-json3-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "mmesid setup: installing ${missing[*]}" >&2
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

# Point every BLAS/LAPACK alternative at the OpenMP build of OpenBLAS.
for name in $(update-alternatives --get-selections | awk '{print $1}' | grep -E '^(libblas|liblapack|libopenblas|cblas)'); do
  target=$(update-alternatives --list "$name" 2>/dev/null | grep '/openblas-openmp/' | head -n 1 || true)
  current=$(readlink -f "/etc/alternatives/$name" || true)
  if [ -n "$target" ] && [ "$current" != "$(readlink -f "$target")" ]; then
    "${sudo_cmd[@]}" update-alternatives --set "$name" "$target" >/dev/null
  fi
done
echo "mmesid setup: system packages ready (OpenBLAS: OpenMP build)" >&2
