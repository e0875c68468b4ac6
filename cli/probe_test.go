package cli

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sipedge/sipedge/natprobe"
	"github.com/sipedge/sipedge/natprobe/natsim"
)

func sim(t *testing.T, o natsim.Options) *natsim.Server {
	t.Helper()
	s, err := natsim.Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func run(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = Main(args, &o, &e)
	return code, o.String(), e.String()
}

func TestProbeText(t *testing.T) {
	t.Parallel()
	srv := sim(t, natsim.Options{NAT: true, Hairpin: true})
	code, out, errOut := run("probe", srv.Addr().String())
	t.Logf("stdout:\n%s\nstderr:\n%s", out, errOut)
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	// Aligned key/value lines in RFC 4787 and RFC 3489 terms.
	for _, re := range []string{
		`(?m)^STUN server +` + regexp.QuoteMeta(srv.Addr().String()) + `, software "natsim"$`,
		`(?m)^RFC 5780 support +yes, other address ` + regexp.QuoteMeta(srv.OtherAddr().String()) + `$`,
		`(?m)^local address +127\.0\.0\.1:\d+$`,
		`(?m)^public address +127\.0\.0\.3:\d+ \(NAT present\)$`,
		`(?m)^mapping \(RFC 4787\) +endpoint-independent$`,
		`(?m)^filtering \(RFC 4787\) +endpoint-independent$`,
		`(?m)^RFC 3489 name +full cone$`,
		`(?m)^address rewriting +none seen \(MAPPED-ADDRESS = XOR-MAPPED-ADDRESS; an ALG that touches only SIP messages would not show here\)$`,
		`(?m)^hairpinning +yes \(arrived from 127\.0\.0\.3:\d+\)$`,
		`(?m)^binding lifetime +not measured \(use --lifetime\)$`,
		`(?m)^advice:\n  - endpoint-independent mapping`,
		`(?m)^tests:\n  TEST +FROM +TO +REQUEST +RESULT +ANSWER FROM +MAPPED +RTT\n  binding +127\.0\.0\.1:\d+ `,
		`(?m)^  filtering-2 .* Binding CHANGE-REQUEST change-IP change-port +answered `,
		`(?m)^probe took \d+\.\d s$`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("stdout does not match %s", re)
		}
	}
	// The value column is aligned.
	col := -1
	for _, l := range strings.Split(strings.SplitN(out, "\n\n", 2)[0], "\n") {
		i := strings.Index(l, "  ")
		for i >= 0 && i+1 < len(l) && l[i+1] == ' ' {
			i++
		}
		if col == -1 {
			col = i
		} else if i != col {
			t.Errorf("misaligned: %q", l)
		}
	}
	if !strings.Contains(errOut, "probe: binding: Binding request from 127.0.0.1:") || !strings.Contains(errOut, "probe: done: full cone") {
		t.Errorf("progress on stderr: %q", errOut)
	}
	if strings.Contains(out, "probe: ") {
		t.Error("progress on stdout")
	}
}

func TestProbeJSON(t *testing.T) {
	t.Parallel()
	srv := sim(t, natsim.Options{NAT: true, Mapping: natsim.AddressAndPortDependent, Filtering: natsim.AddressAndPortDependent})
	start := time.Now()
	code, out, errOut := run("probe", "--json", "--quiet", srv.Addr().String(), "--lifetime-max", "2s")
	t.Logf("stdout:\n%s\nstderr:\n%s", out, errOut)
	if code != 0 || errOut != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	// Filtered answers cost one retransmission schedule (2.75 s), in
	// parallel with the 2 s lifetime step.
	if d := time.Since(start); d > 6*time.Second {
		t.Errorf("took %v", d)
	}
	var r natprobe.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	if r.Mapping != natprobe.AddressAndPortDependent || r.Filtering != natprobe.AddressAndPortDependent ||
		r.RFC3489Name != "symmetric" || !r.NATPresent || r.Hairpinning != natprobe.TriNo {
		t.Errorf("report %+v", r)
	}
	// --lifetime-max implies --lifetime.
	if l := r.BindingLifetime; l == nil || l.Status != natprobe.LifetimeLongerThan || l.LowerS != 2 {
		t.Errorf("lifetime %+v", l)
	}
	// The field names are the stable interface for scripts.
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"server", "local_address", "public_address", "nat_present", "mapping", "filtering",
		"rfc3489_name", "rewriting", "hairpinning", "binding_lifetime", "tests", "advice", "duration_s"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("no %q in the JSON", k)
		}
	}
	if !strings.Contains(out, `"rfc3489_name": "symmetric"`) || !strings.Contains(out, `"upper_s": 0`) ||
		!strings.Contains(out, `"rfc5780": true`) || !strings.Contains(out, "STUN alone will not give them a usable address") {
		t.Errorf("JSON lacks expected fields")
	}
}

func TestProbeNoAnswer(t *testing.T) {
	t.Parallel()
	srv := sim(t, natsim.Options{Kind: natsim.Silent})
	code, out, errOut := run("probe", "--quiet", srv.Addr().String())
	want := "sipedge: no STUN answer from " + srv.Addr().String() + " within 2.8 s: UDP blocked or wrong server\n"
	if code != 1 || out != "" || errOut != want {
		t.Errorf("exit %d, stdout %q, stderr %q; want 1, nothing, %q", code, out, errOut, want)
	}
	// With --json scripts get the report too.
	code, out, _ = run("probe", "--quiet", "--json", srv.Addr().String())
	var r natprobe.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil || code != 1 || r.RFC3489Name != "UDP blocked" || r.Error == "" {
		t.Errorf("exit %d, report %+v %v", code, r, err)
	}
}

func TestProbeUsage(t *testing.T) {
	for _, args := range [][]string{
		{"probe"},
		{"probe", "a", "b"},
		{"probe", "--nonsense", "127.0.0.1"},
		{"probe", "--lifetime-max", "0s", "127.0.0.1"},
		{"probe", "--lifetime-max", "soon", "127.0.0.1"},
	} {
		code, out, errOut := run(args...)
		if code != 2 || out != "" || !strings.Contains(errOut, "usage: sipedge probe [--json]") {
			t.Errorf("%q: exit %d, stdout %q, stderr %q", args, code, out, errOut)
		}
	}
	code, _, errOut := run("probe", "--quiet", "--bind", "nonsense", "127.0.0.1")
	if code != 1 || !strings.Contains(errOut, `bad bind address "nonsense"`) {
		t.Errorf("bad bind: exit %d, %q", code, errOut)
	}
}

// The other commands are still dispatched as before.
func TestMainDispatch(t *testing.T) {
	code, out, _ := run("help")
	if code != 0 || !strings.Contains(out, "sipedge probe [--json] [--lifetime]") || !strings.Contains(out, "sipedge peer list [--json]") {
		t.Errorf("help: %d %q", code, out)
	}
	if code, out, _ := run("version"); code != 0 || !strings.HasPrefix(out, "sipedge ") {
		t.Errorf("version: %d %q", code, out)
	}
	if code, _, errOut := run("nonsense"); code != 2 || !strings.Contains(errOut, `unknown command "nonsense"`) {
		t.Errorf("unknown: %d %q", code, errOut)
	}
	if code, _, errOut := run("peer"); code != 2 || !strings.Contains(errOut, "usage: sipedge peer list") {
		t.Errorf("peer: %d %q", code, errOut)
	}
}
