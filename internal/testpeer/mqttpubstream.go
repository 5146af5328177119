package testpeer

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Publisher is a running mosquitto_pub -l: each line written with Send is
// published at once as one message, over one connection, so a test can
// publish at its own pace and know what the broker acknowledged.
type Publisher struct {
	tb    testing.TB
	proc  *process
	stdin io.WriteCloser
	out   *tailBuffer
	qos   int
	done  chan struct{} // the output reader finished

	mu        sync.Mutex
	sent      int
	published int         // PUBLISH packets sent
	ackedAt   []time.Time // when each PUBACK (QoS 1) or PUBCOMP (QoS 2) was read
	connected bool
}

// StartPublisher runs mosquitto_pub -l with o (o.Payload is ignored) and
// returns once the broker accepted the connection (CONNACK). It is stopped
// in cleanup.
func StartPublisher(tb testing.TB, o PubOptions) *Publisher {
	tb.Helper()
	bin := lookPeer(tb, "mosquitto_pub", "mosquitto-clients")
	// -d prints CONNACK and every PUBACK; stdbuf makes each line visible
	// when it happens.
	stdbuf := lookPeer(tb, "stdbuf", "coreutils")
	if o.Topic == "" {
		tb.Fatalf("testpeer: StartPublisher: no topic")
	}
	args := append([]string{"-oL", bin, "-d"}, o.conn().args(tb)...)
	args = append(args, "-t", o.Topic, "-q", strconv.Itoa(o.QoS), "-l")
	if o.Retain {
		args = append(args, "-r")
	}
	cmd := exec.Command(stdbuf, args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatalf("testpeer: mosquitto_pub: %v", err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		tb.Fatalf("testpeer: mosquitto_pub: %v", err)
	}
	p := &Publisher{tb: tb, stdin: stdin, out: newTailBuffer(64 << 10), qos: o.QoS, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = outW, outW
	p.proc, err = startProcess("mosquitto_pub", cmd)
	outW.Close()
	if err != nil {
		outR.Close()
		tb.Fatalf("testpeer: %v", err)
	}
	go p.read(outR)
	logOutputOnFailure(tb, "mosquitto_pub -t "+o.Topic, p.out.String)
	tb.Cleanup(p.Kill)
	err = waitUntil(startTimeout, "CONNACK for mosquitto_pub", func() (bool, error) {
		p.mu.Lock()
		ok := p.connected
		p.mu.Unlock()
		if !ok && p.proc.exited() {
			return false, p.proc.exitError()
		}
		return ok, nil
	})
	if err != nil {
		tb.Fatalf("testpeer: mosquitto_pub: %v\n%s", err, p.out)
	}
	return p
}

// read counts the packets in mosquitto_pub's debug output.
func (p *Publisher) read(r *os.File) {
	defer close(p.done)
	defer r.Close()
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		p.mu.Lock()
		switch {
		case strings.Contains(line, "received CONNACK"):
			p.connected = true
		case strings.Contains(line, "sending PUBLISH"):
			p.published++
		case strings.Contains(line, "received PUBACK") && p.qos == 1,
			strings.Contains(line, "received PUBCOMP") && p.qos == 2:
			p.ackedAt = append(p.ackedAt, time.Now())
		default:
			fmt.Fprintln(p.out, line)
		}
		p.mu.Unlock()
	}
}

// Send writes one line, which mosquitto_pub publishes as one message. It
// must not contain a newline. The error is that of the pipe: mosquitto_pub
// has gone (its broker went away).
func (p *Publisher) Send(line []byte) error {
	if bytes.IndexByte(line, '\n') >= 0 {
		return errors.New("testpeer: Publisher.Send: line contains a newline")
	}
	buf := make([]byte, 0, len(line)+1)
	buf = append(append(buf, line...), '\n')
	if _, err := p.stdin.Write(buf); err != nil {
		return fmt.Errorf("testpeer: mosquitto_pub: %w", err)
	}
	p.mu.Lock()
	p.sent++
	p.mu.Unlock()
	return nil
}

// Sent returns how many lines Send wrote.
func (p *Publisher) Sent() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sent
}

// Acked returns how many messages the broker acknowledged so far: for QoS
// 1 and 2 the PUBACKs (PUBCOMPs) received, for QoS 0 the PUBLISH packets
// sent. A broker acknowledges in order, so these are the first Acked lines.
func (p *Publisher) Acked() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.qos == 0 {
		return p.published
	}
	return len(p.ackedAt)
}

// AckedAt returns when each acknowledgement so far reached the test, in
// order (QoS 1 and 2): the broker had message i by AckedAt()[i], and some
// moments earlier (the time it took the debug line through the pipe).
func (p *Publisher) AckedAt() []time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]time.Time(nil), p.ackedAt...)
}

// Close ends the input and waits until mosquitto_pub has published and,
// for QoS 1 and 2, seen acknowledged everything, and exited.
func (p *Publisher) Close() error {
	p.stdin.Close()
	select {
	case <-p.proc.done:
	case <-time.After(30 * time.Second):
		p.proc.kill()
		return fmt.Errorf("testpeer: mosquitto_pub still running 30 s after its input ended; output:\n%s", p.out)
	}
	<-p.done
	if p.proc.err != nil {
		return fmt.Errorf("testpeer: mosquitto_pub: %w; output:\n%s", p.proc.err, p.out)
	}
	return nil
}

// Kill ends mosquitto_pub at once (SIGKILL), as when its broker lost
// power; idempotent.
func (p *Publisher) Kill() {
	p.stdin.Close()
	p.proc.kill()
	<-p.done
}
