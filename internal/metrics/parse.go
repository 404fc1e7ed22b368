package metrics

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Sample is one parsed sample.
type Sample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// Key renders a sample's identity as name{a="x",b="y"} (labels sorted).
func (s Sample) Key() string {
	if len(s.Labels) == 0 {
		return s.Name
	}
	var ks []string
	for k := range s.Labels {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	var b strings.Builder
	b.WriteString(s.Name + "{")
	for i, k := range ks {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k + `="` + escapeLabel(s.Labels[k]) + `"`)
	}
	b.WriteByte('}')
	return b.String()
}

var (
	nameRE   = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	labelRE  = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
	typeOK   = map[string]bool{"counter": true, "gauge": true, "histogram": true, "summary": true, "untyped": true}
	counterT = "counter"
)

// Parse reads the text exposition format strictly enough to catch what a
// Prometheus server would reject: every sample belongs to the family whose
// HELP and TYPE precede it, families are not split, names and labels are
// well formed, a sample's identity is unique, values are numbers, and
// counters are not negative. It returns the samples by Key.
func Parse(r io.Reader) (map[string]Sample, error) {
	out := map[string]Sample{}
	types := map[string]string{}
	helps := map[string]bool{}
	done := map[string]bool{}
	cur := ""
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		if strings.HasPrefix(line, "#") {
			f := strings.SplitN(line, " ", 4)
			if len(f) < 3 || (f[1] != "HELP" && f[1] != "TYPE") {
				continue // a comment
			}
			name := f[2]
			if !nameRE.MatchString(name) {
				return nil, fmt.Errorf("line %d: bad metric name %q", n, name)
			}
			if name != cur {
				if done[name] {
					return nil, fmt.Errorf("line %d: family %s split", n, name)
				}
				if cur != "" {
					done[cur] = true
				}
				cur = name
			}
			if f[1] == "TYPE" {
				if len(f) != 4 || !typeOK[f[3]] {
					return nil, fmt.Errorf("line %d: bad TYPE line %q", n, line)
				}
				if _, dup := types[name]; dup {
					return nil, fmt.Errorf("line %d: second TYPE for %s", n, name)
				}
				types[name] = f[3]
			} else {
				if helps[name] {
					return nil, fmt.Errorf("line %d: second HELP for %s", n, name)
				}
				helps[name] = true
			}
			continue
		}
		s, err := parseSample(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %v", n, err)
		}
		if s.Name != cur {
			return nil, fmt.Errorf("line %d: sample %s outside its family (current %s)", n, s.Name, cur)
		}
		if !helps[s.Name] || types[s.Name] == "" {
			return nil, fmt.Errorf("line %d: %s has no HELP or TYPE", n, s.Name)
		}
		if types[s.Name] == counterT && s.Value < 0 {
			return nil, fmt.Errorf("line %d: negative counter %s", n, s.Key())
		}
		if _, dup := out[s.Key()]; dup {
			return nil, fmt.Errorf("line %d: duplicate sample %s", n, s.Key())
		}
		out[s.Key()] = s
	}
	return out, sc.Err()
}

func parseSample(line string) (Sample, error) {
	s := Sample{Labels: map[string]string{}}
	i := strings.IndexAny(line, "{ ")
	if i < 0 {
		return s, fmt.Errorf("no value in %q", line)
	}
	s.Name = line[:i]
	if !nameRE.MatchString(s.Name) {
		return s, fmt.Errorf("bad metric name %q", s.Name)
	}
	rest := line[i:]
	if rest[0] == '{' {
		rest = rest[1:]
		for {
			if strings.HasPrefix(rest, "}") {
				rest = rest[1:]
				break
			}
			eq := strings.IndexByte(rest, '=')
			if eq < 0 || len(rest) < eq+2 || rest[eq+1] != '"' {
				return s, fmt.Errorf("bad labels in %q", line)
			}
			lname := rest[:eq]
			if !labelRE.MatchString(lname) {
				return s, fmt.Errorf("bad label name %q", lname)
			}
			rest = rest[eq+2:]
			var val strings.Builder
			closed := false
			for j := 0; j < len(rest); j++ {
				c := rest[j]
				if c == '\\' && j+1 < len(rest) {
					j++
					switch rest[j] {
					case 'n':
						val.WriteByte('\n')
					case '\\', '"':
						val.WriteByte(rest[j])
					default:
						return s, fmt.Errorf("bad escape in %q", line)
					}
					continue
				}
				if c == '"' {
					rest = rest[j+1:]
					closed = true
					break
				}
				val.WriteByte(c)
			}
			if !closed {
				return s, fmt.Errorf("unterminated label value in %q", line)
			}
			if _, dup := s.Labels[lname]; dup {
				return s, fmt.Errorf("duplicate label %s", lname)
			}
			s.Labels[lname] = val.String()
			rest = strings.TrimPrefix(rest, ",")
		}
	}
	f := strings.Fields(rest)
	if len(f) < 1 || len(f) > 2 {
		return s, fmt.Errorf("bad value part in %q", line)
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return s, fmt.Errorf("bad value in %q", line)
	}
	s.Value = v
	return s, nil
}
