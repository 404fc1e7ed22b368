package service

import (
	"errors"
	"time"
)

// Request is one control request (one JSON line).
type Request struct {
	Op      string `json:"op"`                // "register", "unregister", "rollover", "status", "reexec"
	Session string `json:"session,omitempty"` // the consumer
	Path    string `json:"path,omitempty"`    // the root (register, unregister, rollover)
	// Rollover (register) is the consumer's rollover interval: the root's
	// changelogs close at most the shortest of its consumers' after their
	// first record (0: the journal process's --rollover-interval).
	Rollover time.Duration `json:"rollover,omitempty"`
	// Within (rollover) asks the root's open changelog, or the next one,
	// to be closed at most this long after its first record; 0 writes the
	// open one now and answers once it is durable.
	Within time.Duration `json:"within,omitempty"`
}

// Response answers a Request.
type Response struct {
	Error string `json:"error,omitempty"`
	// Code classifies Error: "unsupported" (no fanotify here), "bad-request".
	Code   string        `json:"code,omitempty"`
	Root   *RootStatus   `json:"root,omitempty"`   // register
	Status *ServerStatus `json:"status,omitempty"` // status
}

// Error codes of a Response.
const (
	codeUnsupported = "unsupported"
	codeBadRequest  = "bad-request"
)

// RootStatus describes one journaled root.
type RootStatus struct {
	Path      string   `json:"path"`
	Dir       string   `json:"dir"`
	ID        string   `json:"id"` // root.id: changes when the changelog dir is made anew
	Consumers []string `json:"consumers"`
	// Rollover is the shortest rollover interval its consumers asked for
	// (0: the journal process's).
	Rollover time.Duration `json:"rollover,omitempty"`
	// Error is why the root is not journaled now (its group failed).
	Error        string    `json:"error,omitempty"`
	CoveredSince time.Time `json:"covered_since"`
	Vouched      time.Time `json:"vouched"`
	LastSeq      uint64    `json:"last_seq"`
	Changelogs   int       `json:"changelogs"`
	Bytes        int64     `json:"bytes"`
	// Events and Overflows are its group's (filesystem's) counters since
	// the journal process started.
	Events    uint64 `json:"events"`
	Overflows uint64 `json:"overflows"`
}

// GroupStatus describes one fanotify group (one filesystem).
type GroupStatus struct {
	FS        string    `json:"fs"`
	Roots     int       `json:"roots"`
	Events    uint64    `json:"events"`
	Overflows uint64    `json:"overflows"`
	Since     time.Time `json:"since"` // this group (or the one it was handed from) in this process
}

// ServerStatus is the answer to "status".
type ServerStatus struct {
	PID      int           `json:"pid"`
	Started  time.Time     `json:"started"`
	Version  string        `json:"version"`
	MaxBytes int64         `json:"max_bytes"`
	Roots    []RootStatus  `json:"roots"`
	Groups   []GroupStatus `json:"groups"`
}

// ErrNotRunning reports that no journal process answers on the socket.
var ErrNotRunning = errors.New("no journal process is running")

// ErrRefused wraps an error the journal process answered with.
var ErrRefused = errors.New("journal process refused")
