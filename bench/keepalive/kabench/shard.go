package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// One process may hold only RLIMIT_NOFILE sockets, and raising the hard
// limit takes CAP_SYS_RESOURCE (this machine: hard limit 20,000, and root
// without that capability). So the phones live in shard processes — kabench
// started again with -shard — each holding at most the hard limit minus a
// margin, driven by the main kabench over its stdin/stdout with one JSON
// command and one JSON reply per line. Every shard reads the same clock
// (CLOCK_MONOTONIC from a common base), so windows and arrival bins line
// up across shards.

type shardCmd struct {
	Cmd      string  `json:"cmd"`
	Tag      string  `json:"tag,omitempty"`
	Interval int64   `json:"interval,omitempty"`
	Rate     float64 `json:"rate,omitempty"`
	Limit    int64   `json:"limit,omitempty"`
	From     int64   `json:"from,omitempty"`
	To       int64   `json:"to,omitempty"`
}

type shardReply struct {
	Err      string         `json:"err,omitempty"`
	Reg      *RegResult     `json:"reg,omitempty"`
	Stats    *wstats        `json:"stats,omitempty"`
	PerPhone map[string]int `json:"per_phone,omitempty"`
	Bins     []uint32       `json:"bins,omitempty"`
}

// shardMain serves commands on stdin until "quit" or EOF.
func shardMain(first, n, workers, srvPort int, monoBase int64, maxRun time.Duration) {
	if err := raiseNofile(n + 256); err != nil {
		fatal("shard %d: %v", first, err)
	}
	fl, err := newFleet(first, n, workers, "ka", domain, [4]byte{127, 0, 0, 1}, srvPort, newClock(monoBase), maxRun)
	if err != nil {
		fatal("shard %d: %v", first, err)
	}
	defer fl.close()
	in := json.NewDecoder(bufio.NewReader(os.Stdin))
	out := json.NewEncoder(os.Stdout)
	if err := out.Encode(shardReply{}); err != nil { // ready
		return
	}
	for {
		var c shardCmd
		if err := in.Decode(&c); err != nil {
			return
		}
		var r shardReply
		switch c.Cmd {
		case "reset":
			fl.reset(c.Tag)
			fl.interval.Store(c.Interval)
		case "register":
			reg := fl.register(c.Rate, time.Duration(c.Limit))
			r.Reg = &reg
		case "window":
			fl.window(c.From, c.To)
		case "stats":
			st := fl.stats()
			r.Stats = &st
			r.PerPhone = map[string]int{}
			for _, k := range fl.winCounts() {
				r.PerPhone[strconv.Itoa(int(k))]++
			}
		case "bins":
			r.Bins = fl.binsBetween(c.From, c.To)
		case "quit":
			_ = out.Encode(r)
			return
		default:
			r.Err = "unknown command " + c.Cmd
		}
		if err := out.Encode(r); err != nil {
			return
		}
	}
}

// shardProc is one shard seen from the main process.
type shardProc struct {
	cmd   *exec.Cmd
	pid   int
	first int
	n     int
	in    io.WriteCloser
	enc   *json.Encoder
	dec   *json.Decoder
	mu    sync.Mutex
}

func (s *shardProc) call(c shardCmd) (shardReply, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var r shardReply
	if err := s.enc.Encode(c); err != nil {
		return r, fmt.Errorf("shard %d: %w", s.first, err)
	}
	if err := s.dec.Decode(&r); err != nil {
		return r, fmt.Errorf("shard %d: %w", s.first, err)
	}
	if r.Err != "" {
		return r, fmt.Errorf("shard %d: %s", s.first, r.Err)
	}
	return r, nil
}

// phones is the whole fleet: every shard.
type phones struct {
	n      int
	shards []*shardProc
	clk    clock
}

