package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/fieldbridge/fieldbridge/internal/testpeer"
)

// TestStartBrokerListenerBusy: each listener type on a busy port is one
// line naming the listener and exit 1, with the hint.
func TestStartBrokerListenerBusy(t *testing.T) {
	bin := buildGateway(t)
	certs := testpeer.GenerateCerts(t, t.TempDir())
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	addr := busy.Addr().String()
	for _, typ := range []string{"tcp", "tls", "ws", "wss"} {
		t.Run(typ, func(t *testing.T) {
			files := ""
			if typ == "tls" || typ == "wss" {
				files = fmt.Sprintf(", cert_file: %s, key_file: %s", certs.ServerCertFile, certs.ServerKeyFile)
			}
			dir := t.TempDir()
			config := writeConfig(t, dir, fmt.Sprintf(`gateway: {id: plant1, data_dir: %s}
broker:
  listeners:
    - {type: tcp, address: %q}
    - {type: %s, address: %q%s}
`, filepath.Join(dir, "data"), freeAddr(t), typ, addr, files))
			code, out := runToExit(t, exec.Command(bin, "--config", config))
			hint := "is another MQTT broker (mosquitto) running?"
			if strings.HasPrefix(typ, "ws") {
				hint = "is another MQTT broker (mosquitto) or a web server running?"
			}
			expectStartFailure(t, code, out, fmt.Sprintf("cannot start: broker: listeners[1] (%s): listen on %s: address already in use — %s", typ, addr, hint))
		})
	}
}

// TestStartBrokerBadFiles: a certificate, key or CA file that cannot be
// read, and a damaged bcrypt hash, are config errors, as `gateway check`
// reports them: one line each with file:line:col and the key, exit 3,
// never a panic. (Like the bridge's TLS files, they are read when the
// config is loaded: check, the unit's ExecStartPre, finds them before the
// gateway starts.)
func TestStartBrokerBadFiles(t *testing.T) {
	bin := buildGateway(t)
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "certs"), 0o700); err != nil {
		t.Fatal(err)
	}
	certs := testpeer.GenerateCerts(t, filepath.Join(dir, "certs"))
	good := hashFor(t, bin, "pw")
	for _, tc := range []struct {
		name, listener, hash, want string
		asNobody                   bool
	}{
		{name: "missing certificate", listener: "cert_file: {dir}/none.pem, key_file: {key}",
			want: ":6:19: broker.listeners[0].cert_file: cannot read {dir}/none.pem: no such file or directory"},
		{name: "missing key", listener: "cert_file: {cert}, key_file: {dir}/none.key",
			want: "broker.listeners[0].key_file: cannot read {dir}/none.key: no such file or directory"},
		{name: "missing client CA", listener: "cert_file: {cert}, key_file: {key}, client_ca_file: {dir}/none-ca.pem",
			want: "broker.listeners[0].client_ca_file: cannot read {dir}/none-ca.pem: no such file or directory"},
		{name: "key not readable", listener: "cert_file: {cert}, key_file: {key}", asNobody: true,
			want: "broker.listeners[0].key_file: cannot read {key}: permission denied (the gateway runs as "},
		{name: "damaged bcrypt hash", listener: "cert_file: {cert}, key_file: {key}", hash: good[:40] + "!" + good[41:],
			want: ":9:22: broker.users[0].password_hash: password_hash is not a bcrypt hash (character 41 ('!') is not one of bcrypt's)"},
		{name: "bcrypt hash cut short", listener: "cert_file: {cert}, key_file: {key}", hash: good[:59],
			want: "broker.users[0].password_hash: password_hash is not a bcrypt hash (59 characters, a bcrypt hash has 60)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.asNobody && os.Getuid() != 0 {
				t.Skip("needs root to run the gateway as another user")
			}
			sub := t.TempDir()
			key := filepath.Join(sub, "broker.key")
			data, err := os.ReadFile(certs.ServerKeyFile)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(key, data, 0o600); err != nil { // root's, as a careless install leaves it
				t.Fatal(err)
			}
			hash := tc.hash
			if hash == "" {
				hash = good
			}
			fill := strings.NewReplacer("{dir}", sub, "{key}", key, "{cert}", certs.ServerCertFile).Replace
			listener := fill(tc.listener)
			config := writeConfig(t, sub, fmt.Sprintf(`gateway: {id: plant1, data_dir: %s}
broker:
  allow_anonymous: false
  listeners:
    - {type: tls, address: %q,
       %s}
  users:
    - username: hmi
      password_hash: %q
`, filepath.Join(sub, "data"), freeAddr(t), listener, hash))
			cmd := exec.Command(bin, "--config", config)
			if tc.asNobody {
				// The test's own directories only (as TestStartDataDirUnwritable).
				for _, d := range []string{filepath.Dir(dir), dir, filepath.Join(dir, "certs"), filepath.Dir(sub), sub, filepath.Dir(bin)} {
					if err := os.Chmod(d, 0o755); err != nil {
						t.Fatal(err)
					}
				}
				for _, f := range []string{config, certs.ServerCertFile} { // the certificate is public
					if err := os.Chmod(f, 0o644); err != nil {
						t.Fatal(err)
					}
				}
				cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
			}
			code, out := runToExit(t, cmd)
			want := fill(tc.want)
			if strings.Contains(out, "panic:") || code != exitConfig || !strings.Contains(out, want) || !strings.Contains(out, "1 error(s)") {
				t.Fatalf("exit %d, want 3 and the problem %q; output:\n%s", code, want, out)
			}
			if lines := strings.Count(strings.TrimSpace(out), "\n") + 1; lines != 2 {
				t.Errorf("%d lines, want the problem and the count:\n%s", lines, out)
			}
		})
	}
}

// hashFor runs `gateway passwd --cost 4`.
func hashFor(t *testing.T, bin, pw string) string {
	t.Helper()
	cmd := exec.Command(bin, "passwd", "--cost", "4")
	cmd.Stdin = strings.NewReader(pw + "\n")
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}
