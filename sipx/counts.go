package sipx

import "sync/atomic"

// CountedMethods are the methods transactions are counted by; anything
// else is counted as "OTHER".
var CountedMethods = [...]string{"INVITE", "ACK", "BYE", "CANCEL", "REGISTER", "OPTIONS", "INFO", "UPDATE",
	"PRACK", "SUBSCRIBE", "NOTIFY", "REFER", "MESSAGE", "PUBLISH", "OTHER"}

// TxCounts counts final responses of transactions by method and class
// (1xx..6xx; index 0 is 1xx): on the server side those sipedge sent, on
// the client side those it received (synthetic timeouts are counted in
// Stats.TxTimeouts instead).
type TxCounts struct {
	n [len(CountedMethods)][6]atomic.Uint64
}

func methodIndex(m string) int {
	for i, c := range CountedMethods[:len(CountedMethods)-1] {
		if c == m {
			return i
		}
	}
	return len(CountedMethods) - 1
}

func (c *TxCounts) add(method string, code int) {
	if code < 100 || code > 699 {
		return
	}
	c.n[methodIndex(method)][code/100-1].Add(1)
}

// Each calls fn for every non-zero count, in CountedMethods order and
// class order.
func (c *TxCounts) Each(fn func(method, class string, n uint64)) {
	classes := [...]string{"1xx", "2xx", "3xx", "4xx", "5xx", "6xx"}
	for i := range c.n {
		for j := range c.n[i] {
			if v := c.n[i][j].Load(); v > 0 {
				fn(CountedMethods[i], classes[j], v)
			}
		}
	}
}
