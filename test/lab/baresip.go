//go:build lab

package lab

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sipedge/sipedge/internal/tone"
)

// Softphones: baresip (Debian's baresip-core 1.0.0) in a lab namespace,
// playing a tone as its microphone and recording what it receives.
//
// Each softphone gets its own config directory in the artifact directory
// (NN-baresip-<phone>-<user>/): config, accounts (empty: the account is
// created over the control socket, so no registration event can be missed),
// ctrl.log (every control message, both ways, with timestamps) and snd/
// (sndfile's recordings: dump-<time>-enc.wav is what the phone sent,
// dump-<time>-dec.wav what it received, decoded). Its SIP trace (-s) and
// log go to NN-baresip-<phone>-<user>.stdout/.stderr.
//
// Modules and why:
//   - g711: PCMU only (audio_codecs=PCMU), 8 kHz like the tone files.
//   - aufile: the microphone is a WAV file (audio_source aufile,<file>); it
//     must be 16-bit mono at the codec's rate, and it ends the stream at its
//     end, so the files last a minute.
//   - aubridge: the speaker (audio_player aubridge,nil). With no source on
//     the same device nothing ever reads it, which is fine: no sound card
//     is needed and received audio still goes through the decoder.
//   - sndfile: an audio filter that writes the decoded received audio (and
//     the encoded sent audio) to WAV files in snd_path, per call.
//   - menu: the commands (dial, hangup, uanew, quit, ...).
//   - ctrl_tcp: the control socket: JSON in netstrings, command responses
//     and events (REGISTER_OK, CALL_ESTABLISHED, CALL_CLOSED, ...), on
//     127.0.0.1 inside the phone's namespace.
//   - account: reads the (empty) accounts file.
//
// Not loaded: stun, turn, ice (no media NAT traversal by the phone: making
// that work is sipedge's job here), stdio/cons (no terminal), alsa.

// BaresipBin is the softphone binary; BaresipModules its module directory.
const (
	BaresipBin     = "baresip"
	BaresipModules = "/usr/lib/baresip/modules"
)

var baresipModuleList = []string{"g711", "aufile", "aubridge", "sndfile", "account", "menu", "ctrl_tcp"}

// SkipNoBaresip skips t unless baresip and the modules the harness loads
// are installed (Debian: apt-get install baresip-core).
func SkipNoBaresip(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath(BaresipBin); err != nil {
		t.Skip("lab: baresip not found (apt-get install baresip-core)")
	}
	for _, m := range baresipModuleList {
		if _, err := os.Stat(filepath.Join(BaresipModules, m+".so")); err != nil {
			t.Skipf("lab: baresip module %s missing: %v", m, err)
		}
	}
}

// SoftphoneSpec describes a softphone.
type SoftphoneSpec struct {
	// Phone is the namespace, the phone's own address and SIP port
	// (sip_listen), and the account (User, Password, Domain). baresip also
	// listens on TCP at that port and TLS at the next one, so two
	// softphones in one namespace need ports at least 2 apart.
	Phone Phone
	// Proxy is the outbound proxy, "ip:port", over UDP; every request goes
	// there. Default EdgeSIP.
	Proxy string
	// ToneHz is what the phone says: its microphone is a sine of this
	// frequency (8 kHz, -6 dBFS peak). Zero: silence.
	ToneHz float64
	// AudioLength is how long the microphone's file lasts; default a
	// minute. baresip ends a call (it sends BYE) when its audio source
	// reaches the end of the file, so a phone in a longer call needs a
	// longer file.
	AudioLength time.Duration
	// AutoAnswer answers incoming calls at once (answermode=auto).
	AutoAnswer bool
	// RegInt is the registration interval (regint); default 300 s.
	RegInt time.Duration
	// RTPPorts is baresip's rtp_ports, "min-max". Default: 100 ports per
	// softphone from 16000 up, different for every softphone of a lab, so
	// that a phone that sends media to another phone's private address
	// (192.168.1.10 is every LAN's first phone) never reaches itself.
	RTPPorts string
	// CtrlPort is the ctrl_tcp port on 127.0.0.1 in the namespace. Default:
	// 4444 + the softphone's number in the lab.
	CtrlPort int
}

