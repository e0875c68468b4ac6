// Package cli implements sipedge's subcommands. Results go to stdout,
// diagnostics to stderr; every read command takes --json with a stable
// format. Commands that inspect a running server talk to its admin API.
package cli

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"go.etcd.io/bbolt"

	"github.com/sipedge/sipedge/admin"
	"github.com/sipedge/sipedge/auth"
	"github.com/sipedge/sipedge/config"
	"github.com/sipedge/sipedge/edge"
)

// Main runs the command line and returns the exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = serve(args[1:], stdout, stderr)
	case "config":
		if len(args) < 2 || args[1] != "check" {
			err = usageErr("sipedge config check FILE")
		} else {
			err = configCheck(args[2:], stdout)
		}
	case "user":
		err = user(args[1:], stdout)
	case "peer":
		if len(args) < 2 || args[1] != "list" {
			err = usageErr("sipedge peer list [--json]")
		} else {
			err = peerList(args[2:], stdout)
		}
	case "call":
		err = callCmd(args[1:], stdout)
	case "status":
		err = status(args[1:], stdout)
	case "dashboard":
		err = dashboard(args[1:], stdout)
	case "probe":
		err = probe(args[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "sipedge", edge.Version)
	case "help", "-h", "--help":
		usage(stdout)
	default:
		fmt.Fprintf(stderr, "sipedge: unknown command %q\n", args[0])
		usage(stderr)
		return 2
	}
	if err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintln(stderr, "usage:", string(ue))
			return 2
		}
		fmt.Fprintln(stderr, "sipedge:", err)
		return 1
	}
	return 0
}

type usageError string

func (u usageError) Error() string { return string(u) }
func usageErr(s string) error      { return usageError(s) }

func usage(w io.Writer) {
	fmt.Fprint(w, `sipedge — a SIP edge server that makes VoIP work across NAT

Usage:
  sipedge serve [-c sipedge.toml]          run the server (embedded defaults without -c)
  sipedge config check FILE                validate a config file
  sipedge user add NAME [--password PW] [--nat auto|force|never]
  sipedge user del NAME
  sipedge user list [--json]
  sipedge user import FILE.csv             bulk add "name,password" lines (server stopped)
  sipedge peer list [--json]               registrations with their NAT flow and keepalive status
  sipedge call list [--json]               live calls, both media directions, alarms
  sipedge call show CALL-ID [--json]       one call in detail (live, or recent with its final counts)
  sipedge call recent [--json]             recent calls whose SIP messages are kept
  sipedge call trace CALL-ID [--json] [--raw]
                                           the call's SIP ladder, with the NAT fixes applied
  sipedge call hangup CALL-ID              end a call (BYE to both sides)
  sipedge status [--json]                  server overview
  sipedge dashboard                        print the web dashboard's link (with the token)
  sipedge probe [--json] [--lifetime] [--lifetime-max 120s] [--bind IP[:PORT]] SERVER[:PORT]
                                           from here: public address, NAT type (RFC 4787 / RFC 3489),
                                           SIP ALG, hairpinning, binding lifetime, advice for phones
  sipedge version

Common flags: -c FILE (config; gives data dir and admin address), --data-dir DIR,
--admin URL, --token TOKEN (default: read from DATA_DIR/admin.token).
`)
}

// common flags for commands that find the server or its data dir.
type common struct {
	cfgPath, dataDir, adminURL, token string
	jsonOut                           bool
}

func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.cfgPath, "c", "", "config file")
	fs.StringVar(&c.dataDir, "data-dir", "", "data directory (default from config, else ./sipedge-data)")
	fs.StringVar(&c.adminURL, "admin", "", "admin API URL (default from config, else http://127.0.0.1:5080)")
	fs.StringVar(&c.token, "token", "", "admin bearer token (default: $SIPEDGE_TOKEN or DATA_DIR/admin.token)")
	fs.BoolVar(&c.jsonOut, "json", false, "JSON output")
}

func (c *common) config() (*config.Config, error) {
	var cfg *config.Config
	if c.cfgPath != "" {
		var err error
		if cfg, err = config.Load(c.cfgPath); err != nil {
			return nil, err
		}
	} else {
		cfg = config.Default()
	}
	if c.dataDir != "" {
		cfg.DataDir = c.dataDir
	}
	return cfg, nil
}

