package bridge

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
)

// keyError is a TLS problem and the config key it belongs to.
type keyError struct {
	key string
	err error
}

func (e *keyError) Error() string { return e.key + ": " + e.err.Error() }

func (e *keyError) Unwrap() error { return e.err }

// load reads the CA bundle and the client certificate and builds the TLS
// configuration. Every connection attempt calls it, so renewed
// certificates are used without a restart; Check calls it first, to fail
// early on a wrong path or a broken file.
func (t *TLS) load() (*tls.Config, *keyError) {
	conf := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         t.ServerName,
		InsecureSkipVerify: t.InsecureSkipVerify, //nolint:gosec // only when the config says so by name; check warns
	}
	var err *keyError
	if conf.RootCAs, err = t.loadCAs(); err != nil {
		return nil, err
	}
	if conf.Certificates, err = t.loadCert(); err != nil {
		return nil, err
	}
	return conf, nil
}

// loadCAs reads CAFile; nil without one (the system's roots apply).
func (t *TLS) loadCAs() (*x509.CertPool, *keyError) {
	if t.CAFile == "" {
		return nil, nil
	}
	pool, err := loadCAs(t.CAFile)
	if err != nil {
		return nil, &keyError{"tls.ca_file", err}
	}
	return pool, nil
}

// loadCert reads the client certificate and checks that the key matches.
func (t *TLS) loadCert() ([]tls.Certificate, *keyError) {
	switch {
	case t.CertFile == "" && t.KeyFile == "":
		return nil, nil
	case t.CertFile == "":
		return nil, &keyError{"tls.cert_file", errors.New("key_file needs cert_file (the client certificate)")}
	case t.KeyFile == "":
		return nil, &keyError{"tls.key_file", errors.New("cert_file needs key_file (the client certificate's private key)")}
	}
	cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		key := "tls.cert_file"
		if _, kerr := os.Stat(t.KeyFile); kerr != nil {
			key = "tls.key_file"
		}
		return nil, &keyError{key, fmt.Errorf("client certificate: %w", unwrapPathError(err))}
	}
	return []tls.Certificate{cert}, nil
}

// loadCAs reads a PEM bundle that must hold at least one certificate.
func loadCAs(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read the CA file: %w", unwrapPathError(err))
	}
	pool := x509.NewCertPool()
	n := 0
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("CA file %s: certificate %d: %w", path, n+1, err)
		}
		pool.AddCert(cert)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("CA file %s holds no PEM certificate", path)
	}
	return pool, nil
}
