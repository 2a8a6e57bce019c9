# Source this (`. scripts/env.sh`) to build by hand the way make does: torch-sys runs `python`
# from PATH (VIRTUAL_ENV set) and links the venv's libtorch. Run scripts/setup-venv.sh first.
twoview_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export VIRTUAL_ENV="$twoview_root/.venv"
export PATH="$VIRTUAL_ENV/bin:$PATH"
export LIBTORCH_USE_PYTORCH=1
unset LIBTORCH LIBTORCH_LIB LIBTORCH_INCLUDE
