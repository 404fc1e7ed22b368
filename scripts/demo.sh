#!/usr/bin/env bash
# Runs georep's main job on an embedded default: a sample tree (made by the
# repository's own workload generator, tools/workload) replicated to a local
# secondary directory, changed by its churn, replicated again, and verified
# by georep verify and by the repository's independent oracle
# (tools/treeverify). Needs only Go (at /usr/local/go or on PATH); run it as
# root so that owners travel too.
#
#   scripts/demo.sh [WORKDIR]      (default ${TMPDIR:-/tmp}/georep-demo)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-${TMPDIR:-/tmp}/georep-demo}
export PATH=/usr/local/go/bin:$PATH
command -v go >/dev/null || { echo "demo.sh: go not found (install Go 1.26 at /usr/local/go)" >&2; exit 1; }
cd "$here"
echo "== building bin/georep, bin/workload, bin/treeverify"
go build -o bin/georep ./cmd/georep
go build -o bin/workload ./tools/workload
go build -o bin/treeverify ./tools/treeverify
rm -rf "$work"; mkdir -p "$work"
primary=$work/primary secondary=$work/secondary
bin/workload populate "$primary" --files 5000 --dirs 50
echo "== first sync"
bin/georep sync "$primary" "$secondary" --state-dir "$work/state"
echo "== changing the primary"
bin/workload churn "$primary" --scale 0.25
echo "== second sync (renames travel as renames)"
bin/georep sync "$primary" "$secondary" --state-dir "$work/state"
echo "== georep verify"
bin/georep verify "$primary" "$secondary"
echo "== the independent oracle (tools/treeverify)"
bin/treeverify "$primary" "$secondary" --mtime-ns
