package service

import (
	"os"

	"github.com/georep/georep/internal/changelog"
)

// clFile is a changelog and its size, for the garbage collection.
type clFile struct {
	Seq  uint64
	Size int64
}

// planGC decides which changelogs of a root to delete: every one that all
// consumers applied (seq <= the least position; no consumers: none), then,
// while the rest exceed maxBytes, the oldest ones until they fit in 90% of
// it. dropped counts the changelogs deleted before some consumer applied
// them.
func planGC(files []clFile, positions []uint64, maxBytes int64) (del []uint64, dropped int) {
	if len(positions) == 0 {
		return nil, 0
	}
	least := positions[0]
	for _, p := range positions[1:] {
		least = min(least, p)
	}
	var total int64
	i := 0
	for ; i < len(files) && files[i].Seq <= least; i++ {
		del = append(del, files[i].Seq)
	}
	for _, f := range files[i:] {
		total += f.Size
	}
	if total <= maxBytes {
		return del, 0
	}
	target := maxBytes / 10 * 9
	for ; i < len(files) && total > target; i++ {
		del = append(del, files[i].Seq)
		total -= files[i].Size
		dropped++
	}
	return del, dropped
}

// gc deletes the changelogs every consumer applied, and enforces the size
// limit, for every registered root.
func (s *server) gc() {
	s.mu.Lock()
	type job struct {
		dir       string
		consumers []string
	}
	var jobs []job
	for _, p := range s.reg.paths() {
		jobs = append(jobs, job{Dir(s.opts.Dir, p), append([]string(nil), s.reg.Roots[p]...)})
	}
	s.mu.Unlock()
	for _, jb := range jobs {
		id, err := RootID(jb.dir)
		if err != nil {
			continue
		}
		positions := make([]uint64, 0, len(jb.consumers))
		for _, c := range jb.consumers {
			pos, ok, err := ReadPosition(jb.dir, c)
			if err != nil || !ok || pos.Root != id {
				pos.Seq = 0 // pins everything until it has a position here
			}
			positions = append(positions, pos.Seq)
		}
		list, err := changelog.List(jb.dir)
		if err != nil {
			s.log.Warn("journal: gc", "dir", jb.dir, "err", err)
			continue
		}
		files := make([]clFile, 0, len(list))
		paths := map[uint64]string{}
		for _, f := range list {
			fi, err := os.Stat(f.Path)
			if err != nil {
				continue
			}
			files = append(files, clFile{f.Seq, fi.Size()})
			paths[f.Seq] = f.Path
		}
		del, dropped := planGC(files, positions, s.opts.MaxBytes)
		for _, seq := range del {
			if err := os.Remove(paths[seq]); err != nil && !os.IsNotExist(err) {
				s.log.Warn("journal: gc", "file", paths[seq], "err", err)
			}
		}
		if dropped > 0 {
			s.log.Warn("journal: size limit passed: dropped changelogs not yet applied; their consumers will crawl",
				"dir", jb.dir, "dropped", dropped, "max_bytes", s.opts.MaxBytes, "consumers", jb.consumers)
		}
	}
}
