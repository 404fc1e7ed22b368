#!/usr/bin/env bash
# georep beside `rsync -aHAX --delete` and `tar | ssh tar x`, in one run, on
# the same generated trees (../shared/bench/workload.py), on a fresh
# journaled ext4 loop mount, with `sync` between runs:
#
#   1. initial sync of 20,000 small files over loopback ssh (georep, rsync,
#      tar), and the same tree read and carried through ssh into cat (no
#      file created): the part of the work no tool avoids
#   2. initial sync of 5,000 small files over the emulated WAN (25 ms each
#      way, 100 Mbit/s: wanproxy.py in front of the wan.sh sshd), with the
#      bandwidth floor (bytes / link rate) and what one ssh connection
#      through that proxy carries at best (the tar stream into cat)
#   3. 8 x 256 MiB files, 1 MiB changed in each (4 x 256 KiB at random
#      offsets), resynced over loopback ssh, N rounds: bytes on the wire and
#      time (georep --json bytes_sent + bytes_received, rsync --stats)
#   4. the churn workload on the 20,000-file tree, resynced over loopback
#      ssh (georep vs rsync; both replicas checked with verify.py)
#   5. the Go distribution's src/ (/usr/local/go/src: 133 MB of source
#      code in 11.5k files, compressible) over the emulated WAN: georep
#      with default flags (adaptive compression) beside
#      `tar | zstd -3 | ssh 'zstd -d | tar x'` and `rsync -aHAX --delete -z`
#   6. 200 ms RTT, 100 Mbit/s: the 5,000-file tree, initial and after the
#      churn workload (georep vs rsync)
#
# All georep runs use default flags (no compression flag): what a user
# who knows none of them gets. The WAN sections print the ssh handshake
# through the link (ssh true) and the bandwidth floor beside the times.
#
# Each timed figure is printed with its peers and the georep/peer ratio.
# Between timed runs the script waits for the georep agent (a one-shot sync
# over ssh leaves its final syncfs to the agent) and runs sync, so no run
# pays for another's writeback.
# Needs root, rsync, zstd, openssh-server. About 10 minutes (15 with --rounds 3).
#
#   bench/compare.sh [--rounds N] [--only 1,2,5,6] [--baseline BIN]
#     --rounds N    interleaved rounds of each timed case (default 2, best shown)
#     --only LIST   run only these sections (populating only what they need)
#     --baseline B  also time another georep binary B (e.g. built from main)
#                   in sections 1, 2 and 5, interleaved: before/after in one run
set -euo pipefail
rounds=2 only=1,2,3,4,5,6 baseline=
while [ $# -gt 0 ]; do
  case $1 in
  --rounds) rounds=$2; shift 2 ;;
  --only) only=$2; shift 2 ;;
  --baseline) baseline=$(realpath "$2"); shift 2 ;;
  *) sed -n '2,40p' "$0"; exit 2 ;;
  esac
done
want() { case ",$only," in *",$1,"*) return 0 ;; esac; return 1; }
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/bench/lib.sh"; need_shared
export PATH=/usr/local/go/bin:$PATH
(cd "$here" && go build -o bin/georep ./cmd/georep)
georep=$here/bin/georep
wl=$shared/bench/workload.py

mnt=/mnt/georep-compare img=/var/tmp/georep-compare.img
proxy_pid= proxy200_pid=
cleanup() {
  [ -n "$proxy_pid" ] && kill "$proxy_pid" 2>/dev/null || true
  [ -n "$proxy200_pid" ] && kill "$proxy200_pid" 2>/dev/null || true
  if [ -z "${KEEP:-}" ] && mountpoint -q $mnt; then umount $mnt && rm -f $img; fi
}
trap cleanup EXIT
sync; echo 1 > /proc/sys/vm/drop_caches  # start from an empty page cache
if ! mountpoint -q $mnt; then
  # Allocated up front: blocks the loop device writes for the first time
  # would cost the host filesystem an allocation, charged to whichever tool
  # touches them first.
  mkdir -p $mnt; fallocate -l 12G $img 2>/dev/null || truncate -s 12G $img; mkfs.ext4 -q -F $img; mount -o loop,noatime $img $mnt
