package testpeer

import (
	"bytes"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// PubOptions configures Publish and PublishLines (flags of mosquitto_pub).
type PubOptions struct {
	// Addr is the broker, "host:port".
	Addr  string
	Topic string
	// Payload is sent as-is; empty sends a zero-length message.
	Payload []byte
	QoS     int
	Retain  bool
	// ClientID is the MQTT client id (-i); empty lets the tool choose.
	ClientID string
	// Username and Password authenticate (-u, -P).
	Username, Password string
	// CAFile turns on TLS (--cafile); CertFile and KeyFile add a client
	// certificate (--cert, --key).
	CAFile, CertFile, KeyFile string
	// Insecure skips the check of the server's host name (--insecure).
	Insecure bool
	// Version is the protocol: "mqttv311" (default), "mqttv5" or "mqttv31".
	Version string
	// KeepAlive in seconds (-k); 0 keeps the tool's default of 60.
	KeepAlive int
}

func (o PubOptions) conn() conn {
	return conn{o.Addr, o.ClientID, o.Username, o.Password, o.CAFile, o.CertFile, o.KeyFile, o.Insecure, o.Version, o.KeepAlive}
}

// Publish sends one message with mosquitto_pub and waits for it to finish
// (for QoS 1 and 2, the broker acknowledged it). Fails the test on error.
func Publish(tb testing.TB, o PubOptions) {
	tb.Helper()
	if err := TryPublish(tb, o); err != nil {
		tb.Fatalf("testpeer: %v", err)
	}
}

// TryPublish is Publish returning the error (a refused connection, a bad
// certificate) instead of failing the test.
func TryPublish(tb testing.TB, o PubOptions) error {
	tb.Helper()
	if len(o.Payload) == 0 {
		return runPub(tb, o, []string{"-n"}, nil, 30*time.Second)
	}
	return runPub(tb, o, []string{"-s"}, o.Payload, 30*time.Second)
}

// PublishLines sends one message per line with mosquitto_pub -l, as fast
// as it goes, over one connection (o.Payload is ignored). Lines must not
// contain a newline. Fails the test on error.
func PublishLines(tb testing.TB, o PubOptions, lines [][]byte) {
	tb.Helper()
	var in bytes.Buffer
	for i, l := range lines {
		if bytes.IndexByte(l, '\n') >= 0 {
			tb.Fatalf("testpeer: PublishLines: line %d contains a newline", i)
		}
		in.Write(l)
		in.WriteByte('\n')
	}
	if err := runPub(tb, o, []string{"-l"}, in.Bytes(), 2*time.Minute); err != nil {
		tb.Fatalf("testpeer: %v", err)
	}
}

func runPub(tb testing.TB, o PubOptions, mode []string, stdin []byte, timeout time.Duration) error {
	tb.Helper()
	bin := lookPeer(tb, "mosquitto_pub", "mosquitto-clients")
	if o.Topic == "" {
		return errors.New("mosquitto_pub: no topic")
	}
	args := append(o.conn().args(tb), "-t", o.Topic, "-q", strconv.Itoa(o.QoS))
	if o.Retain {
		args = append(args, "-r")
	}
	args = append(args, mode...)
	cmd := exec.Command(bin, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	p, err := startProcess("mosquitto_pub", cmd)
	if err != nil {
		return err
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-p.done:
	case <-timer.C:
		p.stop(time.Second)
		return fmt.Errorf("mosquitto_pub %s: still running after %v; output:\n%s", strings.Join(args, " "), timeout, p.out)
	}
	if p.err != nil {
		return fmt.Errorf("mosquitto_pub %s: %w; output:\n%s", strings.Join(args, " "), p.err, p.out)
	}
	return nil
}