func (c *common) client() (*apiClient, error) {
	cfg, err := c.config()
	if err != nil {
		return nil, err
	}
	url := c.adminURL
	if url == "" {
		url = "http://" + cfg.Admin.Listen
		if cfg.Admin.TLSCert != "" {
			url = "https://" + cfg.Admin.Listen
		}
	}
	hc := &http.Client{Timeout: 10 * time.Second}
	if cfg.Admin.TLSCert != "" {
		// Trust the server's own certificate too: it is often
		// self-signed.
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if pem, err := os.ReadFile(cfg.Admin.TLSCert); err == nil {
			pool.AppendCertsFromPEM(pem)
		}
		hc.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	}
	tok := c.token
	if tok == "" {
		tok = os.Getenv("SIPEDGE_TOKEN")
	}
	if tok == "" {
		tok = cfg.Admin.Token
	}
	if tok == "" {
		b, err := os.ReadFile(edge.TokenFile(cfg.DataDir))
		if err != nil {
			return nil, fmt.Errorf("no admin token: pass --token, set SIPEDGE_TOKEN, or run where %s is readable", edge.TokenFile(cfg.DataDir))
		}
		tok = strings.TrimSpace(string(b))
	}
	return &apiClient{base: strings.TrimRight(url, "/"), token: tok, hc: hc}, nil
}

// parse parses flags allowing them after positional arguments.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func serve(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c common
	c.register(fs)
	if _, err := parse(fs, args); err != nil {
		return usageErr("sipedge serve [-c sipedge.toml]")
	}
	cfg, err := c.config()
	if err != nil {
		return err
	}
	log := newLogger(cfg.Log, stderr)
	slog.SetDefault(log)
	for _, w := range cfg.Warnings() {
		log.Warn(w)
	}
	e, err := edge.Start(cfg, edge.Options{Logger: log})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "sipedge %s ready\n", edge.Version)
	for _, l := range e.Listeners() {
		fmt.Fprintf(stdout, "  SIP %s\n", l)
	}
	fmt.Fprintf(stdout, "  domains: %s\n", strings.Join(cfg.Domains, ", "))
	fmt.Fprintf(stdout, "  data:    %s\n", cfg.DataDir)
	if a := e.AdminAddr(); a != "" {
		fmt.Fprintf(stdout, "  admin:   http://%s (token in %s)\n", a, edge.TokenFile(cfg.DataDir))
	}
	cfgFlag := ""
	if c.cfgPath != "" {
		cfgFlag = " -c " + c.cfgPath
	}
	fmt.Fprintf(stdout, "Add a user:  sipedge user add alice --password 'secret'%s\n", cfgFlag)
	fmt.Fprintf(stdout, "Phones register as alice@%s; see them with: sipedge peer list%s\n", cfg.Domains[0], cfgFlag)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	s := <-sig
	log.Info("shutting down", "signal", s.String())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	e.Shutdown(ctx)
	return nil
}

func newLogger(l config.Log, w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(l.Level))
	opts := &slog.HandlerOptions{Level: lvl}
	if l.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func configCheck(args []string, stdout io.Writer) error {
	if len(args) != 1 {
		return usageErr("sipedge config check FILE")
	}
	cfg, err := config.Load(args[0])
	if err != nil {
		return err
	}
	for _, w := range cfg.Warnings() {
		fmt.Fprintln(stdout, "warning:", w)
	}
	fmt.Fprintf(stdout, "%s: ok (%d listeners, %d users, %d routes)\n", args[0], len(cfg.Listen), len(cfg.Users), len(cfg.Routes))
	return nil
}