fi
dumpe2fs -h "$(findmnt -n -o SOURCE $mnt)" 2>/dev/null | grep -q has_journal || { echo "$mnt: not a journaled ext4" >&2; exit 1; }

# The wan.sh sshd on 42022 (started if needed) serves both paths: directly
# for loopback, through a private wanproxy (25 ms, 100 Mbit/s) for the WAN.
bash "$shared/bench/wan.sh" start >/dev/null 2>&1 || true
key=/tmp/georep-wan/key
opts="-i $key -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
lo_ssh="ssh -p 42022 $opts"
wan_port=42053
python3 "$shared/bench/wanproxy.py" $wan_port 42022 --delay-ms 25 --rate-mbit 100 >/dev/null 2>&1 &
proxy_pid=$!
# 200 ms RTT (100 ms each way), 100 Mbit/s, for section 6.
wan200_port=42054
python3 "$shared/bench/wanproxy.py" $wan200_port 42022 --delay-ms 100 --rate-mbit 100 >/dev/null 2>&1 &
proxy200_pid=$!
sleep 0.5
wan_ssh="ssh -p $wan_port $opts"
wan200_ssh="ssh -p $wan200_port $opts"
$lo_ssh root@127.0.0.1 true || { echo "cannot ssh to root@127.0.0.1:42022" >&2; exit 1; }

secs() { local s e; s=$(date +%s.%N); "$@" >"$mnt/out" 2>&1 || { cat "$mnt/out" >&2; return 1; }; e=$(date +%s.%N); echo "$e - $s" | bc; }
# A one-shot georep sync over ssh returns once everything is applied; its
# agent then makes the session durable (syncfs) and records its stime. Wait
# for that, and sync, before the next timed run, so that no run pays for
# another's writeback (rsync and tar leave theirs to the kernel as well).
quiesce() { while pgrep -f "secondary --root $mnt" >/dev/null; do sleep 0.05; done; sync; sleep 1; }
settle() { quiesce; rm -rf "$@"; sync; sleep 1; }
ratio() { echo "scale=2; $1 / $2" | bc; }
best() { printf '%s\n' "$@" | sort -g | head -1; }
gsync() { # SRC DST SSH [flags]: a georep sync, JSON summary in $mnt/out
  local src=$1 dst=$2 ssh=$3; shift 3
  ${GEOREP:-$georep} sync "$src" "root@127.0.0.1:$dst" --state-dir "$dst.state" --ssh-command "$ssh" \
    --remote-georep "${GEOREP:-$georep}" --no-progress --json "$@"
}
bsync() { GEOREP=$baseline gsync "$@"; } # the same with the --baseline binary
# The JSON summary in $mnt/out (log lines on stderr may stand before it).
gjson() { python3 -c 'import json,sys; t=open(sys.argv[1]).read(); s=json.JSONDecoder().raw_decode(t[t.index("{"):])[0]["stats"]; print(eval(sys.argv[2]))' "$mnt/out" "$1"; }
gbytes() { gjson 's["bytes_sent"]+s["bytes_received"]'; }
gcomp() { gjson '"%s %.2fx" % (s.get("compression") or "none", s.get("compression_ratio") or 1)'; }
# Reconnects (a handshake the far side dropped) are counted, not hidden.
greconn() { grep -c 'reconnecting' "$mnt/out" || true; }
# The ssh handshake through a link: connection, key exchange, auth, a
# command, exit (best of the rounds).
handshake() { local h=() i; for i in $(seq "$rounds"); do h+=("$(secs $1 root@127.0.0.1 true)"); done; best "${h[@]}"; }
rbytes() { awk '/^Total bytes sent:|^Total bytes received:/ {gsub(",","",$4); n+=$4} END {print n}' "$mnt/out"; }
verify() { python3 "$shared/bench/verify.py" "$@" | tail -1; }

declare -a report
line() { report+=("$(printf "$@")"); printf "$@"; echo; }

