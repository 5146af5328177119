package bridge

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fieldbridge/fieldbridge/internal/testpeer"
)

// problems records what Check reports.
type problems struct{ errs, warns []string }

func (p *problems) Errorf(path, format string, args ...any) {
	p.errs = append(p.errs, path+": "+fmt.Sprintf(format, args...))
}

func (p *problems) Warnf(path, format string, args ...any) {
	p.warns = append(p.warns, path+": "+fmt.Sprintf(format, args...))
}

// has reports whether one of list starts with path and contains text.
func has(list []string, path, text string) bool {
	return slices.ContainsFunc(list, func(s string) bool {
		return strings.HasPrefix(s, path+": ") && strings.Contains(s, text)
	})
}

func TestCheckDefaults(t *testing.T) {
	c := Config{
		Upstreams: []Upstream{{URL: "tls://broker.example.com"}, {URL: "tcp://backup.example.com"}},
		Forward:   []ForwardRule{{Filter: "plant1/#", Prefix: "site-a/"}},
		Subscribe: []SubscribeRule{{Filter: "site-a/plant1/+/+/set", StripPrefix: "site-a/"}},
	}
	var p problems
	c.Check("plant1", "/var/lib/fieldbridge", &p)
	if len(p.errs)+len(p.warns) > 0 {
		t.Fatalf("problems: %+v", p)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"client id", c.clientID, "plant1"},
		{"status topic", c.StatusTopic, "site-a/plant1/status"},
		{"tls port", c.Upstreams[0].u.Host, "broker.example.com:8883"},
		{"tcp port", c.Upstreams[1].u.Host, "backup.example.com:1883"},
		{"keepalive", c.Keepalive, 30 * time.Second},
		{"ack timeout", c.AckTimeout, 30 * time.Second},
		{"connect timeout", c.ConnectTimeout, 10 * time.Second},
		{"backoff", [2]time.Duration{c.BackoffInitial, c.BackoffMax}, [2]time.Duration{time.Second, time.Minute}},
		{"failover", c.FailoverAfter, 3},
		{"inflight", c.Inflight, Inflight{}},
		{"max inflight", c.MaxInflight, DefaultMaxInflight},
		{"max rate", c.MaxRate, 0.0},
		{"clean session", *c.CleanSession, true},
		{"forward qos", *c.Forward[0].QoS, 1},
		{"retain", c.Forward[0].Retain, RetainKeep},
		{"subscribe qos", *c.Subscribe[0].QoS, 1},
		{"dir", c.Buffer.Dir, "/var/lib/fieldbridge/queue"},
		{"max bytes", c.Buffer.MaxBytes, ByteSize(512 << 20)},
		{"max age", *c.Buffer.MaxAge, 168 * time.Hour},
		{"sync", c.Buffer.Sync, SyncPolicy{Interval: 100 * time.Millisecond}},
		{"when full", c.Buffer.WhenFull, DropOldest},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
}

