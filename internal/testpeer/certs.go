package testpeer

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Certs are the PEM files of a throwaway PKI made by GenerateCerts.
type Certs struct {
	// CAFile is the CA certificate that signed the server and client
	// certificates.
	CAFile string
	// ServerCertFile and ServerKeyFile are for 127.0.0.1 and localhost.
	ServerCertFile, ServerKeyFile string
	// ClientCertFile and ClientKeyFile carry the common name ClientName.
	ClientCertFile, ClientKeyFile string
	ClientName                    string
	// UntrustedCertFile and UntrustedKeyFile are a client certificate from
	// another CA, for tests that a broker rejects it.
	UntrustedCertFile, UntrustedKeyFile string
}

// GenerateCerts makes a CA, a server certificate (SAN 127.0.0.1, ::1 and
// localhost) and a client certificate, all ECDSA P-256 and valid for a
// day, and writes them as PEM files (keys PKCS #8) into dir.
func GenerateCerts(tb testing.TB, dir string) Certs {
	tb.Helper()
	c, err := generateCerts(dir)
	if err != nil {
		tb.Fatalf("testpeer: generate certificates: %v", err)
	}
	return c
}

func generateCerts(dir string) (Certs, error) {
	c := Certs{
		CAFile:            filepath.Join(dir, "ca.pem"),
		ServerCertFile:    filepath.Join(dir, "server.pem"),
		ServerKeyFile:     filepath.Join(dir, "server-key.pem"),
		ClientCertFile:    filepath.Join(dir, "client.pem"),
		ClientKeyFile:     filepath.Join(dir, "client-key.pem"),
		ClientName:        "fieldbridge-test-client",
		UntrustedCertFile: filepath.Join(dir, "untrusted.pem"),
		UntrustedKeyFile:  filepath.Join(dir, "untrusted-key.pem"),
	}
	ca, caKey, err := issue(&x509.Certificate{
		Subject:               pkix.Name{CommonName: "fieldbridge test CA"},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}, nil, nil, c.CAFile, "")
	if err != nil {
		return c, fmt.Errorf("ca: %w", err)
	}
	_, _, err = issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "localhost"},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, ca, caKey, c.ServerCertFile, c.ServerKeyFile)
	if err != nil {
		return c, fmt.Errorf("server: %w", err)
	}
	client := &x509.Certificate{
		Subject:     pkix.Name{CommonName: c.ClientName},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if _, _, err = issue(client, ca, caKey, c.ClientCertFile, c.ClientKeyFile); err != nil {
		return c, fmt.Errorf("client: %w", err)
	}
	other, otherKey, err := issue(&x509.Certificate{
		Subject:               pkix.Name{CommonName: "untrusted test CA"},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}, nil, nil, filepath.Join(dir, "untrusted-ca.pem"), "")
	if err != nil {
		return c, fmt.Errorf("untrusted ca: %w", err)
	}
	client.Subject.CommonName = "untrusted-client"
	if _, _, err = issue(client, other, otherKey, c.UntrustedCertFile, c.UntrustedKeyFile); err != nil {
		return c, fmt.Errorf("untrusted client: %w", err)
	}
	return c, nil
}

// issue creates a key and a certificate from tmpl, signed by parent (self-
// signed when nil), and writes them; keyFile "" keeps the key in memory.
func issue(tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, certFile, keyFile string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return nil, nil, fmt.Errorf("serial: %w", err)
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(24 * time.Hour)
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		return nil, nil, fmt.Errorf("certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("parse certificate: %w", err)
	}
	if err := writePEM(certFile, "CERTIFICATE", der); err != nil {
		return nil, nil, err
	}
	if keyFile != "" {
		pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, nil, fmt.Errorf("marshal key: %w", err)
		}
		if err := writePEM(keyFile, "PRIVATE KEY", pkcs8); err != nil {
			return nil, nil, err
		}
	}
	return cert, key, nil
}

func writePEM(path, blockType string, der []byte) error {
	data := pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der})
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	return nil
}
