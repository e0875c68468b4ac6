// Package tone finds pure tones in recorded audio. It reads and writes
// 16-bit PCM WAV files and measures, window by window (100 ms by default),
// which share of the window's power lies at a given frequency, with a
// Goertzel filter. The NAT lab uses it to prove that each softphone's
// recording of a call holds the other phone's tone: two-way audio.
package tone

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// Audio is mono PCM audio with samples in [-1, 1].
type Audio struct {
	Rate    int // samples per second
	Samples []float64
}

// Duration is the length of a.
func (a *Audio) Duration() time.Duration {
	if a == nil || a.Rate <= 0 {
		return 0
	}
	return time.Duration(float64(len(a.Samples)) / float64(a.Rate) * float64(time.Second))
}

// Sine returns a sine wave of freq Hz with peak amplitude amp (0..1),
// lasting d, at rate samples per second.
func Sine(freq, amp float64, d time.Duration, rate int) *Audio {
	n := int(d.Seconds() * float64(rate))
	a := &Audio{Rate: rate, Samples: make([]float64, n)}
	w := 2 * math.Pi * freq / float64(rate)
	for i := range a.Samples {
		a.Samples[i] = amp * math.Sin(w*float64(i))
	}
	return a
}

// Silence returns d of digital silence at rate samples per second.
func Silence(d time.Duration, rate int) *Audio {
	return &Audio{Rate: rate, Samples: make([]float64, int(d.Seconds()*float64(rate)))}
}

// Append returns a followed by the samples of more (which must have a's
// rate).
func (a *Audio) Append(more ...*Audio) *Audio {
	out := &Audio{Rate: a.Rate, Samples: append([]float64(nil), a.Samples...)}
	for _, m := range more {
		if m.Rate != a.Rate {
			panic(fmt.Sprintf("tone: appending %d Hz audio to %d Hz audio", m.Rate, a.Rate))
		}
		out.Samples = append(out.Samples, m.Samples...)
	}
	return out
}

// Goertzel returns the power of x at freq Hz (x sampled at rate) relative to
// the total power of x: about 1 for a pure sine at freq, about 0 for a sine
// at a frequency at least 1/len(x) seconds away, or for silence. Noise
// spreads its power over the whole band, so only a small part of it counts.
func Goertzel(x []float64, rate int, freq float64) float64 {
	n := len(x)
	if n == 0 || rate <= 0 {
		return 0
	}
	var total float64
	for _, v := range x {
		total += v * v
	}
	if total < 1e-20 {
		return 0
	}
	w := 2 * math.Pi * freq / float64(rate)
	coeff := 2 * math.Cos(w)
	var s1, s2 float64
	for _, v := range x {
		s0 := v + coeff*s1 - s2
		s2, s1 = s1, s0
	}
	// |X(w)|^2 of the window. A sine of amplitude A gives (A*n/2)^2, and its
	// energy is A^2*n/2, hence the normalisation.
	power := s1*s1 + s2*s2 - coeff*s1*s2
	r := 2 * power / (float64(n) * total)
	if r > 1 {
		r = 1
	}
	return r
}

// LevelDB is the RMS level of x in dB relative to full scale (a full-scale
// square wave is 0 dB, a full-scale sine -3 dB); -inf for silence.
func LevelDB(x []float64) float64 {
	if len(x) == 0 {
		return math.Inf(-1)
	}
	var sum float64
	for _, v := range x {
		sum += v * v
	}
	return 10 * math.Log10(sum/float64(len(x)))
}

// Detector decides, per window, whether a tone is clearly present.
type Detector struct {
	// Window is the analysis window. Zero: 100 ms.
	Window time.Duration
	// MinRatio is the share of the window's power that must lie at the
	// tone's frequency. Zero: 0.6 (the tone dominates the window).
	MinRatio float64
	// MinLevelDB is the window's minimum RMS level in dBFS: quieter
	// windows count as silence, whatever their spectrum. Zero: -50.
	MinLevelDB float64
}

// Default is the detector Seconds and Timeline use.
var Default = Detector{}

func (d Detector) window() time.Duration {
	if d.Window <= 0 {
		return 100 * time.Millisecond
	}
	return d.Window
}

func (d Detector) minRatio() float64 {
	if d.MinRatio <= 0 {
		return 0.6
	}
	return d.MinRatio
}

func (d Detector) minLevel() float64 {
	if d.MinLevelDB == 0 {
		return -50
	}
	return d.MinLevelDB
}

// Window is the analysis of one window of audio.
type Window struct {
	Start   time.Duration
	LevelDB float64   // RMS level, dBFS
	Ratio   []float64 // per frequency asked for: its share of the power
	Present []bool    // per frequency: loud enough and Ratio >= MinRatio
}

// Analyze splits a into whole windows (a trailing partial window is left
// out) and measures each frequency in each of them.
func (d Detector) Analyze(a *Audio, freqs ...float64) []Window {
	if a == nil || a.Rate <= 0 {
		return nil
	}
	n := int(d.window().Seconds() * float64(a.Rate))
	if n <= 0 {
		return nil
	}
	var out []Window
	for i := 0; i+n <= len(a.Samples); i += n {
		x := a.Samples[i : i+n]
		w := Window{
			Start:   time.Duration(float64(i) / float64(a.Rate) * float64(time.Second)),
			LevelDB: LevelDB(x),
			Ratio:   make([]float64, len(freqs)),
			Present: make([]bool, len(freqs)),
		}
		loud := w.LevelDB >= d.minLevel()
		for j, f := range freqs {
			w.Ratio[j] = Goertzel(x, a.Rate, f)
			w.Present[j] = loud && w.Ratio[j] >= d.minRatio()
		}
		out = append(out, w)
	}
	return out
}

// Seconds is how long freq is clearly present in a: the number of windows
// in which it is, times the window length.
func (d Detector) Seconds(a *Audio, freq float64) float64 {
	n := 0
	for _, w := range d.Analyze(a, freq) {
		if w.Present[0] {
			n++
		}
	}
	return float64(n) * d.window().Seconds()
}

// Seconds is Default.Seconds: how many seconds of a hold freq clearly
// (100 ms windows, at least 60 % of the power at freq, louder than -50 dBFS).
func Seconds(a *Audio, freq float64) float64 { return Default.Seconds(a, freq) }

// Timeline summarises a second by second, one character per second: '1'
// for freqs[0], '2' for freqs[1], ... when that tone is present in at least
// half of the second's windows, '.' for (near) silence, '~' for anything
// else (sound without any of the tones). For logs: "..1111111111." is a
// recording that holds ten seconds of the first tone.
func (d Detector) Timeline(a *Audio, freqs ...float64) string {
	ws := d.Analyze(a, freqs...)
	per := int(time.Second / d.window())
	if per < 1 {
		per = 1
	}
	var b strings.Builder
	for i := 0; i < len(ws); i += per {
		end := min(i+per, len(ws))
		counts := make([]int, len(freqs))
		quiet := 0
		for _, w := range ws[i:end] {
			if w.LevelDB < d.minLevel() {
				quiet++
			}
			for j := range freqs {
				if w.Present[j] {
					counts[j]++
				}
			}
		}
		c := byte('~')
		best := 0
		for j, n := range counts {
			if n > best && 2*n >= end-i {
				best, c = n, byte('1'+j%9)
			}
		}
		if best == 0 && 2*quiet >= end-i {
			c = '.'
		}
		b.WriteByte(c)
	}
	return b.String()
}

// Timeline is Default.Timeline.
func Timeline(a *Audio, freqs ...float64) string { return Default.Timeline(a, freqs...) }