echo "== populate (workload.py, /usr/local/go/src)"
{ want 1 || want 4; } && python3 "$wl" populate $mnt/small --files 20000 >/dev/null
{ want 2 || want 6; } && python3 "$wl" populate $mnt/wan --files 5000 >/dev/null
want 3 && python3 "$wl" populate $mnt/large --files 0 --large 8 --large-mib 256 >/dev/null
want 5 && { [ -d $mnt/gosrc ] || cp -a /usr/local/go/src $mnt/gosrc; }
sync

if want 1; then
echo "== 1. initial sync, 20,000 small files, loopback ssh ($rounds rounds, interleaved)"
# The order rotates from round to round: on a VM that hands freed memory
# back to its host, the first run after a removal meets colder memory.
g=() r=() x=() b=()
n=3; [ -n "$baseline" ] && n=4
for i in $(seq "$rounds"); do
  for k in $(seq 0 $((n - 1))); do
    case $(( (i - 1 + k) % n )) in
    0) g+=("$(secs gsync $mnt/small $mnt/g-small "$lo_ssh")"); GC=$(gcomp); quiesce ;;
    1) r+=("$(secs rsync -aHAX --delete -e "$lo_ssh" $mnt/small/ root@127.0.0.1:$mnt/r-small/)"); quiesce ;;
    2) x+=("$(secs bash -c "tar -C $mnt/small -cf - . | $lo_ssh root@127.0.0.1 'mkdir -p $mnt/t-small && tar -C $mnt/t-small -xf -'")"); quiesce ;;
    3) b+=("$(secs bsync $mnt/small $mnt/b-small "$lo_ssh")"); quiesce; settle $mnt/b-small $mnt/b-small.state ;;
    esac
  done
  echo "   round $i: georep ${g[-1]} s ($GC)  rsync ${r[-1]} s  tar ${x[-1]} s${baseline:+  baseline ${b[-1]} s}"
  settle $mnt/t-small
  [ "$i" = "$rounds" ] || settle $mnt/g-small $mnt/g-small.state $mnt/r-small
done
echo "   georep replica: $(verify $mnt/small $mnt/g-small)"
G=$(best "${g[@]}") R=$(best "${r[@]}") X=$(best "${x[@]}")
# Reading the tree and carrying it through ssh, with nothing written on the
# far side: what any tool pays before it creates a single file.
c=()
for i in $(seq "$rounds"); do
  c+=("$(secs bash -c "tar -C $mnt/small -cf - . | $lo_ssh root@127.0.0.1 'cat >/dev/null'")")
done
C=$(best "${c[@]}")
line '%-44s georep %6.2f s  rsync %6.2f s  tar %6.2f s   georep/rsync %s  georep/tar %s' \
  "initial 20k small files, loopback ssh (best)" "$G" "$R" "$X" "$(ratio "$G" "$R")" "$(ratio "$G" "$X")"
line '%-44s %6.2f s (= %s x rsync): tar stream into ssh cat, nothing written' \
  "   read + ssh only, no file created" "$C" "$(ratio "$C" "$R")"
line '%-44s %s' "   georep's compression" "$GC"
[ -n "$baseline" ] && line '%-44s baseline %6.2f s   georep/baseline %s' "   the --baseline binary, same rounds" "$(best "${b[@]}")" "$(ratio "$G" "$(best "${b[@]}")")"
fi

if want 2; then
echo "== 2. initial sync, 5,000 small files, emulated WAN 50 ms RTT 100 Mbit/s"
bytes=$(du -sb --apparent-size $mnt/wan | cut -f1)
floor=$(echo "scale=3; $bytes * 8 / 100000000" | bc)
hs=$(handshake "$wan_ssh")
g=() r=() x=() b=()
for i in $(seq "$rounds"); do
  g+=("$(secs gsync $mnt/wan $mnt/g-wan "$wan_ssh")"); gw=$(gbytes); GC=$(gcomp); { [ "$i" = "$rounds" ] && quiesce; } || settle $mnt/g-wan $mnt/g-wan.state
  r+=("$(secs rsync -aHAX --delete --stats -e "$wan_ssh" $mnt/wan/ root@127.0.0.1:$mnt/r-wan/)"); rw=$(rbytes); settle $mnt/r-wan
  x+=("$(secs bash -c "tar -C $mnt/wan -cf - . | $wan_ssh root@127.0.0.1 'mkdir -p $mnt/t-wan && tar -C $mnt/t-wan -xf -'")"); settle $mnt/t-wan
  [ -n "$baseline" ] && { b+=("$(secs bsync $mnt/wan $mnt/b-wan "$wan_ssh")"); settle $mnt/b-wan $mnt/b-wan.state; }
  echo "   round $i: georep ${g[-1]} s ($GC)  rsync ${r[-1]} s  tar ${x[-1]} s${baseline:+  baseline ${b[-1]} s}"
