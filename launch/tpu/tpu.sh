#!/bin/bash
# Cloud TPU VM (single slice, any number of workers): create, set up, run on ALL workers, delete.
#
#   export TPU_NAME=zero24-v5e TPU_ZONE=us-west4-a TPU_TYPE=v5litepod-16 TPU_VERSION=v2-alpha-tpuv5-lite
#   bash launch/tpu/tpu.sh create
#   REPO_URL=<git url> bash launch/tpu/tpu.sh setup   # clone + install on every worker
#   bash launch/tpu/tpu.sh run --config=train/configs/smollm2_360m.py --workdir=/mnt/shared/runs/360m
#   bash launch/tpu/tpu.sh logs                  # tail worker 0's log
#   bash launch/tpu/tpu.sh delete
#
# `run` starts `python -m train.main --multihost <args>` on every worker at once (gcloud
# --worker=all); JAX detects the TPU slice from the VM metadata, so no coordinator flags are
# needed. A multi-worker VM started without --multihost is refused by launch/multihost.py. The
# workdir must be ONE directory all workers share (an NFS/Filestore or gcsfuse mount): every worker
# writes its checkpoint shard there and train uses POSIX paths (no gs:// URLs). Runs are started
# under nohup into ~/zero24.log on each worker, so a dropped ssh session does not kill them.
# ZERO24_DRY_RUN=1 prints the gcloud commands instead of running them.
set -euo pipefail
: "${TPU_NAME:?set TPU_NAME}" "${TPU_ZONE:?set TPU_ZONE}"
TPU_TYPE="${TPU_TYPE:-v5litepod-8}"
TPU_VERSION="${TPU_VERSION:-v2-alpha-tpuv5-lite}"
REPO_URL="${REPO_URL:-}"  # git URL of this repository (setup clones it on every worker)
REPO_DIR="${REPO_DIR:-zero24}"

run() {
  if [[ -n "${ZERO24_DRY_RUN:-}" ]]; then printf '%q ' "$@"; echo; else "$@"; fi
}
ssh_all() {
  run gcloud compute tpus tpu-vm ssh "${TPU_NAME}" --zone="${TPU_ZONE}" --worker=all --command="$1"
}

cmd="${1:-}"; shift || true
case "${cmd}" in
  create)
    run gcloud compute tpus tpu-vm create "${TPU_NAME}" --zone="${TPU_ZONE}" \
      --accelerator-type="${TPU_TYPE}" --version="${TPU_VERSION}" "$@" ;;
  setup)
    : "${REPO_URL:?set REPO_URL to a git URL of this repository}"
    ssh_all "set -e; [ -d ${REPO_DIR} ] || git clone ${REPO_URL} ${REPO_DIR}; cd ${REPO_DIR} && git pull --ff-only; python3 -m venv .venv && .venv/bin/pip install -q -U pip && .venv/bin/pip install -q -e '.[tpu]'" ;;
  run)
    args="$(printf '%q ' "$@")"
    ssh_all "cd ${REPO_DIR} && source launch/xla_flags.sh tpu && nohup .venv/bin/python -u -m train.main --multihost ${args} > ~/zero24.log 2>&1 &" ;;
  logs)
    run gcloud compute tpus tpu-vm ssh "${TPU_NAME}" --zone="${TPU_ZONE}" --worker=0 --command="tail -n 100 -f ~/zero24.log" ;;
  stop)
    ssh_all "pkill -TERM -f 'python -u -m train.main' || true" ;;  # SIGTERM: checkpoint, clean exit
  delete)
    run gcloud compute tpus tpu-vm delete "${TPU_NAME}" --zone="${TPU_ZONE}" --quiet ;;
  *)
    echo "usage: bash launch/tpu/tpu.sh create|setup|run <train.main args>|logs|stop|delete" >&2
    exit 2 ;;
esac
