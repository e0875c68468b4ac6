package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sipedge/sipedge/bench/rtp/internal/bencode"
)

// rtpengine runs Sipwise rtpengine (Debian's rtpengine-daemon) in the
// foreground in userspace-only mode and sets up the calls over its ng control
// protocol, as Kamailio's rtpengine module would: an offer with phone A's SDP,
// an answer with phone B's.
type rtpengine struct {
	c      *child
	ng     netip.AddrPort
	flags  []string
	calls  int
	ngConc int
}

type rtpengineConfig struct {
	bin       string
	ip        netip.Addr
	ngPort    int
	portMin   int
	portMax   int
	threads   int
	logLevel  int
	extraArgs []string
	flags     []string // ng "flags" for offer and answer
	logPath   string
}

func startRtpengine(cfg rtpengineConfig) (*rtpengine, error) {
	ng := netip.AddrPortFrom(cfg.ip, uint16(cfg.ngPort))
	args := []string{
		"--foreground",
		"--log-stderr",
		"--table=-1", // no kernel forwarding table: pure userspace
		"--interface=" + cfg.ip.String(),
		"--listen-ng=" + ng.String(),
		"--port-min=" + strconv.Itoa(cfg.portMin),
		"--port-max=" + strconv.Itoa(cfg.portMax),
		"--num-threads=" + strconv.Itoa(cfg.threads),
		"--log-level=" + strconv.Itoa(cfg.logLevel),
		"--delete-delay=0",
		"--timeout=60",
	}
	args = append(args, cfg.extraArgs...)
	// A daemon already on the ng port would answer our pings and be measured
	// in place of ours (with the wrong PID): refuse.
	if _, err := ngRequest(ng, map[string]any{"command": "ping"}, 200*time.Millisecond, 1); err == nil {
		return nil, fmt.Errorf("something already answers ng pings on %v; stop it or use --rtpengine-ng-port", ng)
	}
	c, _, _, err := startChild(cfg.bin, args, os.Stderr, cfg.logPath)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", cfg.bin, err)
	}
	r := &rtpengine{c: c, ng: ng, flags: cfg.flags, ngConc: 8}
	// Wait for the control socket to answer a ping.
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := ngRequest(ng, map[string]any{"command": "ping"}, 200*time.Millisecond, 1)
		if err == nil && resp["result"] == "pong" {
			return r, nil
		}
		select {
		case <-c.done:
			return nil, fmt.Errorf("rtpengine exited at startup (%v); see %s", c.waitErr, cfg.logPath)
		default:
		}
		if time.Now().After(deadline) {
			r.Stop()
			return nil, fmt.Errorf("rtpengine ng port %v did not answer ping: %v", ng, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (r *rtpengine) PID() int { return r.c.cmd.Process.Pid }

func (r *rtpengine) Stop() error { return r.c.stop(3 * time.Second) }

func (r *rtpengine) Stats() string {
	resp, err := ngRequest(r.ng, map[string]any{"command": "statistics"}, time.Second, 2)
	if err != nil {
		return fmt.Sprintf("calls=%d (statistics: %v)", r.calls, err)
	}
	s := fmt.Sprintf("calls=%d", r.calls)
	if st, ok := resp["statistics"].(map[string]any); ok {
		if cur, ok := st["currentstatistics"].(map[string]any); ok {
			for _, k := range []string{"packetrate", "errorrate", "byterate"} {
				if v, ok := cur[k]; ok {
					s += fmt.Sprintf(" %s=%v", k, v)
				}
			}
		}
		if tot, ok := st["totalstatistics"].(map[string]any); ok {
			for _, k := range []string{"managedsessions", "rejectedsessions", "timeoutsessions", "forcedterminatedsessions"} {
				if v, ok := tot[k]; ok {
					s += fmt.Sprintf(" %s=%v", k, v)
				}
			}
		}
	}
	return s
}

// phoneSDP is the SDP a phone at ap would put in its INVITE or 200.
func phoneSDP(ap netip.AddrPort, sess int) string {
	ip := ap.Addr().String()
	return "v=0\r\n" +
		"o=- " + strconv.Itoa(sess) + " 1 IN IP4 " + ip + "\r\n" +
		"s=-\r\n" +
		"c=IN IP4 " + ip + "\r\n" +
		"t=0 0\r\n" +
		"m=audio " + strconv.Itoa(int(ap.Port())) + " RTP/AVP 0\r\n" +
		"a=rtpmap:0 PCMU/8000\r\n" +
		"a=ptime:20\r\n" +
		"a=sendrecv\r\n"
}

// sdpAudio returns the connection address and port of the first audio m=
// line: the media-level c= if there is one, else the session-level c=.
func sdpAudio(sdp string) (netip.AddrPort, error) {
	var sessC, mediaC string
	port := -1
	sawM, inAudio := false, false
scan:
	for _, line := range strings.Split(sdp, "\n") {
		line = strings.TrimRight(line, "\r")
		switch {
		case strings.HasPrefix(line, "m="):
			if port >= 0 {
				break scan // the audio stream's section has ended
			}
			sawM = true
			f := strings.Fields(line[2:])
			inAudio = len(f) >= 2 && f[0] == "audio"
			if inAudio {
				p, err := strconv.Atoi(f[1])
				if err != nil || p < 0 || p > 65535 {
					return netip.AddrPort{}, fmt.Errorf("sdp: bad port in %q", line)
				}
				port = p
			}
		case strings.HasPrefix(line, "c="):
			f := strings.Fields(line[2:])
			if len(f) < 3 || f[0] != "IN" || f[1] != "IP4" {
				continue
			}
			if !sawM {
				sessC = f[2]
			} else if inAudio && mediaC == "" {
				mediaC = f[2]
			}
		}
	}
	if port < 0 {
		return netip.AddrPort{}, errors.New("sdp: no audio m= line")
	}
	c := mediaC
	if c == "" {
		c = sessC
	}
	ip, err := netip.ParseAddr(c)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("sdp: no usable c= line (%q)", c)
	}
	return netip.AddrPortFrom(ip, uint16(port)), nil
}

// Setup runs offer and answer for every stream, several calls at a time.
func (r *rtpengine) Setup(p []streamPhones) ([]streamPorts, error) {
	ports := make([]streamPorts, len(p))
	var next atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	tag := strconv.FormatInt(time.Now().UnixNano(), 36)
	for w := 0; w < r.ngConc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(p) {
					return
				}
				pa, pb, err := r.call(fmt.Sprintf("bench-%s-%d", tag, i), p[i], i)
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("stream %d: %w", i, err)
					}
					mu.Unlock()
					return
				}
				ports[i] = streamPorts{A: pa, B: pb}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	r.calls = len(p)
	return ports, nil
}

