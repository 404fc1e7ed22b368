#!/usr/bin/env bash
# How georep's cost grows with the tree, beside `rsync -aHAX --delete` in the
# same run (issue "Scale to millions of files"):
#
#   bench/scale.sh N [--dirs D] [--ssh]
#
# populates N tiny files (0-64 bytes) over D directories (default N/100, two
# levels deep) on a fresh journaled ext4 loop mount, then prints for each tool:
#   - initial sync: seconds and peak RSS
#   - no-change sync: seconds, bytes on the wire, peak RSS
#   - one new file, one-shot sync: seconds and peak RSS
#   - georep run: start (on the synced tree) until a file created right
#     after the start is on the secondary; RSS idle 10 s later and its peak
# The secondary is a local directory on the same mount (the agent runs inside
# the georep process, so its memory is in the figures), or with --ssh the
# wan.sh sshd on 127.0.0.1:42022 (../shared/bench; the agent's peak RSS is
# then printed separately). rsync runs locally, or over the same ssh.
# `sync` and a dropped page cache between timed runs. Needs root, rsync,
# GNU time. 1,000,000 files take about half an hour.
set -euo pipefail
[ $# -ge 1 ] || { sed -n '2,20p' "$0"; exit 2; }
n=$1; shift
dirs=$(( n / 100 )); [ $dirs -ge 1 ] || dirs=1
mode=local
while [ $# -gt 0 ]; do
  case $1 in
  --dirs) dirs=$2; shift 2 ;;
  --ssh) mode=ssh; shift ;;
  *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
here=$(cd "$(dirname "$0")/.." && pwd)
export PATH=/usr/local/go/bin:$PATH
(cd "$here" && go build -o bin/georep ./cmd/georep)
georep=$here/bin/georep
command -v rsync >/dev/null || { echo "rsync is missing (apt-get install rsync)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "GNU time is missing (apt-get install time)" >&2; exit 1; }

mnt=/mnt/georep-scale img=/var/tmp/georep-scale.img
run_pid=
cleanup() {
  [ -n "$run_pid" ] && kill "$run_pid" 2>/dev/null && wait "$run_pid" 2>/dev/null || true
  if [ -z "${KEEP:-}" ] && mountpoint -q $mnt; then umount $mnt && rm -f $img; fi
}
trap cleanup EXIT
if ! mountpoint -q $mnt; then
  # Room for three trees of tiny files: the inode count, not the size, is
  # what runs out.
  size=$(( 4 + n / 50000 ))G
  mkdir -p $mnt; truncate -s "$size" $img
  mkfs.ext4 -q -F -N $(( 4 * n + 4 * dirs + 100000 )) $img
  mount -o loop,noatime $img $mnt
fi
P=$mnt/primary G=$mnt/georep R=$mnt/rsync
rm -rf "$P" "$G" "$R" "$mnt"/state*

ssh_cmd= gdst=$G rdst=$R rsh=()
if [ $mode = ssh ]; then
  shared=$here/../shared
  [ -f "$shared/bench/wan.sh" ] || { echo "--ssh needs ../shared/bench/wan.sh beside the repository" >&2; exit 1; }
  bash "$shared/bench/wan.sh" start >/dev/null 2>&1 || true
  ssh_cmd="ssh -p 42022 -i /tmp/georep-wan/key -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
  gdst=root@127.0.0.1:$G rdst=root@127.0.0.1:$R rsh=(-e "$ssh_cmd")
fi

echo "populating $n tiny files in $dirs directories under $P"
python3 - "$P" "$n" "$dirs" <<'EOF'
import os, sys, random
root, n, dirs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
r = random.Random(1)
top = max(1, int(dirs ** 0.5))
ds = []
for i in range(dirs):
    d = os.path.join(root, "d%04d" % (i % top), "e%06d" % i)
    os.makedirs(d, exist_ok=True)
    ds.append(d)
for k in range(n):
    with open(os.path.join(ds[k % dirs], "f%07d" % k), "wb") as f:
        f.write(r.randbytes(r.randint(0, 64)))
EOF
sync

quiesce() { while pgrep -f "georep secondary --root $mnt" >/dev/null; do sleep 0.05; done; sync; echo 3 > /proc/sys/vm/drop_caches; sleep 1; }
# timed LABEL CMD...: runs CMD under GNU time; prints "LABEL seconds peakRSS".
timed() {
  local label=$1; shift
  quiesce
  /usr/bin/time -f '%e %M' -o "$mnt/time" "$@" >"$mnt/out" 2>"$mnt/err" || { cat "$mnt/err" >&2; return 1; }
  read -r secs kb <"$mnt/time"
  printf '%-34s %8.2f s   peak RSS %8.1f MB' "$label" "$secs" "$(echo "$kb / 1024" | bc -l)"
}
gsync=("$georep" sync "$P" "$gdst" --state-dir "$mnt/state" --no-progress --json)
[ -n "$ssh_cmd" ] && gsync+=(--ssh-command "$ssh_cmd" --remote-georep "$georep")
gbytes() { python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))["stats"]; print(s["bytes_sent"]+s["bytes_received"])' "$mnt/out"; }
rsync_=(rsync -aHAX --delete --stats "${rsh[@]}" "$P/" "$rdst/")
rbytes() { awk '/^Total bytes sent:|^Total bytes received:/ {gsub(",","",$4); n+=$4} END {print n}' "$mnt/out"; }

echo
echo "== $n files, $dirs directories, secondary: $mode"
timed "georep initial sync" "${gsync[@]}"; echo
timed "rsync initial" "${rsync_[@]}"; echo
timed "georep no-change sync" "${gsync[@]}"; echo "   $(gbytes) bytes on the wire"
timed "rsync no-change" "${rsync_[@]}"; echo "   $(rbytes) bytes on the wire"
echo one > "$P/d0000/one-new-file"
timed "georep one new file" "${gsync[@]}"; echo
timed "rsync one new file" "${rsync_[@]}"; echo

# georep run: restart on the synced tree, one new file right after the start.
quiesce
run_opts=(--state-dir "$mnt/state-run")
[ -n "$ssh_cmd" ] && run_opts+=(--ssh-command "$ssh_cmd" --remote-georep "$georep")
# A first run records the session's stime; the measured one is a restart.
"$georep" run "$P" "$gdst" "${run_opts[@]}" >"$mnt/run.log" 2>&1 & run_pid=$!
until compgen -G "$mnt/state-run/run/*/stime" >/dev/null; do sleep 0.2; done
sleep 3; kill $run_pid; wait $run_pid 2>/dev/null || true; run_pid=
quiesce
start=$(date +%s.%N)
"$georep" run "$P" "$gdst" "${run_opts[@]}" >"$mnt/run.log" 2>&1 & run_pid=$!
echo probe > "$P/d0000/probe-after-restart"
until [ -f "$G/d0000/probe-after-restart" ]; do sleep 0.05; done
end=$(date +%s.%N)
printf '%-34s %8.2f s\n' "georep run restart to first change" "$(echo "$end - $start" | bc)"
sleep 10
awk '/^VmRSS|^VmHWM/ {printf "georep run after 10 s idle: %s %.1f MB\n", $1, $2/1024}' /proc/$run_pid/status
kill $run_pid; wait $run_pid 2>/dev/null || true; run_pid=
