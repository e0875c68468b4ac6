package calltrace

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// TestRenderText compares the CLI's ladder of test calls with golden files.
// Run with -update to rewrite them after a deliberate change.
func TestRenderText(t *testing.T) {
	for _, tc := range []struct {
		file  string
		steps []step
	}{
		{"nat_call.golden", natCall("c")},
		{"trunk_unanchored.golden", trunkCall("c", false)},
		{"forked_call.golden", forkedCall("c")},
	} {
		t.Run(tc.file, func(t *testing.T) {
			r := New(Config{Now: newClock().now, MaxMessages: len(tc.steps) - 1})
			play(r, tc.steps)
			tr, _ := r.Get("c")
			var b bytes.Buffer
			if err := RenderText(&b, Analyze(tr), tr); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", tc.file)
			if *update {
				if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b.Bytes(), want) {
				t.Errorf("RenderText:\n%s\nwant (%s):\n%s", b.Bytes(), path, want)
			}
			for _, c := range b.Bytes() {
				if c != '\n' && (c < ' ' || c > '~') {
					t.Fatalf("not plain ASCII: %q", c)
				}
			}
		})
	}
}

// TestRenderTextOdd: a ladder that does not fit its trace still renders.
func TestRenderTextOdd(t *testing.T) {
	l := Ladder{
		Columns: []Column{{Label: "caf\u00e9 \x1b[31m", Addr: "x"}, {Label: "sipedge"}},
		Arrows: []Arrow{
			{From: 0, To: 1, Through: 7, Label: "INVITE\n"},
			{From: 5, To: -1, Label: "lost"},
			{From: 1, To: 1, Label: "self"},
		},
	}
	var b bytes.Buffer
	if err := RenderText(&b, l, Trace{Summary: Summary{CallID: "\x00"}}); err != nil {
		t.Fatal(err)
	}
	want := "call ?:  -> , \n\n" +
		"      caf? ?[31m      sipedge\n" +
		"           x\n" +
		" ms        |             |\n" +
		"0.0        |---INVITE?-->|\n" +
		"0.0 lost   |             |\n" +
		"0.0 self   |             |\n"
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}
