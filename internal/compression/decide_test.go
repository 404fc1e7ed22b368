package compression

import "testing"

// The Go src/ figures on one core (BenchmarkLevels): rate in MB/s, ratio.
func goSrc() [MaxLevel + 1]Estimate {
	return [MaxLevel + 1]Estimate{{}, {238e6, 0.240}, {170e6, 0.221}, {54e6, 0.208}, {22e6, 0.193}}
}

// goSrcX is goSrc with x compressors.
func goSrcX(x float64) [MaxLevel + 1]Estimate {
	lv := goSrc()
	for l := range lv {
		lv[l].Rate *= x
	}
	return lv
}

func only(l Level, e Estimate) (lv [MaxLevel + 1]Estimate) {
	lv[l] = e
	return lv
}

func TestDecide(t *testing.T) {
	auto := Setting{Mode: Auto}
	always := Setting{Mode: Always}
	const wan = 12.5e6 // 100 Mbit/s
	for _, c := range []struct {
		name string
		in   Inputs
		want Choice
	}{
		{"none: off", Inputs{Setting: Setting{Mode: Never}, WireRate: wan, WireMeasured: true, WireBusy: 1, Levels: goSrc()}, Choice{Off, ReasonNever}},
		{"local never compresses, even -z", Inputs{Setting: always, Link: Local}, Choice{Off, ReasonLocal}},
		{"local never compresses, even a fixed level", Inputs{Setting: Setting{Mode: Fixed, Level: Best}, Link: Local}, Choice{Off, ReasonLocal}},
		{"loopback: auto does not compress", Inputs{Setting: auto, Link: Loopback, WireRate: 200e6, WireMeasured: true, WireBusy: 1, Levels: goSrc()}, Choice{Off, ReasonLoopback}},
		// -z over loopback: fastest moves min(476, 833) MB/s, default 340.
		{"loopback: -z does", Inputs{Setting: always, Link: Loopback, WireRate: 200e6, WireMeasured: true, WireBusy: 1, Levels: goSrcX(2), Current: Default},
			Choice{Fastest, ReasonCPUBound}},
		{"random data: stored", Inputs{Setting: auto, WireRate: wan, WireMeasured: true, WireBusy: 1, Levels: goSrc(), SampleRatio: 1.0}, Choice{Off, ReasonIncompressible}},
		{"random data: stored even at a fixed level", Inputs{Setting: Setting{Mode: Fixed, Level: Better}, SampleRatio: 0.99}, Choice{Off, ReasonIncompressible}},
		{"compressible sample is not a reason to stop", Inputs{Setting: Setting{Mode: Fixed, Level: Better}, SampleRatio: 0.3}, Choice{Better, ReasonFixed}},
		{"nothing measured: start at default", Inputs{Setting: auto, WireBusy: -1}, Choice{Default, ReasonStart}},
		{"link not measured yet: keep the level in use", Inputs{Setting: auto, Levels: goSrc(), WireRate: 0, WireBusy: -1, Current: Better}, Choice{Better, ReasonStart}},
		{"buffers still filling: keep", Inputs{Setting: auto, Levels: goSrc(), WireRate: 40e6, WireBusy: -1, Current: Default}, Choice{Default, ReasonStart}},
		// 100 Mbit/s, two compressors: better moves min(108, 60) = 60 MB/s
		// of raw data, default 56.6, raw 12.5.
		{"WAN, two compressors: better", Inputs{Setting: auto, WireRate: wan, WireMeasured: true, WireBusy: 0.9, Levels: goSrcX(2), Current: Default},
			Choice{Better, ReasonWireBound}},
		// One compressor: better is CPU-bound at 54 < default's 56.6.
		{"WAN, one compressor: default", Inputs{Setting: auto, WireRate: wan, WireMeasured: true, WireBusy: 0.9, Levels: goSrcX(1), Current: Default},
			Choice{Default, ReasonWireBound}},
		{"WAN, starting from raw", Inputs{Setting: auto, WireRate: wan, WireMeasured: true, WireBusy: 1, Levels: goSrcX(1), Current: Off},
			Choice{Default, ReasonWireBound}},
		{"slow link (10 Mbit/s), four compressors: best", Inputs{Setting: auto, WireRate: 1.25e6, WireMeasured: true, WireBusy: 1, Levels: goSrcX(4), Current: Default},
			Choice{Best, ReasonWireBound}},
		// 10 GbE: raw 1.25 GB/s beats any level's CPU rate.
		{"10 GbE: raw", Inputs{Setting: auto, WireRate: 1.25e9, WireMeasured: true, WireBusy: 0.8, Levels: goSrcX(2), Current: Default},
			Choice{Off, ReasonFastLink}},
		{"10 GbE, -z: fastest", Inputs{Setting: always, WireRate: 1.25e9, WireMeasured: true, WireBusy: 0.8, Levels: goSrcX(2), Current: Default},
			Choice{Fastest, ReasonCPUBound}},
		// 1 GbE, poorly compressible data (0.8 at fastest): raw 125 MB/s,
		// fastest min(476, 156), default (from the priors: 169 MB/s,
		// 0.736) min(338, 170): default.
		{"1 GbE, 0.8 ratio: default pays", Inputs{Setting: auto, WireRate: 125e6, WireMeasured: true, WireBusy: 0.8, Current: Off,
			Levels: only(Fastest, Estimate{238e6 * 2, 0.8})}, Choice{Default, ReasonWireBound}},
		// 1 GbE, one slow compressor (100 MB/s at fastest): no level
		// reaches 1.1 x 125 MB/s.
		{"1 GbE, slow compressor: raw", Inputs{Setting: auto, WireRate: 125e6, WireMeasured: true, WireBusy: 0.8, Current: Off,
			Levels: only(Fastest, Estimate{100e6 * 1, 0.5})}, Choice{Off, ReasonFastLink}},
		{"1 GbE, slow compressor, compressing: back to raw", Inputs{Setting: auto, WireRate: 125e6, WireMeasured: true, WireBusy: 0.8, Current: Default,
			Levels: only(Fastest, Estimate{100e6 * 1, 0.5})}, Choice{Off, ReasonFastLink}},
		{"sender idle on the link: one step lighter", Inputs{Setting: auto, WireRate: wan, WireBusy: 0.05, Levels: goSrcX(2), Current: Better},
			Choice{Default, ReasonCPUBound}},
		// Idle at fastest on a link not measured yet: not down to raw
		// (the link may be slow behind a starved compressor).
		{"sender idle at fastest, link not measured: stays", Inputs{Setting: auto, WireRate: wan, WireBusy: 0.05, Levels: goSrcX(2), Current: Fastest},
			Choice{Fastest, ReasonCPUBound}},
		// A link measured (while raw data flowed) faster than any level.
		{"link measured at 1 GB/s: raw", Inputs{Setting: auto, WireRate: 1e9, WireMeasured: true, WireBusy: 0.6, Levels: goSrcX(2), Current: Fastest},
			Choice{Off, ReasonFastLink}},
		{"sender idle at fastest, -z: stays", Inputs{Setting: always, WireRate: wan, WireBusy: 0.05, Levels: goSrcX(2), Current: Fastest},
			Choice{Fastest, ReasonCPUBound}},
		{"slow compressor into a measured slow link: still compresses", Inputs{Setting: auto, WireRate: wan, WireMeasured: true, WireBusy: 0.05,
			Levels: only(Fastest, Estimate{30e6, 0.24}), Current: Fastest}, Choice{Fastest, ReasonCPUBound}},
		{"sender idle, raw: stays raw", Inputs{Setting: auto, WireRate: 100e6, WireBusy: 0.05, Levels: goSrc(), Current: Off},
			Choice{Off, ReasonFastLink}},
		// Hysteresis: default at 56.6 vs better at 60 with one and a half
		// compressors' worth: better is min(81, 60) = 60, 6% more: switch;
		// from better, default is not 5% better: stay.
		{"near tie: keep the level in use", Inputs{Setting: auto, WireRate: wan, WireMeasured: true, WireBusy: 0.9, Levels: goSrcX(1), Current: Better},
			Choice{Better, ReasonCPUBound}},
		// Only Fastest measured (samples): the others come from the priors.
		{"priors fill the levels not measured", Inputs{Setting: auto, WireRate: wan, WireMeasured: true, WireBusy: 1, Current: Off,
			Levels: only(Fastest, Estimate{238e6 * 2, 0.240})}, Choice{Better, ReasonWireBound}},
	} {
		if got := Decide(c.in); got != c.want {
			t.Errorf("%s: Decide = %v (%v), want %v (%v)", c.name, got.Level, got.Reason, c.want.Level, c.want.Reason)
		}
	}
}

func TestFill(t *testing.T) {
	lv, ok := fill(only(Default, Estimate{100e6, 0.5}))
	if !ok {
		t.Fatal("not ok with one level measured")
	}
	if lv[Default] != (Estimate{100e6, 0.5}) {
		t.Errorf("measured level changed: %+v", lv[Default])
	}
	if lv[Fastest].Rate <= lv[Default].Rate || lv[Fastest].Ratio <= lv[Default].Ratio {
		t.Errorf("fastest should be faster and compress less: %+v vs %+v", lv[Fastest], lv[Default])
	}
	if lv[Best].Rate >= lv[Better].Rate || lv[Best].Ratio >= lv[Better].Ratio {
		t.Errorf("best should be slower and compress more: %+v vs %+v", lv[Best], lv[Better])
	}
	lv, _ = fill(only(Fastest, Estimate{100e6, 0.99}))
	for l := Fastest; l <= MaxLevel; l++ {
		if lv[l].Ratio > 1 {
			t.Errorf("level %d: ratio %v above 1", l, lv[l].Ratio)
		}
	}
	if _, ok := fill([MaxLevel + 1]Estimate{}); ok {
		t.Error("ok with nothing measured")
	}
}
