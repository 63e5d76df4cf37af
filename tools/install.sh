#!/usr/bin/env bash
# Install what mmboxseg needs into the current Python environment, skipping
# what is already there (safe to run again). Order matters:
#   1. torch 2.13.0, unless a torch is already installed (a CUDA build stays)
#   2. build tools for mmcv: setuptools<70 (mmcv's setup.py imports
#      pkg_resources), wheel, ninja
#   3. mmcv 2.1.0 built from source with its ops (--no-build-isolation so the
#      build sees torch; pip caches the wheel for the next install)
#   4. mmengine 0.10.7, mmdet 3.3.0 and the runtime/test requirements
#   5. mmboxseg itself, editable (pip install -e .)
# Environment: PYTHON (default python), MAX_JOBS (mmcv build jobs, default
# the number of cores), MMBOXSEG_SKIP_TEST_DEPS=1 to skip pytest & co.
set -euo pipefail

PYTHON=${PYTHON:-python}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PIP=("$PYTHON" -m pip install --disable-pip-version-check)
START=$(date +%s)

step() { echo "[install] $*"; }
# run checks outside the repository so that only installed packages count
has() { (cd / && "$PYTHON" -c "$1" >/dev/null 2>&1); }

if has 'import torch'; then
    step "torch $("$PYTHON" -c 'import torch; print(torch.__version__)') already installed"
else
    step 'installing torch==2.13.0'
    "${PIP[@]}" torch==2.13.0
fi
TORCH_VERSION=$("$PYTHON" -c 'import torch; print(torch.__version__)')

# setuptools<70 is pinned on its own, with --no-deps: in one command with a
# package that depends on torch, pip would backtrack to an older torch
# (torch 2.13 declares setuptools>=77) and download its CUDA build.
pin_setuptools() {
    "${PIP[@]}" --no-deps "setuptools<70"
}
SETUPTOOLS_OK='import pkg_resources, setuptools; assert int(setuptools.__version__.split(".")[0]) < 70'

if has "$SETUPTOOLS_OK; import wheel, ninja"; then
    step 'build tools already installed'
else
    step 'installing build tools (setuptools<70, wheel, ninja)'
    "${PIP[@]}" wheel ninja
    pin_setuptools
fi

if has 'import mmcv, mmcv.ops; from mmcv.ops import nms; assert mmcv.__version__ == "2.1.0"'; then
    step 'mmcv 2.1.0 with ops already installed'
else
    step 'building mmcv 2.1.0 with ops from source (10-25 min on 2 cores; pip caches the wheel)'
    MAX_JOBS=${MAX_JOBS:-$(nproc)} "${PIP[@]}" --no-build-isolation mmcv==2.1.0
fi

if has 'import mmengine, mmdet, pycocotools, terminaltables, mim; assert mmengine.__version__ == "0.10.7" and mmdet.__version__ == "3.3.0"'; then
    step 'mmengine 0.10.7, mmdet 3.3.0, pycocotools, terminaltables, openmim already installed'
else
    step 'installing mmengine 0.10.7, mmdet 3.3.0 and runtime requirements'
    "${PIP[@]}" mmengine==0.10.7 mmdet==3.3.0 openmim \
        -r "$REPO/requirements/runtime.txt"
fi

if [ "${MMBOXSEG_SKIP_TEST_DEPS:-0}" != "1" ]; then
    if has 'import pytest, skimage, flake8, isort, yapf'; then
        step 'test requirements already installed'
    else
        step 'installing test requirements'
        "${PIP[@]}" -r "$REPO/requirements/tests.txt"
    fi
fi

# Dependencies may have upgraded setuptools past 81, which has no
# pkg_resources; mmengine's `mmdet::` configs, mim and the editable install
# of mmboxseg need it.
if ! has "$SETUPTOOLS_OK"; then
    step 're-pinning setuptools<70 (pkg_resources)'
    pin_setuptools
fi
if [ "$("$PYTHON" -c 'import torch; print(torch.__version__)')" != "$TORCH_VERSION" ]; then
    echo "[install] error: torch changed from $TORCH_VERSION during the install" >&2
    exit 1
fi

if has "import mmboxseg, os; assert os.path.realpath(os.path.dirname(mmboxseg.__file__)) == os.path.realpath('$REPO/mmboxseg')"; then
    step "mmboxseg already installed from $REPO"
else
    step "installing mmboxseg from $REPO (editable)"
    (cd "$REPO" && "${PIP[@]}" --no-build-isolation --no-deps -e .)
fi

# `python -m pip` skips pyenv's rehash hook: make new commands (mim) visible
if command -v pyenv >/dev/null 2>&1; then
    pyenv rehash || true
fi

"$PYTHON" - <<'PY'
import mmcv, mmdet, mmengine, torch
import mmboxseg
from mmcv.ops import nms  # noqa: F401 (the compiled ops)
print(f'[install] ok: torch {torch.__version__}, mmcv {mmcv.__version__}, '
      f'mmengine {mmengine.__version__}, mmdet {mmdet.__version__}, '
      f'mmboxseg {mmboxseg.__version__}')
PY
echo "[install] done in $(( $(date +%s) - START )) s"
