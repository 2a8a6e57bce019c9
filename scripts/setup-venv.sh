#!/usr/bin/env bash
# Creates (or refreshes) the project-local virtualenv `.venv` that holds PyTorch 2.11.0.
# tch 0.24.0 links the libtorch inside that wheel (LIBTORCH_USE_PYTORCH=1), and the Python
# reference scripts under python/ run in it. Idempotent: a stamp of python/requirements.txt
# records what was installed; nothing is downloaded when it is unchanged.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$root/.venv"
req="$root/python/requirements.txt"
stamp="$venv/.twoview-requirements.sha256"
want=$(sha256sum "$req" | cut -d' ' -f1)

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] && "$venv/bin/python" -c 'import torch' 2>/dev/null; then
  exit 0
fi

py=${PYTHON:-python3}
command -v "$py" >/dev/null || { echo "setup-venv: $py not found; install python3 (>= 3.10)" >&2; exit 1; }
if [[ ! -x "$venv/bin/python" ]]; then
  echo "setup-venv: creating $venv"
  "$py" -m venv "$venv"
fi
echo "setup-venv: installing python/requirements.txt into .venv (torch is a ~3 GB download the first time)"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet -r "$req"
got=$("$venv/bin/python" -c 'import torch; print(torch.__version__)')
case "$got" in
  2.11.0*) ;;
  *) echo "setup-venv: expected torch 2.11.0 (tch 0.24.0 needs it), found $got" >&2; exit 1 ;;
esac
echo "$want" > "$stamp"
echo "setup-venv: torch $got ready in .venv"
