#!/usr/bin/env bash
# Soak: georep under continuous churn and faults for a chosen time.
#
#   bench/soak.sh DURATION [WORKDIR]     DURATION: 300, 90s, 3m, 1h
#
# A primary tree (tools/workload populate) is replicated in a loop to two
# secondaries, one local and one over a private sshd on 127.0.0.1. Between
# and during the syncs the primary changes: tools/workload churn with a new
# seed each time, and bursts of random single operations (creates, writes,
# truncates, renames of files and directories, swaps, deletes, type changes,
# hardlinks, symlinks, FIFOs, chmod, xattrs). Some syncs are cut by a fault:
# kill -9 of georep sync, or kill -9 of the remote agent. Every few rounds the
# churn pauses and both secondaries must converge and verify (a checkpoint).
# At the end the churn stops, both secondaries are synced without faults and
# judged by tools/treeverify (and shared/bench/verify.py where present) and
# georep verify; the script prints the operations applied, the faults
# survived and the verdict, and exits 0 only when both replicas verify.
#
# Needs root (loop mount, sshd, chown). Runs by hand, not in CI. GEOREP_BIN
# picks the binary (default: ./cmd/georep built into WORKDIR); SOAK_SEED
# makes the run's random choices repeatable (timing still varies);
# SOAK_OVERLAP=0 never changes the primary while a sync runs (half the
# rounds do by default: that finds races such as TestFaultWriteRacingRead).
# WORKDIR (default a fresh /var/tmp/georep-soak.XXXX) is kept for a
# post-mortem when the verdict is FAIL.
set -uo pipefail

usage() { sed -n '2,4p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
[ $# -ge 1 ] || usage
case "$1" in
*h) dur=$((${1%h} * 3600)) ;;
*m) dur=$((${1%m} * 60)) ;;
*s) dur=${1%s} ;;
*) dur=$1 ;;
esac
[[ "$dur" =~ ^[0-9]+$ ]] && [ "$dur" -gt 0 ] || usage
[ "$(id -u)" -eq 0 ] || { echo "soak.sh: needs root (loop mount, sshd)" >&2; exit 2; }

here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/bench/lib.sh"; find_shared # optional: verify.py as a second oracle
# shared/bench is optional: where present, its verify.py judges too.
py=/usr/bin/python3; [ -x $py ] || py=python3
export PYTHONDONTWRITEBYTECODE=1
RANDOM=${SOAK_SEED:-$$}
work=${2:-$(mktemp -d /var/tmp/georep-soak.XXXX)}
mkdir -p "$work"
log=$work/soak.log
say() { printf '[%5ds] %s\n' "$((SECONDS - t0))" "$*" | tee -a "$log"; }

# --- set up ------------------------------------------------------------------
t0=$SECONDS
mnt=$work/mnt
if ! mountpoint -q "$mnt"; then
	# A journaled ext4 of its own (see shared/bench/README.md, filesystem trap).
	mkdir -p "$mnt"
	truncate -s 6G "$work/fs.img"
	mkfs.ext4 -q -F "$work/fs.img"
	mount -o loop,noatime "$work/fs.img" "$mnt" || { echo "soak.sh: mount failed" >&2; exit 1; }
	rmdir "$mnt/lost+found" 2>/dev/null
fi
P=$mnt/P S1=$mnt/S-local S2=$mnt/S-ssh ST=$mnt/state
if [ -n "${GEOREP_BIN:-}" ]; then
	bin=$GEOREP_BIN
else
	bin=$work/georep
	(cd "$here" && PATH=/usr/local/go/bin:$PATH go build -o "$bin" ./cmd/georep) || exit 1
fi
# The repository's workload generator and tree oracle.
(cd "$here" && PATH=/usr/local/go/bin:$PATH go build -o "$work/" ./tools/workload ./tools/treeverify) || exit 1
wl=$work/workload tv=$work/treeverify