done
echo "   georep replica: $(verify $mnt/wan $mnt/g-wan)"; settle $mnt/g-wan $mnt/g-wan.state
# What one ssh connection through this emulated link carries at best: the
# tree's tar stream (the file bytes plus headers) into cat, nothing written.
c=()
for i in $(seq "$rounds"); do
  c+=("$(secs bash -c "tar -C $mnt/wan -cf - . | $wan_ssh root@127.0.0.1 'cat >/dev/null'")")
done
C=$(best "${c[@]}")
G=$(best "${g[@]}") R=$(best "${r[@]}") X=$(best "${x[@]}")
fh=$(echo "$floor + $hs" | bc)
line '%-44s georep %6.2f s  rsync %6.2f s  tar %6.2f s   georep/rsync %s  georep/tar %s' \
  "initial 5k small files, WAN (best)" "$G" "$R" "$X" "$(ratio "$G" "$R")" "$(ratio "$G" "$X")"
line '%-44s %d file bytes -> floor %s s;  georep/floor %s;  on the wire: georep %d B, rsync %d B, tar %d B' \
  "   bandwidth floor" "$bytes" "$floor" "$(ratio "$G" "$floor")" "$gw" "$rw" "$(tar -C $mnt/wan -cf - . | wc -c)"
line '%-44s handshake (ssh true) %s s; floor + handshake %s s;  georep/(floor + handshake) %s;  georep compression %s' \
  "   floor + ssh handshake" "$hs" "$fh" "$(ratio "$G" "$fh")" "$GC"
line '%-44s %6.2f s (%s x floor): tar stream into ssh cat, nothing written;  georep/ceiling %s' \
  "   one ssh connection, best case" "$C" "$(ratio "$C" "$floor")" "$(ratio "$G" "$C")"
[ -n "$baseline" ] && line '%-44s baseline %6.2f s   georep/baseline %s' "   the --baseline binary, same rounds" "$(best "${b[@]}")" "$(ratio "$G" "$(best "${b[@]}")")"
fi

if want 3; then
echo "== 3. 8 x 256 MiB, 1 MiB changed in each, loopback ssh"
secs gsync $mnt/large $mnt/g-large "$lo_ssh" >/dev/null
secs rsync -aHAX --delete -e "$lo_ssh" $mnt/large/ root@127.0.0.1:$mnt/r-large/ >/dev/null
quiesce
# Each round changes 1 MiB in every file (new random offsets), then both
# tools bring their replica up to date; the best round of each is shown.
g=() r=()
for i in $(seq "$rounds"); do
  python3 - "$mnt/large/large" "$i" <<'PY'
import os, random, sys
r = random.Random(6 + 1000 * int(sys.argv[2]))
for name in sorted(os.listdir(sys.argv[1])):
    p = os.path.join(sys.argv[1], name)
    size = os.path.getsize(p)
    with open(p, "r+b") as f:
        for _ in range(4):  # 4 x 256 KiB = 1 MiB, at random offsets
            f.seek(r.randrange(0, size - (256 << 10)))
            f.write(r.randbytes(256 << 10))
