package testpeer

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// conn are the connection settings shared by SubOptions and PubOptions.
type conn struct {
	addr, clientID, username, password string
	caFile, certFile, keyFile          string
	insecure                           bool
	version                            string
	keepAlive                          int
}

// args renders the connection flags of mosquitto_sub and mosquitto_pub.
func (o conn) args(tb testing.TB) []string {
	tb.Helper()
	host, port, err := net.SplitHostPort(o.addr)
	if err != nil {
		tb.Fatalf("testpeer: broker address %q: %v", o.addr, err)
	}
	a := []string{"-h", host, "-p", port}
	add := func(flag, v string) {
		if v != "" {
			a = append(a, flag, v)
		}
	}
	add("-i", o.clientID)
	add("-u", o.username)
	add("-P", o.password)
	add("--cafile", o.caFile)
	add("--cert", o.certFile)
	add("--key", o.keyFile)
	add("-V", o.version)
	if o.insecure {
		a = append(a, "--insecure")
	}
	if o.keepAlive > 0 {
		a = append(a, "-k", strconv.Itoa(o.keepAlive))
	}
	return a
}

// SubOptions configures Subscribe (flags of mosquitto_sub).
type SubOptions struct {
	// Addr is the broker, "host:port".
	Addr string
	// Filter is the topic filter; Filters adds more.
	Filter  string
	Filters []string
	// QoS is the requested subscription QoS.
	QoS int
	// ClientID is the MQTT client id (-i); empty lets the tool choose.
	ClientID string
	// Persistent keeps the session on disconnect (-c, clean session off;
	// needs a ClientID).
	Persistent bool
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
	// Verbose logs every line of mosquitto_sub -d as it arrives.
	Verbose bool
}

func (o SubOptions) conn() conn {
	return conn{o.Addr, o.ClientID, o.Username, o.Password, o.CAFile, o.CertFile, o.KeyFile, o.Insecure, o.Version, o.KeepAlive}
}

// Message is one message received by a Sub.
type Message struct {
	Topic    string
	Payload  []byte
	Retained bool
	QoS      int
	// Time is when the line reached the test.
	Time time.Time
}

// String shows a message for test logs.
func (m Message) String() string {
	return fmt.Sprintf("%s q%d retained=%v %q", m.Topic, m.QoS, m.Retained, m.Payload)
}

// Sub is a running mosquitto_sub.
type Sub struct {
	tb   testing.TB
	proc *process
	out  *tailBuffer

	mu       sync.Mutex
	msgs     []Message
	changed  chan struct{} // closed and replaced on every new message
	subacked bool
	granted  []int
}

// msgMarker starts the output line of a message. -F prints the retain
// flag, the QoS, the payload in hex (so spaces, newlines and binary are
// unambiguous) and the topic last (it may contain spaces, not newlines).
const msgMarker = "FBMSG "

