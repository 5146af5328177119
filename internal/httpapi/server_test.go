package httpapi

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fieldbridge/fieldbridge/adapters"
	"github.com/fieldbridge/fieldbridge/internal/testpeer"
)

// reporter collects problems for config tests.
type reporter struct{ errs, warns []string }

func (r *reporter) Errorf(path, format string, args ...any) {
	r.errs = append(r.errs, path+": "+fmt.Sprintf(format, args...))
}
func (r *reporter) Warnf(path, format string, args ...any) {
	r.warns = append(r.warns, path+": "+fmt.Sprintf(format, args...))
}

func str(s string) *string { return &s }

func TestConfigCheck(t *testing.T) {
	certs := testpeer.GenerateCerts(t, t.TempDir())
	cases := []struct {
		name       string
		c          Config
		users      bool
		addr       string
		errs, warn string
	}{
		{name: "default", c: Config{}, addr: DefaultListen},
		{name: "off", c: Config{Listen: str("")}, addr: ""},
		{name: "off with tls", c: Config{Listen: str(""), TLS: &TLS{}}, warn: "tls: tls has no effect"},
		{name: "not host:port", c: Config{Listen: str("8980")}, errs: "listen: listen \"8980\" is not host:port"},
		{name: "broker's address", c: Config{Listen: str("127.0.0.1:1883")}, errs: "both listen on 127.0.0.1:1883"},
		{name: "node_exporter's port", c: Config{Listen: str("127.0.0.1:9100")}, warn: "node_exporter"},
		{name: "beyond loopback", c: Config{Listen: str("0.0.0.0:8980")}, warn: "beyond loopback (0.0.0.0:8980) without authentication"},
		{name: "port 0 beside the broker's", c: Config{Listen: str("127.0.0.1:0")}, addr: "127.0.0.1:0"},
		{name: "one of the broker's listeners", c: Config{Listen: str("127.0.0.1:9001")}, errs: "both listen on 127.0.0.1:9001"},
		{name: "basic auth in clear", c: Config{Listen: str("0.0.0.0:8980")}, users: true, warn: "passwords cross the network readable"},
		{name: "basic auth over tls", c: Config{Listen: str("0.0.0.0:8980"), TLS: &TLS{CertFile: certs.ServerCertFile, KeyFile: certs.ServerKeyFile}}, users: true, addr: "0.0.0.0:8980"},
		{name: "tls without key", c: Config{TLS: &TLS{CertFile: certs.ServerCertFile}}, errs: "tls.key_file: tls needs key_file"},
		{name: "tls missing file", c: Config{TLS: &TLS{CertFile: "/nonexistent.pem", KeyFile: certs.ServerKeyFile}}, errs: "tls.cert_file: cannot read /nonexistent.pem"},
		{name: "tls ok", c: Config{TLS: &TLS{CertFile: certs.ServerCertFile, KeyFile: certs.ServerKeyFile}}, addr: DefaultListen},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var r reporter
			tc.c.Check([]string{"127.0.0.1:1883", "127.0.0.1:9001", "127.0.0.1:0"}, tc.users, &r)
			check := func(what string, got []string, want string) {
				if want == "" && len(got) > 0 || want != "" && (len(got) != 1 || !strings.Contains(got[0], want)) {
					t.Errorf("%s: %q, want one containing %q", what, got, want)
				}
			}
			check("errors", r.errs, tc.errs)
			check("warnings", r.warns, tc.warn)
			if tc.errs == "" && tc.c.Addr() != tc.addr && tc.addr != "" {
				t.Errorf("addr %q, want %q", tc.c.Addr(), tc.addr)
			}
		})
	}
}

// users is an Authenticator with users given directly, standing in for the
// broker's user list (cmd/gateway tests the real one): a user whose
// password starts with "ro-" may not read the gateway's values. It
// requires authentication while it has users.
type users map[string]string

func (u users) Required() bool { return len(u) > 0 }

func (u users) Authenticate(name, password, gatewayID string) Access {
	p, ok := u[name]
	switch {
	case !ok || p != password:
		return Denied
	case strings.HasPrefix(p, "ro-") || gatewayID != "gw":
		return Forbidden
	}
	return Granted
}

// fakeAdapter has devices and no counters: the page and the metrics show
// an adapter without StatusReporter from its samples alone.
type fakeAdapter struct{ devs []*adapters.Device }

func (f fakeAdapter) Devices() []*adapters.Device            { return f.devs }
func (fakeAdapter) Run(context.Context, adapters.Sink) error { return nil }

func adapterOf(d ...*adapters.Device) adapters.Adapter { return fakeAdapter{d} }

type nullSink struct{}

func (nullSink) Publish([]adapters.Sample)           {}
func (nullSink) Availability(*adapters.Device, bool) {}

