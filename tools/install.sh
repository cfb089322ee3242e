#!/usr/bin/env bash
# Install everything mmkd_channel needs into a venv inside the repository.
#
# Idempotent: a stamp records the hash of this script and of the requirement
# files; when it matches, the script returns in well under a second.
# mmcv 2.1.0 has no wheel for torch 2.14 and must be compiled from its sdist
# with C++20 (~12 min on 2 cores).  The wheel is kept in a cache outside git
# (MMKD_WHEEL_CACHE, default ~/.cache/mmkd_channel/wheels) and reused.
#
# Users on a GPU cluster do not need this script; see README "Installation".
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${MMKD_VENV:-$ROOT/.venv}
CACHE=${MMKD_WHEEL_CACHE:-$HOME/.cache/mmkd_channel/wheels}
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3

want=$(cat "$ROOT/tools/install.sh" "$ROOT"/requirements/*.txt "$ROOT/setup.py" | sha256sum | cut -d' ' -f1)
if [ -f "$VENV/.mmkd_stamp" ] && [ "$(cat "$VENV/.mmkd_stamp")" = "$want" ]; then
  exit 0
fi

log() { printf '[install %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

if [ ! -x "$VENV/bin/python" ]; then
  log "creating venv $VENV"
  "$PY" -m venv "$VENV"
fi
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check "$@"; }

log "torch and build tools"
pip install -q --upgrade pip
# setuptools >= 70.1 works with wheel 0.48; < 80 keeps pkg_resources and
# `setup.py develop`, which mmcv's setup.py imports.
pip install -q -r "$ROOT/requirements/torch.txt" "setuptools>=70.1,<80" wheel ninja

mmcv_wheel=$(ls "$CACHE"/mmcv-2.1.0-*.whl 2>/dev/null | head -n1 || true)
if [ -z "$mmcv_wheel" ]; then
  log "building mmcv 2.1.0 with ops from its sdist (C++20); takes ~12 minutes on 2 cores"
  mkdir -p "$CACHE"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  pip download -q --no-deps --no-binary :all: --no-build-isolation -d "$tmp" mmcv==2.1.0
  tar -xzf "$tmp"/mmcv-2.1.0.tar.gz -C "$tmp"
  # torch >= 2.10 headers refuse anything older than C++20.
  sed -i -E 's/-std=c\+\+1[47]/-std=c++20/g' "$tmp/mmcv-2.1.0/setup.py"
  grep -q 'c++20' "$tmp/mmcv-2.1.0/setup.py"
  (cd "$tmp/mmcv-2.1.0" && MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS=${MAX_JOBS:-2} \
     "$VENV/bin/python" -m pip wheel -q --no-deps --no-build-isolation -w "$tmp/whl" .)
  # move into the cache only once complete, so an interrupted build leaves nothing
  built=$(ls "$tmp"/whl/mmcv-2.1.0-*.whl)
  cp "$built" "$CACHE/.partial.whl" && mv "$CACHE/.partial.whl" "$CACHE/$(basename "$built")"
  mmcv_wheel="$CACHE/$(basename "$built")"
fi

log "mmcv, mmengine and runtime dependencies"
pip install -q "$mmcv_wheel" -r "$ROOT/requirements/runtime.txt" -r "$ROOT/requirements/tests.txt"
log "mmdet, mmsegmentation, mmpretrain (--no-deps: they would resolve another mmcv)"
pip install -q --no-deps -r "$ROOT/requirements/hosts.txt" -r "$ROOT/requirements/tests-nodeps.txt"
log "mmkd_channel (editable)"
# `setup.py develop` (not a PEP 660 `pip install -e`): mim finds a package's
# tools and configs through its install location, which develop sets to the
# repository and PEP 660 to site-packages.
pip uninstall -q -y mmkd_channel >/dev/null 2>&1 || true
(cd "$ROOT" && "$VENV/bin/python" setup.py -q develop --no-deps >/dev/null)
"$VENV/bin/python" -c "import mmcv.ops, mmdet, mmseg, mmpretrain, mmkd_channel"
echo "$want" > "$VENV/.mmkd_stamp"
log "done: $VENV"
