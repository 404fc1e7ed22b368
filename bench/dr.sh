#!/usr/bin/env bash
# Disaster recovery: georep beside `rsync -aHAX --delete`, in one run, from
# the same starting trees, locally and over loopback ssh. Per scenario and
# per tool: bytes on the wire, seconds, and whether ../shared/bench/verify.py
# (--mtime-ns) finds the trees identical afterwards.
#
#   a  secondary seeded by cp -a, plus extra entries at depths 1-4
#   b  primary copied to another filesystem (new fsid, new inodes)
#   c1 primary restored from tar --xattrs into the same root
#   c2 primary restored from tar --xattrs into a new root
#   d  the secondary's .georep deleted
#   e  failover: promote S, churn on S, failback (S -> P), promote P,
#      demote S, resume P -> S (rows e-failback and e-resume)
#   f  drift on the secondary: content changed with size and mtime kept, an
#      xattr added, a file deleted; georep sync --checksum (rsync as asked:
#      -aHAX --delete, which cannot see the first)
#
# Target (issue 11): georep identical every time, bytes <= 1.1 x rsync's + 1 MB.
# Needs root, rsync, openssh-server, two loop ext4 filesystems (made here).
#
#   bench/dr.sh [--files N]      (default 5000 files in 50 dirs)
#   ONLY="a f" MODES=ssh bench/dr.sh   (some scenarios, some modes)
set -euo pipefail
files=5000
[ "${1:-}" = --files ] && files=$2
dirs=$(( files / 100 > 0 ? files / 100 : 1 ))
here=$(cd "$(dirname "$0")/.." && pwd)
shared=$here/../shared; [ -d "$shared/bench" ] || shared=/work/shared
export PATH=/usr/local/go/bin:$PATH
(cd "$here" && go build -o bin/georep ./cmd/georep)
georep=$here/bin/georep
wl=$shared/bench/workload.py
verify=$shared/bench/verify.py

A=/mnt/georep-dr-a B=/mnt/georep-dr-b
imgA=/var/tmp/georep-dr-a.img imgB=/var/tmp/georep-dr-b.img
cleanup() {
  if [ -z "${KEEP:-}" ]; then
    for m in $A $B; do mountpoint -q $m && umount $m; done
    rm -f $imgA $imgB
  fi
}
trap cleanup EXIT
for pair in "$A $imgA" "$B $imgB"; do
  set -- $pair
  if ! mountpoint -q "$1"; then
    mkdir -p "$1"; fallocate -l 4G "$2" 2>/dev/null || truncate -s 4G "$2"
    mkfs.ext4 -q -F "$2"; mount -o loop,noatime "$2" "$1"
  fi
done

bash "$shared/bench/wan.sh" start >/dev/null 2>&1 || true
key=/tmp/georep-wan/key
ssh_cmd="ssh -p 42022 -i $key -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
$ssh_cmd root@127.0.0.1 true || { echo "cannot ssh to root@127.0.0.1:42022" >&2; exit 1; }

out=$A/out
quiesce() { while pgrep -f "georep secondary --root $A" >/dev/null || pgrep -f "georep secondary --root $B" >/dev/null; do sleep 0.05; done; sync; }
copy() { rm -rf "$2"; cp -a "$1" "$2"; }
# georep SRC DST(local path) MODE(local|ssh) [flags]: seconds and bytes.
run_georep() {
  local src=$1 dst=$2 mode=$3; shift 3
  local target=$dst
  local extra=()
  if [ "$mode" = ssh ]; then target=root@127.0.0.1:$dst; extra=(--ssh-command "$ssh_cmd" --remote-georep "$georep"); fi
  local s e rc=0
  s=$(date +%s.%N)
  $georep sync "$src" "$target" --state-dir "$dst.state" --no-progress --json "${extra[@]}" "$@" >"$out" 2>"$out.err" || rc=$?
  e=$(date +%s.%N); quiesce
  secs=$(echo "$e - $s" | bc)
  bytes=$(python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))["stats"]; print(s["bytes_sent"]+s["bytes_received"])' "$out" 2>/dev/null || echo 0)
  [ $rc = 0 ] || { echo "  georep exit $rc: $(tail -c 300 "$out.err")" >&2; }
}
run_rsync() {
  local src=$1 dst=$2 mode=$3; shift 3
  local target=$dst/
  local extra=()
  if [ "$mode" = ssh ]; then target=root@127.0.0.1:$dst/; extra=(-e "$ssh_cmd"); fi
  local s e
  s=$(date +%s.%N)
  rsync -aHAX --delete --exclude=/.georep --stats "${extra[@]}" "$@" "$src/" "$target" >"$out" 2>&1 || echo "  rsync failed: $(tail -c 300 "$out")" >&2
  e=$(date +%s.%N); sync
  secs=$(echo "$e - $s" | bc)
  bytes=$(awk '/^Total bytes sent:|^Total bytes received:/ {gsub(",","",$4); n+=$4} END {print n+0}' "$out")
}
identical() { python3 "$verify" "$1" "$2" --mtime-ns >/dev/null 2>&1 && echo yes || echo NO; }

