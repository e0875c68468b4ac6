package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/sipedge/sipedge/natprobe"
)

const probeUsage = "sipedge probe [--json] [--lifetime] [--lifetime-max 120s] [--bind IP[:PORT]] [--quiet] SERVER[:PORT]"

// probe runs the NAT behaviour probe against a STUN server: the report
// goes to stdout (text or --json), progress to stderr. A completed probe
// exits 0 however bad the NAT; no answer at all is an error (with --json
// the report, saying "UDP blocked", is still printed).
func probe(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	jsonOut := fs.Bool("json", false, "JSON output")
	lifetime := fs.Bool("lifetime", false, "also measure how long an idle NAT binding lives (takes up to --lifetime-max)")
	lifetimeMax := fs.Duration("lifetime-max", natprobe.DefaultLifetimeMax, "longest idle time the lifetime test waits for (implies --lifetime)")
	bind := fs.String("bind", "", "local address of the probe's main socket: IP, IP:PORT or :PORT")
	quiet := fs.Bool("quiet", false, "no progress on stderr")
	pos, err := parse(fs, args)
	if err != nil || len(pos) != 1 {
		return usageErr(probeUsage)
	}
	if *lifetimeMax < time.Second || *lifetimeMax > 10*time.Minute {
		return usageErr(probeUsage + " (--lifetime-max between 1s and 10m)")
	}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "lifetime-max" {
			*lifetime = true
		}
	})
	cfg := natprobe.Config{Server: pos[0], Bind: *bind, Lifetime: *lifetime, LifetimeMax: *lifetimeMax}
	if !*quiet {
		cfg.Progress = func(s string) { fmt.Fprintln(stderr, "probe:", s) }
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := natprobe.Probe(ctx, cfg)
	if err != nil {
		if rep != nil && *jsonOut {
			_ = writeJSON(stdout, rep)
		}
		return errors.New(strings.TrimPrefix(err.Error(), "natprobe: "))
	}
	if *jsonOut {
		return writeJSON(stdout, rep)
	}
	return natprobe.WriteText(stdout, rep)
}
