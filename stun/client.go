package stun

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"
)

// RFC 8489 §6.2.1 retransmission defaults for UDP.
const (
	DefaultRTO = 500 * time.Millisecond
	DefaultRc  = 7  // transmissions in all
	DefaultRm  = 16 // wait after the last one, in multiples of the initial RTO
)

// Client errors.
var (
	ErrTimeout         = errors.New("stun: no response to Binding request")
	ErrNoMappedAddress = errors.New("stun: success response without a mapped address")
	ErrUnknownRequired = errors.New("stun: response has an unknown comprehension-required attribute")
)

// ErrorResponse is the error returned for a Binding error response.
type ErrorResponse struct {
	Code    int      // 300..699, e.g. 420
	Reason  string   // reason phrase
	Unknown []uint16 // UNKNOWN-ATTRIBUTES of a 420
}

func (e *ErrorResponse) Error() string {
	s := "stun: error response " + strconv.Itoa(e.Code) + " " + e.Reason
	for i, t := range e.Unknown {
		if i == 0 {
			s += " ("
		} else {
			s += ", "
		}
		s += AttrName(t)
		if i == len(e.Unknown)-1 {
			s += ")"
		}
	}
	return s
}

// Result is what a Binding transaction learned.
type Result struct {
	// Mapped is the reflexive address: XORMapped if the response had one,
	// else PlainMapped.
	Mapped      netip.AddrPort
	XORMapped   netip.AddrPort // XOR-MAPPED-ADDRESS
	PlainMapped netip.AddrPort // MAPPED-ADDRESS
	// OtherAddress is OTHER-ADDRESS, or CHANGED-ADDRESS from an RFC 3489
	// server; ResponseOrigin is RESPONSE-ORIGIN, or SOURCE-ADDRESS.
	OtherAddress   netip.AddrPort
	ResponseOrigin netip.AddrPort
	// From is where the response came from (differs from the server with
	// a CHANGE-REQUEST).
	From netip.AddrPort
	// RTT is the time from the first transmission to the response: with
	// Sent > 1 it includes the waits for lost attempts.
	RTT      time.Duration
	Sent     int // transmissions, retransmissions included
	Software string
}

// ClientOption configures Binding and NewTransaction.
type ClientOption func(*clientConfig)

type clientConfig struct {
	rto           time.Duration
	rc, rm        int
	change        bool
	changeIP      bool
	changePort    bool
	anySource     bool
	software      string
	noFingerprint bool
	responsePort  uint16
}

// WithChangeRequest adds CHANGE-REQUEST to the request (RFC 5780 §7.2).
// Asking for a change also accepts the response from any source, since
// the server answers from its other address or port.
func WithChangeRequest(changeIP, changePort bool) ClientOption {
	return func(c *clientConfig) {
		c.change, c.changeIP, c.changePort = true, changeIP, changePort
		if changeIP || changePort {
			c.anySource = true
		}
	}
}

// WithAnySource accepts a response with the right transaction id from any
// source address. By default only the server's address is accepted.
func WithAnySource() ClientOption { return func(c *clientConfig) { c.anySource = true } }

// WithRetransmission replaces the RFC 8489 defaults (initial RTO 500 ms,
// doubled after each transmission, Rc = 7 transmissions, then Rm = 16 RTOs
// of waiting: 39.5 s in all). Values <= 0 keep the default.
func WithRetransmission(rto time.Duration, rc, rm int) ClientOption {
	return func(c *clientConfig) {
		if rto > 0 {
			c.rto = rto
		}
		if rc > 0 {
			c.rc = rc
		}
		if rm > 0 {
			c.rm = rm
		}
	}
}

// WithResponsePort adds RESPONSE-PORT (RFC 5780 §7.5): the server sends
// its answer to this port at the request's source IP instead of to the
// request's source port. The answer therefore arrives on another socket
// (the one whose NAT binding has that public port — how binding lifetime
// is measured, RFC 5780 §4.6), so use a Transaction and hand that socket's
// packets to Handle. A server that does not support it answers 420.
func WithResponsePort(port uint16) ClientOption {
	return func(c *clientConfig) { c.responsePort = port }
}

// WithSoftware adds SOFTWARE to the request.
func WithSoftware(s string) ClientOption { return func(c *clientConfig) { c.software = s } }

// WithoutFingerprint leaves FINGERPRINT out of the request. It is included
// by default so that a server multiplexing STUN with another protocol can
// tell the request apart.
func WithoutFingerprint() ClientOption { return func(c *clientConfig) { c.noFingerprint = true } }

// Transaction is one client Binding transaction on a socket that the
// caller reads: Run sends and retransmits the request through a send
// function, and the caller's reader hands every incoming STUN message to
// Handle, which picks out the response. This suits a socket demultiplexed
// between STUN and another protocol, such as a SIP port. Use Binding when
// the transaction may read the socket itself.
type Transaction struct {
	server netip.AddrPort
	cfg    clientConfig
	tid    [12]byte
	req    []byte
	done   chan struct{}

	mu       sync.Mutex
	first    time.Time
	sent     int
	finished bool // done is closed or Run has returned
	res      Result
	err      error
}

