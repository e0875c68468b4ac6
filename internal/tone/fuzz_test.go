package tone

import (
	"bytes"
	"testing"
	"time"
)

// FuzzReadWAV: any input either fails to parse or gives samples in
// [-1, 1] at a positive rate; it never panics.
func FuzzReadWAV(f *testing.F) {
	var b bytes.Buffer
	WriteWAV(&b, Sine(440, 0.5, 20*time.Millisecond, rate))
	f.Add(b.Bytes())
	f.Add(rawWAV(fmtChunk(1, 2, rate, 16), []byte("LIST\x03\x00\x00\x00abc\x00"), []byte{1, 2, 3, 4, 5}, 0))
	f.Add(rawWAV(append(fmtChunk(waveExtensible, 1, rate, 16), make([]byte, 24)...), nil, nil, 0xffffffff))
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := ReadWAV(bytes.NewReader(data))
		if err != nil {
			return
		}
		if a.Rate <= 0 {
			t.Fatalf("rate %d", a.Rate)
		}
		for i, v := range a.Samples {
			if v < -1 || v > 1 {
				t.Fatalf("sample %d = %v", i, v)
			}
		}
		Default.Analyze(a, 440, 880)
	})
}