func user(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return usageErr("sipedge user add|del|list|import ...")
	}
	fs := flag.NewFlagSet("user", flag.ContinueOnError)
	var c common
	c.register(fs)
	password := fs.String("password", "", "password (default: read a line from stdin)")
	nat := fs.String("nat", "", "NAT policy: auto|force|never")
	sub := args[0]
	pos, err := parse(fs, args[1:])
	if err != nil {
		return usageErr("sipedge user " + sub + " ...")
	}
	switch sub {
	case "add":
		if len(pos) != 1 {
			return usageErr("sipedge user add NAME [--password PW] [--nat MODE]")
		}
		pw := *password
		if pw == "" {
			line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
			pw = strings.TrimRight(line, "\r\n")
		}
		if pw == "" {
			return errors.New("empty password")
		}
		return withUsers(&c, func(api *apiClient) error {
			body, _ := json.Marshal(map[string]string{"name": pos[0], "password": pw, "nat": *nat})
			return api.do("POST", "/api/v1/users", body, nil)
		}, func(cfg *config.Config, st *auth.BoltUsers) error {
			if err := auth.ValidUserName(pos[0]); err != nil {
				return err
			}
			if err := st.Put(auth.NewUser(pos[0], cfg.Realm(), pw, *nat)); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "realm %q (offline: stored for this realm; use -c with the server's config)\n", cfg.Realm())
			return nil
		}, func() { fmt.Fprintf(stdout, "user %s added\n", pos[0]) })
	case "del":
		if len(pos) != 1 {
			return usageErr("sipedge user del NAME")
		}
		return withUsers(&c, func(api *apiClient) error {
			return api.do("DELETE", "/api/v1/users/"+pos[0], nil, nil)
		}, func(_ *config.Config, st *auth.BoltUsers) error {
			ok, err := st.Delete(pos[0])
			if err == nil && !ok {
				return fmt.Errorf("no such user %q", pos[0])
			}
			return err
		}, func() { fmt.Fprintf(stdout, "user %s deleted\n", pos[0]) })
	case "list":
		var users []admin.User
		err := withUsers(&c, func(api *apiClient) error {
			return api.do("GET", "/api/v1/users", nil, &users)
		}, func(cfg *config.Config, st *auth.BoltUsers) error {
			us, err := st.List()
			for _, u := range cfg.Users {
				users = append(users, admin.User{Name: u.Name, NAT: u.NAT, Source: "config"})
			}
			for _, u := range us {
				users = append(users, admin.User{Name: u.Name, NAT: u.NAT, Source: "store"})
			}
			sort.Slice(users, func(i, j int) bool { return users[i].Name < users[j].Name })
			return err
		}, nil)
		if err != nil {
			return err
		}
		if c.jsonOut {
			return writeJSON(stdout, users)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "USER\tNAT\tSOURCE")
		for _, u := range users {
			n := u.NAT
			if n == "" {
				n = "(default)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", u.Name, n, u.Source)
		}
		return tw.Flush()
	case "import":
		if len(pos) != 1 {
			return usageErr("sipedge user import FILE.csv")
		}
		cfg, err := c.config()
		if err != nil {
			return err
		}
		n, err := importUsers(cfg, pos[0])
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%d users imported for realm %q (passwords are stored as HA1 for this realm; use -c with the server's config)\n", n, cfg.Realm())
		return nil
	}
	return usageErr("sipedge user add|del|list|import ...")
}

// withUsers runs online against the admin API when a server answers, else
// offline against the data dir's store.
func withUsers(c *common, online func(*apiClient) error, offline func(*config.Config, *auth.BoltUsers) error, done func()) error {
	if api, err := c.client(); err == nil && api.alive() {
		if err := online(api); err != nil {
			return err
		}
		if done != nil {
			done()
		}
		return nil
	}
	cfg, err := c.config()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return err
	}
	db, err := bbolt.Open(filepath.Join(cfg.DataDir, "sipedge.db"), 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		return fmt.Errorf("open %s: %w (a running server holds it; is its admin API reachable?)", cfg.DataDir, err)
	}
	defer db.Close()
	st, err := auth.NewBoltUsers(db)
	if err != nil {
		return err
	}
	if err := offline(cfg, st); err != nil {
		return err
	}
	if done != nil {
		done()
	}
	return nil
}

