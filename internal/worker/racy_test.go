package worker

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestRacy(t *testing.T) {
	now := time.Unix(1000, 0)
	ts := func(d time.Duration) unix.Timespec { return unix.NsecToTimespec(now.Add(-d).UnixNano()) }
	for _, c := range []struct {
		age  time.Duration
		want bool
	}{{0, true}, {time.Millisecond, true}, {racyWindow - time.Nanosecond, true}, {racyWindow, false}, {time.Hour, false}, {-time.Second, true}} {
		if got := racy(ts(c.age), now); got != c.want {
			t.Errorf("changed %s before the read: racy %v, want %v", c.age, got, c.want)
		}
	}
}

func TestChangedWhileRead(t *testing.T) {
	base := unix.Stat_t{Ino: 7, Size: 10, Mtim: unix.Timespec{Sec: 5}, Ctim: unix.Timespec{Sec: 5}}
	for _, c := range []struct {
		name string
		edit func(*unix.Stat_t)
		want bool
	}{
		{"unchanged", func(*unix.Stat_t) {}, false},
		{"ctime", func(s *unix.Stat_t) { s.Ctim.Nsec++ }, true},
		{"mtime", func(s *unix.Stat_t) { s.Mtim.Sec++ }, true},
		{"size", func(s *unix.Stat_t) { s.Size++ }, true},
		{"inode", func(s *unix.Stat_t) { s.Ino++ }, true},
		{"atime only", func(s *unix.Stat_t) { s.Atim.Sec++ }, false},
	} {
		after := base
		c.edit(&after)
		if got := changedWhileRead(&base, &after); got != c.want {
			t.Errorf("%s: changed %v, want %v", c.name, got, c.want)
		}
	}
}