# A private sshd on a free port (root logs in with a fresh key).
sd=$work/sshd
mkdir -p "$sd" /run/sshd
[ -f "$sd/host" ] || ssh-keygen -q -t ed25519 -N '' -f "$sd/host"
[ -f "$sd/key" ] || ssh-keygen -q -t ed25519 -N '' -f "$sd/key"
cp "$sd/key.pub" "$sd/authorized_keys"
port=$($py -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$sd/config" <<EOF
ListenAddress 127.0.0.1:$port
HostKey $sd/host
PidFile $sd/pid
AuthorizedKeysFile $sd/authorized_keys
StrictModes no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
LogLevel ERROR
UseDNS no
MaxStartups 100:30:200
SetEnv SHLVL=1
EOF
/usr/sbin/sshd -D -e -f "$sd/config" 2>>"$sd/log" &
sshd_pid=$!
ssh_cmd="ssh -p $port -i $sd/key -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o BatchMode=yes"
for _ in $(seq 50); do $ssh_cmd root@127.0.0.1 true 2>/dev/null && break; sleep 0.1; done

cleanup() {
	kill "$sshd_pid" 2>/dev/null
	wait "$sshd_pid" 2>/dev/null
	if [ "${verdict:-FAIL}" = PASS ]; then
		umount "$mnt" 2>/dev/null && rm -rf "$work"
	else
		echo "work dir kept for a post-mortem: $work (umount $mnt when done)"
	fi
}
trap cleanup EXIT
trap 'echo interrupted; exit 130' INT TERM

# --- the moving parts ---------------------------------------------------------
syncs=0 failed_syncs=0 checkpoints=0 checkpoint_failures=0
declare -A faults=([sync]=0 [agent]=0)
# Changes may run in the background (a subshell): they count in a file,
# one line "churn N" or "burst N" each.
counts=$work/ops.count
: >"$counts"
ops_total() { awk '{n += $2} END {print n + 0}' "$counts"; }
ops_of() { awk -v k="$1" '$1 == k {n++} END {print n + 0}' "$counts"; }

dest_args() { # $1: local | ssh
	if [ "$1" = local ]; then
		echo "$S1 --state-dir $ST"
	else
		echo "root@127.0.0.1:$S2 --state-dir $ST --remote-georep $bin"
	fi
}

# run_sync DEST FAULT: one sync, possibly cut by FAULT (none, sync, agent)
# after a random delay. Sets sync_rc.
run_sync() {
	local dest=$1 fault=$2 pid delay
	# shellcheck disable=SC2046
	"$bin" sync "$P" $(dest_args "$dest") --ssh-command "$ssh_cmd" --no-progress >>"$work/sync.out" 2>>"$work/sync.err" &
	pid=$!
	syncs=$((syncs + 1))
	case $fault in
	sync)
		sleep "$(printf '0.%03d' $((RANDOM % 1000)))"
		kill -9 "$pid" 2>/dev/null && faults[sync]=$((faults[sync] + 1))
		;;
	agent)
		# The agent starts after the ssh handshake and may live briefly:
		# wait for it, then a random delay.
		local a hit=0 n=0
		while kill -0 "$pid" 2>/dev/null && [ -z "$(agent_pids)" ] && [ $n -lt 500 ]; do
			sleep 0.005
			n=$((n + 1))
		done
		sleep "$(printf '0.%03d' $((RANDOM % 300)))"
		for a in $(agent_pids); do kill -9 "$a" 2>/dev/null && hit=1; done
		faults[agent]=$((faults[agent] + hit))
		;;
	esac
	wait "$pid"
	sync_rc=$?
}

# agent_pids: the remote agents serving this soak's ssh secondary: their
# whole command line is exactly "$bin secondary --root $S2" (the ssh
# client's and the remote shell's start otherwise), so only processes this
# soak started.
agent_pids() {
	pgrep -f "^$(sed 's/[][\.*^$]/\\&/g' <<<"$bin secondary --root $S2")\$"
}

