package testutil

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// Netns is a network namespace made for one test.
type Netns struct {
	Name string // as `ip netns` lists it: georep-<pid>-<n>
}

// Path is the namespace's bind mount, as `ip netns add` made it.
func (n *Netns) Path() string {
	return "/run/netns/" + n.Name
}

// Exec returns a command that runs args inside the namespace; it is killed
// if still running when the test ends.
//
// It runs `nsenter --net=PATH -- args...`, which switches the network
// namespace only, rather than `ip netns exec`, which also gives the command a
// mount namespace of its own: the mounts of these machines are private, so a
// loop mount made by the test after the command started would never appear
// to it, and one unmounted by the test would stay alive under it.
func (n *Netns) Exec(t testing.TB, args ...string) *exec.Cmd {
	t.Helper()
	argv, err := n.argv(args...)
	if err != nil {
		t.Fatalf("testutil: %v", err)
	}
	return exec.CommandContext(t.Context(), argv[0], argv[1:]...)
}

// argv prefixes args with the nsenter call that runs them in the namespace.
func (n *Netns) argv(args ...string) ([]string, error) {
	nsenter, err := lookupTool("nsenter")
	if err != nil {
		return nil, err
	}
	return append([]string{nsenter, "--net=" + n.Path(), "--"}, args...), nil
}

// NetnsPair is a network namespace joined to the root namespace by a veth
// pair: HostAddr on HostVeth (root side) and NSAddr on NSVeth (namespace
// side) share one 10.231.x.y/30, and nothing else is routed. The root
// namespace also gets an "unreachable" route for that /30 with a high metric,
// so that while the link is down, traffic to NSAddr fails at once (no route
// to host) instead of leaving through the default route.
type NetnsPair struct {
	Netns
	HostVeth string // veth end in the root namespace
	NSVeth   string // veth end in the namespace
	HostAddr string // e.g. 10.231.7.1
	NSAddr   string // e.g. 10.231.7.2
	Subnet   string // e.g. 10.231.7.0/30
}

// netnsGuardMetric marks the guard route (and lets stale ones be found).
const netnsGuardMetric = "4231"

var (
	netnsSeq atomic.Int64
	netnsMu  sync.Mutex // one subnet pick at a time in this process
)

// NewNetnsPair creates a network namespace with a veth pair to the root
// namespace, addresses and links up (lo too, inside), and registers a cleanup
// that deletes all of it. Root only; skips when ip(8) is missing. It also
// removes namespaces left behind by test processes that died.
func NewNetnsPair(t testing.TB) *NetnsPair {
	t.Helper()
	RequireRoot(t)
	RequireTool(t, "ip", "iproute2")
	RequireTool(t, "nsenter", "util-linux")
	sweepStaleNetns()

	n := netnsSeq.Add(1)
	pid := os.Getpid()
	p := &NetnsPair{
		Netns:    Netns{Name: fmt.Sprintf("georep-%d-%d", pid, n)},
		HostVeth: fmt.Sprintf("grh%x-%x", pid, n), // at most 15 bytes
		NSVeth:   fmt.Sprintf("grn%x-%x", pid, n),
	}
	ipT := func(args ...string) {
		t.Helper()
		if err := runTool("ip", args...); err != nil {
			t.Fatalf("testutil: %v", err)
		}
	}

	ipT("netns", "add", p.Name)
	t.Cleanup(func() {
		// Deleting the namespace destroys its veth end and so the pair.
		if err := runTool("ip", "netns", "delete", p.Name); err != nil {
			t.Logf("testutil: %v", err)
		}
		runTool("ip", "link", "delete", p.HostVeth) // gone already unless a process holds the namespace
		if p.Subnet != "" {
			runTool("ip", "route", "delete", "unreachable", p.Subnet, "metric", netnsGuardMetric)
		}
	})
	if _, err := os.Stat(p.Path()); err != nil {
		t.Fatalf("testutil: namespace %s made, but: %v", p.Name, err)
	}
	ipT("link", "add", p.HostVeth, "type", "veth", "peer", "name", p.NSVeth, "netns", p.Name)

	netnsMu.Lock()
	a, b, err := pickSubnet()
	if err == nil {
		p.Subnet = fmt.Sprintf("10.231.%d.%d/30", a, b)
		p.HostAddr = fmt.Sprintf("10.231.%d.%d", a, b+1)
		p.NSAddr = fmt.Sprintf("10.231.%d.%d", a, b+2)
		err = runTool("ip", "addr", "add", p.HostAddr+"/30", "dev", p.HostVeth)
	}
	netnsMu.Unlock()
	if err != nil {
		t.Fatalf("testutil: %v", err)
	}
	ipT("route", "add", "unreachable", p.Subnet, "metric", netnsGuardMetric)
	ipT("link", "set", p.HostVeth, "up")
	ipT("-n", p.Name, "addr", "add", p.NSAddr+"/30", "dev", p.NSVeth)
	ipT("-n", p.Name, "link", "set", p.NSVeth, "up")
	ipT("-n", p.Name, "link", "set", "lo", "up")
	return p
}

