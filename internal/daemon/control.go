package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"

	"github.com/georep/georep/internal/session"
	"github.com/georep/georep/internal/status"
)

// The control protocol: the client connects to <state>/georep.sock, writes
// one JSON Request and reads one JSON Response; the connection then closes.
// Only root (or the daemon's own user) may connect: the socket is 0600 in a
// 0700 directory and the peer's credentials are checked.

// Operations.
const (
	OpPing   = "ping"   // is a daemon there (Response.Version, PID)
	OpStatus = "status" // live reports (Session empty: all)
	OpReload = "reload" // re-read Session's config.toml and apply it; waits until applied
	OpResync = "resync" // re-send Path (empty: the whole tree) of Session; waits for the result
)

// Request is what the CLI asks.
type Request struct {
	Op      string `json:"op"`
	Session string `json:"session,omitempty"`
	Path    string `json:"path,omitempty"`
	// TimeoutMS bounds how long a resync may wait for the worker.
	TimeoutMS int64 `json:"timeout_ms,omitempty"`
}

// Response is the daemon's answer.
type Response struct {
	OK      bool            `json:"ok"`
	Error   string          `json:"error,omitempty"`
	Version string          `json:"version,omitempty"`
	PID     int             `json:"pid,omitempty"`
	Reports []status.Report `json:"reports,omitempty"`
	Resync  *ResyncResult   `json:"resync,omitempty"`
}

// ResyncResult reports a finished resync.
type ResyncResult struct {
	Path     string `json:"path"`
	Job      string `json:"job"`
	Failures int    `json:"failures"`
	Cleared  int    `json:"cleared"`
}

// ErrNoDaemon means no daemon listens on the state directory's socket.
var ErrNoDaemon = errors.New("no georep daemon is running for this state directory")

// Call sends one request to the daemon of stateDir. A daemon-side failure
// is returned as an error with the daemon's message.
func Call(ctx context.Context, stateDir string, req Request) (*Response, error) {
	path := session.Store{Root: stateDir}.SocketPath()
	var d net.Dialer
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	conn, err := d.DialContext(dctx, "unix", path)
	cancel()
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, ErrNoDaemon
		}
		return nil, fmt.Errorf("daemon socket %s: %w", path, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	if err := json.NewEncoder(conn).Encode(req); err != nil {
		return nil, fmt.Errorf("daemon: %w", err)
	}
	var resp Response
	if err := json.NewDecoder(conn).Decode(&resp); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("daemon: no answer: %w", err)
	}
	if !resp.OK {
		return &resp, errors.New(resp.Error)
	}
	return &resp, nil
}