// Softphone is a running baresip.
type Softphone struct {
	Spec   SoftphoneSpec
	Name   string // artifact prefix
	Dir    string // config directory
	SndDir string // recordings
	Proc   *Proc

	conn    net.Conn
	ctrlLog *os.File
	start   time.Time

	mu      sync.Mutex
	events  []BaresipEvent
	resps   map[string]ctrlResponse
	changed chan struct{} // closed and replaced whenever something arrives
	readErr error
	token   int
	stopped bool
}

// BaresipEvent is one ctrl_tcp event.
type BaresipEvent struct {
	At         time.Time `json:"-"`
	Type       string    `json:"type"`
	Class      string    `json:"class"`
	AccountAOR string    `json:"accountaor"`
	Direction  string    `json:"direction"`
	PeerURI    string    `json:"peeruri"`
	ID         string    `json:"id"`
	Param      string    `json:"param"`
}

func (e BaresipEvent) String() string {
	s := e.Type
	if e.Param != "" {
		s += " (" + e.Param + ")"
	}
	return s
}

type ctrlResponse struct {
	OK   bool   `json:"ok"`
	Data string `json:"data"`
}

// softphoneSeq numbers the softphones of each lab (ports, names).
var softphoneSeq = struct {
	sync.Mutex
	n map[*Lab]int
}{n: map[*Lab]int{}}

// StartSoftphone writes a config for spec, starts baresip in spec.Phone.NS,
// connects to its control socket and creates the account, which starts
// registering at once; see WaitRegistered. The softphone is stopped when the
// test ends.
func (l *Lab) StartSoftphone(spec SoftphoneSpec) *Softphone {
	l.T.Helper()
	SkipNoBaresip(l.T)
	softphoneSeq.Lock()
	k := softphoneSeq.n[l]
	softphoneSeq.n[l] = k + 1
	softphoneSeq.Unlock()
	if k == 0 {
		l.T.Cleanup(func() {
			softphoneSeq.Lock()
			delete(softphoneSeq.n, l)
			softphoneSeq.Unlock()
		})
	}
	if spec.Proxy == "" {
		spec.Proxy = EdgeSIP
	}
	if spec.RegInt == 0 {
		spec.RegInt = 300 * time.Second
	}
	if spec.RTPPorts == "" {
		spec.RTPPorts = fmt.Sprintf("%d-%d", 16000+100*k, 16000+100*k+99)
	}
	if spec.CtrlPort == 0 {
		spec.CtrlPort = 4444 + k
	}
	p := spec.Phone
	name := l.nextName("baresip", p.Name, p.User)
	sp := &Softphone{
		Spec:    spec,
		Name:    name,
		Dir:     filepath.Join(l.Dir, name),
		resps:   map[string]ctrlResponse{},
		changed: make(chan struct{}),
	}
	sp.SndDir = filepath.Join(sp.Dir, "snd")
	if err := os.MkdirAll(sp.SndDir, 0o755); err != nil {
		l.T.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sp.Dir, "config"), []byte(sp.config(l.toneFile(spec.ToneHz, spec.AudioLength))), 0o644); err != nil {
		l.T.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sp.Dir, "accounts"), []byte("# created over ctrl_tcp: see ctrl.log\n"), 0o644); err != nil {
		l.T.Fatal(err)
	}
	f, err := os.Create(filepath.Join(sp.Dir, "ctrl.log"))
	if err != nil {
		l.T.Fatal(err)
	}
	sp.ctrlLog = f
	sp.start = time.Now()
	// -s: SIP trace on stdout, next to baresip's log. nice -n -10: aufile
	// makes one 20 ms frame per wake-up of its thread, so on a busy host
	// (wake-ups later than 20 ms) the phone falls behind and sends less
	// than it should; a higher priority keeps it on time. nice execs
	// baresip, so Proc's PID is baresip's.
	args := []string{BaresipBin, "-f", sp.Dir, "-s"}
	if _, err := exec.LookPath("nice"); err == nil {
		args = append([]string{"nice", "-n", "-10"}, args...)
	}
	sp.Proc = l.Start(p.NS, name, args...)
	l.T.Cleanup(sp.Stop)
	if err := sp.connect(5 * time.Second); err != nil {
		l.T.Fatalf("lab: softphone %s: %v\nlog tail:\n%s", name, err, tailFile(sp.Proc.Stdout, 20))
	}
	if _, err := sp.Command("uanew", sp.account()); err != nil {
		l.T.Fatalf("lab: softphone %s: creating the account: %v", name, err)
	}
	return sp
}