func TestCheckErrors(t *testing.T) {
	dir := t.TempDir()
	certs := testpeer.GenerateCerts(t, dir)
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	neg := -1
	three := 3
	c := Config{
		Upstreams: []Upstream{
			{URL: "http://broker.example.com"},
			{URL: "tls://user:hunter2@broker.example.com"},
			{URL: "tcp://"},
			{URL: ""},
		},
		Password:     "x",
		PasswordFile: filepath.Join(dir, "missing.pass"),
		TLS:          TLS{CAFile: garbage, CertFile: certs.ClientCertFile, InsecureSkipVerify: true},
		Keepalive:    1500 * time.Millisecond,
		MaxInflight:  70000,
		MaxRate:      -1,
		BackoffMax:   10 * time.Millisecond,
		Forward: []ForwardRule{
			{Filter: "plant1/#/x", Prefix: "site/+/", Batch: &Batch{MaxRecords: -1}},
			{Filter: "a/b", Prefix: "site", QoS: &three},
			{Filter: "a/b", Prefix: "site"},
		},
		Subscribe: []SubscribeRule{
			{Filter: "other/+/set", StripPrefix: "site-a/", QoS: &neg},
			{Filter: "a+/b"},
		},
		StatusTopic: "x/#",
		Buffer:      Buffer{MaxBytes: 1000},
	}
	var p problems
	c.Check("plant1", "/data", &p)
	want := []struct{ path, text string }{
		{"upstreams[0].url", `unknown scheme "http"`},
		{"upstreams[1].url", "carries credentials"},
		{"upstreams[2].url", "has no host"},
		{"upstreams[3].url", "url is required"},
		{"password_file", "not both"},
		{"tls.ca_file", "holds no PEM certificate"},
		{"tls.key_file", "cert_file needs key_file"},
		{"keepalive", "whole seconds"},
		{"max_inflight", "between 64 and 65535"},
		{"max_rate", "between 0.01 and 1000000"},
		{"forward[0].batch.topic", "needs the cloud topic"},
		{"forward[0].batch.max_records", "between 1 and 100000"},
		{"backoff_max", "below backoff_initial"},
		{"forward[0].filter", "'#' must be the last level"},
		{"forward[0].prefix", "wildcard"},
		{"forward[1].qos", "qos must be 0, 1 or 2, got 3"},
		{"forward[2].filter", "same filter and prefix"},
		{"subscribe[0].strip_prefix", "does not start with strip_prefix"},
		{"subscribe[0].qos", "got -1"},
		{"subscribe[1].filter", "'+' must stand alone"},
		{"status_topic", "wildcard"},
		{"buffer.max_bytes", "at least 1MiB"},
	}
	for _, w := range want {
		if !has(p.errs, w.path, w.text) {
			t.Errorf("no error %s: …%s…", w.path, w.text)
		}
	}
	if len(p.errs) != len(want) {
		t.Errorf("%d errors, want %d:\n%s", len(p.errs), len(want), strings.Join(p.errs, "\n"))
	}
	if !has(p.warns, "tls.insecure_skip_verify", "verification is off") || !has(p.warns, "forward[1].prefix", "does not end with '/'") {
		t.Errorf("warnings: %s", strings.Join(p.warns, "\n"))
	}
	for _, e := range p.errs {
		if strings.Contains(e, "hunter2") {
			t.Errorf("a password leaked into an error: %s", e)
		}
	}
}

func TestCheckFiles(t *testing.T) {
	dir := t.TempDir()
	certs := testpeer.GenerateCerts(t, dir)
	pass := filepath.Join(dir, "upstream.pass")
	if err := os.WriteFile(pass, []byte("  s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := func() Config {
		return Config{
			Upstreams: []Upstream{{URL: "tls://127.0.0.1:8883"}},
			Forward:   []ForwardRule{{Filter: "#"}},
		}
	}

	c := base()
	c.Username, c.PasswordFile = "gw", pass
	c.TLS = TLS{CAFile: certs.CAFile, CertFile: certs.ClientCertFile, KeyFile: certs.ClientKeyFile}
	var p problems
	c.Check("gw", dir, &p)
	if len(p.errs) > 0 {
		t.Fatalf("errors: %v", p.errs)
	}
	if c.Password != "s3cret" {
		t.Errorf("password from file = %q, want it trimmed", string(c.Password))
	}
	if c.StatusTopic != "gw/status" {
		t.Errorf("status topic without prefix = %q", c.StatusTopic)
	}

	cases := []struct {
		name, path, text string
		edit             func(*Config)
	}{
		{"missing CA", "tls.ca_file", "no such file", func(c *Config) { c.TLS.CAFile = filepath.Join(dir, "nope.pem") }},
		{"CA is a key", "tls.ca_file", "holds no PEM certificate", func(c *Config) { c.TLS.CAFile = certs.ClientKeyFile }},
		{"missing key", "tls.key_file", "no such file", func(c *Config) {
			c.TLS.CertFile, c.TLS.KeyFile = certs.ClientCertFile, filepath.Join(dir, "nope.key")
		}},
		{"key of another cert", "tls.cert_file", "private key does not match", func(c *Config) {
			c.TLS.CertFile, c.TLS.KeyFile = certs.ClientCertFile, certs.UntrustedKeyFile
		}},
		{"key without cert", "tls.cert_file", "key_file needs cert_file", func(c *Config) { c.TLS.KeyFile = certs.ClientKeyFile }},
		{"missing password file", "password_file", "no such file", func(c *Config) {
			c.Username, c.PasswordFile = "gw", filepath.Join(dir, "nope")
		}},
		{"password without user", "username", "needs a username", func(c *Config) { c.Password = "x" }},
		{"no upstream", "upstreams", "at least one upstream", func(c *Config) { c.Upstreams = nil }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			tc.edit(&c)
			var p problems
			c.Check("gw", dir, &p)
			if !has(p.errs, tc.path, tc.text) {
				t.Errorf("want error %s: …%s…; got %v", tc.path, tc.text, p.errs)
			}
		})
	}

	t.Run("qos 2 with a persistent session", func(t *testing.T) {
		c := base()
		two, off := 2, false
		c.Forward[0].QoS, c.CleanSession = &two, &off
		var p problems
		c.Check("gw", dir, &p)
		if !has(p.errs, "forward[0].qos", "needs clean_session: true") {
			t.Errorf("errors: %v", p.errs)
		}
	})

	t.Run("tls settings for tcp", func(t *testing.T) {
		c := base()
		c.Upstreams[0].URL = "tcp://127.0.0.1"
		c.TLS.ServerName = "x"
		var p problems
		c.Check("gw", dir, &p)
		if !has(p.warns, "tls", "not used") {
			t.Errorf("warnings: %v", p.warns)
		}
	})
}

