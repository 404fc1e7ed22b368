package worker

import (
	"testing"
	"time"

	"github.com/georep/georep/internal/fileid"
	"github.com/georep/georep/internal/tree"
)

func TestArrivedBefore(t *testing.T) {
	now := time.Unix(1000, 0)
	old := now.Add(-time.Minute).UnixNano()
	file := func(id string, size, mtime int64) *tree.Entry {
		return &tree.Entry{ID: fileid.ID("aa" + id), Kind: tree.KindRegular, Size: size, Meta: tree.Meta{Mtime: mtime}}
	}
	e := file("1", 10, old)
	cases := []struct {
		name string
		sec  *tree.Entry
		prim *tree.Entry
		want bool
	}{
		{"arrived in the failed attempt", file("1", 10, old), e, true},
		{"size differs", file("1", 9, old), e, false},
		{"mtime differs (metadata not applied yet)", file("1", 10, old-1), e, false},
		{"another file at the slot", file("2", 10, old), e, false},
		{"no copy on the secondary", &tree.Entry{Size: 10}, e, false},
		{"written a moment ago", file("1", 10, now.Add(-time.Second).UnixNano()), file("1", 10, now.Add(-time.Second).UnixNano()), false},
	}
	for _, c := range cases {
		if got := arrivedBefore(c.sec, c.prim, now); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}
