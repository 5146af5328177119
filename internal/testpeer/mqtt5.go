package testpeer

import (
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

//go:embed py/mqtt5_request.py
var mqtt5RequestScript []byte

// RequestOptions is one MQTT 5 request/response exchange (Request).
type RequestOptions struct {
	// Addr is the broker, "host:port".
	Addr    string
	Topic   string
	Payload string
	// ResponseTopic and CorrelationData are the request's MQTT 5
	// properties; the client subscribes to ResponseTopic first.
	ResponseTopic   string
	CorrelationData []byte
	Retain          bool
	// Timeout for the answer (default 10s).
	Timeout time.Duration
}

// Response is what came back on the response topic.
type Response struct {
	Topic, Payload, ContentType string
	CorrelationData             []byte
}

var paho struct {
	once sync.Once
	err  error
}

// lookPaho returns /usr/bin/python3 if it imports Debian's paho-mqtt.
func lookPaho(tb testing.TB) string {
	tb.Helper()
	python := lookPython(tb)
	paho.once.Do(func() {
		if out, err := exec.Command(python, "-c", "import paho.mqtt.client").CombinedOutput(); err != nil {
			paho.err = fmt.Errorf("%s cannot import paho.mqtt: %v: %s", python, err, strings.TrimSpace(string(out)))
		}
	})
	if paho.err != nil {
		missingPeer(tb, "%v (Debian package python3-paho-mqtt)", paho.err)
	}
	return python
}

// Request makes one MQTT 5 request with Debian's python3-paho-mqtt: it
// subscribes to the response topic, publishes the request with its
// Response Topic and Correlation Data, and returns the first message on the
// response topic.
func Request(tb testing.TB, o RequestOptions) (Response, error) {
	tb.Helper()
	python := lookPaho(tb)
	host, port, err := net.SplitHostPort(o.Addr)
	if err != nil {
		tb.Fatalf("testpeer: Request: broker address %q: %v", o.Addr, err)
	}
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Second
	}
	script := filepath.Join(tb.TempDir(), "mqtt5_request.py")
	if err := os.WriteFile(script, mqtt5RequestScript, 0o644); err != nil {
		tb.Fatalf("testpeer: %v", err)
	}
	args := []string{"-u", script, "--host", host, "--port", port, "--topic", o.Topic, "--payload", o.Payload,
		"--response-topic", o.ResponseTopic, "--correlation", hex.EncodeToString(o.CorrelationData),
		"--timeout", fmt.Sprint(o.Timeout.Seconds())}
	if o.Retain {
		args = append(args, "--retain")
	}
	cmd := exec.Command(python, args...)
	cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1")
	var stdout strings.Builder
	cmd.Stdout = &stdout
	p, err := startProcess("paho mqtt5 request", cmd)
	if err != nil {
		tb.Fatalf("testpeer: %v", err)
	}
	select {
	case <-p.done:
	case <-time.After(o.Timeout + 10*time.Second):
		p.kill()
		return Response{}, fmt.Errorf("paho request on %s: still running after %v", o.Topic, o.Timeout+10*time.Second)
	}
	if p.err != nil {
		return Response{}, fmt.Errorf("paho request on %s: %w: %s", o.Topic, p.err, strings.TrimSpace(p.out.String()))
	}
	var r struct {
		Topic, Payload, Correlation string
		ContentType                 string `json:"content_type"`
	}
	if err := json.Unmarshal([]byte(stdout.String()), &r); err != nil {
		return Response{}, fmt.Errorf("paho request: output %q: %w", stdout.String(), err)
	}
	corr, err := hex.DecodeString(r.Correlation)
	if err != nil {
		return Response{}, fmt.Errorf("paho request: correlation %q: %w", r.Correlation, err)
	}
	return Response{Topic: r.Topic, Payload: r.Payload, ContentType: r.ContentType, CorrelationData: corr}, nil
}