func TestSecretIsNotPrinted(t *testing.T) {
	c := Config{Password: "hunter2", Username: "u", Upstreams: []Upstream{{URL: "tcp://h"}}}
	var p problems
	c.Check("gw", t.TempDir(), &p)
	if c.Password != "hunter2" {
		t.Fatalf("password %q", string(c.Password))
	}
	for _, s := range []string{fmt.Sprint(c.Password), fmt.Sprintf("%v %+v %#v %s", c, c, c, c.Password)} {
		if strings.Contains(s, "hunter2") {
			t.Errorf("secret printed: %s", s)
		}
	}
}

func TestUnits(t *testing.T) {
	sizes := map[string]ByteSize{
		"512MiB": 512 << 20, "2GiB": 2 << 30, "100MB": 100e6, "64 KiB": 64 << 10, "1048576": 1 << 20,
		"1.5GiB": 3 << 29, "10k": 10 << 10, "7B": 7,
	}
	for in, want := range sizes {
		var s ByteSize
		if err := s.UnmarshalText([]byte(in)); err != nil || s != want {
			t.Errorf("ByteSize(%q) = %d, %v; want %d", in, s, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "12 parsecs", "-1MiB", "1e30GiB"} {
		var s ByteSize
		if err := s.UnmarshalText([]byte(in)); err == nil {
			t.Errorf("ByteSize(%q) = %d, want an error", in, s)
		}
	}
	if s := ByteSize(512 << 20).String(); s != "512MiB" {
		t.Errorf("String = %s", s)
	}

	var p SyncPolicy
	if err := p.UnmarshalText([]byte("always")); err != nil || !p.Always || p.interval() != 0 {
		t.Errorf("always: %+v %v", p, err)
	}
	if err := p.UnmarshalText([]byte("250ms")); err != nil || p.Always || p.interval() != 250*time.Millisecond {
		t.Errorf("250ms: %+v %v", p, err)
	}
	for _, in := range []string{"0", "-1s", "often"} {
		if err := p.UnmarshalText([]byte(in)); err == nil {
			t.Errorf("sync %q accepted", in)
		}
	}

	var w WhenFull
	if err := w.UnmarshalText([]byte("drop_newest")); err != nil || w != DropNewest || w.policy().String() != "drop-newest" {
		t.Errorf("drop_newest: %v %v", w, err)
	}
	if err := w.UnmarshalText([]byte("drop_everything")); err == nil {
		t.Error("unknown when_full accepted")
	}
	var r RetainMode
	if err := r.UnmarshalText([]byte("false")); err != nil || r != RetainFalse {
		t.Errorf("retain false: %v %v", r, err)
	}
	if err := r.UnmarshalText([]byte("true")); err == nil {
		t.Error("retain true accepted")
	}
}
