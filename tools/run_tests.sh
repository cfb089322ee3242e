#!/usr/bin/env bash
# The whole test suite: installs what it needs (tools/install.sh), then
# runs pytest on CPU. Extra arguments go to pytest.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/tools/install.sh"
cd "$ROOT"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
exec "$ROOT/.venv/bin/python" -m pytest tests "$@"