PY
  quiesce
  # Who goes first alternates: the first to write 2 GiB after the last
  # round freed as much meets colder memory (this VM hands freed pages back
  # to its host: virtio-balloon free page reporting).
  if [ $((i % 2)) = 1 ]; then
    g+=("$(secs gsync $mnt/large $mnt/g-large "$lo_ssh")"); GB=$(gbytes); quiesce
    r+=("$(secs rsync -aHAX --delete --stats -e "$lo_ssh" $mnt/large/ root@127.0.0.1:$mnt/r-large/)"); RB=$(rbytes); quiesce
  else
    r+=("$(secs rsync -aHAX --delete --stats -e "$lo_ssh" $mnt/large/ root@127.0.0.1:$mnt/r-large/)"); RB=$(rbytes); quiesce
    g+=("$(secs gsync $mnt/large $mnt/g-large "$lo_ssh")"); GB=$(gbytes); quiesce
  fi
  echo "   round $i: georep ${g[-1]} s ($GB B)  rsync ${r[-1]} s ($RB B)"
done
G=$(best "${g[@]}") R=$(best "${r[@]}")
echo "   georep replica: $(verify $mnt/large $mnt/g-large)"
line '%-44s georep %6.2f s  rsync %6.2f s   georep/rsync %s' "8x256 MiB, 1 MiB changed each: time" "$G" "$R" "$(ratio "$G" "$R")"
line '%-44s georep %d B  rsync %d B   georep/rsync %s' "   bytes on the wire (both directions)" "$GB" "$RB" "$(ratio "$GB" "$RB")"
settle $mnt/g-large $mnt/g-large.state $mnt/r-large $mnt/large
fi

if want 4; then
echo "== 4. churn on the 20,000-file tree, incremental over loopback ssh"
# Needs the replicas of section 1; made (untimed) when it did not run.
[ -d $mnt/g-small ] || { gsync $mnt/small $mnt/g-small "$lo_ssh" >/dev/null; quiesce; }
[ -d $mnt/r-small ] || rsync -aHAX --delete -e "$lo_ssh" $mnt/small/ root@127.0.0.1:$mnt/r-small/
python3 "$wl" churn $mnt/small | sed 's/^/   /'
quiesce
G=$(secs gsync $mnt/small $mnt/g-small "$lo_ssh"); GB=$(gbytes); quiesce
R=$(secs rsync -aHAX --delete --stats -e "$lo_ssh" $mnt/small/ root@127.0.0.1:$mnt/r-small/); RB=$(rbytes)
echo "   georep replica: $(verify $mnt/small $mnt/g-small)"
echo "   rsync replica:  $(verify $mnt/small $mnt/r-small)"
line '%-44s georep %6.2f s  rsync %6.2f s   georep/rsync %s' "churn 20k files, incremental: time" "$G" "$R" "$(ratio "$G" "$R")"
line '%-44s georep %d B  rsync %d B   georep/rsync %s' "   bytes on the wire (both directions)" "$GB" "$RB" "$(ratio "$GB" "$RB")"
fi

if want 5; then
echo "== 5. the Go distribution's src/ (compressible), emulated WAN 50 ms RTT 100 Mbit/s, georep's default flags"
bytes=$(du -sb --apparent-size $mnt/gosrc | cut -f1)
tz=$(tar -C $mnt/gosrc -cf - . | zstd -3 -c | wc -c)
hs=$(handshake "$wan_ssh")
g=() z=() r=() b=()
n=3; [ -n "$baseline" ] && n=4
for i in $(seq "$rounds"); do
  for k in $(seq 0 $((n - 1))); do
    case $(( (i - 1 + k) % n )) in
    0) g+=("$(secs gsync $mnt/gosrc $mnt/g-go "$wan_ssh")"); gw=$(gbytes); GC=$(gcomp); quiesce
       [ "$i" = "$rounds" ] || settle $mnt/g-go $mnt/g-go.state ;;
    1) z+=("$(secs bash -c "tar -C $mnt/gosrc -cf - . | zstd -3 -c | $wan_ssh root@127.0.0.1 'mkdir -p $mnt/z-go && zstd -dc | tar -C $mnt/z-go -xf -'")"); settle $mnt/z-go ;;
    2) r+=("$(secs rsync -aHAX --delete -z --stats -e "$wan_ssh" $mnt/gosrc/ root@127.0.0.1:$mnt/r-go/)"); rw=$(rbytes); settle $mnt/r-go ;;
    3) b+=("$(secs bsync $mnt/gosrc $mnt/b-go "$wan_ssh")"); quiesce; settle $mnt/b-go $mnt/b-go.state ;;
    esac
  done
  echo "   round $i: georep ${g[-1]} s ($GC, $gw B)  tar|zstd -3|ssh ${z[-1]} s  rsync -z ${r[-1]} s ($rw B)${baseline:+  baseline ${b[-1]} s}"