// NewTransaction prepares a Binding request to server.
func NewTransaction(server netip.AddrPort, opts ...ClientOption) *Transaction {
	t := &Transaction{
		server: unmapAP(server),
		cfg:    clientConfig{rto: DefaultRTO, rc: DefaultRc, rm: DefaultRm},
		tid:    NewTransactionID(),
		done:   make(chan struct{}),
	}
	for _, o := range opts {
		o(&t.cfg)
	}
	var b Builder
	b.Reset(make([]byte, 0, 64), MethodBinding, ClassRequest, t.tid)
	if t.cfg.change {
		b.AddChangeRequest(t.cfg.changeIP, t.cfg.changePort)
	}
	if t.cfg.responsePort != 0 {
		b.AddRaw(AttrResponsePort, []byte{byte(t.cfg.responsePort >> 8), byte(t.cfg.responsePort), 0, 0})
	}
	if t.cfg.software != "" {
		b.AddSoftware(t.cfg.software)
	}
	if !t.cfg.noFingerprint {
		b.AddFingerprint()
	}
	t.req = b.Bytes()
	return t
}

// TID returns the transaction id.
func (t *Transaction) TID() [12]byte { return t.tid }

// Request returns the encoded request. The caller must not modify it.
func (t *Transaction) Request() []byte { return t.req }

