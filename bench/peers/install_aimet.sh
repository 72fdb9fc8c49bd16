#!/usr/bin/env bash
# Install AIMET (aimet-torch) for the spatial-SVD peer of bench/bench_peers.py, next to the system's CPU torch.
#
#     bash bench/peers/install_aimet.sh            # creates/updates $AIMET_VENV (default /opt/aimet-venv)
#     /opt/aimet-venv/bin/python bench/peers/check_aimet.py
#
# Idempotent: a second run reuses the venv, pip finds everything satisfied, the checks run again. Exits non-zero
# with a message naming the failed step. Nothing is installed into the system python, and the script checks that
# torch/numpy there are the same before and after.
#
# Why each step:
# 1. A venv made with --system-site-packages: it sees the system's one torch (2.13.0+cpu, which executorch 1.5.1 is
#    linked against), numpy, scipy, pandas, onnx, ... so none of them is installed twice, while everything AIMET
#    adds lands in the venv and never in the system site-packages. (pip install --target would also keep the
#    system clean, but pip cannot see the system packages there when resolving, so every dependency would have to
#    be listed by hand with --no-deps; the venv lets pip check them.)
# 2. aimet-torch with --no-deps. Its metadata requires torchvision, and the only torchvision pip reaches here for
#    aimet-torch 2.42.0 (0.28.0) is a CUDA build: next to CPU torch 2.13.0 `import torchvision` fails with
#    "operator torchvision::nms does not exist", and a resolving install could also try to replace torch. The
#    wheel itself is pure Python (py310-none-any, no libpymo/compiled parts in 2.x). Also left out, because the
#    spatial-SVD import path and code never import them: cvxpy, tensorboard, psutil, pybind11 (and torchvision).
# 3. Only what `import aimet_torch.compress` (the ModelCompressor / spatial-SVD path) imports at module level and
#    the system lacks, pinned to the versions tested:
#      bokeh 3.6.3 (+ tornado, xyzservices)  aimet_torch.common.utils imports bokeh.server at module level;
#                                            aimet-torch pins bokeh <= 3.6.3
#      osqp                                  aimet_torch.common.curve_fit raises ImportError without it (imported
#                                            by the greedy comp-ratio selector; only used with use_monotonic_fit)
#      hvplot (+ holoviews, panel 1.7.5 -    aimet_torch.common.plotting_utils does `import hvplot.pandas`
#      the last panel for bokeh 3.6 -,       (imported by CompressionAlgo; plots only with a visualization URL).
#      param, pyviz_comms, colorcet,         About 150 MB of the venv's 235 MB, kept because it is AIMET's real
#      Markdown, bleach, linkify-it-py,      code path rather than a second stub.
#      mdit-py-plugins, webencodings)
#    pip resolves this step normally, but under constraints that pin every system package to its installed
#    version (pip freeze of the system python) and forbid torchvision outright, so pip can never pull torch,
#    torchvision or numpy into the venv nor shadow any system package with another version.
# 4. Checks: no system package is shadowed in the venv, the venv's torch is the system's, the system's torch/numpy
#    are unchanged, and aimet_torch.compress imports through bench/peers/aimet_shim.py (the torchvision stub,
#    needed because step 2 leaves torchvision out).
#
# Tested: aimet-torch 2.42.0 with torch 2.13.0+cpu, numpy 2.4.6, Python 3.11.7 (fresh install about a minute,
# venv about 235 MB). Other versions: AIMET_VERSION=... (then re-run check_aimet.py).

set -euo pipefail

AIMET_VERSION="${AIMET_VERSION:-2.42.0}"
VENV="${AIMET_VENV:-/opt/aimet-venv}"
PYTHON="${PYTHON:-python}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# Step 3's packages, pinned (what pip chose for aimet-torch 2.42.0 against this system).
DEPS=(
    "bokeh==3.6.3" "tornado==6.6.1" "xyzservices==2026.9.1"
    "osqp==1.1.3"
    "hvplot==0.12.2" "holoviews==1.23.2" "panel==1.7.5" "param==2.4.2" "pyviz_comms==3.0.6" "colorcet==3.2.1"
    "Markdown==3.11.4" "bleach==6.4.0" "linkify-it-py==2.2.0" "mdit-py-plugins==0.7.0" "webencodings==0.6.1"
)

STEP="start"
REPORTED=0
fail() { echo "install_aimet.sh: FAILED at step '$STEP': $*" >&2; REPORTED=1; exit 1; }
on_exit() {
    local rc=$?
    [ -n "${WORK:-}" ] && rm -rf "$WORK"
    if [ $rc -ne 0 ] && [ $REPORTED = 0 ]; then
        echo "install_aimet.sh: FAILED at step '$STEP' (exit $rc); see the output above" >&2
    fi
}
trap on_exit EXIT
step() { STEP="$1"; echo "== $1"; }
START=$(date +%s)

