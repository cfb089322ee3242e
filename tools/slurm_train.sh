#!/usr/bin/env bash
# Usage: [GPUS=16] tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR \
#            [train.py args]
# One task per GPU, started by srun; rank, world size and master address
# come from Slurm (--launcher slurm). GPUS_PER_NODE=0 runs CPU-only tasks
# (gloo backend, no --gres). SRUN_ARGS adds srun options; PYTHON selects
# the interpreter.
set -x

PARTITION=$1
JOB_NAME=$2
CONFIG=$3
WORK_DIR=$4
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}
PYTHON=${PYTHON:-python}
PY_ARGS=("${@:5}")
if [ "$GPUS_PER_NODE" -gt 0 ]; then
    GRES="--gres=gpu:${GPUS_PER_NODE}"
    TASKS_PER_NODE=$GPUS_PER_NODE
else
    GRES=""
    TASKS_PER_NODE=${TASKS_PER_NODE:-$GPUS}
fi

PYTHONPATH="$(dirname "$0")/..":$PYTHONPATH \
srun -p "${PARTITION}" \
    --job-name="${JOB_NAME}" \
    ${GRES} \
    --ntasks="${GPUS}" \
    --ntasks-per-node="${TASKS_PER_NODE}" \
    --cpus-per-task="${CPUS_PER_TASK}" \
    --kill-on-bad-exit=1 \
    ${SRUN_ARGS} \
    $PYTHON -u "$(dirname "$0")"/train.py "${CONFIG}" \
    --work-dir="${WORK_DIR}" --launcher="slurm" "${PY_ARGS[@]}"
