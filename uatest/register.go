package uatest

import (
	"fmt"
	"strconv"
	"time"
)

// regState keeps one AOR's registration Call-ID and CSeq, so refreshes
// look like a real phone's (same Call-ID, increasing CSeq).
type regState struct {
	callID  string
	fromTag string
	cseq    int
}

// RegisterOpts tunes a REGISTER.
type RegisterOpts struct {
	// User and Password; "" uses the phone's.
	User, Password string
	// Contacts are the Contact header values, one header each; nil uses
	// the phone's default Contact; []string{"*"} is the wildcard.
	Contacts []string
	// Expires is the Expires header value; "" sends none.
	Expires string
	// Headers are added to the request.
	Headers []Header
	// NoAuth returns the 401 instead of answering it.
	NoAuth bool
	// Timeout for each response. Default the phone's.
	Timeout time.Duration
}

// Register registers user (or the phone's user if "") with password and
// contact (a Contact header value; "" = the phone's default Contact). It
// answers a 401/407 with digest credentials and returns the final
// response.
func (p *Phone) Register(user, password, contact string) (*Msg, error) {
	o := RegisterOpts{User: user, Password: password}
	if contact != "" {
		o.Contacts = []string{contact}
	}
	return p.RegisterWith(o)
}

// Unregister removes contact ("" = the default Contact, "*" = all) with
// Expires: 0.
func (p *Phone) Unregister(user, password, contact string) (*Msg, error) {
	o := RegisterOpts{User: user, Password: password, Expires: "0"}
	if contact != "" {
		o.Contacts = []string{contact}
	}
	return p.RegisterWith(o)
}

// RegisterWith sends a REGISTER as described by o and returns the final
// response (after answering one challenge unless NoAuth).
func (p *Phone) RegisterWith(o RegisterOpts) (*Msg, error) {
	if o.User == "" {
		o.User = p.cfg.User
	}
	if o.Password == "" {
		o.Password = p.cfg.Password
	}
	if o.Contacts == nil {
		o.Contacts = []string{"<" + p.ContactURI(o.User) + ">"}
	}
	res, err := p.register(o, "", "")
	if err != nil || o.NoAuth || (res.Code != 401 && res.Code != 407) {
		return res, err
	}
	hdr, authz := "WWW-Authenticate", "Authorization"
	if res.Code == 407 {
		hdr, authz = "Proxy-Authenticate", "Proxy-Authorization"
	}
	ch, err := PickChallenge(res.Values(hdr), p.cfg.Algorithm)
	if err != nil {
		return res, err
	}
	return p.register(o, authz, Authorization(ch, o.User, o.Password, "REGISTER", "sip:"+p.cfg.Domain))
}

func (p *Phone) register(o RegisterOpts, authzName, authz string) (*Msg, error) {
	p.mu.Lock()
	st := p.regs[o.User]
	if st == nil {
		st = &regState{callID: NewCallID(), fromTag: NewTag()}
		p.regs[o.User] = st
	}
	st.cseq++
	cseq := st.cseq
	p.mu.Unlock()
	aor := "sip:" + o.User + "@" + p.cfg.Domain
	via, _ := p.newVia()
	m := &Msg{Method: "REGISTER", URI: "sip:" + p.cfg.Domain}
	m.Add("Via", via)
	m.Add("Max-Forwards", "70")
	m.Add("From", "<"+aor+">;tag="+st.fromTag)
	m.Add("To", "<"+aor+">")
	m.Add("Call-ID", st.callID)
	m.Add("CSeq", strconv.Itoa(cseq)+" REGISTER")
	for _, c := range o.Contacts {
		m.Add("Contact", c)
	}
	if o.Expires != "" {
		m.Add("Expires", o.Expires)
	}
	m.Add("User-Agent", p.cfg.UserAgent)
	if authz != "" {
		m.Add(authzName, authz)
	}
	m.Headers = append(m.Headers, o.Headers...)
	tx, err := p.Send(m)
	if err != nil {
		return nil, fmt.Errorf("uatest: send REGISTER: %w", err)
	}
	return tx.WaitFinal(o.Timeout)
}

// Do sends an out-of-dialog request to the server and returns its final
// response, answering one 401/407 with the phone's credentials (same
// Call-ID, CSeq + 1, new branch), as phones do for OPTIONS, MESSAGE, etc.
func (p *Phone) Do(m *Msg, timeout time.Duration) (*Msg, error) {
	tx, err := p.Send(m)
	if err != nil {
		return nil, err
	}
	res, err := tx.WaitFinal(timeout)
	if err != nil || (res.Code != 401 && res.Code != 407) || p.cfg.Password == "" {
		return res, err
	}
	hdr, authz := "WWW-Authenticate", "Authorization"
	if res.Code == 407 {
		hdr, authz = "Proxy-Authenticate", "Proxy-Authorization"
	}
	ch, err := PickChallenge(res.Values(hdr), p.cfg.Algorithm)
	if err != nil {
		return res, err
	}
	n := cloneMsg(m)
	via, _ := p.newVia()
	n.Set("Via", via)
	seq, method := m.CSeq()
	n.Set("CSeq", strconv.Itoa(seq+1)+" "+method)
	n.Set(authz, Authorization(ch, p.cfg.User, p.cfg.Password, n.Method, n.URI))
	tx, err = p.Send(n)
	if err != nil {
		return nil, err
	}
	return tx.WaitFinal(timeout)
}
