// Command genusers writes the user files for the load benchmark
// (bench/run.sh): N users named PREFIX0000001.. with password "pw-NAME".
//
// It writes into -out:
//
//	sipp-users.csv          SIPp injection file (all users):
//	                        name;[authentication username=name password=pw];
//	sipp-users-K-of-P.csv   the same users split round-robin into P disjoint
//	                        files, one per parallel sipp process (-split P[,P...])
//	sipedge-users.csv       name,password lines for `sipedge user import`
//	                        (plus the callee of the call test, -callee)
//	kamailio-db/htable      db_text table for Kamailio's htable module,
//	                        key = user name, value = MD5 HA1 over
//	                        name:realm:password (precomputed)
//	kamailio-db/version     db_text version table
//
// Only the standard library is used so it builds with the project toolchain.
package main

import (
	"bufio"
	"crypto/md5"
	"encoding/hex"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

func main() {
	n := flag.Int("n", 10000, "number of users")
	prefix := flag.String("prefix", "bu", "user name prefix")
	width := flag.Int("width", 7, "digits in user names (zero padded)")
	realm := flag.String("realm", "bench.example", "digest realm (for HA1)")
	out := flag.String("out", "bench/out/users", "output directory")
	splitList := flag.String("split", "1", "comma-separated list of P: also write the SIPp users split into P files (one set per P)")
	callee := flag.String("callee", "uas", "extra user for the call test (not in the SIPp files)")
	calleePW := flag.String("callee-password", "uas-secret", "password of -callee")
	flag.Parse()
	if *n <= 0 {
		log.Fatal("genusers: -n must be positive")
	}
	var splits []int
	for _, f := range strings.Split(*splitList, ",") {
		p, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || p <= 0 {
			log.Fatalf("genusers: bad -split value %q", f)
		}
		splits = append(splits, p)
	}
	dbDir := filepath.Join(*out, "kamailio-db")
	if err := os.MkdirAll(dbDir, 0o755); err != nil {
		log.Fatal(err)
	}

	all := create(filepath.Join(*out, "sipp-users.csv"))
	fmt.Fprintln(all.w, "SEQUENTIAL")
	parts := make([][]*file, len(splits))
	for k, p := range splits {
		for i := 0; i < p; i++ {
			f := create(filepath.Join(*out, fmt.Sprintf("sipp-users-%d-of-%d.csv", i+1, p)))
			fmt.Fprintln(f.w, "SEQUENTIAL")
			parts[k] = append(parts[k], f)
		}
	}
	se := create(filepath.Join(*out, "sipedge-users.csv"))
	ht := create(filepath.Join(dbDir, "htable"))
	fmt.Fprintln(ht.w, "id(int,auto) key_name(string) key_type(int) value_type(int) key_value(string) expires(int)")
	ver := create(filepath.Join(dbDir, "version"))
	fmt.Fprintln(ver.w, "table_name(string) table_version(int)")
	fmt.Fprintln(ver.w, "htable:2")

	// Fixed-width names, so a smaller set is a prefix of a larger one.
	w := *width
	if l := len(fmt.Sprint(*n)); l > w {
		w = l
	}
	for i := 1; i <= *n; i++ {
		name := fmt.Sprintf("%s%0*d", *prefix, w, i)
		pw := "pw-" + name
		sum := md5.Sum([]byte(name + ":" + *realm + ":" + pw))
		// field1 holds the whole [authentication] keyword: SIPp 3.6 does not
		// expand [fieldN] nested inside [authentication ...], but it does
		// expand keywords contained in an injected field.
		line := fmt.Sprintf("%s;[authentication username=%s password=%s];\n", name, name, pw)
		all.w.WriteString(line)
		for k, p := range splits {
			parts[k][(i-1)%p].w.WriteString(line)
		}
		fmt.Fprintf(se.w, "%s,%s\n", name, pw)
		fmt.Fprintf(ht.w, "%d:%s:0:0:%s:0\n", i, name, hex.EncodeToString(sum[:]))
	}
	if *callee != "" {
		sum := md5.Sum([]byte(*callee + ":" + *realm + ":" + *calleePW))
		fmt.Fprintf(se.w, "%s,%s\n", *callee, *calleePW)
		fmt.Fprintf(ht.w, "%d:%s:0:0:%s:0\n", *n+1, *callee, hex.EncodeToString(sum[:]))
	}
	files := []*file{all, se, ht, ver}
	for _, ps := range parts {
		files = append(files, ps...)
	}
	for _, f := range files {
		f.close()
	}
}

type file struct {
	f *os.File
	w *bufio.Writer
}

func create(path string) *file {
	f, err := os.Create(path)
	if err != nil {
		log.Fatal(err)
	}
	return &file{f: f, w: bufio.NewWriterSize(f, 1<<16)}
}

func (f *file) close() {
	if err := f.w.Flush(); err != nil {
		log.Fatal(err)
	}
	if err := f.f.Close(); err != nil {
		log.Fatal(err)
	}
}