// toneFile writes (once per lab) length (0: a minute) of freq Hz (0:
// silence) as an 8 kHz 16-bit mono WAV file into the artifact directory.
func (l *Lab) toneFile(freq float64, length time.Duration) string {
	name := fmt.Sprintf("tone-%gHz.wav", freq)
	if length == 0 {
		length = time.Minute
	} else if length != time.Minute {
		name = fmt.Sprintf("tone-%gHz-%gs.wav", freq, length.Seconds())
	}
	path := filepath.Join(l.Dir, name)
	if _, err := os.Stat(path); err == nil {
		return path
	}
	a := tone.Silence(length, 8000)
	if freq > 0 {
		a = tone.Sine(freq, 0.5, length, 8000)
	}
	if err := tone.WriteFile(path, a); err != nil {
		l.T.Fatal(err)
	}
	return path
}

// config is baresip's config file.
func (sp *Softphone) config(source string) string {
	s := sp.Spec
	var b strings.Builder
	w := func(k, v string) { fmt.Fprintf(&b, "%-22s %s\n", k, v) }
	w("poll_method", "epoll")
	w("sip_listen", net.JoinHostPort(s.Phone.IP, strconv.Itoa(s.Phone.Port)))
	w("call_local_timeout", "30")
	w("call_max_calls", "4")
	w("audio_source", "aufile,"+source)
	w("audio_player", "aubridge,nil")
	w("audio_alert", "aubridge,nil")
	w("ausrc_srate", "8000")
	w("auplay_srate", "8000")
	w("ausrc_channels", "1")
	w("auplay_channels", "1")
	w("audio_buffer", "20-160")
	w("rtp_ports", s.RTPPorts)
	w("rtcp_mux", "no")
	w("jitter_buffer_delay", "1-10")
	w("rtp_stats", "yes")
	// Only lab addresses: no DNS query may leave the namespace (the
	// phones only ever use IP addresses).
	w("dns_server", "127.0.0.1:53")
	w("net_interface", IfPublic)
	w("module_path", BaresipModules)
	for _, m := range []string{"g711", "aufile", "aubridge", "sndfile"} {
		w("module", m+".so")
	}
	w("module_tmp", "account.so")
	w("module_app", "menu.so")
	w("module_app", "ctrl_tcp.so")
	w("ctrl_tcp_listen", fmt.Sprintf("127.0.0.1:%d", s.CtrlPort))
	w("snd_path", sp.SndDir)
	// No call status line (it is a terminal's, and floods the log).
	w("statmode_default", "off")
	return b.String()
}

// account is the account line (the accounts file format) given to uanew.
func (sp *Softphone) account() string {
	s := sp.Spec
	p := s.Phone
	params := []string{
		"auth_user=" + p.User,
		"auth_pass=" + p.Password,
		fmt.Sprintf(`outbound="sip:%s;transport=udp"`, s.Proxy),
		fmt.Sprintf("regint=%d", int(s.RegInt.Seconds())),
		"audio_codecs=PCMU",
		"ptime=20",
	}
	if s.AutoAnswer {
		params = append(params, "answermode=auto")
	}
	return fmt.Sprintf("<sip:%s@%s>;%s", p.User, p.Domain, strings.Join(params, ";"))
}