done
echo "   georep replica: $(verify $mnt/gosrc $mnt/g-go)"; settle $mnt/g-go $mnt/g-go.state
G=$(best "${g[@]}") Z=$(best "${z[@]}") R=$(best "${r[@]}")
line '%-44s georep %6.2f s  tar|zstd -3|ssh %6.2f s  rsync -z %6.2f s   georep/tar-zstd %s  georep/rsync %s' \
  "Go src/ (133 MB, 11.5k files), WAN (best)" "$G" "$Z" "$R" "$(ratio "$G" "$Z")" "$(ratio "$G" "$R")"
line '%-44s %d file bytes;  on the wire: georep %d B (%s), tar|zstd -3 %d B, rsync -z %d B;  handshake %s s' \
  "   bytes" "$bytes" "$gw" "$GC" "$tz" "$rw" "$hs"
[ -n "$baseline" ] && line '%-44s baseline %6.2f s   georep/baseline %s' "   the --baseline binary, same rounds" "$(best "${b[@]}")" "$(ratio "$G" "$(best "${b[@]}")")"
fi

if want 6; then
echo "== 6. 200 ms RTT, 100 Mbit/s: 5,000 small files, initial and churn"
hs=$(handshake "$wan200_ssh")
gi=() ri=() gc=() rc=()
for i in $(seq "$rounds"); do
  settle $mnt/g-200 $mnt/g-200.state $mnt/r-200 $mnt/w200
  cp -a $mnt/wan $mnt/w200; sync
  gi+=("$(secs gsync $mnt/w200 $mnt/g-200 "$wan200_ssh")"); GC=$(gcomp); quiesce
  ri+=("$(secs rsync -aHAX --delete -e "$wan200_ssh" $mnt/w200/ root@127.0.0.1:$mnt/r-200/)"); quiesce
  python3 "$wl" churn $mnt/w200 --seed $((7 + i)) >/dev/null; sync
  gc+=("$(secs gsync $mnt/w200 $mnt/g-200 "$wan200_ssh")"); GCB=$(gbytes); quiesce
  rc+=("$(secs rsync -aHAX --delete --stats -e "$wan200_ssh" $mnt/w200/ root@127.0.0.1:$mnt/r-200/)"); RCB=$(rbytes); quiesce
  echo "   round $i: initial georep ${gi[-1]} s ($GC)  rsync ${ri[-1]} s;  churn georep ${gc[-1]} s ($GCB B)  rsync ${rc[-1]} s ($RCB B)"
done
echo "   georep replica: $(verify $mnt/w200 $mnt/g-200)"
echo "   rsync replica:  $(verify $mnt/w200 $mnt/r-200)"
line '%-44s georep %6.2f s  rsync %6.2f s   georep/rsync %s;  handshake %s s' "5k small files, 200 ms RTT, initial (best)" \
  "$(best "${gi[@]}")" "$(best "${ri[@]}")" "$(ratio "$(best "${gi[@]}")" "$(best "${ri[@]}")")" "$hs"
line '%-44s georep %6.2f s  rsync %6.2f s   georep/rsync %s' "   churn, incremental (best)" \
  "$(best "${gc[@]}")" "$(best "${rc[@]}")" "$(ratio "$(best "${gc[@]}")" "$(best "${rc[@]}")")"
settle $mnt/g-200 $mnt/g-200.state $mnt/r-200 $mnt/w200
fi

echo
printf 'georep %s vs rsync %s and tar %s on %s (%s, %d cores, load %s)\n' "$($georep version | cut -d' ' -f2)" \
  "$(rsync --version | head -1 | awk '{print $3}')" "$(tar --version | head -1 | awk '{print $NF}')" \
  "$(findmnt -n -o FSTYPE $mnt) loop" "$(uname -r)" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '%s\n' "${report[@]}"
