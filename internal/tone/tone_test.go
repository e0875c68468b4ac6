package tone

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

const rate = 8000 // G.711's rate, what the lab's phones record

// noise returns Gaussian white noise with RMS amplitude rms.
func noise(rms float64, d time.Duration, seed uint64) *Audio {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	a := Silence(d, rate)
	for i := range a.Samples {
		a.Samples[i] = rms * r.NormFloat64()
	}
	return a
}

// mix adds b into a, sample by sample (same length and rate).
func mix(a, b *Audio) *Audio {
	out := &Audio{Rate: a.Rate, Samples: append([]float64(nil), a.Samples...)}
	for i := range out.Samples {
		out.Samples[i] += b.Samples[i]
	}
	return out
}

// ulaw passes a through G.711 mu-law encoding and decoding, as a call's
// audio does: the detector must still find the tone after the codec.
func ulaw(a *Audio) *Audio {
	const bias, clip = 0x84, 32635
	out := &Audio{Rate: a.Rate, Samples: make([]float64, len(a.Samples))}
	for i, v := range a.Samples {
		s := int(pcm16(v))
		sign := 0
		if s < 0 {
			s, sign = -s, 0x80
		}
		s = min(s, clip) + bias
		exp := 7
		for mask := 0x4000; s&mask == 0 && exp > 0; mask >>= 1 {
			exp--
		}
		mant := (s >> (exp + 3)) & 0x0f
		u := ^(sign | exp<<4 | mant) & 0xff
		// decode
		u = ^u & 0xff
		t := ((u&0x0f)<<3 + bias) << ((u & 0x70) >> 4)
		if u&0x80 != 0 {
			t = bias - t
		} else {
			t -= bias
		}
		out.Samples[i] = float64(t) / 32768
	}
	return out
}

func near(got, want, tol float64) bool { return math.Abs(got-want) <= tol }

// TestClassification: the four cases the lab relies on, each on its own
// and after a trip through the G.711 codec and a WAV file.
func TestClassification(t *testing.T) {
	const d = 3 * time.Second
	cases := []struct {
		name      string
		audio     *Audio
		want440   float64 // seconds of 440 Hz
		want880   float64
		timeline1 string // with freqs 440, 880
	}{
		{"pure 440", Sine(440, 0.5, d, rate), 3, 0, "111"},
		{"pure 880", Sine(880, 0.5, d, rate), 0, 3, "222"},
		// 6 dB SNR: noise RMS 0.18 against a tone of RMS 0.35.
		{"440 + noise", mix(Sine(440, 0.5, d, rate), noise(0.18, d, 1)), 3, 0, "111"},
		{"silence", Silence(d, rate), 0, 0, "..."},
		{"faint hiss", noise(0.0005, d, 2), 0, 0, "..."},
		{"noise alone", noise(0.2, d, 3), 0, 0, "~~~"},
		{"both tones, equal", mix(Sine(440, 0.3, d, rate), Sine(880, 0.3, d, rate)), 0, 0, "~~~"},
		{"near miss 460 Hz", Sine(460, 0.5, d, rate), 0, 0, "~~~"},
		{"segments", Silence(time.Second, rate).Append(Sine(440, 0.5, 2*time.Second, rate), Sine(880, 0.5, time.Second, rate), Silence(time.Second, rate)),
			2, 1, ".112."},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, v := range []struct {
				name  string
				audio *Audio
			}{{"raw", c.audio}, {"ulaw+wav", wavTrip(t, ulaw(c.audio))}} {
				a := v.audio
				if got := Seconds(a, 440); !near(got, c.want440, 0.15) {
					t.Errorf("%s: Seconds(440) = %.2f, want %.1f; windows: %s", v.name, got, c.want440, describe(a))
				}
				if got := Seconds(a, 880); !near(got, c.want880, 0.15) {
					t.Errorf("%s: Seconds(880) = %.2f, want %.1f; windows: %s", v.name, got, c.want880, describe(a))
				}
				if got := Timeline(a, 440, 880); got != c.timeline1 {
					t.Errorf("%s: Timeline = %q, want %q", v.name, got, c.timeline1)
				}
			}
		})
	}
}

// describe prints the first windows' ratios for failure messages.
func describe(a *Audio) string {
	var b strings.Builder
	for i, w := range Default.Analyze(a, 440, 880) {
		if i == 12 {
			b.WriteString(" ...")
			break
		}
		b.WriteString(" [" + w.Start.String())
		for _, r := range w.Ratio {
			b.WriteString(" " + strconvF(r))
		}
		b.WriteString(" " + strconvF(w.LevelDB) + "dB]")
	}
	return b.String()
}