// newTestServer serves a gateway with one device on a free port.
func newTestServer(t *testing.T, c Config, auth Authenticator) (*Server, *Recorder, *adapters.Device) {
	t.Helper()
	var r reporter
	c.Check([]string{"127.0.0.1:1883"}, false, &r)
	if len(r.errs) > 0 {
		t.Fatal(r.errs)
	}
	dev := &adapters.Device{Name: "meter", Adapter: "bus", Points: []*adapters.Point{{ID: 0, Device: "meter", Name: "voltage", Unit: "V"}}}
	as := []adapters.Adapter{adapterOf(dev)}
	rec := NewRecorder(as, nullSink{}, time.Now())
	s, err := New(Options{Config: c, GatewayID: "gw", Version: "test", Source: FixedSource([]Bus{{Adapter: as[0], Recorder: rec}}, nil), Auth: auth})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, rec, dev
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func TestBasicAuth(t *testing.T) {
	s, _, _ := newTestServer(t, Config{Listen: str(freeAddr(t))}, users{"operator": "s3cret", "cloud": "ro-x"})
	base := "http://" + s.Addr()
	do := func(path, user, pass string) int {
		req, _ := http.NewRequest("GET", base+path, nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusUnauthorized && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic ") {
			t.Errorf("%s: 401 without a Basic challenge", path)
		}
		return resp.StatusCode
	}
	for _, path := range []string{"/", "/metrics", "/api/status", "/readyz"} {
		if code := do(path, "", ""); code != http.StatusUnauthorized {
			t.Errorf("%s without credentials: %d", path, code)
		}
		if code := do(path, "operator", "wrong"); code != http.StatusUnauthorized {
			t.Errorf("%s with a wrong password: %d", path, code)
		}
		if code := do(path, "operator", "s3cret"); code != http.StatusOK {
			t.Errorf("%s with credentials: %d", path, code)
		}
	}
	// The right password, but no right to the values: 403, no challenge.
	if code := do("/", "cloud", "ro-x"); code != http.StatusForbidden {
		t.Errorf("/ for a user who may not read the values: %d", code)
	}
	if got := s.authFailures.Load(); got != 4+1 {
		t.Errorf("%d refusals counted, want 5: four wrong passwords, one forbidden (a request without credentials is a challenge, not a failure)", got)
	}
	// Liveness tells nothing about the plant: probes need no password.
	if code := do("/healthz", "", ""); code != http.StatusOK {
		t.Errorf("/healthz without credentials: %d", code)
	}
	if code := do("/nope", "operator", "s3cret"); code != http.StatusNotFound {
		t.Errorf("/nope: %d", code)
	}
}

func TestTLS(t *testing.T) {
	certs := testpeer.GenerateCerts(t, t.TempDir())
	s, rec, dev := newTestServer(t, Config{Listen: str(freeAddr(t)), TLS: &TLS{CertFile: certs.ServerCertFile, KeyFile: certs.ServerKeyFile}}, nil)
	rec.Publish([]adapters.Sample{{Point: dev.Points[0], Value: adapters.Float32(229.8), Time: time.Now()}})
	rec.Availability(dev, true)
	pem, err := os.ReadFile(certs.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := client.Get("https://" + s.Addr() + "/api/status")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var st Status
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatal(err)
	}
	d := st.Buses[0].Devices[0]
	if d.State != "online" || string(d.Points[0].Value) != "229.8" || d.Points[0].Quality != "good" {
		t.Errorf("over TLS: %s", body)
	}
	// Plain HTTP to the TLS port is refused.
	if resp, err := http.Get("http://" + s.Addr() + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("plain HTTP answered on the TLS port")
		}
	}
}

// TestDefaultAddressTaken: a default address someone else holds leaves the
// HTTP side off with a warning; an address the config names is an error.
func TestDefaultAddressTaken(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	taken := l.Addr().String()
	c := Config{Listen: str(taken)}
	var r reporter
	c.Check(nil, false, &r)
	src := FixedSource(nil, nil)
	s, _ := New(Options{Config: c, Source: src})
	if err := s.Start(); err == nil || !strings.Contains(err.Error(), taken) {
		t.Errorf("named address taken: %v", err)
	}
	c.defaulted = true
	s, _ = New(Options{Config: c, Source: src})
	if err := s.Start(); err != nil || s.Addr() != "" {
		t.Errorf("default address taken: %v, serving on %q", err, s.Addr())
	}
	_ = s.Close()
}

func TestHumanSeconds(t *testing.T) {
	for sec, want := range map[float64]string{-1: "0.0 s", 0.44: "0.4 s", 12: "12 s", 300: "5 min", 3 * 3600: "3 h", 5 * 86400: "5 d"} {
		if got := humanSeconds(sec); got != want {
			t.Errorf("humanSeconds(%v) = %q, want %q", sec, got, want)
		}
	}
}

// TestBasicAuthFollowsTheUsers: whether requests authenticate is asked on
// every request: an Authenticator that has no users any more (a reload
// removed the last one) lets requests through, one that has them again
// asks.
func TestBasicAuthFollowsTheUsers(t *testing.T) {
	u := &switchable{}
	s, _, _ := newTestServer(t, Config{Listen: str(freeAddr(t))}, u)
	get := func() int {
		resp, err := http.Get("http://" + s.Addr() + "/api/status")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get(); code != http.StatusOK {
		t.Errorf("no users: %d", code)
	}
	u.on.Store(true)
	if code := get(); code != http.StatusUnauthorized {
		t.Errorf("users: %d", code)
	}
}

type switchable struct{ on atomic.Bool }

func (s *switchable) Required() bool                     { return s.on.Load() }
func (s *switchable) Authenticate(_, _, _ string) Access { return Denied }
