package edge_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sipedge/sipedge/edge"
	"github.com/sipedge/sipedge/edge/edgetest"
)

// lockedBuffer is a log sink shared by the server's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestLogsHoldNoSecrets runs registrations, a failed guess, an
// authenticated call and admin API use with JSON logging at debug level,
// then checks that every line is one JSON object and that no password,
// admin token or digest response made it into the log.
func TestLogsHoldNoSecrets(t *testing.T) {
	t.Parallel()
	var logs lockedBuffer
	log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv := edgetest.StartWith(t, edge.Options{Logger: log}, edgetest.Base)
	mc := startMediaCall(t, srv)
	mc.aRTP.sendAsync(mc.aDst, 1000, 10)
	hangup(t, mc.out, mc.in, "alice", "bob")
	carol := natPhone(t, srv, "carol", "10.0.0.9")
	if res, err := carol.Register("", "wrong-guess-pw", ""); err != nil || res.Code == 200 {
		t.Fatalf("REGISTER with a wrong password: %v %v", res, err)
	}
	srv.Status(t)
	srv.Peers(t)

	// Digest responses the phones sent, to look for in the log.
	var responses []string
	re := regexp.MustCompile(`response="?([0-9a-f]{32,64})`)
	for _, p := range []interface{ Transcript() string }{mc.alice, mc.bob, carol} {
		for _, m := range re.FindAllStringSubmatch(p.Transcript(), -1) {
			responses = append(responses, m[1])
		}
	}
	if len(responses) < 3 {
		t.Fatalf("found %d digest responses in what the phones sent; the test cannot check them", len(responses))
	}
	time.Sleep(50 * time.Millisecond) // let the last lines land
	text := logs.String()
	secrets := append([]string{"alice-secret", "bob-secret", "carol-secret", "wrong-guess-pw", srv.Token}, responses...)
	for _, s := range secrets {
		if strings.Contains(text, s) {
			t.Errorf("the log holds the secret %q", s)
		}
	}
	lines := 0
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		lines++
		var v map[string]any
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil || v["msg"] == nil || v["level"] == nil {
			t.Errorf("log line is not a JSON record with msg and level: %v: %s", err, sc.Text())
		}
	}
	// The failed guess is logged, with the user and source but not the
	// password: the test did exercise the path that must not leak.
	if lines < 3 || !strings.Contains(text, `"msg":"authentication failed"`) || !strings.Contains(text, `"user":"carol"`) {
		t.Errorf("%d log lines, want the failed authentication of carol among them:\n%s", lines, text)
	}
}
