package service

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/georep/georep/internal/journal"
)

// Client talks to the journal process of a journal directory.
type Client struct{ Dir string }

func (c Client) do(ctx context.Context, req Request) (*Response, error) {
	var d net.Dialer
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := d.DialContext(dctx, "unix", Socket(c.Dir))
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("%w on %s", ErrNotRunning, c.Dir)
		}
		return nil, fmt.Errorf("journal process: %w", err)
	}
	defer conn.Close()
	dl := time.Now().Add(time.Minute)
	if t, ok := ctx.Deadline(); ok && t.Before(dl) {
		dl = t
	}
	conn.SetDeadline(dl)
	if err := json.NewEncoder(conn).Encode(req); err != nil {
		return nil, fmt.Errorf("journal process: %w", err)
	}
	var resp Response
	if err := json.NewDecoder(bufio.NewReader(conn)).Decode(&resp); err != nil {
		return nil, fmt.Errorf("journal process: %s: %w", req.Op, err)
	}
	if resp.Error != "" {
		if resp.Code == codeUnsupported {
			return nil, fmt.Errorf("journal process: %w: %s", journal.ErrUnsupported, resp.Error)
		}
		return nil, fmt.Errorf("%w: %s: %s", ErrRefused, req.Op, resp.Error)
	}
	return &resp, nil
}

// Register makes session a consumer of root, with its rollover interval
// (0: the journal process's), and returns the root's changelog dir and
// identity.
func (c Client) Register(ctx context.Context, session, root string, rollover time.Duration) (*RootStatus, error) {
	resp, err := c.do(ctx, Request{Op: "register", Session: session, Path: root, Rollover: rollover})
	if err != nil {
		return nil, err
	}
	if resp.Root == nil {
		return nil, fmt.Errorf("journal process: register: empty answer")
	}
	return resp.Root, nil
}

// Unregister drops session as a consumer of root ("" = of every root).
func (c Client) Unregister(ctx context.Context, session, root string) error {
	_, err := c.do(ctx, Request{Op: "unregister", Session: session, Path: root})
	return err
}

// RollOver asks the journal process to close root's open changelog (or
// the next one) at most within after its first record; within 0 writes it
// now and returns once it is durable. session is a consumer of root.
func (c Client) RollOver(ctx context.Context, session, root string, within time.Duration) error {
	_, err := c.do(ctx, Request{Op: "rollover", Session: session, Path: root, Within: within})
	return err
}

// Status asks the journal process for its status.
func (c Client) Status(ctx context.Context) (*ServerStatus, error) {
	resp, err := c.do(ctx, Request{Op: "status"})
	if err != nil {
		return nil, err
	}
	if resp.Status == nil {
		return nil, fmt.Errorf("journal process: status: empty answer")
	}
	return resp.Status, nil
}

// Reexec asks the journal process to hand over to the binary on disk.
func (c Client) Reexec(ctx context.Context) error {
	_, err := c.do(ctx, Request{Op: "reexec"})
	return err
}

// Spawn starts a journal process (exe with args) detached from the caller
// (its own session, stdout and stderr appended to logPath) unless one
// answers already, and waits until it answers.
func (c Client) Spawn(ctx context.Context, exe string, args []string, logPath string) error {
	if _, err := c.Status(ctx); err == nil {
		return nil
	}
	lf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("journal log: %w", err)
	}
	defer lf.Close()
	cmd := exec.Command(exe, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start the journal process: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }() // reaps it if it dies while we are here
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := c.Status(ctx); err == nil {
			return nil
		}
		select {
		case err := <-exited:
			if _, serr := c.Status(ctx); serr == nil {
				return nil // another one won the race
			}
			return fmt.Errorf("the journal process exited: %v (see %s)", err, logPath)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the journal process did not answer within 20s (see %s)", logPath)
		}
	}
}