printf '%-12s %-5s | %12s %8s %-9s | %12s %8s %-9s | %s\n' scenario mode "georep B" "s" identical "rsync B" "s" identical "georep/(1.1 rsync + 1 MB)"
row() { # scenario mode gbytes gsecs gok rbytes rsecs rok
  local lim; lim=$(echo "scale=3; $3 / (1.1 * $6 + 1000000)" | bc)
  printf '%-12s %-5s | %12s %8.2f %-9s | %12s %8.2f %-9s | %s\n' "$1" "$2" "$3" "$4" "$5" "$6" "$7" "$8" "$lim"
}

W=$A/w
rm -rf "$W"; mkdir -p "$W"
P0=$W/P0
python3 "$wl" populate "$P0" --files "$files" --dirs "$dirs" >/dev/null
setfattr -n user.dr -v primary "$P0/$(ls "$P0" | head -1)" 2>/dev/null || true

# A georep replica of P0 (the state most scenarios start from).
R0=$W/R0
$georep sync "$P0" "$R0" --state-dir "$R0.state" --no-progress --json >/dev/null
quiesce

# scenario MODE NAME SRC-for-georep SEC-template SRC-for-rsync [georep flags]
# Each tool gets its own copy of the secondary template.
scenario() {
  local name=$1 mode=$2 gsrc=$3 tmpl=$4 rsrc=$5; shift 5
  local gs=$W/S-g rs=$W/S-r
  copy "$tmpl" "$gs"; rm -rf "$gs.state"
  copy "$tmpl" "$rs"; rm -rf "$rs/.georep"
  sync
  run_georep "$gsrc" "$gs" "$mode" "$@"; local gb=$bytes gsec=$secs gok; gok=$(identical "$gsrc" "$gs")
  run_rsync "$rsrc" "$rs" "$mode"; local rb=$bytes rsec=$secs rok; rok=$(identical "$rsrc" "$rs")
  row "$name" "$mode" "$gb" "$gsec" "$gok" "$rb" "$rsec" "$rok"
}

