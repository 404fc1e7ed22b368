#!/usr/bin/env bash
# Initial sync of a 20,000-file tree over loopback SSH: georep beside
# `rsync -aHAX --delete` and `tar | ssh tar x`, in one run, with ratios.
# Needs root (loop mount, sshd). Uses ../shared/bench/{workload.py,wan.sh}.
#
#   bench/ssh-initial.sh [FILES]     (default 20000)
set -euo pipefail
files=${1:-20000}
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/bench/lib.sh"; need_shared
export PATH=/usr/local/go/bin:$PATH
(cd "$here" && go build -o bin/georep ./cmd/georep)
georep=$here/bin/georep
mnt=/mnt/georep-bench
bench_mount
bash "$shared/bench/wan.sh" start >/dev/null 2>&1 || true
key=/tmp/georep-wan/key
ssh="ssh -p 42022 -i $key -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
src=$mnt/src; rm -rf $mnt/src $mnt/dst-*; sync
python3 "$shared/bench/workload.py" populate $src --files "$files" >/dev/null
sync
t() { local s e; s=$(date +%s.%N); "$@" >/dev/null; e=$(date +%s.%N); echo "$e - $s" | bc; }
clean() { rm -rf "$@"; sync; sleep 1; }
r=$(t rsync -aHAX --delete -e "$ssh" $src/ root@127.0.0.1:$mnt/dst-rsync/); clean $mnt/dst-rsync
x=$(t bash -c "tar -C $src -cf - . | $ssh root@127.0.0.1 'mkdir -p $mnt/dst-tar && tar -C $mnt/dst-tar -xf -'"); clean $mnt/dst-tar
g=$(t $georep sync $src root@127.0.0.1:$mnt/dst-georep --state-dir $mnt/state --ssh-command "$ssh" --remote-georep $georep --no-progress)
python3 "$shared/bench/verify.py" $src $mnt/dst-georep | tail -1
clean $mnt/dst-georep $mnt/state
printf 'initial sync of %d files over loopback ssh (%s, %d cores)\n' "$files" "$(uname -r)" "$(nproc)"
printf '  rsync -aHAX --delete  %6.2f s\n  tar | ssh tar x       %6.2f s\n  georep sync           %6.2f s\n' "$r" "$x" "$g"
printf '  georep/rsync %.2f   georep/tar %.2f\n' "$(echo "$g / $r" | bc -l)" "$(echo "$g / $x" | bc -l)"
