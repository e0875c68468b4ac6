package procstat

import (
	"math"
	"os"
	"testing"
)

func TestParseProcStat(t *testing.T) {
	// comm with spaces and parentheses; utime=250 stime=50 ticks.
	s := "4242 (my (odd) prog) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 1234 0 0\n"
	got, err := ParseProcStat(s)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(got-3.0) > 1e-9 {
		t.Fatalf("cpu = %v s, want 3", got)
	}
	if u, st, err := ParseProcTimes(s); err != nil || math.Abs(u-2.5) > 1e-9 || math.Abs(st-0.5) > 1e-9 {
		t.Fatalf("times = %v, %v, %v; want 2.5, 0.5", u, st, err)
	}
	if _, err := ParseProcStat("4242 (x) S 1 2"); err == nil {
		t.Fatal("short line must fail")
	}
}

func TestParseSysStat(t *testing.T) {
	s := "cpu  100 5 50 1000 20 1 30 4 7 0\ncpu0 50 0 25 500 10 0 15 2 0 0\n"
	c, err := ParseSysStat(s)
	if err != nil {
		t.Fatal(err)
	}
	want := SysCPU{Total: 12.10, Idle: 10.20, Irq: 0.01, Softirq: 0.30, Steal: 0.04}
	for _, p := range [][2]float64{{c.Total, want.Total}, {c.Idle, want.Idle}, {c.Irq, want.Irq}, {c.Softirq, want.Softirq}, {c.Steal, want.Steal}} {
		if math.Abs(p[0]-p[1]) > 1e-9 {
			t.Fatalf("got %+v, want %+v", c, want)
		}
	}
	d := c.Sub(SysCPU{Total: 2, Idle: 1})
	if math.Abs(d.Total-10.1) > 1e-9 || math.Abs(d.Idle-9.2) > 1e-9 {
		t.Fatalf("Sub = %+v", d)
	}
}

func TestOwnProcess(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	if _, err := ProcCPU(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadSys(); err != nil {
		t.Fatal(err)
	}
}
