package localbroker

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"strings"
	"sync/atomic"
)

// keyError is a TLS problem and the config key it belongs to.
type keyError struct {
	key string
	err error
}

// serverTLS loads a tls or wss listener's certificate and client CAs. It
// reports every file that cannot be read, each under its own key, before
// what is wrong with their content.
func serverTLS(l ListenerConfig) (*tls.Config, []keyError) {
	switch {
	case l.CertFile == "":
		return nil, []keyError{{"cert_file", fmt.Errorf("a %s listener needs cert_file and key_file (the server certificate and its key, PEM)", l.Type)}}
	case l.KeyFile == "":
		return nil, []keyError{{"key_file", errors.New("cert_file needs key_file (the server certificate's private key, PEM)")}}
	}
	var errs []keyError
	read := func(key, path string) []byte {
		data, err := os.ReadFile(path)
		if err != nil {
			errs = append(errs, keyError{key, fileError(path, err)})
		}
		return data
	}
	certPEM, keyPEM := read("cert_file", l.CertFile), read("key_file", l.KeyFile)
	var caPEM []byte
	if l.ClientCAFile != "" {
		caPEM = read("client_ca_file", l.ClientCAFile)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		key := "cert_file"
		if msg := err.Error(); strings.Contains(msg, "key input") || strings.Contains(msg, "parse private key") || strings.Contains(msg, "for the private key") {
			key = "key_file" // the key file is what is wrong
		}
		return nil, []keyError{{key, fmt.Errorf("cannot load the server certificate %s with its key %s: %w", l.CertFile, l.KeyFile, err)}}
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if l.ClientCAFile != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caPEM) {
			return nil, []keyError{{"client_ca_file", fmt.Errorf("%s holds no PEM certificate", l.ClientCAFile)}}
		}
		conf.ClientCAs, conf.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return conf, nil
}

// fileError says why a file cannot be read; for a permission problem, by
// whom it must be readable.
func fileError(path string, err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	if errors.Is(err, os.ErrPermission) {
		return fmt.Errorf("cannot read %s: %w (the gateway runs as %s; the file must be readable by it)", path, err, runningAs())
	}
	return fmt.Errorf("cannot read %s: %w", path, err)
}

func runningAs() string {
	uid := os.Getuid()
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return fmt.Sprintf("user %s (uid %d)", u.Username, uid)
	}
	return fmt.Sprintf("uid %d", uid)
}

// tlsSwitch holds a TLS listener's settings. The socket's own tls.Config
// only asks it for the current ones at each handshake, so that a reload
// can serve a renewed certificate, or other client CAs, without closing
// the listener.
type tlsSwitch struct{ cur atomic.Pointer[tls.Config] }

func (s *tlsSwitch) listenerConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return s.cur.Load(), nil
		},
	}
}

// loadedTLS is a tls or wss entry's TLS settings: loaded by Check, or
// here for a config that skipped it.
func loadedTLS(l ListenerConfig) (*tls.Config, error) {
	if l.tls != nil {
		return l.tls, nil
	}
	conf, errs := serverTLS(l)
	if len(errs) > 0 {
		return nil, fmt.Errorf("%s: %w", errs[0].key, errs[0].err)
	}
	return conf, nil
}
