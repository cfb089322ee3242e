#!/usr/bin/env bash
# The demo (tools/demo.py): installs what it needs (tools/install.sh), writes
# scikit-learn's 1,797 handwritten digits as a small ImageNet-format dataset,
# trains a ResNet-18 teacher, a plain MobileNetV1 student and a CWT-distilled
# one with MMEngine's Runner on CPU, prints their
# top-1 accuracies and the commands that export and visualise the distilled
# student, whose checkpoint stays in work_dirs/demo. Arguments go to demo.py
# (--quick: a seconds-long version).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/tools/install.sh"
cd "$ROOT"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
exec "$ROOT/.venv/bin/python" "$ROOT/tools/demo.py" "$@"