// call sets up one call and returns where phone A and phone B must send.
func (r *rtpengine) call(callID string, ph streamPhones, i int) (toA, toB netip.AddrPort, err error) {
	offer := map[string]any{
		"command":  "offer",
		"call-id":  callID,
		"from-tag": "a" + strconv.Itoa(i),
		"sdp":      phoneSDP(ph.A, 2*i),
		"replace":  []string{"origin", "session-connection"},
	}
	if len(r.flags) > 0 {
		offer["flags"] = r.flags
	}
	resp, err := ngRequest(r.ng, offer, 2*time.Second, 3)
	if err != nil {
		return toA, toB, fmt.Errorf("offer: %w", err)
	}
	sdp, _ := resp["sdp"].(string)
	// The offer's SDP goes to phone B: its port is where B sends.
	if toB, err = sdpAudio(sdp); err != nil {
		return toA, toB, fmt.Errorf("offer reply: %w", err)
	}
	answer := map[string]any{
		"command":  "answer",
		"call-id":  callID,
		"from-tag": "a" + strconv.Itoa(i),
		"to-tag":   "b" + strconv.Itoa(i),
		"sdp":      phoneSDP(ph.B, 2*i+1),
		"replace":  []string{"origin", "session-connection"},
	}
	if len(r.flags) > 0 {
		answer["flags"] = r.flags
	}
	if resp, err = ngRequest(r.ng, answer, 2*time.Second, 3); err != nil {
		return toA, toB, fmt.Errorf("answer: %w", err)
	}
	sdp, _ = resp["sdp"].(string)
	if toA, err = sdpAudio(sdp); err != nil {
		return toA, toB, fmt.Errorf("answer reply: %w", err)
	}
	return toA, toB, nil
}

var ngCookie atomic.Uint64

// ngRequest sends one ng command ("COOKIE BENCODED-DICT" over UDP) and waits
// for the reply with the same cookie, resending the identical datagram on
// timeout (rtpengine answers a repeated cookie from its cache).
func ngRequest(to netip.AddrPort, msg map[string]any, timeout time.Duration, tries int) (map[string]any, error) {
	cookie := fmt.Sprintf("%d_%d", os.Getpid(), ngCookie.Add(1))
	req, err := encodeNG(cookie, msg)
	if err != nil {
		return nil, err
	}
	conn, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(to))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	buf := make([]byte, 65536)
	for t := 0; t < tries; t++ {
		if _, err := conn.Write(req); err != nil {
			return nil, err
		}
		deadline := time.Now().Add(timeout)
		for {
			_ = conn.SetReadDeadline(deadline)
			n, err := conn.Read(buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					break
				}
				return nil, err
			}
			c, resp, err := decodeNG(buf[:n])
			if err != nil || c != cookie {
				continue // a late reply to an earlier try
			}
			if res, _ := resp["result"].(string); res == "error" {
				return nil, fmt.Errorf("rtpengine: %v", resp["error-reason"])
			}
			return resp, nil
		}
	}
	return nil, fmt.Errorf("no reply to %v from %v", msg["command"], to)
}

func encodeNG(cookie string, msg map[string]any) ([]byte, error) {
	b := append([]byte(cookie), ' ')
	return bencodeAppend(b, msg)
}

func decodeNG(b []byte) (string, map[string]any, error) {
	sp := strings.IndexByte(string(b), ' ')
	if sp <= 0 {
		return "", nil, errors.New("ng: no cookie")
	}
	v, err := bencode.Decode(b[sp+1:])
	if err != nil {
		return "", nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return "", nil, fmt.Errorf("ng: reply is %T, not a dictionary", v)
	}
	return string(b[:sp]), m, nil
}

func bencodeAppend(dst []byte, v any) ([]byte, error) { return bencode.Encode(dst, v) }