// connect dials the control socket from inside the phone's namespace,
// retrying while baresip starts.
func (sp *Softphone) connect(timeout time.Duration) error {
	addr := fmt.Sprintf("127.0.0.1:%d", sp.Spec.CtrlPort)
	deadline := time.Now().Add(timeout)
	for {
		var c net.Conn
		err := InNS(sp.Spec.Phone.NS, func() error {
			var err error
			c, err = net.DialTimeout("tcp", addr, time.Second)
			return err
		})
		if err == nil {
			sp.conn = c
			go sp.read()
			return nil
		}
		if sp.Proc.Exited() {
			return fmt.Errorf("baresip exited (code %d) before its control socket %s answered", sp.Proc.ExitCode(), addr)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("control socket %s: %w", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// logCtrl writes one line to ctrl.log, with the password masked (uanew
// echoes the account line).
func (sp *Softphone) logCtrl(dir, msg string) {
	if pw := sp.Spec.Phone.Password; pw != "" {
		msg = strings.ReplaceAll(msg, "auth_pass="+pw, "auth_pass=***")
	}
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.ctrlLog != nil {
		fmt.Fprintf(sp.ctrlLog, "+%7.3fs %s %s\n", time.Since(sp.start).Seconds(), dir, msg)
	}
}

// read parses netstrings ("len:json,") from the control socket.
func (sp *Softphone) read() {
	r := bufio.NewReader(sp.conn)
	var err error
	for {
		var msg []byte
		if msg, err = readNetstring(r); err != nil {
			break
		}
		sp.logCtrl("<-", string(msg))
		var m struct {
			Event    bool   `json:"event"`
			Response bool   `json:"response"`
			Token    string `json:"token"`
			ctrlResponse
			BaresipEvent
		}
		if json.Unmarshal(msg, &m) != nil {
			continue
		}
		sp.mu.Lock()
		switch {
		case m.Event:
			ev := m.BaresipEvent
			ev.At = time.Now()
			sp.events = append(sp.events, ev)
		case m.Response:
			sp.resps[m.Token] = m.ctrlResponse
		}
		close(sp.changed)
		sp.changed = make(chan struct{})
		sp.mu.Unlock()
	}
	sp.mu.Lock()
	sp.readErr = err
	close(sp.changed)
	sp.changed = make(chan struct{})
	sp.mu.Unlock()
}

func readNetstring(r *bufio.Reader) ([]byte, error) {
	head, err := r.ReadString(':')
	if err != nil {
		return nil, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(head[:len(head)-1]))
	if err != nil || n < 0 || n > 1<<20 {
		return nil, fmt.Errorf("bad netstring length %q", head)
	}
	buf := make([]byte, n+1)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, err
	}
	if buf[n] != ',' {
		return nil, errors.New("netstring without its trailing comma")
	}
	return buf[:n], nil
}

// Command runs a baresip command ("dial", "hangup", "reginfo", ...) with
// params over the control socket and returns its output.
func (sp *Softphone) Command(cmd, params string) (string, error) {
	sp.mu.Lock()
	sp.token++
	tok := fmt.Sprintf("t%d", sp.token)
	sp.mu.Unlock()
	b, _ := json.Marshal(map[string]string{"command": cmd, "params": params, "token": tok})
	sp.logCtrl("->", string(b))
	sp.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(sp.conn, "%d:%s,", len(b), b); err != nil {
		return "", fmt.Errorf("%s: %w", cmd, err)
	}
	deadline := time.After(5 * time.Second)
	for {
		sp.mu.Lock()
		r, ok := sp.resps[tok]
		rerr, ch := sp.readErr, sp.changed
		sp.mu.Unlock()
		if ok {
			if !r.OK {
				return r.Data, fmt.Errorf("%s %s: %s", cmd, params, strings.TrimSpace(r.Data))
			}
			return r.Data, nil
		}
		if rerr != nil {
			return "", fmt.Errorf("%s: control socket closed: %v", cmd, rerr)
		}
		select {
		case <-ch:
		case <-deadline:
			return "", fmt.Errorf("%s: no response within 5 s", cmd)
		}
	}
}

// Events returns the events seen so far.
func (sp *Softphone) Events() []BaresipEvent {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return append([]BaresipEvent(nil), sp.events...)
}

// WaitEvent waits for the first event of type want (ever seen, not only
// from now) and returns it. An event of one of the types in fail seen first
// is an error, and so is baresip exiting.
func (sp *Softphone) WaitEvent(timeout time.Duration, want string, fail ...string) (BaresipEvent, error) {
	deadline := time.After(timeout)
	for {
		sp.mu.Lock()
		evs, rerr, ch := sp.events, sp.readErr, sp.changed
		sp.mu.Unlock()
		for _, e := range evs {
			if e.Type == want {
				return e, nil
			}
			for _, f := range fail {
				if e.Type == f {
					return e, fmt.Errorf("%s: %s instead of %s; events: %s", sp.Name, e, want, eventList(evs))
				}
			}
		}
		if rerr != nil {
			return BaresipEvent{}, fmt.Errorf("%s: control socket closed (%v) before %s; events: %s; log tail:\n%s",
				sp.Name, rerr, want, eventList(evs), tailFile(sp.Proc.Stdout, 15))
		}
		select {
		case <-ch:
		case <-deadline:
			return BaresipEvent{}, fmt.Errorf("%s: no %s within %v; events: %s", sp.Name, want, timeout, eventList(evs))
		}
	}
}

func eventList(evs []BaresipEvent) string {
	if len(evs) == 0 {
		return "none"
	}
	s := make([]string, len(evs))
	for i, e := range evs {
		s[i] = e.String()
	}
	return strings.Join(s, ", ")
}

// WaitRegistered waits for the account's registration to succeed.
func (sp *Softphone) WaitRegistered(timeout time.Duration) error {
	_, err := sp.WaitEvent(timeout, "REGISTER_OK", "REGISTER_FAIL")
	return err
}

// Dial calls uri ("sip:bob@lab.example"); see WaitEstablished.
func (sp *Softphone) Dial(uri string) error {
	_, err := sp.Command("dial", uri)
	return err
}

// WaitEstablished waits until a call is established (answered, ACKed).
func (sp *Softphone) WaitEstablished(timeout time.Duration) (BaresipEvent, error) {
	return sp.WaitEvent(timeout, "CALL_ESTABLISHED", "CALL_CLOSED")
}

// Hangup ends the current call.
func (sp *Softphone) Hangup() error {
	_, err := sp.Command("hangup", "")
	return err
}

// WaitClosed waits until the call has ended (CALL_CLOSED; its param says
// why, e.g. "Connection reset by peer" for the other side's BYE).
func (sp *Softphone) WaitClosed(timeout time.Duration) (BaresipEvent, error) {
	return sp.WaitEvent(timeout, "CALL_CLOSED")
}

// Stop ends baresip: "quit" over the control socket (it unregisters and
// closes its recordings), then SIGTERM/SIGKILL by PID if it is still
// running after 5 s. Safe to call twice.
func (sp *Softphone) Stop() {
	sp.mu.Lock()
	if sp.stopped {
		sp.mu.Unlock()
		return
	}
	sp.stopped = true
	sp.mu.Unlock()
	if sp.conn != nil && !sp.Proc.Exited() {
		b, _ := json.Marshal(map[string]string{"command": "quit", "token": "quit"})
		sp.logCtrl("->", string(b))
		sp.conn.SetWriteDeadline(time.Now().Add(time.Second))
		fmt.Fprintf(sp.conn, "%d:%s,", len(b), b)
		sp.Proc.Wait(5 * time.Second)
	}
	sp.Proc.Stop()
	if sp.conn != nil {
		sp.conn.Close()
	}
	sp.mu.Lock()
	if sp.ctrlLog != nil {
		sp.ctrlLog.Close()
		sp.ctrlLog = nil
	}
	sp.mu.Unlock()
}

// Recordings returns sndfile's WAV files of the softphone's calls, oldest
// first: received (decoded) audio and sent audio. Stop the softphone first
// so that the files are complete.
func (sp *Softphone) Recordings() (received, sent []string) {
	received, _ = filepath.Glob(filepath.Join(sp.SndDir, "dump-*-dec.wav"))
	sent, _ = filepath.Glob(filepath.Join(sp.SndDir, "dump-*-enc.wav"))
	sort.Strings(received)
	sort.Strings(sent)
	return received, sent
}

// SentSeconds is how much audio the softphone has sent so far in its
// current (or last) call, from the size of sndfile's encode recording,
// which grows frame by frame (8 kHz, 16-bit mono, as configured). A phone
// on a starved host sends less than the call's duration: its audio source
// makes one frame per wake-up of its thread.
func (sp *Softphone) SentSeconds() float64 {
	_, tx := sp.Recordings()
	if len(tx) == 0 {
		return 0
	}
	st, err := os.Stat(tx[len(tx)-1])
	if err != nil || st.Size() <= 44 {
		return 0
	}
	return float64(st.Size()-44) / (8000 * 2)
}

// Heard reads what the softphone received in its last call; an empty
// recording (no call audio at all) is no error.
func (sp *Softphone) Heard() (*tone.Audio, string, error) {
	rx, _ := sp.Recordings()
	return lastRecording(rx, sp.Name, "received")
}

// Said reads what the softphone sent in its last call.
func (sp *Softphone) Said() (*tone.Audio, string, error) {
	_, tx := sp.Recordings()
	return lastRecording(tx, sp.Name, "sent")
}

func lastRecording(files []string, name, what string) (*tone.Audio, string, error) {
	if len(files) == 0 {
		return nil, "", fmt.Errorf("%s: no recording of %s audio (sndfile wrote none)", name, what)
	}
	f := files[len(files)-1]
	st, err := os.Stat(f)
	if err != nil {
		return nil, f, err
	}
	if st.Size() <= 44 {
		// Nothing was ever written after the header: no audio at all.
		return &tone.Audio{Rate: 8000}, f, nil
	}
	a, err := tone.ReadFile(f)
	return a, f, err
}

// A second phone behind each NAT: the lab builds one phone per router; for
// calls between two phones behind the same kind of NAT, AddLANPhone adds
// another one on the same LAN.
const (
	NSA2     = "se-a2"        // second phone behind se-nat-cone
	NSB2     = "se-b2"        // second phone behind se-nat-sym
	PhoneIP2 = "192.168.1.11" // their address on the LAN
)

// The second phones, without an account; see AddLANPhone.
var (
	PhoneA2 = Phone{Name: "a2", NS: NSA2, IP: PhoneIP2, Port: 5060}
	PhoneB2 = Phone{Name: "b2", NS: NSB2, IP: PhoneIP2, Port: 5060}
)

// AddLANPhone adds namespace ns, a phone with address ip, to the LAN behind
// router (NSNATCone or NSNATSym). The router's LAN interface becomes a
// bridge: the veth to the first phone is renamed lan0p and, with a new veth
// lan1 to ns, enslaved to a bridge that takes the name lan0 and the
// gateway address, so the router's firewall and NAT rules (which name lan0)
// apply unchanged. The namespace's name starts with Prefix, so the lab's
// teardown deletes it like the others.
func (l *Lab) AddLANPhone(router, ns, ip string) error {
	first := ""
	for _, r := range routers {
		if r.ns == router {
			first = r.phoneNS
		}
	}
	if first == "" {
		return fmt.Errorf("lab: %s is not one of the lab's routers", router)
	}
	if _, err := run(context.Background(), "ip", "netns", "add", ns); err != nil {
		return err
	}
	steps := []struct {
		ns   string
		args []string
	}{
		{ns, []string{"ip", "link", "set", "lo", "up"}},
		{ns, []string{"sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"}},
		{router, []string{"ip", "link", "set", IfLAN, "down"}},
		{router, []string{"ip", "link", "set", IfLAN, "name", IfLAN + "p"}},
		{router, []string{"ip", "addr", "flush", "dev", IfLAN + "p"}},
		{router, []string{"ip", "link", "add", IfLAN, "type", "bridge"}},
		{router, []string{"ip", "addr", "add", LANGateway + "/24", "dev", IfLAN}},
		{router, []string{"ip", "link", "set", IfLAN + "p", "master", IfLAN, "up"}},
		{router, []string{"ip", "link", "add", "lan1", "type", "veth", "peer", "name", IfPublic, "netns", ns}},
		{router, []string{"ip", "link", "set", "lan1", "master", IfLAN, "up"}},
		{router, []string{"ip", "link", "set", IfLAN, "up"}},
		// Phone to phone on the LAN, in case br_netfilter sends bridged
		// frames through FORWARD.
		{router, []string{"iptables", "-I", "FORWARD", "1", "-i", IfLAN, "-o", IfLAN, "-j", "ACCEPT"}},
		{ns, []string{"ip", "addr", "add", ip + "/24", "dev", IfPublic}},
		{ns, []string{"ip", "link", "set", IfPublic, "up"}},
		{ns, []string{"ip", "route", "add", "default", "via", LANGateway}},
		// The gateway's MAC address changed (it is the bridge's now).
		{first, []string{"ip", "neigh", "flush", "all"}},
	}
	for _, s := range steps {
		if err := l.must(s.ns, s.args...); err != nil {
			return fmt.Errorf("lab: adding %s behind %s: %w", ns, router, err)
		}
	}
	for _, p := range []string{first, ns} {
		if _, err := l.Ping(p, EdgeIP); err != nil {
			return fmt.Errorf("lab: after adding %s behind %s: %w", ns, router, err)
		}
	}
	return nil
}
