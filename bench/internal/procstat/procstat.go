// Package procstat reads CPU time from /proc: per process (utime+stime of
// all its threads) and machine-wide.
package procstat

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of /proc CPU times; 100 on every Linux
// architecture Go supports.
const clockTicks = 100

// ProcCPU returns utime+stime of a whole process (all its threads, live and
// exited) in seconds, from /proc/<pid>/stat.
func ProcCPU(pid int) (float64, error) {
	u, s, err := ProcTimes(pid)
	return u + s, err
}

// ProcTimes returns a process's user and system CPU time in seconds.
func ProcTimes(pid int) (user, sys float64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	return ParseProcTimes(string(b))
}

// ParseProcStat parses the content of /proc/<pid>/stat: utime+stime.
func ParseProcStat(s string) (float64, error) {
	u, st, err := ParseProcTimes(s)
	return u + st, err
}

// ParseProcTimes parses the content of /proc/<pid>/stat: utime, stime.
func ParseProcTimes(s string) (user, sys float64, err error) {
	// The command name (field 2) is in parentheses and may contain spaces and
	// parentheses itself: fields are counted after the last ')'.
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("proc stat: no ')' in %q", s)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("proc stat: %d fields", len(f))
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("proc stat: bad utime/stime %q %q", f[11], f[12])
	}
	return float64(ut) / clockTicks, float64(st) / clockTicks, nil
}

// SysCPU is the machine-wide CPU time from the "cpu" line of /proc/stat, in
// seconds summed over all CPUs.
type SysCPU struct {
	Total, Idle, Softirq, Irq, Steal float64
}

// ReadSys reads /proc/stat.
func ReadSys() (SysCPU, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return SysCPU{}, err
	}
	return ParseSysStat(string(b))
}

// ParseSysStat parses the content of /proc/stat.
func ParseSysStat(s string) (SysCPU, error) {
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) < 9 || f[0] != "cpu" {
			continue
		}
		var v [10]float64
		var total float64
		for i := 1; i < len(f) && i <= 8; i++ { // guest time is already in user
			n, err := strconv.ParseUint(f[i], 10, 64)
			if err != nil {
				return SysCPU{}, fmt.Errorf("/proc/stat: %q", line)
			}
			v[i] = float64(n) / clockTicks
			total += v[i]
		}
		return SysCPU{Total: total, Idle: v[4] + v[5], Irq: v[6], Softirq: v[7], Steal: v[8]}, nil
	}
	return SysCPU{}, fmt.Errorf("/proc/stat: no cpu line")
}

// Sub is a-b, field by field.
func (a SysCPU) Sub(b SysCPU) SysCPU {
	return SysCPU{Total: a.Total - b.Total, Idle: a.Idle - b.Idle, Softirq: a.Softirq - b.Softirq, Irq: a.Irq - b.Irq, Steal: a.Steal - b.Steal}
}
