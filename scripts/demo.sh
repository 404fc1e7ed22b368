#!/usr/bin/env bash
# Runs georep's main job on an embedded default: a sample tree replicated to a
# local secondary directory, changed, replicated again, and verified.
#
#   scripts/demo.sh [WORKDIR]      (default /tmp/georep-demo)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-/tmp/georep-demo}
export PATH=/usr/local/go/bin:$PATH
cd "$here"
go build -o bin/georep ./cmd/georep
georep=$here/bin/georep
shared=""
for d in "$here/../shared" /work/shared; do [ -f "$d/bench/workload.py" ] && { shared=$d; break; }; done
rm -rf "$work"; mkdir -p "$work"
primary=$work/primary secondary=$work/secondary
if [ -n "$shared" ]; then
  python3 "$shared/bench/workload.py" populate "$primary" --files 5000 --dirs 50
else
  mkdir -p "$primary"
  for i in $(seq 1 500); do mkdir -p "$primary/d$((i % 10))"; head -c $((RANDOM % 16384)) /dev/urandom > "$primary/d$((i % 10))/f$i"; done
fi
echo "== first sync"
"$georep" sync "$primary" "$secondary" --state-dir "$work/state"
echo "== changing the primary"
if [ -n "$shared" ]; then
  python3 "$shared/bench/workload.py" churn "$primary" --scale 0.25
else
  mv "$primary/d1" "$primary/d1-renamed"; rm -f "$primary"/d2/*; echo more >> "$primary/d3/f3"; ln -s d3 "$primary/link"
fi
echo "== second sync (renames travel as renames)"
"$georep" sync "$primary" "$secondary" --state-dir "$work/state"
echo "== verify"
"$georep" verify "$primary" "$secondary"