// LinkDown sets the root-side veth down: the namespace becomes unreachable
// (connects fail with "no route to host"; established connections see
// nothing more until the link is back). Safe to call from any goroutine.
func (p *NetnsPair) LinkDown() error {
	return runTool("ip", "link", "set", p.HostVeth, "down")
}

// LinkUp sets the root-side veth up again; the kernel restores the route.
func (p *NetnsPair) LinkUp() error {
	return runTool("ip", "link", "set", p.HostVeth, "up")
}

// pickSubnet picks a /30 of 10.231.0.0/16 that no address or route of the
// root namespace uses yet.
func pickSubnet() (a, b int, err error) {
	addrs, err := toolOutput("ip", "-4", "-o", "addr", "show")
	if err != nil {
		return 0, 0, err
	}
	routes, err := toolOutput("ip", "-4", "route", "show", "table", "all")
	if err != nil {
		return 0, 0, err
	}
	for range 1000 {
		a, b = rand.IntN(256), 4*rand.IntN(64)
		used := strings.Contains(routes, fmt.Sprintf("10.231.%d.%d/30", a, b))
		for i := range 4 {
			used = used || strings.Contains(addrs, fmt.Sprintf("inet 10.231.%d.%d/", a, b+i))
		}
		if !used {
			return a, b, nil
		}
	}
	return 0, 0, fmt.Errorf("no free /30 left in 10.231.0.0/16")
}

// sweepStaleNetns deletes the namespaces of test processes that are gone
// (killed by a timeout before their cleanups ran) and guard routes whose
// veth is gone.
func sweepStaleNetns() {
	out, err := toolOutput("ip", "netns", "list")
	if err != nil {
		return
	}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) == 0 || !strings.HasPrefix(f[0], "georep-") {
			continue
		}
		parts := strings.Split(f[0], "-")
		if len(parts) != 3 {
			continue
		}
		pid, err := strconv.Atoi(parts[1])
		if err != nil || pid == os.Getpid() {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); os.IsNotExist(err) {
			runTool("ip", "netns", "delete", f[0])
		}
	}
	routes, err := toolOutput("ip", "-4", "route", "show", "type", "unreachable")
	if err != nil {
		return
	}
	addrs, err := toolOutput("ip", "-4", "-o", "addr", "show")
	if err != nil {
		return
	}
	for _, l := range strings.Split(routes, "\n") {
		// unreachable 10.231.7.0/30 metric 4231
		f := strings.Fields(l)
		if len(f) < 4 || f[len(f)-1] != netnsGuardMetric || !strings.HasPrefix(f[1], "10.231.") {
			continue
		}
		var a, b int
		if _, err := fmt.Sscanf(f[1], "10.231.%d.%d/30", &a, &b); err != nil {
			continue
		}
		if !strings.Contains(addrs, fmt.Sprintf("inet 10.231.%d.%d/30", a, b+1)) {
			runTool("ip", "route", "delete", "unreachable", f[1], "metric", netnsGuardMetric)
		}
	}
}
