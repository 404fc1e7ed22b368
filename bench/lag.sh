#!/usr/bin/env bash
# Single-file lag of continuous replication: write a new file (workload.py
# single: write + rename into place), time until it is complete on the
# secondary; 20 samples each for `georep run` to a local secondary, to
# loopback SSH, and lsyncd (-delay 1) beside it when installed. Then a
# one-file change in a 200,000-file tree (time to the secondary, and idle
# CPU of georep run over 10 s), beside rsync's no-change rescan of that tree.
# Needs root. Uses ../shared/bench/{workload.py,wan.sh}.
#
#   bench/lag.sh [SAMPLES] [BIGFILES]      (default 20 and 200000)
set -euo pipefail
samples=${1:-20}; big=${2:-200000}
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/bench/lib.sh"; need_shared
export PATH=/usr/local/go/bin:$PATH
(cd "$here" && go build -o bin/georep ./cmd/georep)
georep=$here/bin/georep
mnt=/mnt/georep-bench
bench_mount
bash "$shared/bench/wan.sh" start >/dev/null 2>&1 || true
ssh="ssh -p 42022 -i /tmp/georep-wan/key -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
now() { date +%s%N; }

# lag SRC DST LABEL: prints median and worst of $samples probes.
lag() {
  local src=$1 dst=$2 label=$3 i s e out=()
  for i in $(seq 1 "$samples"); do
    s=$(now); python3 "$shared/bench/workload.py" single "$src" "probe-$label-$i"
    while [ ! -s "$dst/probe-$label-$i" ]; do sleep 0.005; done
    e=$(now); out+=($(( (e - s) / 1000000 ))); sleep 0.2
  done
  printf '%s\n' "${out[@]}" | sort -n | awk -v l="$label" '{a[NR]=$1} END {printf "  %-22s median %5d ms   worst %5d ms   (%d samples)\n", l, a[int((NR+1)/2)], a[NR], NR}'
}

start_run() { "$georep" run "$@" --status-interval 0 >/dev/null 2>&1 & echo $!; }
wait_synced() { until python3 "$shared/bench/verify.py" "$1" "$2" >/dev/null 2>&1; do sleep 0.5; done; }

rm -rf $mnt/lag; mkdir -p $mnt/lag/src
python3 "$shared/bench/workload.py" populate $mnt/lag/src --files 2000 --dirs 20 >/dev/null
echo "single-file lag ($(nproc) cores, $(uname -r))"
pid=$(start_run $mnt/lag/src $mnt/lag/dst-local --state-dir $mnt/lag/state1)
wait_synced $mnt/lag/src $mnt/lag/dst-local; lag $mnt/lag/src $mnt/lag/dst-local "georep run local"; kill $pid; wait $pid 2>/dev/null || true
pid=$(start_run $mnt/lag/src root@127.0.0.1:$mnt/lag/dst-ssh --state-dir $mnt/lag/state2 --ssh-command "$ssh" --remote-georep "$georep")
wait_synced $mnt/lag/src $mnt/lag/dst-ssh; lag $mnt/lag/src $mnt/lag/dst-ssh "georep run ssh"; kill $pid; wait $pid 2>/dev/null || true
if command -v lsyncd >/dev/null; then
  lsyncd -nodaemon -delay 1 -rsync $mnt/lag/src $mnt/lag/dst-lsyncd >/dev/null 2>&1 & lp=$!
  until [ -d $mnt/lag/dst-lsyncd/d00 ]; do sleep 0.2; done; sleep 3
  lag $mnt/lag/src $mnt/lag/dst-lsyncd "lsyncd -delay 1"; kill $lp; wait $lp 2>/dev/null || true
else
  echo "  lsyncd not installed: skipped"
fi

echo "one change in a $big-file tree"
rm -rf $mnt/big; mkdir -p $mnt/big
python3 "$shared/bench/workload.py" populate $mnt/big/src --files "$big" --dirs 2000 >/dev/null
pid=$(start_run $mnt/big/src $mnt/big/dst --state-dir $mnt/big/state)
until [ -f $mnt/big/state/run/*/stime ] 2>/dev/null; do sleep 1; done; sleep 2
t0=$(awk '{print $14+$15}' /proc/$pid/stat); sleep 10; t1=$(awk '{print $14+$15}' /proc/$pid/stat)
echo "  idle CPU of georep run: $(( (t1 - t0) * 10 )) ms over 10 s"
s=$(now); echo changed > $mnt/big/src/d00/e00/f00/one-change.txt
while [ ! -s $mnt/big/dst/d00/e00/f00/one-change.txt ]; do sleep 0.005; done
echo "  one-file change reached the secondary in $(( ($(now) - s) / 1000000 )) ms"
kill $pid; wait $pid 2>/dev/null || true
s=$(now); rsync -aHAX --delete $mnt/big/src/ $mnt/big/dst/ >/dev/null; echo "  rsync -aHAX --delete of the same tree (one change, local): $(( ($(now) - s) / 1000000 )) ms"