func importUsers(cfg *config.Config, path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.FieldsPerRecord = -1
	var users []auth.User
	realm := cfg.Realm()
	for line := 1; ; line++ {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		if len(rec) < 2 {
			return 0, fmt.Errorf("%s:%d: want name,password[,nat]", path, line)
		}
		nat := ""
		if len(rec) > 2 {
			nat = rec[2]
		}
		if err := auth.ValidUserName(rec[0]); err != nil {
			return 0, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		users = append(users, auth.NewUser(rec[0], realm, rec[1], nat))
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return 0, err
	}
	db, err := bbolt.Open(filepath.Join(cfg.DataDir, "sipedge.db"), 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		return 0, fmt.Errorf("open %s: %w (stop the server first)", cfg.DataDir, err)
	}
	defer db.Close()
	st, err := auth.NewBoltUsers(db)
	if err != nil {
		return 0, err
	}
	if err := st.PutMany(users); err != nil {
		return 0, err
	}
	return len(users), nil
}

func peerList(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("peer list", flag.ContinueOnError)
	var c common
	c.register(fs)
	if _, err := parse(fs, args); err != nil {
		return usageErr("sipedge peer list [--json]")
	}
	api, err := c.client()
	if err != nil {
		return err
	}
	var peers []admin.Peer
	if err := api.do("GET", "/api/v1/peers", nil, &peers); err != nil {
		return err
	}
	if c.jsonOut {
		return writeJSON(stdout, peers)
	}
	var st admin.Status // what the peers are told: the external address
	if err := api.do("GET", "/api/v1/status", nil, &st); err == nil && st.External != nil {
		fmt.Fprintf(stdout, "sipedge is known outside as %s (%s)\n", st.External.Address, st.External.Source)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "AOR\tCONTACT (AS SENT)\tOBSERVED\tNAT\tSTATUS\tEXPIRES\tUSER AGENT")
	for _, p := range peers {
		n := "no"
		if p.NAT {
			n = "yes"
			if len(p.NATReasons) > 0 {
				n += " (" + p.NATReasons[0]
				if len(p.NATReasons) > 1 {
					n += fmt.Sprintf(" +%d", len(p.NATReasons)-1)
				}
				n += ")"
			}
		}
		status, expires := p.Status, fmt.Sprintf("%ds", p.ExpiresIn)
		if status == "" {
			status = "-"
		}
		if p.Kind == "trunk" {
			n, expires = "trunk", "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s/%s\t%s\t%s\t%s\t%s\n", p.AOR, p.Contact, p.Remote, p.Transport, n, status, expires, p.UserAgent)
	}
	return tw.Flush()
}

func status(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	var c common
	c.register(fs)
	if _, err := parse(fs, args); err != nil {
		return usageErr("sipedge status [--json]")
	}
	api, err := c.client()
	if err != nil {
		return err
	}
	var st admin.Status
	if err := api.do("GET", "/api/v1/status", nil, &st); err != nil {
		return err
	}
	if c.jsonOut {
		return writeJSON(stdout, st)
	}
	fmt.Fprintf(stdout, "sipedge %s, up %s\n", st.Version, (time.Duration(st.Uptime) * time.Second).String())
	for _, l := range st.Listeners {
		fmt.Fprintf(stdout, "  listening %s\n", l)
	}
	if x := st.External; x != nil {
		fmt.Fprintf(stdout, "  external address %s (%s: %s, since %s)\n", x.Address, x.Source, x.Detail, x.Learned.Format(time.RFC3339))
	}
	for _, m := range st.PortMappings {
		fmt.Fprintf(stdout, "  router forwards %s %s -> %s (%s)\n", m.Transport, m.External, m.Internal, m.Protocol)
	}
	fmt.Fprintf(stdout, "  domains %s\n", strings.Join(st.Domains, ", "))
	fmt.Fprintf(stdout, "  registrations %d (%d NATed) in %d AORs\n", st.Registrations, st.NATed, st.AORs)
	fmt.Fprintf(stdout, "  transactions %d server, %d client\n", st.Transactions["server"], st.Transactions["client"])
	return nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

type apiClient struct {
	base, token string
	hc          *http.Client
}

func (a *apiClient) alive() bool {
	req, _ := http.NewRequest("GET", a.base+"/api/v1/status", nil)
	req.Header.Set("Authorization", "Bearer "+a.token)
	hc := *a.hc
	hc.Timeout = time.Second
	res, err := hc.Do(req)
	if err != nil {
		return false
	}
	res.Body.Close()
	return res.StatusCode == 200
}

func (a *apiClient) do(method, path string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, a.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := a.hc.Do(req)
	if err != nil {
		return fmt.Errorf("admin API %s: %w (is sipedge running?)", a.base, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 64<<20))
	if res.StatusCode >= 300 {
		var e struct{ Error string }
		_ = json.Unmarshal(b, &e)
		if e.Error == "" {
			e.Error = strings.TrimSpace(string(b))
		}
		return fmt.Errorf("admin API: %s: %s", res.Status, e.Error)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}
