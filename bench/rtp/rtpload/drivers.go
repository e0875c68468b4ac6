package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// streamPhones are one stream's two phone sockets.
type streamPhones struct{ A, B netip.AddrPort }

// streamPorts are where each phone sends: phone A to A, phone B to B.
type streamPorts struct {
	A, B   netip.AddrPort
	direct bool // no relay: A is phone B itself and B is phone A
}

// driver sets up a relay under test for a set of streams.
type driver interface {
	// Setup creates one relay session per stream.
	Setup(p []streamPhones) ([]streamPorts, error)
	// PID is the relay process to account CPU for (0: none).
	PID() int
	// Stats is the relay's own view, if it has one.
	Stats() string
	// Stop ends the relay process (by its PID) and waits for it.
	Stop() error
}

// direct is "no relay": each phone sends straight to the other.
type direct struct{}

func (direct) Setup(p []streamPhones) ([]streamPorts, error) {
	out := make([]streamPorts, len(p))
	for i, s := range p {
		out[i] = streamPorts{A: s.B, B: s.A, direct: true}
	}
	return out, nil
}
func (direct) PID() int      { return 0 }
func (direct) Stats() string { return "" }
func (direct) Stop() error   { return nil }

// child is a relay process we started and must stop.
type child struct {
	cmd     *exec.Cmd
	done    chan struct{} // closed when the process has exited
	waitErr error         // its exit status, valid once done is closed
}

// exited reports whether the process has already ended, and how.
func (c *child) exited() (bool, error) {
	select {
	case <-c.done:
		return true, c.waitErr
	default:
		return false, nil
	}
}

func startChild(name string, args []string, stdout io.Writer, logPath string) (*child, io.WriteCloser, io.Reader, error) {
	cmd := exec.Command(name, args...)
	var stdin io.WriteCloser
	var out io.Reader
	var err error
	if stdout == nil {
		if stdin, err = cmd.StdinPipe(); err != nil {
			return nil, nil, nil, err
		}
		if out, err = cmd.StdoutPipe(); err != nil {
			return nil, nil, nil, err
		}
	} else {
		cmd.Stdout = stdout
	}
	if logPath != "" {
		f, err := os.Create(logPath)
		if err != nil {
			return nil, nil, nil, err
		}
		cmd.Stderr = f
		if stdout == nil {
			defer f.Close() // the child keeps its own descriptor
		} else {
			cmd.Stdout = f
			defer f.Close()
		}
	} else {
		cmd.Stderr = os.Stderr
	}
	// Its own process group, so a ^C to rtpload's terminal does not reach
	// it before rtpload stops it; rtpload kills it by PID on every path.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, nil, nil, err
	}
	c := &child{cmd: cmd, done: make(chan struct{})}
	go func() {
		c.waitErr = cmd.Wait()
		close(c.done)
	}()
	return c, stdin, out, nil
}

// stop sends SIGTERM to the child's PID, then SIGKILL after grace.
func (c *child) stop(grace time.Duration) error {
	if c == nil {
		return nil
	}
	if gone, err := c.exited(); gone {
		return fmt.Errorf("relay exited before it was stopped: %v", err)
	}
	_ = syscall.Kill(c.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-c.done:
		return nil
	case <-time.After(grace):
	}
	_ = syscall.Kill(c.cmd.Process.Pid, syscall.SIGKILL)
	<-c.done
	return nil
}

// relayd drives bench/rtp/relayd (reference, reference-epoll, sipedge).
type relayd struct {
	ip    netip.Addr
	c     *child
	in    io.WriteCloser
	out   *bufio.Reader
	stats string
}

func startRelayd(bin, impl string, ip netip.Addr, extra []string, logPath string) (*relayd, error) {
	args := append([]string{"-impl", impl, "-ip", ip.String()}, extra...)
	c, in, out, err := startChild(bin, args, nil, logPath)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	r := &relayd{ip: ip, c: c, in: in, out: bufio.NewReader(out)}
	line, err := r.readLine(10 * time.Second)
	if err != nil || !strings.HasPrefix(line, "ready") {
		r.Stop()
		return nil, fmt.Errorf("relayd did not start (%q, %v); see %s", line, err, logPath)
	}
	return r, nil
}

func (r *relayd) readLine(timeout time.Duration) (string, error) {
	type res struct {
		s   string
		err error
	}
	ch := make(chan res, 1)
	go func() {
		s, err := r.out.ReadString('\n')
		ch <- res{strings.TrimSpace(s), err}
	}()
	select {
	case x := <-ch:
		return x.s, x.err
	case <-time.After(timeout):
		return "", errors.New("timeout waiting for relayd")
	}
}

func (r *relayd) Setup(p []streamPhones) ([]streamPorts, error) {
	// Pipeline all commands, then read the answers in order.
	errc := make(chan error, 1)
	go func() {
		w := bufio.NewWriter(r.in)
		for i, s := range p {
			fmt.Fprintf(w, "create bench-%d %s %s\n", i, s.A, s.B)
		}
		errc <- w.Flush()
	}()
	ports := make([]streamPorts, len(p))
	for i := range p {
		line, err := r.readLine(30 * time.Second)
		if err != nil {
			return nil, err
		}
		var pa, pb uint16
		if _, err := fmt.Sscanf(line, "ok %d %d", &pa, &pb); err != nil {
			return nil, fmt.Errorf("relayd: create %d: %s", i, line)
		}
		ports[i] = streamPorts{A: netip.AddrPortFrom(r.ip, pa), B: netip.AddrPortFrom(r.ip, pb)}
	}
	return ports, <-errc
}

func (r *relayd) PID() int { return r.c.cmd.Process.Pid }

func (r *relayd) Stats() string {
	if r.stats != "" {
		return r.stats
	}
	if _, err := io.WriteString(r.in, "stats\n"); err != nil {
		return ""
	}
	line, _ := r.readLine(5 * time.Second)
	r.stats = strings.TrimPrefix(line, "stats ")
	return r.stats
}

func (r *relayd) Stop() error {
	if gone, err := r.c.exited(); gone {
		return fmt.Errorf("relayd exited before it was stopped: %v", err)
	}
	if r.in != nil {
		_, _ = io.WriteString(r.in, "quit\n")
		r.in.Close()
	}
	select {
	case <-r.c.done:
		return nil
	case <-time.After(5 * time.Second):
	}
	return r.c.stop(2 * time.Second)
}
