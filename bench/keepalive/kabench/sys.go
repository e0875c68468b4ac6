package main

import (
	"fmt"
	"github.com/sipedge/sipedge/bench/internal/procstat"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// procTimes returns a process's user and system CPU seconds (all threads);
// pid 0 is this process.
func procTimes(pid int) (user, sys float64, err error) {
	if pid == 0 {
		pid = os.Getpid()
	}
	return procstat.ProcTimes(pid)
}

// cpuSnap is one reading of every CPU figure a window needs.
type cpuSnap struct {
	at                time.Time
	srvUser, srvSys   float64
	genUser, genSys   float64
	sys               procstat.SysCPU
	srvErr, genErr    error
	sysErr            error
	srvPID            int
	srvRead, sysValid bool
}

// takeCPU reads sipedge's (pid; 0 none), the generator's (this process
// and the gen processes) and the machine's CPU times.
func takeCPU(pid int, gen []int) cpuSnap {
	s := cpuSnap{at: time.Now(), srvPID: pid}
	if pid > 0 {
		s.srvUser, s.srvSys, s.srvErr = procTimes(pid)
		s.srvRead = s.srvErr == nil
	}
	s.genUser, s.genSys, s.genErr = procTimes(0)
	for _, g := range gen {
		u, st, err := procTimes(g)
		if err != nil {
			s.genErr = err
		}
		s.genUser += u
		s.genSys += st
	}
	s.sys, s.sysErr = procstat.ReadSys()
	s.sysValid = s.sysErr == nil
	return s
}

// CPU is the CPU use of a window, in seconds of CPU and in cores
// (seconds of CPU per second of wall time).
type CPU struct {
	WallS        float64 `json:"wall_s"`
	SipedgeS     float64 `json:"sipedge_cpu_s"`
	SipedgeUserS float64 `json:"sipedge_user_s"`
	SipedgeSysS  float64 `json:"sipedge_sys_s"`
	SipedgePct   float64 `json:"sipedge_pct_of_one_core"`
	GenS         float64 `json:"generator_cpu_s"`
	GenPct       float64 `json:"generator_pct_of_one_core"`
	MachineBusyS float64 `json:"machine_busy_s"`
	SoftirqS     float64 `json:"machine_softirq_s"`
	// OtherS is machine busy time minus sipedge and the generator:
	// everything else that ran (other agents' work); OtherPct is it in %
	// of one core.
	OtherS   float64 `json:"other_cpu_s"`
	OtherPct float64 `json:"other_pct_of_one_core"`
}

func cpuBetween(a, b cpuSnap) CPU {
	c := CPU{WallS: b.at.Sub(a.at).Seconds()}
	if a.srvRead && b.srvRead {
		c.SipedgeUserS = b.srvUser - a.srvUser
		c.SipedgeSysS = b.srvSys - a.srvSys
		c.SipedgeS = c.SipedgeUserS + c.SipedgeSysS
	}
	c.GenS = (b.genUser + b.genSys) - (a.genUser + a.genSys)
	if a.sysValid && b.sysValid {
		c.MachineBusyS = (b.sys.Total - b.sys.Idle) - (a.sys.Total - a.sys.Idle)
		c.SoftirqS = b.sys.Softirq - a.sys.Softirq
		c.OtherS = max(0, c.MachineBusyS-c.SipedgeS-c.GenS)
	}
	if c.WallS > 0 {
		c.SipedgePct = 100 * c.SipedgeS / c.WallS
		c.GenPct = 100 * c.GenS / c.WallS
		c.OtherPct = 100 * c.OtherS / c.WallS
	}
	return c
}

// otherBusy measures, over d, how many cores the machine spends outside
// sipedge (pid; 0 none) and the generator: the quietness before a step.
func otherBusy(pid int, gen []int, d time.Duration) float64 {
	a := takeCPU(pid, gen)
	time.Sleep(d)
	b := takeCPU(pid, gen)
	c := cpuBetween(a, b)
	return c.OtherS / c.WallS
}

// waitQuiet waits up to limit until other work uses less than cores, and
// returns the last reading.
func waitQuiet(gen []int, cores float64, limit time.Duration) float64 {
	deadline := time.Now().Add(limit)
	for {
		o := otherBusy(0, gen, 500*time.Millisecond)
		if o < cores || time.Now().After(deadline) {
			return o
		}
	}
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// procMem returns VmRSS, RssAnon and RssFile of pid in bytes.
func procMem(pid int) (rss, anon, file uint64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return
	}
	return parseProcStatus(string(b))
}

func parseProcStatus(s string) (rss, anon, file uint64) {
	for _, line := range strings.Split(s, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "VmRSS":
			rss = n * 1024
		case "RssAnon":
			anon = n * 1024
		case "RssFile":
			file = n * 1024
		}
	}
	return
}

// raiseNofile lets this process open n more files (root may raise the hard
// limit up to fs.nr_open).
func raiseNofile(n int) error {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	want := uint64(n)
	if lim.Cur >= want {
		return nil
	}
	lim.Cur = want
	if lim.Max < want {
		lim.Max = want
	}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("RLIMIT_NOFILE %d: %w (run as root or raise the hard limit)", want, err)
	}
	return nil
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func kernel() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

func machine() string {
	return fmt.Sprintf("%d CPUs (%s), Linux %s, %s", runtime.NumCPU(), cpuModel(), kernel(), runtime.Version())
}

// udpErrors reads the UDP error counters of /proc/net/snmp.
func udpErrors() map[string]int64 {
	b, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return nil
	}
	return parseSnmpUDP(string(b))
}

func parseSnmpUDP(s string) map[string]int64 {
	var names []string
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "Udp:" {
			continue
		}
		if names == nil {
			names = f[1:]
			continue
		}
		out := map[string]int64{}
		for i, v := range f[1:] {
			if i < len(names) {
				n, _ := strconv.ParseInt(v, 10, 64)
				out[names[i]] = n
			}
		}
		return out
	}
	return nil
}

// udpDelta keeps the error counters that changed between a and b.
func udpDelta(a, b map[string]int64) map[string]int64 {
	out := map[string]int64{}
	for _, k := range []string{"InErrors", "RcvbufErrors", "SndbufErrors", "NoPorts", "MemErrors"} {
		if d := b[k] - a[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}
