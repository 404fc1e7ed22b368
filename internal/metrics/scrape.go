package metrics

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Sample is one sample of a scrape, for tests and tools that read
// /metrics.
type Sample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// Key renders a sample's identity as name{a="x",b="y"} (labels sorted, values
// quoted as in the exposition format).
func (s Sample) Key() string {
	if len(s.Labels) == 0 {
		return s.Name
	}
	ks := make([]string, 0, len(s.Labels))
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
		b.WriteString(k + "=" + fmt.Sprintf("%q", s.Labels[k]))
	}
	b.WriteByte('}')
	return b.String()
}

// Parse reads a text exposition with Prometheus' own parser (expfmt) and
// returns its counter, gauge and untyped samples by Key, and a histogram's
// as NAME_count and NAME_sum.
func Parse(r io.Reader) (map[string]Sample, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, err
	}
	out := map[string]Sample{}
	add := func(name string, labels map[string]string, v float64) {
		s := Sample{Name: name, Labels: labels, Value: v}
		out[s.Key()] = s
	}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			switch {
			case m.Counter != nil:
				add(name, labels, m.GetCounter().GetValue())
			case m.Gauge != nil:
				add(name, labels, m.GetGauge().GetValue())
			case m.Untyped != nil:
				add(name, labels, m.GetUntyped().GetValue())
			case m.Histogram != nil:
				add(name+"_count", labels, float64(m.GetHistogram().GetSampleCount()))
				add(name+"_sum", labels, m.GetHistogram().GetSampleSum())
			}
		}
	}
	return out, nil
}