// Handle offers a received packet to the transaction and reports whether
// it was this transaction's response (a Binding success or error response
// with its transaction id, from the server unless any source is allowed),
// in which case the caller should not process it further. Responses after
// the first are reported but ignored. A response whose FINGERPRINT, if
// present, does not verify is not accepted. Handle may be called from any
// goroutine, before, during or after Run.
func (t *Transaction) Handle(b []byte, from netip.AddrPort) bool {
	var m Message
	var attrs [16]Attr
	m.Attrs = attrs[:0]
	if m.Unmarshal(b) != nil || m.Cookie != MagicCookie || m.TID != t.tid ||
		m.Method != MethodBinding || (m.Class != ClassSuccess && m.Class != ClassError) {
		return false
	}
	from = unmapAP(from)
	if !t.cfg.anySource && from != t.server {
		return false
	}
	if _, ok := m.Get(AttrFingerprint); ok {
		if _, err := checkFingerprint(b); err != nil {
			return false
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.finished {
		return true
	}
	res, err := interpret(&m)
	res.From = from
	res.Sent = t.sent
	res.RTT = time.Since(t.first)
	t.complete(res, err)
	return true
}

// interpret turns a response into a Result or an error.
func interpret(m *Message) (Result, error) {
	if m.Class == ClassError {
		code, reason, err := m.ErrorCode()
		if err != nil {
			return Result{}, fmt.Errorf("stun: error response: %w", err)
		}
		return Result{}, &ErrorResponse{Code: code, Reason: reason, Unknown: m.UnknownAttributes()}
	}
	for _, a := range m.Attrs {
		if a.Type < 0x8000 && !clientKnows(a.Type) {
			return Result{}, fmt.Errorf("%w: %s", ErrUnknownRequired, AttrName(a.Type))
		}
	}
	var r Result
	var err error
	if _, ok := m.Get(AttrXORMappedAddress); ok {
		if r.XORMapped, err = m.XORMappedAddress(); err != nil {
			return Result{}, err
		}
	}
	if _, ok := m.Get(AttrMappedAddress); ok {
		if r.PlainMapped, err = m.MappedAddress(); err != nil {
			return Result{}, err
		}
	}
	r.Mapped = r.XORMapped
	if !r.Mapped.IsValid() {
		r.Mapped = r.PlainMapped
	}
	if !r.Mapped.IsValid() {
		return Result{}, ErrNoMappedAddress
	}
	// Optional extras: a malformed one is ignored rather than failing.
	r.OtherAddress = firstAddress(m, AttrOtherAddress, AttrChangedAddress)
	r.ResponseOrigin = firstAddress(m, AttrResponseOrigin, AttrSourceAddress)
	r.Software = m.Software()
	return r, nil
}

func firstAddress(m *Message, types ...uint16) netip.AddrPort {
	for _, t := range types {
		if ap, err := m.Address(t); err == nil {
			return ap
		}
	}
	return netip.AddrPort{}
}

// clientKnows lists the comprehension-required attributes a client can
// accept in a Binding success response (RFC 8489 §6.3.3: any other one
// fails the transaction).
func clientKnows(t uint16) bool {
	switch t {
	case AttrMappedAddress, AttrResponseAddress, AttrChangeRequest, AttrSourceAddress,
		AttrChangedAddress, AttrUsername, AttrPassword, AttrMessageIntegrity, AttrErrorCode,
		AttrUnknownAttributes, AttrReflectedFrom, AttrRealm, AttrNonce,
		AttrMessageIntegritySHA256, AttrPasswordAlgorithm, AttrUserhash,
		AttrXORMappedAddress, AttrPadding, AttrResponsePort:
		return true
	}
	return false
}

// complete records the outcome once; t.mu must be held.
func (t *Transaction) complete(res Result, err error) {
	if t.finished {
		return
	}
	t.finished = true
	t.res, t.err = res, err
	close(t.done)
}

// fail ends the transaction with err unless it has already ended.
func (t *Transaction) fail(err error) {
	t.mu.Lock()
	t.complete(Result{}, err)
	t.mu.Unlock()
}

func (t *Transaction) ended() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.finished
}

// Run sends the request with send and retransmits it on the RFC 8489
// schedule until Handle accepts a response, the schedule runs out
// (ErrTimeout) or ctx is done (ctx.Err(), wrapped). A send error ends the
// transaction. Run must be called at most once.
//
// The total time is bounded by whichever comes first: ctx's deadline or
// cancellation, and the retransmission schedule (39.5 s by default; see
// WithRetransmission). Give ctx a timeout to bound it more tightly.
func (t *Transaction) Run(ctx context.Context, send func([]byte) error) (Result, error) {
	timer := time.NewTimer(0)
	timer.Stop()
	defer timer.Stop()
	rto := t.cfg.rto
	for i := 0; i < t.cfg.rc; i++ {
		t.mu.Lock()
		if t.finished {
			t.mu.Unlock()
			break
		}
		if i == 0 {
			t.first = time.Now()
		}
		t.sent++
		t.mu.Unlock()
		if err := send(t.req); err != nil {
			t.fail(fmt.Errorf("stun: sending Binding request to %v: %w", t.server, err))
			break
		}
		wait := rto
		if i == t.cfg.rc-1 {
			wait = time.Duration(t.cfg.rm) * t.cfg.rto
		}
		timer.Reset(wait)
		select {
		case <-t.done:
		case <-ctx.Done():
			t.fail(fmt.Errorf("stun: Binding request to %v: %w", t.server, ctx.Err()))
		case <-timer.C:
			rto *= 2
			continue
		}
		break
	}
	t.fail(fmt.Errorf("%w from %v after %d transmissions", ErrTimeout, t.server, t.cfg.rc))
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.res, t.err
}

// Binding runs one Binding transaction with server over conn and returns
// what it learned. It is Transaction with conn as both ends: it writes the
// request (retransmitting per RFC 8489 §6.2.1) and reads conn until the
// response arrives, ignoring packets that are not that response: other
// transaction ids, other sources (unless allowed), non-STUN data. Error
// responses become an *ErrorResponse carrying the code.
//
// conn is borrowed: nobody else may read it during the call, packets read
// and not matched are discarded, and Binding uses conn's read deadline
// (clearing it on return) to stop its reader. To share a socket that
// another reader demultiplexes, use Transaction.
//
// Time is bounded as for Transaction.Run: by ctx and by the retransmission
// schedule (39.5 s by default).
func Binding(ctx context.Context, conn net.PacketConn, server netip.AddrPort, opts ...ClientOption) (Result, error) {
	t := NewTransaction(server, opts...)
	if err := conn.SetReadDeadline(time.Time{}); err != nil {
		return Result{}, fmt.Errorf("stun: %w", err)
	}
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		buf := make([]byte, 4096)
		for {
			n, addr, err := conn.ReadFrom(buf)
			if n > 0 {
				t.Handle(buf[:n], addrPortOf(addr))
			}
			if t.ended() {
				return
			}
			if err != nil {
				t.fail(fmt.Errorf("stun: reading from socket: %w", err))
				return
			}
		}
	}()
	send := sender(conn, t.server)
	res, err := t.Run(ctx, send)
	_ = conn.SetReadDeadline(time.Unix(1, 0)) // wake the reader
	<-readerDone
	_ = conn.SetReadDeadline(time.Time{})
	return res, err
}

// sender returns a function writing to server over conn, using Write on a
// connected socket (where WriteTo fails).
func sender(conn net.PacketConn, server netip.AddrPort) func([]byte) error {
	type connected interface {
		RemoteAddr() net.Addr
		Write([]byte) (int, error)
	}
	if c, ok := conn.(connected); ok && c.RemoteAddr() != nil {
		return func(b []byte) error { _, err := c.Write(b); return err }
	}
	if u, ok := conn.(*net.UDPConn); ok {
		return func(b []byte) error { _, err := u.WriteToUDPAddrPort(b, server); return err }
	}
	addr := net.UDPAddrFromAddrPort(server)
	return func(b []byte) error { _, err := conn.WriteTo(b, addr); return err }
}

func addrPortOf(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.AddrPort()
	case nil:
		return netip.AddrPort{}
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

func unmapAP(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
