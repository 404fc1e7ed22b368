package testutil

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// allPPIDs maps every live pid to its parent pid, read from /proc.
func allPPIDs() map[int]int {
	m := map[int]int{}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return m
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// "pid (comm) state ppid ..."; comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 {
			continue
		}
		if ppid, err := strconv.Atoi(f[1]); err == nil {
			m[pid] = ppid
		}
	}
	return m
}

// descendants lists the pids below root in the process tree.
func descendants(root int) []int {
	kids := map[int][]int{}
	for pid, ppid := range allPPIDs() {
		kids[ppid] = append(kids[ppid], pid)
	}
	var out []int
	queue := []int{root}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range kids[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

// killTree SIGKILLs root and every process below it. It freezes them with
// SIGSTOP first, so that none forks away or is reparented while the tree is
// being walked.
func killTree(root int) {
	stopped := map[int]bool{root: true}
	syscall.Kill(root, syscall.SIGSTOP)
	for range 20 {
		fresh := 0
		for _, p := range descendants(root) {
			if !stopped[p] {
				syscall.Kill(p, syscall.SIGSTOP)
				stopped[p] = true
				fresh++
			}
		}
		if fresh == 0 {
			break
		}
	}
	for p := range stopped {
		syscall.Kill(p, syscall.SIGKILL)
	}
}

// killSSHSessions SIGKILLs the processes whose SSH_CONNECTION says they were
// started through the sshd at host:port: what a session left behind after
// its sshd died (daemonized or reparented commands).
func killSSHSessions(host string, port int) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	self := os.Getpid()
	ps := strconv.Itoa(port)
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil {
			continue
		}
		for _, kv := range bytes.Split(env, []byte{0}) {
			v, ok := bytes.CutPrefix(kv, []byte("SSH_CONNECTION="))
			if !ok {
				continue
			}
			// "client_ip client_port server_ip server_port"
			if f := strings.Fields(string(v)); len(f) == 4 && f[2] == host && f[3] == ps {
				syscall.Kill(pid, syscall.SIGKILL)
			}
			break
		}
	}
}