// startPhones starts shards of at most perShard phones each, with
// workers epoll workers in all (at least one per shard).
func startPhones(n, perShard, workers, srvPort int, maxRun time.Duration) (*phones, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	base := monoNow()
	p := &phones{n: n, clk: newClock(base)}
	k := (n + perShard - 1) / perShard
	per := (n + k - 1) / k
	wps := max(1, workers/k)
	for first := 0; first < n; first += per {
		cnt := min(per, n-first)
		cmd := exec.Command(exe, "-shard", "-shard-first", strconv.Itoa(first), "-shard-n", strconv.Itoa(cnt),
			"-workers", strconv.Itoa(wps), "-shard-srv-port", strconv.Itoa(srvPort),
			"-shard-base", strconv.FormatInt(base, 10), "-shard-max-run", maxRun.String())
		cmd.Stderr = os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		in, err := cmd.StdinPipe()
		if err != nil {
			p.close()
			return nil, err
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			p.close()
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			p.close()
			return nil, err
		}
		s := &shardProc{cmd: cmd, pid: cmd.Process.Pid, first: first, n: cnt, in: in,
			enc: json.NewEncoder(in), dec: json.NewDecoder(bufio.NewReader(out))}
		p.shards = append(p.shards, s)
	}
	for _, s := range p.shards {
		var ready shardReply
		if err := s.dec.Decode(&ready); err != nil {
			p.close()
			return nil, fmt.Errorf("shard %d did not start: %w", s.first, err)
		}
	}
	return p, nil
}

// close stops every shard (quit, then SIGKILL by PID after 5 s).
func (p *phones) close() {
	for _, s := range p.shards {
		_ = s.enc.Encode(shardCmd{Cmd: "quit"})
		_ = s.in.Close()
	}
	for _, s := range p.shards {
		done := make(chan struct{})
		go func() { _ = s.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = s.cmd.Process.Kill()
			<-done
		}
	}
}

func (p *phones) pids() []int {
	var out []int
	for _, s := range p.shards {
		out = append(out, s.pid)
	}
	return out
}

func (p *phones) now() int64 { return p.clk.now() }

// all sends c to every shard at once and returns the replies in order.
func (p *phones) all(c func(s *shardProc) shardCmd) ([]shardReply, error) {
	rs := make([]shardReply, len(p.shards))
	errs := make([]error, len(p.shards))
	var wg sync.WaitGroup
	for i, s := range p.shards {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rs[i], errs[i] = s.call(c(s))
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return rs, err
		}
	}
	return rs, nil
}

func (p *phones) reset(tag string, interval time.Duration) error {
	_, err := p.all(func(*shardProc) shardCmd { return shardCmd{Cmd: "reset", Tag: tag, Interval: int64(interval)} })
	return err
}

// register registers every phone, rate per second in all (shared by the
// shards in proportion to their size).
func (p *phones) register(rate float64, limit time.Duration) (RegResult, error) {
	rs, err := p.all(func(s *shardProc) shardCmd {
		return shardCmd{Cmd: "register", Rate: rate * float64(s.n) / float64(p.n), Limit: int64(limit)}
	})
	out := RegResult{Rate: rate}
	for _, r := range rs {
		if r.Reg == nil {
			continue
		}
		out.SendS = max(out.SendS, r.Reg.SendS)
		out.CompleteS = max(out.CompleteS, r.Reg.CompleteS)
		out.Registered += r.Reg.Registered
		out.Failed += r.Reg.Failed
		out.Retries += r.Reg.Retries
		out.LastSentAt = max(out.LastSentAt, r.Reg.LastSentAt)
		for k, v := range r.Reg.Codes {
			if out.Codes == nil {
				out.Codes = map[string]int64{}
			}
			out.Codes[k] += v
		}
	}
	return out, err
}

func (p *phones) window(from, to int64) error {
	_, err := p.all(func(*shardProc) shardCmd { return shardCmd{Cmd: "window", From: from, To: to} })
	return err
}

// stats sums the shards' counters and per-phone window counts.
func (p *phones) stats() (wstats, map[string]int, error) {
	rs, err := p.all(func(*shardProc) shardCmd { return shardCmd{Cmd: "stats"} })
	var st wstats
	per := map[string]int{}
	for _, r := range rs {
		if r.Stats != nil {
			st.add(*r.Stats)
		}
		for k, v := range r.PerPhone {
			per[k] += v
		}
	}
	return st, per, err
}

// bins sums the shards' 10 ms arrival bins over [from, to).
func (p *phones) bins(from, to int64) []uint32 {
	rs, err := p.all(func(*shardProc) shardCmd { return shardCmd{Cmd: "bins", From: from, To: to} })
	if err != nil {
		logf("bins: %v", err)
	}
	var out []uint32
	for _, r := range rs {
		if out == nil {
			out = make([]uint32, len(r.Bins))
		}
		for i := range min(len(out), len(r.Bins)) {
			out[i] += r.Bins[i]
		}
	}
	return out
}

// fdHardLimit is this process's RLIMIT_NOFILE hard limit.
func fdHardLimit() int {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return 1024
	}
	return int(min(lim.Max, 1<<20))
}
