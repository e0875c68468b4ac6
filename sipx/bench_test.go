package sipx

import (
	"bufio"
	"bytes"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"
)

const benchRegister = "REGISTER sip:example.com SIP/2.0\r\n" +
	"Via: SIP/2.0/UDP 192.168.1.20:5060;rport;branch=z9hG4bK-524287-1---f1a2b3c4d5e6f708\r\n" +
	"Max-Forwards: 70\r\n" +
	"Contact: <sip:alice@192.168.1.20:5060;rinstance=8a1b2c3d4e5f6a7b;transport=UDP>;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-0123456789ab>\";reg-id=1\r\n" +
	"To: <sip:alice@example.com>\r\n" +
	"From: <sip:alice@example.com>;tag=7f3a9c21\r\n" +
	"Call-ID: ZDk1YjM4NGYxMzQ2NWI0ZTk3YjQ5OGQ5NmM1NDg1ZDk\r\n" +
	"CSeq: 2 REGISTER\r\n" +
	"Expires: 3600\r\n" +
	"Allow: INVITE, ACK, CANCEL, BYE, NOTIFY, REFER, MESSAGE, OPTIONS, INFO, SUBSCRIBE\r\n" +
	"Supported: replaces, outbound, gruu\r\n" +
	"User-Agent: Zoiper rv2.10.20.1\r\n" +
	"Authorization: Digest username=\"alice\",realm=\"example.com\",nonce=\"Z3Rlc3Rub25jZTE3MDAwMDAwMDA=\",uri=\"sip:example.com\",response=\"5c7a9bde8f1e2d3c4b5a69788796a5b4\",cnonce=\"0a4f113b\",nc=00000001,qop=auth,algorithm=MD5\r\n" +
	"Allow-Events: presence, kpml, talk\r\n" +
	"Content-Length: 0\r\n\r\n"

func BenchmarkParseRegister(b *testing.B) {
	raw := []byte(benchRegister)
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		m, err := ParseMessage(raw)
		if err != nil {
			b.Fatal(err)
		}
		if m.Via() == nil {
			b.Fatal("no Via")
		}
	}
}

func BenchmarkMarshalResponse(b *testing.B) {
	m, err := ParseMessage([]byte(benchRegister))
	if err != nil {
		b.Fatal(err)
	}
	req := m.(*Request)
	StampReceived(req, Flow{Transport: UDP, Remote: netip.MustParseAddrPort("198.51.100.7:40512")})
	b.ReportAllocs()
	for b.Loop() {
		out := Marshal(NewResponse(req, 200, "OK"))
		if len(out) == 0 {
			b.Fatal("empty")
		}
	}
}

func BenchmarkClassify(b *testing.B) {
	raw := []byte(benchRegister)
	for b.Loop() {
		if classify(raw) != kindSIP {
			b.Fatal("not SIP")
		}
	}
}

func BenchmarkReadStreamMessage(b *testing.B) {
	raw := []byte(benchRegister)
	stream := bytes.Repeat(raw, 64)
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	br := bufio.NewReaderSize(nil, 8192)
	rd := bytes.NewReader(stream)
	for i := 0; b.Loop(); i++ {
		if i%64 == 0 {
			rd.Reset(stream)
			br.Reset(rd)
		}
		if _, err := readStreamMessage(br); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkServerTxRoundTrip: one OPTIONS over loopback UDP → read loop →
// handler opens a server transaction and answers 200 → client reads it.
// Sequential, so it measures latency (ns/op) of the whole path.
func BenchmarkServerTxRoundTrip(b *testing.B) {
	ts := startStackH(b, Config{T1: 5 * time.Millisecond}, &benchHandler{}, false)

	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	spec := newSpec("OPTIONS", "10.0.0.5:5060")
	spec.Branch = "z9hG4bK-bench-XXXXXXXXXXXX"
	tmpl := spec.bytes()
	at := bytes.Index(tmpl, []byte("XXXXXXXXXXXX"))
	buf := make([]byte, 4096)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		msg := bytes.Clone(tmpl)
		id := strconv.FormatInt(int64(i), 36)
		copy(msg[at:at+12], []byte("000000000000"[:12-len(id)]+id))
		if _, err := c.WriteToUDPAddrPort(msg, ts.udp); err != nil {
			b.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, _, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			b.Fatal(err)
		}
		if !bytes.HasPrefix(buf[:n], []byte("SIP/2.0 200")) {
			b.Fatalf("got %q", buf[:n])
		}
	}
}

type benchHandler struct{ s *Stack }

func (h *benchHandler) setStack(s *Stack) { h.s = s }

func (h *benchHandler) Request(r *Request, f Flow) {
	tx, ok := h.s.NewServerTx(r, f)
	if ok {
		_ = tx.RespondCode(200, "OK")
	}
}
func (h *benchHandler) Response(*Response, Flow)   {}
func (h *benchHandler) Cancel(*ServerTx, *Request) {}
