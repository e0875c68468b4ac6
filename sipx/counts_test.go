package sipx

import (
	"fmt"
	"testing"
)

func TestTxCounts(t *testing.T) {
	var c TxCounts
	c.add("INVITE", 200)
	c.add("INVITE", 200)
	c.add("INVITE", 486)
	c.add("FOO", 603)
	c.add("BYE", 99)  // not a status: ignored
	c.add("BYE", 700) // ditto
	var got []string
	c.Each(func(m, class string, n uint64) { got = append(got, fmt.Sprintf("%s/%s=%d", m, class, n)) })
	want := "[INVITE/2xx=2 INVITE/4xx=1 OTHER/6xx=1]"
	if fmt.Sprint(got) != want {
		t.Fatalf("counts %v, want %s", got, want)
	}
}
