package cli

import (
	"strings"
	"testing"
)

func TestWantSrcDst(t *testing.T) {
	cases := []struct {
		pos  []string
		want string // "" = accepted
	}{
		{[]string{"a", "b"}, ""},
		{nil, "missing SRC and DST"},
		{[]string{"a"}, `missing DST after SRC "a"`},
		{[]string{"a", "b", "c"}, `3 arguments given, want only SRC and DST; unexpected: "c"`},
	}
	for _, c := range cases {
		err := WantSrcDst(c.pos)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%q refused: %v", c.pos, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%q: error %v, want it to say %q", c.pos, err, c.want)
		}
	}
}
