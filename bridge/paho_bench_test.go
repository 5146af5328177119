package bridge

import (
	"bufio"
	"io"
	"net"
	"net/url"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// BenchmarkPahoPublish is the floor under the bridge's CPU per message: a
// paho client set up as dialPaho sets it up (batchConn, no store, order
// matters) publishing QoS 1 as fast as it can to an in-process broker that
// only acknowledges, on loopback. Nothing of the bridge runs: no queue, no
// window, no session. cpu-µs/msg is this process's CPU (the acker's
// included, a few per cent of it) per message.
func BenchmarkPahoPublish(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go ackEverything(c)
		}
	}()
	opts := mqtt.NewClientOptions().AddBroker("tcp://" + ln.Addr().String()).SetClientID("bench").
		SetAutoReconnect(false).SetConnectRetry(false).SetStore(noStore{}).SetOrderMatters(true).
		SetKeepAlive(time.Minute).SetWriteTimeout(10 * time.Second)
	opts.SetCustomOpenConnectionFn(func(u *url.URL, _ mqtt.ClientOptions) (net.Conn, error) {
		nc, err := net.Dial("tcp", u.Host)
		if err != nil {
			return nil, err
		}
		return newBatchConn(nc, 10*time.Second), nil
	})
	c := mqtt.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		b.Fatalf("connect: %v", tok.Error())
	}
	defer c.Disconnect(0)
	payload := make([]byte, 110)
	const window = 4096
	toks := make([]mqtt.Token, 0, window)
	var before syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		toks = append(toks, c.Publish("bench/drain/x", 1, false, payload))
		if len(toks) == window {
			for _, t := range toks {
				t.Wait()
			}
			toks = toks[:0]
		}
	}
	for _, t := range toks {
		t.Wait()
	}
	b.StopTimer()
	var after syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	cpu := time.Duration(after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano())
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/msg")
}

// ackEverything reads MQTT packets and answers CONNECT with CONNACK and
// every QoS 1 PUBLISH with a PUBACK, the acknowledgements of a read
// written at once.
func ackEverything(c net.Conn) {
	defer c.Close()
	r := bufio.NewReaderSize(c, 64<<10)
	var out []byte
	for {
		if r.Buffered() == 0 && len(out) > 0 {
			if _, err := c.Write(out); err != nil {
				return
			}
			out = out[:0]
		}
		typ, err := r.ReadByte()
		if err != nil {
			return
		}
		n, shift := 0, 0
		for {
			b, err := r.ReadByte()
			if err != nil {
				return
			}
			n |= int(b&0x7f) << shift
			shift += 7
			if b&0x80 == 0 {
				break
			}
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(r, body); err != nil {
			return
		}
		switch typ >> 4 {
		case 1: // CONNECT
			out = append(out, 0x20, 2, 0, 0)
		case 3: // PUBLISH
			if typ>>1&3 == 1 && len(body) >= 2 {
				tl := int(body[0])<<8 | int(body[1])
				if len(body) >= 4+tl {
					out = append(out, 0x40, 2, body[2+tl], body[3+tl])
				}
			}
		case 12: // PINGREQ
			out = append(out, 0xd0, 0)
		}
	}
}
