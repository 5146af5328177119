package httpapi

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
)

// DefaultListen is where the HTTP side listens when the config does not
// say: loopback only, and not 9100, which node_exporter holds on most
// machines that are scraped.
const DefaultListen = "127.0.0.1:8980"

// Config is the `http:` section.
type Config struct {
	// Listen is host:port (default 127.0.0.1:8980); "" turns the HTTP side
	// off. A pointer, so that an explicit "" differs from an absent key.
	Listen *string `yaml:"listen"`
	// TLS, when given, serves HTTPS with this certificate and key.
	TLS *TLS `yaml:"tls"`

	// defaulted: Listen was not given. A default that cannot be bound is
	// a warning at start, not a reason to stop polling; an address the
	// config names is.
	defaulted bool
	checked   bool
}

// TLS is the server certificate of the HTTP side.
type TLS struct {
	// CertFile is the PEM certificate (chain); KeyFile its private key.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Reporter receives configuration problems by key path.
type Reporter interface {
	Errorf(path, format string, args ...any)
	Warnf(path, format string, args ...any)
}

// Check fills the default and reports problems; it reads the TLS files, so
// that a wrong path fails `gateway check` and not the start. brokerAddrs
// are the MQTT listeners' addresses, which the HTTP side must not take;
// users says whether broker.users has any, which turns basic auth on.
func (c *Config) Check(brokerAddrs []string, users bool, r Reporter) {
	c.checked = true
	if c.Listen == nil {
		def := DefaultListen
		c.Listen, c.defaulted = &def, true
	}
	addr := *c.Listen
	if addr == "" {
		if c.TLS != nil {
			r.Warnf("tls", "tls has no effect: the HTTP side is off (listen: \"\")")
		}
		return
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		r.Errorf("listen", "listen %q is not host:port: %v", addr, err)
		return
	}
	for _, b := range brokerAddrs {
		if addr == b && port != "0" { // port 0: each gets a free one
			r.Errorf("listen", "the HTTP side and the broker both listen on %s", addr)
		}
	}
	if port == "9100" {
		r.Warnf("listen", "port 9100 is node_exporter's; the gateway's default is %s", DefaultListen)
	}
	switch {
	case isLoopback(host):
	case !users:
		r.Warnf("listen", "the status page and metrics are served beyond loopback (%s) without authentication (broker.users is empty): anyone who reaches it sees the plant's values", addr)
	case c.TLS == nil:
		r.Warnf("listen", "the status page and metrics are served beyond loopback (%s) without tls: the broker users' passwords cross the network readable with every request (basic auth)", addr)
	}
	if c.TLS != nil {
		if _, err := c.TLS.certificate(); err != nil {
			var ke *keyError
			if errors.As(err, &ke) {
				r.Errorf("tls."+ke.key, "%v", ke.err)
			} else {
				r.Errorf("tls", "%v", err)
			}
		}
	}
}

// Describe prints, for `gateway check`, where the HTTP side listens and
// how it is protected; users says whether broker.users has any (basic
// auth).
func (c *Config) Describe(w io.Writer, users bool) {
	if !c.Enabled() {
		fmt.Fprintln(w, "http: off")
		return
	}
	scheme, auth := "http", "no authentication"
	if c.TLS != nil {
		scheme = "https"
	}
	if users {
		auth = "basic auth with the broker's users"
	}
	fmt.Fprintf(w, "http: status page %s://%s/ (/metrics, /healthz, /readyz, /api/status), %s\n", scheme, c.Addr(), auth)
}

// Enabled reports whether the HTTP side is on (after Check).
func (c *Config) Enabled() bool { return c.Listen == nil || *c.Listen != "" }

// Addr is the address to listen on (after Check).
func (c *Config) Addr() string {
	if c.Listen == nil {
		return DefaultListen
	}
	return *c.Listen
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

type keyError struct {
	key string
	err error
}

func (e *keyError) Error() string { return "tls." + e.key + ": " + e.err.Error() }

// certificate reads the certificate and key.
func (t *TLS) certificate() (*tls.Certificate, error) {
	switch {
	case t.CertFile == "":
		return nil, &keyError{"cert_file", errors.New("tls needs cert_file (the server certificate)")}
	case t.KeyFile == "":
		return nil, &keyError{"key_file", errors.New("tls needs key_file (the certificate's private key)")}
	}
	cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			key := "cert_file"
			if pe.Path == t.KeyFile {
				key = "key_file"
			}
			return nil, &keyError{key, fmt.Errorf("cannot read %s: %w", pe.Path, pe.Err)}
		}
		return nil, &keyError{"cert_file", fmt.Errorf("server certificate: %w", err)}
	}
	return &cert, nil
}
