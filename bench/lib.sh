# Shared by the bench scripts (sourced; $here is the checkout).

# find_shared sets $shared to $GEOREP_SHARED_DIR, or else to the first
# shared/ (holding bench/workload.py) beside the checkout or above it; empty
# when there is none.
find_shared() {
	shared=${GEOREP_SHARED_DIR:-}
	local d=$here
	while [ -z "$shared" ] && [ "$d" != / ]; do
		d=$(dirname "$d")
		[ -f "$d/shared/bench/workload.py" ] && shared=$d/shared
	done
	return 0
}

# need_shared is find_shared for the scripts that cannot run without it.
need_shared() {
	find_shared
	[ -n "$shared" ] || { echo "$0: needs shared/bench (workload.py, verify.py ...) beside the checkout or above it, or GEOREP_SHARED_DIR" >&2; exit 1; }
}

# bench_mount makes sure $mnt is a journaled ext4 loop filesystem (8 GiB,
# made once; see shared/bench/README.md for why not the root fs).
bench_mount() {
	mountpoint -q "$mnt" && return 0
	mkdir -p "$mnt"
	local img=/var/tmp/georep-bench.img
	truncate -s 8G $img
	mkfs.ext4 -q -F $img
	mount -o loop,noatime $img "$mnt"
}