// Subscribe runs mosquitto_sub and returns once the broker acknowledged the
// subscription (its SUBACK, seen in -d output), so that what is published
// afterwards is received. The process is stopped in cleanup.
func Subscribe(tb testing.TB, o SubOptions) *Sub {
	tb.Helper()
	bin := lookPeer(tb, "mosquitto_sub", "mosquitto-clients")
	// mosquitto_sub flushes stdout after each message but not after its
	// debug lines; stdbuf makes the SUBACK line visible when it happens.
	stdbuf := lookPeer(tb, "stdbuf", "coreutils")
	filters := o.Filters
	if o.Filter != "" {
		filters = append([]string{o.Filter}, filters...)
	}
	if len(filters) == 0 {
		tb.Fatalf("testpeer: Subscribe: no topic filter")
	}
	args := append([]string{"-oL", bin, "-d", "-q", strconv.Itoa(o.QoS), "-F", msgMarker + "%r %q %x %t"}, o.conn().args(tb)...)
	if o.Persistent {
		args = append(args, "-c")
	}
	for _, f := range filters {
		args = append(args, "-t", f)
	}
	cmd := exec.Command(stdbuf, args...)
	outR, outW, err := os.Pipe()
	if err != nil {
		tb.Fatalf("testpeer: mosquitto_sub: %v", err)
	}
	s := &Sub{tb: tb, out: newTailBuffer(256 << 10), changed: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = outW, s.out
	s.proc, err = startProcess("mosquitto_sub", cmd)
	outW.Close()
	if err != nil {
		outR.Close()
		tb.Fatalf("testpeer: %v", err)
	}
	readerDone := make(chan struct{})
	go s.read(outR, readerDone, o.Verbose)
	logOutputOnFailure(tb, "mosquitto_sub "+strings.Join(filters, " "), s.out.String)
	tb.Cleanup(func() {
		s.proc.stop(2 * time.Second)
		<-readerDone
	})

	err = waitUntil(startTimeout, "SUBACK for "+strings.Join(filters, " "), func() (bool, error) {
		s.mu.Lock()
		ok := s.subacked
		s.mu.Unlock()
		if !ok && s.proc.exited() {
			return false, s.proc.exitError()
		}
		return ok, nil
	})
	if err != nil {
		tb.Fatalf("testpeer: mosquitto_sub: %v", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, q := range s.granted {
		if q >= 0x80 {
			tb.Fatalf("testpeer: mosquitto_sub: broker refused filter %q (granted %d)", filters[min(i, len(filters)-1)], q)
		}
	}
	return s
}

// read parses mosquitto_sub's output.
func (s *Sub) read(r *os.File, done chan<- struct{}, verbose bool) {
	defer close(done)
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for sc.Scan() {
		line := sc.Text()
		if verbose {
			s.tb.Logf("mosquitto_sub: %s", line)
		}
		if rest, ok := strings.CutPrefix(line, msgMarker); ok {
			m, err := parseMessage(rest)
			if err != nil {
				fmt.Fprintf(s.out, "unparsed: %s: %v\n", line, err)
				continue
			}
			s.mu.Lock()
			s.msgs = append(s.msgs, m)
			close(s.changed)
			s.changed = make(chan struct{})
			s.mu.Unlock()
			continue
		}
		// Keep debug lines, but not one per message (bursts of 20,000).
		if !strings.Contains(line, "received PUBLISH") && !strings.Contains(line, "sending PUBACK") &&
			!strings.Contains(line, "sending PUBREC") && !strings.Contains(line, "sending PUBCOMP") &&
			!strings.Contains(line, "received PUBREL") {
			fmt.Fprintln(s.out, line)
		}
		if granted, ok := strings.CutPrefix(line, "Subscribed (mid: "); ok {
			// "Subscribed (mid: 1): 0, 1"
			_, qos, _ := strings.Cut(granted, "): ")
			s.mu.Lock()
			s.granted = s.granted[:0]
			for _, q := range strings.Split(qos, ", ") {
				n, _ := strconv.Atoi(strings.TrimSpace(q))
				s.granted = append(s.granted, n)
			}
			s.subacked = true
			s.mu.Unlock()
		}
	}
}

// parseMessage parses "retain qos hexpayload topic".
func parseMessage(s string) (Message, error) {
	f := strings.SplitN(s, " ", 4)
	if len(f) != 4 {
		return Message{}, fmt.Errorf("want 4 fields, got %d", len(f))
	}
	qos, err := strconv.Atoi(f[1])
	if err != nil {
		return Message{}, fmt.Errorf("qos: %w", err)
	}
	payload, err := hex.DecodeString(f[2])
	if err != nil {
		return Message{}, fmt.Errorf("payload: %w", err)
	}
	return Message{Topic: f[3], Payload: payload, Retained: f[0] == "1", QoS: qos, Time: time.Now()}, nil
}

// Messages returns a copy of everything received so far, in order.
func (s *Sub) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

// Count returns how many messages were received.
func (s *Sub) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.msgs)
}

// Reset forgets the messages received so far.
func (s *Sub) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgs = nil
}

// Output returns what mosquitto_sub printed besides messages (its -d
// debug lines and errors).
func (s *Sub) Output() string { return s.out.String() }

// Stop ends mosquitto_sub now (a persistent session stays on the broker).
func (s *Sub) Stop() { s.proc.stop(2 * time.Second) }

// WaitFor returns the first message (received so far or later) that match
// accepts, or fails the test after timeout listing what arrived.
func (s *Sub) WaitFor(tb testing.TB, timeout time.Duration, match func(Message) bool) Message {
	tb.Helper()
	m, end := entryLog[Message]{&s.mu, &s.msgs, &s.changed}.watch(timeout, s.proc.done, match)
	switch end {
	case exited:
		tb.Fatalf("testpeer: mosquitto_sub exited (%v) before a matching message; got:\n%s", s.proc.exitError(), s.summary())
	case timedOut:
		tb.Fatalf("testpeer: no matching message within %v; got:\n%s", timeout, s.summary())
	}
	return m
}

// WaitCount waits until at least n messages arrived, or fails the test.
func (s *Sub) WaitCount(tb testing.TB, n int, timeout time.Duration) {
	tb.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		count, changed := len(s.msgs), s.changed
		s.mu.Unlock()
		if count >= n {
			return
		}
		select {
		case <-changed:
		case <-s.proc.done:
			tb.Fatalf("testpeer: mosquitto_sub exited (%v) with %d of %d messages; got:\n%s", s.proc.exitError(), count, n, s.summary())
		case <-deadline.C:
			tb.Fatalf("testpeer: %d of %d messages within %v; got:\n%s", count, n, timeout, s.summary())
		}
	}
}

// summary lists the messages received, the first and last 20 of many.
func (s *Sub) summary() string {
	msgs := s.Messages()
	var b strings.Builder
	fmt.Fprintf(&b, "%d messages", len(msgs))
	for i, m := range msgs {
		if len(msgs) > 40 && i == 20 {
			fmt.Fprintf(&b, "\n  ... %d more ...", len(msgs)-40)
		}
		if len(msgs) > 40 && i >= 20 && i < len(msgs)-20 {
			continue
		}
		fmt.Fprintf(&b, "\n  %s", m)
	}
	return b.String()
}