want() { [ -z "${ONLY:-}" ] || [[ " $ONLY " == *" $1 "* ]]; }
for mode in ${MODES:-local ssh}; do
  if want a; then
  # (a) seeded by cp -a, extra entries at depths 1-4.
  T=$W/Ta; copy "$P0" "$T"
  mkdir -p "$T/x1/x2/x3"; echo 1 >"$T/extra1"; echo 2 >"$T/x1/extra2"; echo 3 >"$T/x1/x2/extra3"; echo 4 >"$T/x1/x2/x3/extra4"
  d1=$(find "$T" -mindepth 1 -maxdepth 1 -type d | sort | head -1); echo deep >"$d1/extra-in-existing"
  scenario a "$mode" "$P0" "$T" "$P0"

  fi
  if want b; then
  # (b) the primary copied to another filesystem: new fsid, new inodes.
  P2=$B/P2; copy "$P0" "$P2"
  scenario b "$mode" "$P2" "$R0" "$P2" --force

  fi
  if want c1; then
  # (c1) restored from tar into the same root (the root keeps its ID).
  P3=$W/P3; copy "$P0" "$P3"
  R3=$W/R3; rm -rf "$R3" "$R3.state"
  $georep sync "$P3" "$R3" --state-dir "$R3.state" --no-progress --json >/dev/null; quiesce
  tar --xattrs --xattrs-include='*' --acls --format=posix -cpf "$W/P.tar" -C "$P3" .
  find "$P3" -mindepth 1 -maxdepth 1 -exec rm -rf {} +
  tar --xattrs --xattrs-include='*' --acls -xpf "$W/P.tar" -C "$P3"
  scenario c1 "$mode" "$P3" "$R3" "$P3"
  fi
  if want c2; then
  # (c2) restored from tar into a new root.
  P4=$B/P4; rm -rf "$P4"; mkdir -p "$P4"
  tar --xattrs --xattrs-include='*' --acls -xpf "$W/P.tar" -C "$P4"
  scenario c2 "$mode" "$P4" "$R0" "$P4" --force

  fi
  if want d; then
  # (d) the secondary's .georep deleted.
  T=$W/Td; copy "$R0" "$T"; rm -rf "$T/.georep"
  scenario d "$mode" "$P0" "$T" "$P0"

  fi
  if want e; then
  # (e) failover and failback.
  Pe=$W/Pe Se=$W/Se; copy "$P0" "$Pe"; rm -rf "$Se" "$Se.state" "$Pe.state"
  $georep sync "$Pe" "$Se" --state-dir "$Pe.state" --no-progress --json >/dev/null; quiesce
  $georep promote "$Se" >/dev/null
  python3 "$wl" churn "$Se" --scale 0.2 >/dev/null
  # failback: S -> P (georep adopts what P has; rsync copies into a copy of P)
  Pr=$W/Pe-r; copy "$Pe" "$Pr"
  target=$Pe; extra=(); [ "$mode" = ssh ] && { target=root@127.0.0.1:$Pe; extra=(--ssh-command "$ssh_cmd" --remote-georep "$georep"); }
  s=$(date +%s.%N); $georep sync "$Se" "$target" --state-dir "$Se.state" --no-progress --json --force "${extra[@]}" >"$out" 2>"$out.err" || echo "  failback: $(tail -c 300 "$out.err")" >&2
  e=$(date +%s.%N); quiesce
  gb=$(python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))["stats"]; print(s["bytes_sent"]+s["bytes_received"])' "$out"); gsec=$(echo "$e - $s" | bc); gok=$(identical "$Se" "$Pe")
  run_rsync "$Se" "$Pr" "$mode"; rok=$(identical "$Se" "$Pr")
  row e-failback "$mode" "$gb" "$gsec" "$gok" "$bytes" "$secs" "$rok"
  # promote P, demote S, resume P -> S
  $georep promote "$Pe" >/dev/null; $georep demote "$Se" >/dev/null
  Sr=$W/Se-r; copy "$Se" "$Sr"; rm -rf "$Sr/.georep"
  run_georep "$Pe" "$Se" "$mode"; gb=$bytes gsec=$secs; gok=$(identical "$Pe" "$Se")
  run_rsync "$Pr" "$Sr" "$mode"; rok=$(identical "$Pr" "$Sr")
  row e-resume "$mode" "$gb" "$gsec" "$gok" "$bytes" "$secs" "$rok"

  fi
  if want f; then
  # (f) drift on the secondary, repaired by georep sync --checksum.
  T=$W/Tf; copy "$R0" "$T"
  f1=$(find "$T" -path "$T/.georep" -prune -o -type f -size +2k -print | sort | sed -n 1p)
  f2=$(find "$T" -path "$T/.georep" -prune -o -type f -print | sort | sed -n 2p)
  f3=$(find "$T" -path "$T/.georep" -prune -o -type f -print | sort | sed -n 3p)
  m=$(stat -c %y "$f1"); printf 'DRIFT' | dd of="$f1" conv=notrunc status=none; touch -d "$m" "$f1"
  setfattr -n user.drift -v yes "$f2"; rm -f "$f3"
  scenario f "$mode" "$P0" "$T" "$P0" --checksum
  fi
done
echo "(bytes: georep --json bytes_sent + bytes_received; rsync --stats total bytes sent + received)"
