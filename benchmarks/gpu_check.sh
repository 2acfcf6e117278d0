#!/usr/bin/env bash
# One command for a lent H100/H200 (<= 8 minutes): MFU, search overhead, engine rate and the
# first flagship:gpu iterations, written to bench_out/gpu_check.json (benchmarks/gpu_check.py).
#   bash benchmarks/gpu_check.sh [--dry-run] [--out=FILE]
# The device image lacks mctx: put its wheel in wheels/ (pip download mctx --no-deps -d wheels)
# and this installs it from there, offline.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
[ -x .venv/bin/python ] && PY=.venv/bin/python
if ! "$PY" -c "import mctx" 2>/dev/null && ls wheels/mctx-*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps wheels/mctx-*.whl
fi
exec "$PY" -m benchmarks.gpu_check "$@"
