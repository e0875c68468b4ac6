package edge_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sipedge/sipedge/cli"
	"github.com/sipedge/sipedge/config"
	"github.com/sipedge/sipedge/edge/edgetest"
)

// selfSigned writes a self-signed certificate for 127.0.0.1 and its key.
func selfSigned(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sipedge test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "admin.crt"), filepath.Join(dir, "admin.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestAdminTLS: with admin.tls_cert/tls_key the API speaks HTTPS only, and
// the CLI, given the config, trusts the server's own certificate.
func TestAdminTLS(t *testing.T) {
	t.Parallel()
	cert, key := selfSigned(t)
	srv := edgetest.Start(t, edgetest.Base, func(c *config.Config) { c.Admin.TLSCert, c.Admin.TLSKey = cert, key })

	// Plain HTTP on the TLS port gets nothing useful.
	res, err := http.Get("http://" + srv.Admin + "/api/v1/status")
	if err == nil {
		res.Body.Close()
		if res.StatusCode != 400 {
			t.Errorf("plain HTTP to the TLS port: %s, want 400", res.Status)
		}
	}
	// A client that does not trust the certificate is refused.
	if _, err := http.Get("https://" + srv.Admin + "/"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("HTTPS without trusting the certificate: %v, want a certificate error", err)
	}

	cfgFile := filepath.Join(t.TempDir(), "cli.toml")
	toml := "[admin]\nlisten = \"" + srv.Admin + "\"\ntls_cert = \"" + cert + "\"\ntls_key = \"" + key + "\"\n"
	if err := os.WriteFile(cfgFile, []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if rc := cli.Main([]string{"status", "-c", cfgFile, "--token", srv.Token}, &out, &errb); rc != 0 {
		t.Fatalf("sipedge status over TLS: exit %d: %s", rc, errb.String())
	}
	if !strings.Contains(out.String(), "registrations") {
		t.Errorf("sipedge status over TLS:\n%s", out.String())
	}
	out.Reset()
	if rc := cli.Main([]string{"dashboard", "-c", cfgFile, "--token", srv.Token}, &out, &errb); rc != 0 {
		t.Fatalf("sipedge dashboard: exit %d: %s", rc, errb.String())
	}
	if want := "https://" + srv.Admin + "/#token=" + srv.Token; strings.TrimSpace(out.String()) != want {
		t.Errorf("sipedge dashboard printed %q, want %q", out.String(), want)
	}
}

// TestShutdownEndsEventStreams: an open dashboard (an event stream) does
// not hold up shutdown, and its stream ends.
func TestShutdownEndsEventStreams(t *testing.T) {
	t.Parallel()
	srv := edgetest.Start(t, edgetest.Base)
	req, _ := http.NewRequest("GET", "http://"+srv.Admin+"/api/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+srv.Token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	buf := make([]byte, 4096)
	if _, err := res.Body.Read(buf); err != nil {
		t.Fatalf("no first event: %v", err)
	}
	start := time.Now()
	srv.Stop()
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Errorf("shutdown took %v with an event stream open", d)
	}
	done := make(chan error, 1)
	go func() {
		for {
			if _, err := res.Body.Read(buf); err != nil {
				done <- err
				return
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Error("the event stream is still open after shutdown")
	}
}
