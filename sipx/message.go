package sipx

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/emiago/sipgo/sip"
)

// MagicCookie starts every RFC 3261 branch.
const MagicCookie = "z9hG4bK"

var idPrefix = func() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}()

var idCounter atomic.Uint64

// NewBranch returns a unique RFC 3261 branch.
func NewBranch() string {
	return MagicCookie + "-se" + idPrefix + strconv.FormatUint(idCounter.Add(1), 36)
}

// NewTag returns a unique tag.
func NewTag() string {
	return idPrefix + strconv.FormatUint(idCounter.Add(1), 36)
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// Marshal serialises a message into a new byte slice.
func Marshal(m Message) []byte {
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	m.StringWrite(buf)
	out := bytes.Clone(buf.Bytes())
	if buf.Cap() < 1<<16 {
		bufPool.Put(buf)
	}
	return out
}

// NewResponse builds a response to req per RFC 3261 §8.2.6: Via (all, as
// received, including the received/rport the stack added), From, To (with a
// tag for non-100 responses), Call-ID, CSeq, and Record-Route for
// dialog-creating requests' 18x/2xx. The response goes back on the
// request's flow whatever the Via says.
func NewResponse(req *Request, code int, reason string) *Response {
	res := sip.NewResponse(code, reason)
	res.SipVersion = req.SipVersion
	for _, h := range req.GetHeaders("Via") {
		res.AppendHeader(sip.HeaderClone(h))
	}
	if h := req.From(); h != nil {
		res.AppendHeader(sip.HeaderClone(h))
	}
	if h := req.To(); h != nil {
		to := sip.HeaderClone(h).(*sip.ToHeader)
		if code > 100 && !to.Params.Has("tag") {
			to.Params.Add("tag", NewTag())
		}
		res.AppendHeader(to)
	}
	if h := req.CallID(); h != nil {
		res.AppendHeader(sip.HeaderClone(h))
	}
	if h := req.CSeq(); h != nil {
		res.AppendHeader(sip.HeaderClone(h))
	}
	if code == 100 {
		if h := req.GetHeader("Timestamp"); h != nil {
			res.AppendHeader(sip.HeaderClone(h))
		}
	}
	if req.Method != REGISTER && req.Method != ACK && ((code >= 180 && code < 300) || (req.Method == INVITE && code > 100 && code < 200)) {
		for _, h := range req.GetHeaders("Record-Route") {
			res.AppendHeader(sip.HeaderClone(h))
		}
	}
	res.SetTransport(req.Transport())
	res.SetBody(nil)
	return res
}

// TopVia returns the first Via of m, or nil.
func TopVia(m Message) *ViaHeader { return m.Via() }

// Branch returns the branch of the top Via.
func Branch(m Message) string {
	v := m.Via()
	if v == nil {
		return ""
	}
	b, _ := v.Params.Get("branch")
	return b
}

// HostPort joins a host (name, IPv4, or IPv6 with or without brackets)
// and a port as SIP writes them: "[2001:db8::1]:5060".
func HostPort(host string, port int) string {
	if strings.Contains(host, ":") && !strings.HasPrefix(host, "[") {
		host = "[" + host + "]"
	}
	return host + ":" + strconv.Itoa(port)
}

// InDialog reports whether req belongs to a dialog (its To has a tag).
func InDialog(req *Request) bool {
	if to := req.To(); to != nil {
		_, ok := to.Params.Get("tag")
		return ok
	}
	return false
}

// CSeqOf returns the CSeq number and method.
func CSeqOf(m Message) (uint32, RequestMethod, bool) {
	c := m.CSeq()
	if c == nil {
		return 0, "", false
	}
	return c.SeqNo, c.MethodName, true
}

// Contacts returns every Contact header of m (sipgo's Contact() returns
// only one). Comma-separated lists are split by the parser.
func Contacts(m Message) []*ContactHeader {
	hs := m.GetHeaders("Contact")
	out := make([]*ContactHeader, 0, len(hs))
	for _, h := range hs {
		if c, ok := h.(*ContactHeader); ok {
			out = append(out, c)
			continue
		}
		// Not parsed lazily yet: parse it.
		c := &ContactHeader{}
		v := h.Value()
		if strings.TrimSpace(v) == "*" {
			c.Address.Wildcard = true
			out = append(out, c)
			continue
		}
		var params HeaderParams
		dn, err := ParseAddressValue(v, &c.Address, &params)
		if err != nil {
			continue
		}
		c.DisplayName = dn
		c.Params = params
		out = append(out, c)
	}
	return out
}

// HeaderValues returns the raw values of every header named name.
func HeaderValues(m Message, name string) []string {
	hs := m.GetHeaders(name)
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = h.Value()
	}
	return out
}

// HeaderValue returns the value of the first header named name, or "".
func HeaderValue(m Message, name string) string {
	if h := m.(headerAccess).GetHeader(name); h != nil {
		return h.Value()
	}
	return ""
}

// RemoveHeaders removes every header named name.
func RemoveHeaders(m Message, name string) {
	for m.(headerAccess).RemoveHeader(name) {
	}
}

// headerAccess is implemented by *Request and *Response.
type headerAccess interface {
	GetHeader(name string) Header
	RemoveHeader(name string) bool
}

// hashKey mixes strings into a compact key (FNV-1a, 64 bit).
func hashKey(parts ...string) uint64 {
	h := uint64(14695981039346656037)
	for _, p := range parts {
		for i := 0; i < len(p); i++ {
			h ^= uint64(p[i])
			h *= 1099511628211
		}
		h ^= 0xff
		h *= 1099511628211
	}
	return h
}

// StatelessBranch derives a deterministic branch for a request forwarded
// statelessly (ACK for 2xx), so that retransmissions carry the same branch
// (RFC 3261 §16.11).
func StatelessBranch(req *Request) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], hashKey(Branch(req), string(req.Method), req.Recipient.String()))
	return MagicCookie + "-sl" + hex.EncodeToString(b[:])
}
