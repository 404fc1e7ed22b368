package compression

// Link is what lies between the primary and the secondary.
type Link int

// Links.
const (
	// Remote is a network link: its measured rate decides.
	Remote Link = iota
	// Loopback is ssh to this very host: the "link" is ssh and the agent on
	// the same CPUs a compressor would take, so compressing only moves work
	// between them (auto mode does not compress there).
	Loopback
	// Local is an in-process secondary: nothing crosses a wire.
	Local
)

func (l Link) String() string {
	switch l {
	case Loopback:
		return "loopback"
	case Local:
		return "local"
	}
	return "remote"
}

// Estimate is what is known of one level on the data being sent.
type Estimate struct {
	Rate  float64 // raw bytes per second the compressors take together (0 = unknown)
	Ratio float64 // compressed size / raw size (0 = unknown)
}

// Inputs are what Decide weighs. They are measurements, not settings,
// except for Setting and Link.
type Inputs struct {
	Setting Setting
	Link    Link
	// WireRate is the wire bytes per second the link carries (0 = not
	// known yet): measured while the sender waited on it when
	// WireMeasured, else only a lower bound (what it carried while the
	// sender kept it waiting).
	WireRate     float64
	WireMeasured bool
	// WireBusy is the share of the recent time the sender spent waiting on
	// the link, 0 to 1; negative = not known yet (the link's buffers are
	// still taking everything).
	WireBusy float64
	// Levels are the estimates per level (index 0 unused); unknown ones are
	// derived from a known one (see priors).
	Levels [MaxLevel + 1]Estimate
	// SampleRatio is the ratio of a sample of the data at hand at the
	// fastest level (0 = not sampled).
	SampleRatio float64
	// Current is the level in use.
	Current Level
}

// Reason says why Decide chose what it chose.
type Reason int

// Reasons.
const (
	ReasonNever          Reason = iota // the setting says none
	ReasonLocal                        // a local secondary
	ReasonLoopback                     // loopback ssh, auto mode
	ReasonIncompressible               // the sample does not shrink
	ReasonFixed                        // the setting fixes the level
	ReasonStart                        // nothing measured yet: assume the link is the bottleneck
	ReasonWireBound                    // the link is the bottleneck: compressing pays
	ReasonCPUBound                     // the compressor is the bottleneck: a lighter level
	ReasonFastLink                     // the link keeps up without compression
)

func (r Reason) String() string {
	return [...]string{"setting", "local secondary", "loopback", "incompressible data", "fixed level",
		"link not measured yet", "link-bound", "compressor-bound", "link faster than compression"}[r]
}

// Choice is a decision.
type Choice struct {
	Level  Level
	Reason Reason
}

// Tuning of the decision.
const (
	// IncompressibleRatio: a sample that does not shrink below this is
	// sent stored (zstd's own stored blocks start near 0.97).
	IncompressibleRatio = 0.92
	// payMargin is how much faster compression must be predicted to be
	// than sending raw, and stepMargin how much faster a level must be
	// than the one in use (or a lighter one) to be chosen: the estimates
	// are noisy, so near ties keep the current, lighter choice.
	payMargin  = 1.10
	stepMargin = 1.05
	// idleBusy: a sender that waited on the link less than this share of
	// the time is not held back by it.
	idleBusy = 0.2
)

// priors relate the levels to each other (speed and ratio relative to
// Fastest), measured on the Go distribution's src/ in 4 MiB batches
// (BenchmarkLevels): 238, 170, 54 and 22 MB/s; ratios 0.240, 0.221,
// 0.208, 0.193. Only used for levels not measured on the data at hand.
var priors = [MaxLevel + 1]Estimate{{}, {1, 1}, {0.71, 0.92}, {0.23, 0.87}, {0.09, 0.80}}

// Decide chooses the level for the next message. It is a pure function of
// its inputs.
func Decide(in Inputs) Choice {
	switch {
	case in.Setting.Mode == Never:
		return Choice{Off, ReasonNever}
	case in.Link == Local:
		return Choice{Off, ReasonLocal}
	case in.SampleRatio > IncompressibleRatio:
		return Choice{Off, ReasonIncompressible}
	case in.Setting.Mode == Fixed:
		return Choice{in.Setting.Level, ReasonFixed}
	case in.Setting.Mode == Auto && in.Link == Loopback:
		return Choice{Off, ReasonLoopback}
	}
	est, ok := fill(in.Levels)
	if !ok || in.WireRate <= 0 || in.WireBusy < 0 {
		// Until the link is measured, assume it is slower than the
		// compressor (true of any WAN): keep compressing, at Default.
		if in.Current != Off {
			return Choice{in.Current, ReasonStart}
		}
		return Choice{Default, ReasonStart}
	}
	if in.WireBusy < idleBusy && !in.WireMeasured {
		// The sender hardly waits on a link whose rate was never seen:
		// the compressor (or the reading) holds the transfer back. One
		// step lighter, until the link shows its rate. (Once it has,
		// the model below weighs the compressor's measured rate against
		// it: a slow compressor into a slow link still beats raw.)
		// Not down to raw, though: a link that never made the sender
		// wait may still be slower than raw data (a WAN behind a starved
		// compressor), and raw would send three or four times the bytes
		// into it. Raw wins only on a link measured faster than the
		// compressor (below), e.g. while incompressible data flowed.
		switch {
		case in.Current > Fastest:
			return Choice{in.Current - 1, ReasonCPUBound}
		case in.Current == Off:
			return Choice{Off, ReasonFastLink}
		}
		return Choice{Fastest, ReasonCPUBound}
	}
	w := in.WireRate
	tput := func(l Level) float64 {
		if l == Off {
			return w
		}
		return min(est[l].Rate, w/est[l].Ratio)
	}
	// Lightest first: a heavier level must beat the best so far by the
	// step margin (compression beat raw by the pay margin).
	best := Level(Fastest)
	if in.Setting.Mode == Auto {
		best = Off
	}
	for l := Fastest; l <= MaxLevel; l++ {
		if l == best {
			continue
		}
		margin := stepMargin
		if best == Off {
			margin = payMargin
		}
		if tput(l) > tput(best)*margin {
			best = l
		}
	}
	// Hysteresis: keep the level in use unless the best is clearly better.
	if cur := in.Current; best != cur && (cur != Off || in.Setting.Mode == Auto) && tput(best) < tput(cur)*stepMargin {
		best = cur
	}
	switch {
	case best == Off:
		return Choice{Off, ReasonFastLink}
	case est[best].Rate < w/est[best].Ratio:
		return Choice{best, ReasonCPUBound}
	}
	return Choice{best, ReasonWireBound}
}

// fill completes the per-level estimates: a level not measured is derived
// through the priors from the measured level nearest it (the lighter one
// on a tie). ok is false when no level is measured.
func fill(lv [MaxLevel + 1]Estimate) (out [MaxLevel + 1]Estimate, ok bool) {
	known := func(l Level) bool { return l >= Fastest && l <= MaxLevel && lv[l].Rate > 0 && lv[l].Ratio > 0 }
	out = lv
	for l := Fastest; l <= MaxLevel; l++ {
		if known(l) {
			ok = true
			continue
		}
		for d := Level(1); d < MaxLevel; d++ {
			a := l - d
			if !known(a) {
				a = l + d
			}
			if known(a) {
				out[l].Rate = lv[a].Rate * priors[l].Rate / priors[a].Rate
				out[l].Ratio = min(1, lv[a].Ratio*priors[l].Ratio/priors[a].Ratio)
				break
			}
		}
	}
	return out, ok
}