# churn: workload.py churn with a new seed. It creates "odd names" and
# "churn-new" each time: the previous ones are moved aside first (and the
# oldest removed), which is churn too.
churn() {
	local n=$1 scale seed out
	scale=$(printf '0.%02d' $((2 + RANDOM % 8)))
	seed=$RANDOM
	for d in "odd names" churn-new; do
		[ -e "$P/$d" ] && mv "$P/$d" "$P/$d.$n"
		rm -rf "$P/$d.$((n - 8))"
	done
	if out=$("$wl" churn "$P" --scale "$scale" --seed "$seed" 2>&1); then
		# "churned DIR: append 50, chmod/chown 25, ..."
		echo "churn $(tr ',' '\n' <<<"${out##*: }" | awk '{n += $NF} END {print n + 0}')" >>"$counts"
	else
		echo "churn 0" >>"$counts"
		say "churn (scale $scale, seed $seed) stopped early: $(tail -1 <<<"$out")"
	fi
}

# burst N: N random single operations (prints how many it made).
burst() {
	local n
	n=$($py - "$P" "$1" "$RANDOM" <<'EOF'
import os, random, shutil, stat, sys
root, count, seed = os.fsencode(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
r = random.Random(seed)
names = [b"a", b"b", b"c", b"x y", b"new\nline", b"\xff\xfe", "é名".encode(), b"-d", b".h"]
def walk():
    ds, fs = [root], []
    for dp, dn, fn in os.walk(root):
        dn[:] = [d for d in dn if not (dp == root and d == b".georep")]
        ds += [os.path.join(dp, d) for d in dn]
        fs += [os.path.join(dp, f) for f in fn]
    return ds, fs
def fresh(d):
    return os.path.join(d, r.choice(names) + b"%d" % r.randrange(1000))
done = 0
for _ in range(count):
    ds, fs = walk()
    regs = [f for f in fs if os.path.isfile(f) and not os.path.islink(f)]
    op = r.randrange(16)
    try:
        if op == 0 or not regs:
            with open(fresh(r.choice(ds)), "wb") as f: f.write(r.randbytes(r.choice([0, 10, 3000, 70000])))
        elif op == 1:
            with open(r.choice(regs), "ab") as f: f.write(r.randbytes(r.randrange(1, 5000)))
        elif op == 2:
            p = r.choice(regs); sz = os.path.getsize(p)
            with open(p, "r+b") as f: f.seek(r.randrange(sz + 1)); f.write(r.randbytes(700))
        elif op == 3:
            p = r.choice(regs); os.truncate(p, r.randrange(os.path.getsize(p) + 100000))
        elif op == 4:
            os.rename(r.choice(fs), r.choice([fresh(r.choice(ds)), r.choice(regs)]))
        elif op == 5 and len(ds) > 1:
            d = r.choice(ds[1:]); t = r.choice([x for x in ds if not x.startswith(d)])
            os.rename(d, fresh(t))
        elif op == 6 and len(ds) > 2:
            a, b = r.sample(ds[1:], 2)
            if not a.startswith(b + b"/") and not b.startswith(a + b"/"):
                t = fresh(os.path.dirname(a)); os.rename(a, t); os.rename(b, a); os.rename(t, b)
        elif op == 7:
            os.mkdir(fresh(r.choice(ds)))
        elif op == 8 and r.random() < 0.2:
            small = [d for d in ds[1:] if sum(len(x[1]) + len(x[2]) for x in os.walk(d)) < 30]
            if small: shutil.rmtree(r.choice(small))
        elif op == 9:
            os.unlink(r.choice(fs))
        elif op == 10:
            p = r.choice(fs + [d for d in ds[1:] if not os.listdir(d)]); shutil.rmtree(p) if os.path.isdir(p) and not os.path.islink(p) else os.unlink(p)
            k = r.randrange(4)
            if k == 0: open(p, "wb").write(r.randbytes(r.randrange(5000)))
            elif k == 1: os.mkdir(p)
            elif k == 2: os.symlink(r.choice(names), p)
            else: os.mkfifo(p)
        elif op == 11:
            p = r.choice(regs); q = fresh(r.choice(ds)); os.link(p, q)
            if r.random() < 0.5: os.unlink(p)
        elif op == 12:
            os.symlink(r.choice([b"/nonexistent", b"../" + r.choice(names), r.choice(names)]), fresh(r.choice(ds)))
        elif op == 13:
            p = r.choice(regs + ds[1:]); os.chmod(p, r.choice([0o600, 0o644, 0o755, 0o700, 0o444]))
            os.chown(p, r.choice([0, 1000, 1001]), r.choice([0, 1000, 1001]))
        elif op == 14:
            p = r.choice(regs + ds[1:])
            if r.random() < 0.7: os.setxattr(p, b"user.soak%d" % r.randrange(3), r.randbytes(r.randrange(1, 60)))
            else:
                xs = [x for x in os.listxattr(p) if x.startswith("user.")]
                if xs: os.removexattr(p, r.choice(xs))
        elif op == 15:
            p = r.choice(regs + ds[1:]); t = r.randrange(1_500_000_000, 1_800_000_000)
            os.utime(p, ns=(t * 10**9 + r.randrange(10**9), t * 10**9 + r.randrange(10**9)))
        else:
            continue
        done += 1
    except OSError:
        pass  # raced with itself (a name taken, a directory not empty): no op
print(done)
EOF
)
	echo "burst ${n:-0}" >>"$counts"
}

# change: churn or a burst, sometimes both.
change() {
	if [ $((RANDOM % 3)) -eq 0 ]; then churn "$1"; fi
	burst $((10 + RANDOM % 150))
}

# converge DEST: a sync with no fault and no change running must succeed.
converge() {
	run_sync "$1" none
	if [ "$sync_rc" -ne 0 ]; then
		say "FAIL: a sync to the $1 secondary with nothing in its way exited $sync_rc"
		tail -20 "$work/sync.err" | tee -a "$log"
		return 1
	fi
}

# explain_content P D: for verify.py's content differences, tell those with
# equal size and mtime on both sides (a write raced the read:
# TestFaultWriteRacingRead), which no later sync repairs.
explain_content() {
	$py -c '
import ast, os, sys
p, d = os.fsencode(sys.argv[1]), os.fsencode(sys.argv[2])
for line in sys.stdin:
    if not line.startswith("content: b"):
        continue
    rel = ast.literal_eval(line[len("content: "):line.rindex(" size ")])
    try:
        a, b = os.lstat(os.path.join(p, rel)), os.lstat(os.path.join(d, rel))
    except OSError:
        continue
    if (a.st_size, a.st_mtime_ns) == (b.st_size, b.st_mtime_ns):
        print("  equal size and mtime, other content (a write raced the read: TestFaultWriteRacingRead):", rel)
' "$1" "$2"
}

verify_both() {
	local ok=0 d out
	for d in "$S1" "$S2"; do
		if ! out=$("$tv" "$P" "$d" --mtime-ns --show 1000 2>&1); then
			say "FAIL: treeverify $d: $(tail -1 <<<"$out")"
			head -20 <<<"$out" >>"$log"
			ok=1
		fi
		if [ -n "$shared" ] && ! out=$($py "$shared/bench/verify.py" "$P" "$d" --mtime-ns --show 1000 2>&1); then
			say "FAIL: verify.py $d: $(tail -1 <<<"$out")"
			head -20 <<<"$out" >>"$log"
			explain_content "$P" "$d" <<<"$out" | tee -a "$log"
			ok=1
		fi
		if ! out=$("$bin" verify --mtime-ns "$P" "$d" 2>&1); then
			say "FAIL: georep verify $d: $(tail -1 <<<"$out")"
			head -20 <<<"$out" >>"$log"
			ok=1
		fi
	done
	return $ok
}

# --- the run ----------------------------------------------------------------
say "soak for ${dur}s in $work (georep $bin, sshd on 127.0.0.1:$port)"
rm -rf "$P" "$S1" "$S2" "$ST"
"$wl" populate "$P" --files 5000 --dirs 60 --seed $((RANDOM)) >/dev/null
converge local && converge ssh && verify_both || { verdict=FAIL; say "the initial syncs failed"; exit 1; }
say "populated and replicated: $(find "$P" -printf . | wc -c) entries"

end=$((SECONDS + dur))
round=0
while [ "$SECONDS" -lt "$end" ]; do
	round=$((round + 1))
	dest=local; [ $((round % 2)) -eq 0 ] && dest=ssh
	case $((RANDOM % 10)) in
	0 | 1 | 2) fault=sync ;;
	3 | 4) fault=agent; [ "$dest" = ssh ] || fault=sync ;;
	*) fault=none ;;
	esac
	if [ "${SOAK_OVERLAP:-1}" = 0 ] || [ $((RANDOM % 2)) -eq 0 ]; then
		change "$round" # then the sync
		run_sync "$dest" "$fault"
	else
		change "$round" & # during the sync
		chg=$!
		run_sync "$dest" "$fault"
		wait "$chg"
	fi
	if [ "$fault" = none ] && [ "$sync_rc" -ne 0 ]; then
		failed_syncs=$((failed_syncs + 1))
	fi
	if [ $((round % 15)) -eq 0 ]; then # a checkpoint: quiet primary, both converge
		checkpoints=$((checkpoints + 1))
		if converge local && converge ssh && verify_both; then
			say "checkpoint $checkpoints (round $round): both replicas verify; $(ops_total) ops, $((faults[sync] + faults[agent])) faults so far"
		else
			checkpoint_failures=$((checkpoint_failures + 1))
			say "checkpoint $checkpoints (round $round) FAILED (differences above; the soak goes on)"
		fi
	fi