func strconvF(f float64) string {
	if math.IsInf(f, -1) {
		return "-inf"
	}
	return strconv.FormatFloat(f, 'f', 2, 64)
}

// wavTrip writes a to a WAV file and reads it back.
func wavTrip(t *testing.T, a *Audio) *Audio {
	t.Helper()
	path := filepath.Join(t.TempDir(), "a.wav")
	if err := WriteFile(path, a); err != nil {
		t.Fatal(err)
	}
	b, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestGoertzelRatio(t *testing.T) {
	x := Sine(440, 0.8, 100*time.Millisecond, rate).Samples
	if r := Goertzel(x, rate, 440); !near(r, 1, 0.01) {
		t.Errorf("pure tone: ratio %.3f, want 1", r)
	}
	if r := Goertzel(x, rate, 880); r > 0.01 {
		t.Errorf("octave above: ratio %.3f, want 0", r)
	}
	// An off-bin frequency (not a multiple of 10 Hz in a 100 ms window) is
	// still measured at its own frequency.
	y := Sine(1234.5, 0.8, 100*time.Millisecond, rate).Samples
	if r := Goertzel(y, rate, 1234.5); !near(r, 1, 0.02) {
		t.Errorf("off-bin tone: ratio %.3f, want 1", r)
	}
	if r := Goertzel(make([]float64, 800), rate, 440); r != 0 {
		t.Errorf("silence: ratio %v, want 0", r)
	}
	if r := Goertzel(nil, rate, 440); r != 0 {
		t.Errorf("empty: ratio %v, want 0", r)
	}
	// Amplitude does not matter, only the share of power.
	z := Sine(440, 0.01, 100*time.Millisecond, rate).Samples
	if r := Goertzel(z, rate, 440); !near(r, 1, 0.01) {
		t.Errorf("quiet tone: ratio %.3f, want 1", r)
	}
}

// TestMinLevel: a tone below the detector's level floor is silence.
func TestMinLevel(t *testing.T) {
	a := Sine(440, 0.001, time.Second, rate) // about -63 dBFS
	if s := Seconds(a, 440); s != 0 {
		t.Errorf("a -63 dBFS tone counts as %.1f s; want 0 (below the -50 dBFS floor)", s)
	}
	d := Detector{MinLevelDB: -80}
	if s := d.Seconds(a, 440); !near(s, 1, 0.05) {
		t.Errorf("with a -80 dBFS floor: %.1f s, want 1", s)
	}
}

func TestOtherRates(t *testing.T) {
	for _, r := range []int{16000, 44100, 48000} {
		a := Sine(880, 0.5, 2*time.Second, r)
		if s := Seconds(a, 880); !near(s, 2, 0.15) {
			t.Errorf("%d Hz: Seconds(880) = %.2f, want 2", r, s)
		}
		if s := Seconds(a, 440); s != 0 {
			t.Errorf("%d Hz: Seconds(440) = %.2f, want 0", r, s)
		}
	}
}

// rawWAV builds a WAV file by hand: a fmt chunk body, optional chunks
// before it and the data chunk, and the data size as written in the header.
func rawWAV(fmtBody []byte, extra []byte, data []byte, dataSize uint32) []byte {
	var b bytes.Buffer
	le := binary.LittleEndian
	b.WriteString("RIFF")
	binary.Write(&b, le, uint32(0)) // readers ignore the RIFF size
	b.WriteString("WAVE")
	b.Write(extra)
	b.WriteString("fmt ")
	binary.Write(&b, le, uint32(len(fmtBody)))
	b.Write(fmtBody)
	b.WriteString("data")
	binary.Write(&b, le, dataSize)
	b.Write(data)
	return b.Bytes()
}

func fmtChunk(tag, channels uint16, rate uint32, bits uint16) []byte {
	var b bytes.Buffer
	le := binary.LittleEndian
	binary.Write(&b, le, tag)
	binary.Write(&b, le, channels)
	binary.Write(&b, le, rate)
	binary.Write(&b, le, rate*uint32(channels)*uint32(bits/8))
	binary.Write(&b, le, channels*bits/8)
	binary.Write(&b, le, bits)
	return b.Bytes()
}

func pcmBytes(samples []int16) []byte {
	b := make([]byte, 2*len(samples))
	for i, s := range samples {
		binary.LittleEndian.PutUint16(b[2*i:], uint16(s))
	}
	return b
}

func TestReadWAV(t *testing.T) {
	tone := Sine(440, 0.5, time.Second, rate)
	mono := make([]int16, len(tone.Samples))
	for i, v := range tone.Samples {
		mono[i] = pcm16(v)
	}
	data := pcmBytes(mono)

	t.Run("extra chunk and odd padding", func(t *testing.T) {
		list := append([]byte("LIST"), 3, 0, 0, 0, 'a', 'b', 'c', 0) // 3 bytes + pad
		a, err := ReadWAV(bytes.NewReader(rawWAV(fmtChunk(1, 1, rate, 16), list, data, uint32(len(data)))))
		if err != nil {
			t.Fatal(err)
		}
		if a.Rate != rate || len(a.Samples) != len(mono) {
			t.Fatalf("rate %d, %d samples; want %d, %d", a.Rate, len(a.Samples), rate, len(mono))
		}
		if s := Seconds(a, 440); !near(s, 1, 0.1) {
			t.Errorf("Seconds(440) = %.2f", s)
		}
	})
	t.Run("unfinished header", func(t *testing.T) {
		// A recorder killed before closing its file leaves size 0.
		for _, size := range []uint32{0, math.MaxUint32, uint32(len(data)) * 4} {
			a, err := ReadWAV(bytes.NewReader(rawWAV(fmtChunk(1, 1, rate, 16), nil, data, size)))
			if err != nil {
				t.Fatalf("size %d: %v", size, err)
			}
			if len(a.Samples) != len(mono) {
				t.Errorf("size %d: %d samples, want %d", size, len(a.Samples), len(mono))
			}
		}
	})
	t.Run("stereo", func(t *testing.T) {
		// 440 Hz left, silence right: mixed down at half amplitude.
		st := make([]int16, 2*len(mono))
		for i, s := range mono {
			st[2*i] = s
		}
		a, err := ReadWAV(bytes.NewReader(rawWAV(fmtChunk(1, 2, rate, 16), nil, pcmBytes(st), uint32(2*len(data)))))
		if err != nil {
			t.Fatal(err)
		}
		if len(a.Samples) != len(mono) {
			t.Fatalf("%d frames, want %d", len(a.Samples), len(mono))
		}
		if s := Seconds(a, 440); !near(s, 1, 0.1) {
			t.Errorf("Seconds(440) = %.2f", s)
		}
	})
	t.Run("extensible", func(t *testing.T) {
		f := fmtChunk(waveExtensible, 1, rate, 16)
		ext := make([]byte, 24)
		binary.LittleEndian.PutUint16(ext[0:], 22) // cbSize
		binary.LittleEndian.PutUint16(ext[2:], 16) // valid bits
		binary.LittleEndian.PutUint16(ext[8:], 1)  // sub-format: PCM
		a, err := ReadWAV(bytes.NewReader(rawWAV(append(f, ext...), nil, data, uint32(len(data)))))
		if err != nil {
			t.Fatal(err)
		}
		if s := Seconds(a, 440); !near(s, 1, 0.1) {
			t.Errorf("Seconds(440) = %.2f", s)
		}
	})
	bad := map[string][]byte{
		"not RIFF":   []byte("OggS\x00\x00\x00\x00WAVE"),
		"8-bit":      rawWAV(fmtChunk(1, 1, rate, 8), nil, data, uint32(len(data))),
		"float":      rawWAV(fmtChunk(3, 1, rate, 32), nil, data, uint32(len(data))),
		"no channel": rawWAV(fmtChunk(1, 0, rate, 16), nil, data, uint32(len(data))),
		"empty":      nil,
	}
	for name, b := range bad {
		if _, err := ReadWAV(bytes.NewReader(b)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := ReadFile(filepath.Join(t.TempDir(), "missing.wav")); !os.IsNotExist(err) {
		t.Errorf("missing file: %v", err)
	}
}

func TestWriteWAVClipsAndRoundTrips(t *testing.T) {
	a := &Audio{Rate: rate, Samples: []float64{0, 0.5, -0.5, 1.5, -1.5}}
	var b bytes.Buffer
	if err := WriteWAV(&b, a); err != nil {
		t.Fatal(err)
	}
	if b.Len() != 44+10 {
		t.Fatalf("%d bytes, want 54", b.Len())
	}
	back, err := ReadWAV(&b)
	if err != nil {
		t.Fatal(err)
	}
	want := []float64{0, 0.5, -0.5, 1, -1}
	for i, w := range want {
		if !near(back.Samples[i], w, 1.0/16384) {
			t.Errorf("sample %d = %v, want %v", i, back.Samples[i], w)
		}
	}
	if d := Sine(440, 0.5, 1500*time.Millisecond, rate).Duration(); d != 1500*time.Millisecond {
		t.Errorf("Duration = %v", d)
	}
}
