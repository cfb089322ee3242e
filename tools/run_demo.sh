#!/usr/bin/env bash
# The main job: installs what it needs, generates a tiny COCO-format
# dataset, trains a teacher, a plain student and a CWT-distilled student
# with MMEngine's Runner on CPU and prints their metrics.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/tools/install.sh"
cd "$ROOT"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
exec "$ROOT/.venv/bin/python" "$ROOT/tools/demo.py" "$@"