done

# --- the end ------------------------------------------------------------------
if converge local && converge ssh && verify_both && [ "$checkpoint_failures" -eq 0 ]; then verdict=PASS; else verdict=FAIL; fi
left1=$(ls "$S1/.georep/tmp" | wc -l) left2=$(ls "$S2/.georep/tmp" | wc -l)
[ "$left1" -eq 0 ] && [ "$left2" -eq 0 ] || { say "FAIL: staging areas not empty: $left1 local, $left2 ssh"; verdict=FAIL; }
say "----"
say "duration          $((SECONDS - t0))s ($round rounds, $syncs syncs, $checkpoints checkpoints, $checkpoint_failures failed)"
say "ops applied       $(ops_total) ($(ops_of churn) churns, $(ops_of burst) bursts of single ops)"
say "faults survived   $((faults[sync] + faults[agent])) (kill -9 georep sync: ${faults[sync]}, kill -9 remote agent: ${faults[agent]})"
say "syncs that failed with no fault injected (changes racing them): $failed_syncs"
say "tree              $(find "$P" -printf . | wc -c) entries, $(du -sh "$P" | cut -f1)"
say "final verify      $verdict (treeverify${shared:+, verify.py} and georep verify, local and ssh secondaries)"
[ "$verdict" = PASS ]
