package worker

import (
	"context"
	"net"
	"sync"
	"time"

	"github.com/georep/georep/internal/compression"
	"github.com/georep/georep/internal/protocol"
)

// loopbackRTT: a secondary on a loopback address (or one of this host's
// own) that answers a ping within this (loaded two-core machines take several ms) is on this host, reached without a
// real link; one that takes longer is behind a tunnel or an emulated WAN
// (such as ../shared/bench/wanproxy.py) and is treated as remote.
const loopbackRTT = 20 * time.Millisecond

// probeWait bounds how long the data waits for the first probe.
const probeWait = loopbackRTT + 5*time.Millisecond

// awaitLinkProbe waits (at most probeWait after the probe started) until
// the first probe of the link is answered, so that the first data is
// sent as the link calls for.
func (s *Session) awaitLinkProbe(ctx context.Context) {
	if s.firstProbe == nil {
		return
	}
	select {
	case <-s.firstProbe:
	case <-ctx.Done():
	}
}

// probeLink tells the compression controller whether the secondary is on
// this host: its address is local and it answers pings within
// loopbackRTT (the best of three, so one scheduling delay does not
// decide). Until then the link counts as remote.
//
// The data waits for the first answer (awaitLinkProbe), at most
// probeWait: a small tree is otherwise on its way before the first ping
// is back.
func (s *Session) probeLink(ctx context.Context) {
	var once sync.Once
	first := func() { once.Do(func() { close(s.firstProbe) }) }
	defer first()
	time.AfterFunc(probeWait, first)
	if !hostIsLocal(ctx, s.cfg.Dest.Host) {
		return
	}
	best := time.Duration(-1)
	for i := range 3 {
		if i == 1 {
			first()
		}
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		t0 := time.Now()
		_, err := s.conn.Call(pctx, &protocol.Ping{})
		rtt := time.Since(t0)
		cancel()
		if err != nil {
			return // the connection's own error is seen by its users
		}
		if best < 0 || rtt < best {
			best = rtt
		}
		if best < loopbackRTT {
			s.comp.SetLink(compression.Loopback)
			s.log.Debug("secondary on this host (loopback)", "rtt", best)
			return
		}
	}
	s.log.Debug("secondary on a local address behind a slow link: treated as remote", "rtt", best)
}

// hostIsLocal reports whether host (as ssh is given it) names this host:
// a loopback address, "localhost", or an address of one of its
// interfaces. A name ssh_config maps elsewhere is not resolved here and
// counts as remote.
func hostIsLocal(ctx context.Context, host string) bool {
	if len(host) > 2 && host[0] == '[' && host[len(host)-1] == ']' {
		host = host[1 : len(host)-1]
	}
	var ips []net.IP
	if ip := net.ParseIP(host); ip != nil {
		ips = []net.IP{ip}
	} else {
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		addrs, err := net.DefaultResolver.LookupIPAddr(rctx, host)
		cancel()
		if err != nil || len(addrs) == 0 {
			return false
		}
		for _, a := range addrs {
			ips = append(ips, a.IP)
		}
	}
	own, _ := net.InterfaceAddrs()
	for _, ip := range ips {
		if ip.IsLoopback() {
			continue
		}
		mine := false
		for _, a := range own {
			if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
				mine = true
			}
		}
		if !mine {
			return false
		}
	}
	return true
}