step "0. system python with torch"
command -v "$PYTHON" >/dev/null || fail "no '$PYTHON' on PATH (set PYTHON=...)"
versions() { "$PYTHON" -c "import torch, numpy; print(f'torch {torch.__version__} numpy {numpy.__version__}')"; }
SYSTEM_BEFORE="$(versions)" || fail "the system python ($PYTHON) cannot import torch and numpy"
PYVER="$("$PYTHON" -c 'import sys; print(f"{sys.version_info.major}.{sys.version_info.minor}")')"
echo "$("$PYTHON" -c 'import sys; print(sys.executable)') (Python $PYVER): $SYSTEM_BEFORE"

step "1. venv with the system site-packages at $VENV"
if [ -x "$VENV/bin/python" ]; then
    grep -q "^include-system-site-packages = true" "$VENV/pyvenv.cfg" \
        || fail "$VENV exists but was not made with --system-site-packages: remove it and re-run"
    [ "$("$VENV/bin/python" -c 'import sys; print(f"{sys.version_info.major}.{sys.version_info.minor}")')" = "$PYVER" ] \
        || fail "$VENV was made by another Python than $PYTHON ($PYVER): remove it and re-run"
    echo "reusing $VENV"
else
    "$PYTHON" -m venv --system-site-packages "$VENV" || fail "python -m venv failed"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

step "2. aimet-torch==$AIMET_VERSION without its declared dependencies"
"${PIP[@]}" install --no-deps "aimet-torch==$AIMET_VERSION" || fail "pip install --no-deps aimet-torch==$AIMET_VERSION"

step "3. the packages aimet_torch.compress imports, under system-pinning constraints"
WORK="$(mktemp -d)"
"$PYTHON" -m pip freeze --exclude-editable --disable-pip-version-check | grep -v " @ " > "$WORK/system.txt" \
    || fail "pip freeze of the system python"
echo "torchvision<0   # never: the reachable build is CUDA-only (bench/peers/aimet_shim.py)" > "$WORK/forbid.txt"
"${PIP[@]}" install -c "$WORK/system.txt" -c "$WORK/forbid.txt" "${DEPS[@]}" \
    || fail "pip install ${DEPS[*]} (under constraints: the system's packages pinned, torchvision forbidden)"
echo "(pip's notes that aimet-torch requires torchvision, cvxpy, tensorboard, psutil, pybind11 are expected)"

step "4. checks"
SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
SHADOWED="$("$VENV/bin/python" - "$SITE" "$WORK/system.txt" <<'EOF'
import re, sys
from importlib.metadata import distributions
site, frozen = sys.argv[1], open(sys.argv[2]).read().splitlines()
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
system = {norm(line.split("==")[0]) for line in frozen if "==" in line}
mine = {norm(d.metadata["Name"]) for d in distributions(path=[site])}
print(" ".join(sorted((mine & system) - {"pip", "setuptools"})))
EOF
)"
[ -z "$SHADOWED" ] || fail "the venv shadows system packages: $SHADOWED"
for pkg in torch torchvision numpy onnx executorch; do
    [ ! -e "$SITE/$pkg" ] || fail "$pkg was installed into the venv ($SITE/$pkg)"
done
VENV_TORCH="$("$VENV/bin/python" -c "import torch, numpy; print(f'torch {torch.__version__} numpy {numpy.__version__}')")" \
    || fail "the venv cannot import torch/numpy"
[ "$VENV_TORCH" = "$SYSTEM_BEFORE" ] || fail "venv sees '$VENV_TORCH', system has '$SYSTEM_BEFORE'"
[ "$(versions)" = "$SYSTEM_BEFORE" ] || fail "the system's torch/numpy changed: '$SYSTEM_BEFORE' -> '$(versions)'"
(cd "$HERE" && "$VENV/bin/python" -c "
import sys
from aimet_shim import import_aimet
aimet_torch, compress, defs, common_defs = import_aimet()
assert compress.ModelCompressor and defs.SpatialSvdParameters and common_defs.CompressionScheme.spatial_svd
print('aimet_torch', aimet_torch.__version__, 'imports; torchvision left in sys.modules:', 'torchvision' in sys.modules)
" 2>&1 | grep -v -E "^W[0-9]{4} |torchao") || fail "aimet_torch.compress does not import through aimet_shim"

echo "== done in $(( $(date +%s) - START )) s: $VENV ($(du -sh "$VENV" | cut -f1)), aimet-torch $AIMET_VERSION, $SYSTEM_BEFORE"
echo "   check: $VENV/bin/python $HERE/check_aimet.py"
