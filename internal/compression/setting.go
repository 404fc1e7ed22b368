// Package compression owns the choice of zstd compression for file data on
// the wire: the setting a user gives (auto, none, zstd, zstd:N), the
// adaptive decision (Decide, a pure function of what was measured: the
// link's rate, the compressor's rate and the ratio of the data at hand),
// and the Controller that measures those and asks Decide per message. The
// zstd framing itself is internal/protocol's Compressed message.
//
// The model: per level, a pipeline that compresses at C bytes/s (all
// compressors together) into a link of W bytes/s moves min(C, W/ratio) raw
// bytes per second; sending uncompressed moves W. The level with the most
// wins, by a margin, and ties go to the lighter level. W is known once the
// senders waited on the link (its buffers full); until then compression
// starts at zstd:2 and steps lighter while the link waits on the senders,
// down to zstd:1 but not to raw (a slow link behind a starved compressor
// looks the same as a fast one). A local secondary never compresses, a
// loopback ssh does not in auto mode (the "link" there is the same CPUs
// the compressor would take; the worker tells a loopback address answering
// pings within 20 ms from a tunnel), and data whose sample does not shrink
// (random or already-compressed content) is sent as is.
package compression

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Level is a compression level: Off, or 1 (fastest) to 4 (best), which are
// klauspost/compress's zstd encoder levels (about zstd -1, -3, -7, -11).
type Level int

// Levels.
const (
	Off      Level = 0
	Fastest  Level = 1
	Default  Level = 2
	Better   Level = 3
	Best     Level = 4
	MaxLevel       = Best
)

// String is the level as the summary and status show it: "none" or
// "zstd:N".
func (l Level) String() string {
	if l == Off {
		return "none"
	}
	return "zstd:" + strconv.Itoa(int(l))
}

// Mode says how the level is chosen.
type Mode int

// Modes.
const (
	// Auto compresses when it pays, at the level that pays most: the default.
	Auto Mode = iota
	// Always compresses (rsync's -z) over any remote link, loopback too, at
	// the level that pays most; data that does not shrink is still sent
	// stored.
	Always
	// Fixed compresses at one level (--compress-level, zstd:N).
	Fixed
	// Never does not compress (--compress-choice none, none).
	Never
)

// Setting is a parsed compression setting.
type Setting struct {
	Mode  Mode
	Level Level // for Fixed
}

// ErrBadSetting marks a compression setting that cannot be parsed.
var ErrBadSetting = errors.New("bad compression setting")

// Parse reads a setting as the session key "compression" and
// worker.Config hold it: "" or "auto" (the default), "none" (or "off"),
// "zstd" (always, level chosen by the link), "zstd:N" with N from 1
// (fastest) to 4 (best).
func Parse(s string) (Setting, error) {
	switch strings.TrimSpace(s) {
	case "", "auto":
		return Setting{Mode: Auto}, nil
	case "none", "off":
		return Setting{Mode: Never}, nil
	case "zstd":
		return Setting{Mode: Always}, nil
	}
	if n, ok := strings.CutPrefix(strings.TrimSpace(s), "zstd:"); ok {
		if v, err := strconv.Atoi(n); err == nil && v >= int(Fastest) && v <= int(MaxLevel) {
			return Setting{Mode: Fixed, Level: Level(v)}, nil
		}
	}
	return Setting{}, fmt.Errorf("%w %q: want auto, none, zstd or zstd:1..4", ErrBadSetting, s)
}

// String is the setting in Parse's syntax.
func (s Setting) String() string {
	switch s.Mode {
	case Always:
		return "zstd"
	case Fixed:
		return s.Level.String()
	case Never:
		return "none"
	}
	return "auto"
}

// FromZstdLevel maps a zstd (and rsync --compress-level) level to the
// encoder level nearest it, as klauspost/compress does: 1-2 fastest, 3-5
// default, 6-9 better, 10 and more best; 0 and below is Off.
func FromZstdLevel(n int) Level {
	switch {
	case n <= 0:
		return Off
	case n < 3:
		return Fastest
	case n < 6:
		return Default
	case n < 10:
		return Better
	}
	return Best
}
