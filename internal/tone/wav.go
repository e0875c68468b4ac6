package tone

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
)

// WAV format tags.
const (
	wavePCM        = 1
	waveExtensible = 0xFFFE
)

// ReadWAV reads a RIFF/WAVE file of 16-bit little-endian PCM (plain or
// WAVE_FORMAT_EXTENSIBLE with the PCM sub-format). Several channels are
// mixed down to one. Chunks other than "fmt " and "data" are skipped. A
// data chunk whose size is 0, 0xFFFFFFFF or larger than what follows (a
// recorder that was killed before it wrote the final header) is read up to
// the end of the file.
func ReadWAV(r io.Reader) (*Audio, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	if len(b) < 12 || string(b[0:4]) != "RIFF" || string(b[8:12]) != "WAVE" {
		return nil, errors.New("tone: not a RIFF/WAVE file")
	}
	var (
		haveFmt  bool
		channels int
		rate     int
		bits     int
	)
	p := 12
	for p+8 <= len(b) {
		id := string(b[p : p+4])
		size := int(binary.LittleEndian.Uint32(b[p+4 : p+8]))
		body := p + 8
		switch id {
		case "fmt ":
			if size < 16 || body+16 > len(b) {
				return nil, errors.New("tone: short fmt chunk")
			}
			f := b[body:]
			tag := binary.LittleEndian.Uint16(f[0:2])
			channels = int(binary.LittleEndian.Uint16(f[2:4]))
			rate = int(binary.LittleEndian.Uint32(f[4:8]))
			bits = int(binary.LittleEndian.Uint16(f[14:16]))
			if tag == waveExtensible {
				// cbSize(2) validBits(2) channelMask(4) subFormat GUID(16):
				// the GUID's first two bytes are the real format tag.
				if size < 40 || body+40 > len(b) {
					return nil, errors.New("tone: short WAVE_FORMAT_EXTENSIBLE fmt chunk")
				}
				tag = binary.LittleEndian.Uint16(f[24:26])
			}
			if tag != wavePCM {
				return nil, fmt.Errorf("tone: WAV format %#x is not PCM", tag)
			}
			if bits != 16 {
				return nil, fmt.Errorf("tone: %d-bit WAV, want 16-bit", bits)
			}
			if channels < 1 || rate <= 0 {
				return nil, fmt.Errorf("tone: bad WAV format: %d channels, %d Hz", channels, rate)
			}
			haveFmt = true
		case "data":
			if !haveFmt {
				return nil, errors.New("tone: data chunk before fmt chunk")
			}
			end := body + size
			if size == 0 || size == math.MaxUint32 || end > len(b) || end < body {
				end = len(b)
			}
			return decodePCM16(b[body:end], channels, rate), nil
		}
		next := body + size + size%2 // chunks are padded to even sizes
		if next <= p || next > len(b) {
			break
		}
		p = next
	}
	if !haveFmt {
		return nil, errors.New("tone: no fmt chunk")
	}
	return nil, errors.New("tone: no data chunk")
}

// decodePCM16 turns interleaved 16-bit little-endian frames into mono
// samples in [-1, 1); a trailing partial frame is dropped.
func decodePCM16(d []byte, channels, rate int) *Audio {
	frame := 2 * channels
	n := len(d) / frame
	a := &Audio{Rate: rate, Samples: make([]float64, n)}
	for i := 0; i < n; i++ {
		var sum float64
		for c := 0; c < channels; c++ {
			off := i*frame + 2*c
			sum += float64(int16(binary.LittleEndian.Uint16(d[off:off+2]))) / 32768
		}
		a.Samples[i] = sum / float64(channels)
	}
	return a
}

// ReadFile reads a WAV file; see ReadWAV.
func ReadFile(path string) (*Audio, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	a, err := ReadWAV(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return a, nil
}

// WriteWAV writes a as a mono 16-bit PCM WAV file; samples are clipped to
// [-1, 1].
func WriteWAV(w io.Writer, a *Audio) error {
	data := 2 * len(a.Samples)
	var b bytes.Buffer
	b.Grow(44 + data)
	le := binary.LittleEndian
	b.WriteString("RIFF")
	binary.Write(&b, le, uint32(36+data))
	b.WriteString("WAVEfmt ")
	binary.Write(&b, le, uint32(16))
	binary.Write(&b, le, uint16(wavePCM))
	binary.Write(&b, le, uint16(1)) // channels
	binary.Write(&b, le, uint32(a.Rate))
	binary.Write(&b, le, uint32(a.Rate*2)) // byte rate
	binary.Write(&b, le, uint16(2))        // block align
	binary.Write(&b, le, uint16(16))       // bits per sample
	b.WriteString("data")
	binary.Write(&b, le, uint32(data))
	for _, v := range a.Samples {
		binary.Write(&b, le, pcm16(v))
	}
	_, err := w.Write(b.Bytes())
	return err
}

// pcm16 converts a sample in [-1, 1] to 16-bit PCM, clipping.
func pcm16(v float64) int16 {
	s := math.Round(v * 32767)
	return int16(max(-32768, min(32767, s)))
}

// WriteFile writes a to path as a mono 16-bit PCM WAV file.
func WriteFile(path string, a *Audio) error {
	var b bytes.Buffer
	if err := WriteWAV(&b, a); err != nil {
		return err
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}
