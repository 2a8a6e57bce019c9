#!/usr/bin/env bash
# Installs the system packages the build needs when they are missing (Debian, as root), and does
# nothing when they are all there. Needed: a C++ compiler (torch-sys compiles libtorch's C API
# wrapper), cmake and nasm (turbojpeg-sys builds its vendored libjpeg-turbo 3.1 with SIMD),
# python3 with venv support, and Gloo's headers (the torch wheel ships ProcessGroupGloo but not
# <gloo/...>, which model/csrc/dist.cpp includes; only pointers to Gloo types cross it).
set -euo pipefail
missing=()
command -v c++ >/dev/null || missing+=(g++)
command -v cmake >/dev/null || missing+=(cmake)
command -v nasm >/dev/null || missing+=(nasm)
command -v python3 >/dev/null || missing+=(python3)
[[ -f /usr/include/gloo/config.h ]] || missing+=(libgloo-dev)
if command -v python3 >/dev/null && ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
  missing+=(python3-venv)
fi
((${#missing[@]} == 0)) && exit 0
echo "setup-system: installing ${missing[*]} with apt-get"
if [[ $(id -u) -ne 0 ]]; then
  echo "setup-system: not root; run: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
