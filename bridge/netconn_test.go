package bridge

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// TestBatchConnDelivers: everything written arrives in order, and what is
// pending at Close (paho's DISCONNECT) is flushed before the socket closes.
func TestBatchConnDelivers(t *testing.T) {
	client, server := tcpPair(t)
	c := newBatchConn(client, time.Second)
	var want bytes.Buffer
	for i := range 5000 {
		p := []byte{byte(i), byte(i >> 8), 0xAB}
		want.Write(p)
		if _, err := c.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(server)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("received %d bytes, want %d in order", len(got), want.Len())
	}
	if _, err := c.Write([]byte("late")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("write after close: %v", err)
	}
}

// TestBatchConnStuckWrite: a peer that reads nothing fills the socket
// buffers; the flusher's write times out, the socket is closed (paho's
// reader then reports the connection lost) and writers get the error
// instead of blocking.
func TestBatchConnStuckWrite(t *testing.T) {
	client, server := tcpPair(t)
	_ = server // never read
	c := newBatchConn(client, 200*time.Millisecond)
	chunk := make([]byte, 64<<10)
	deadline := time.Now().Add(10 * time.Second)
	var err error
	for err == nil && time.Now().Before(deadline) {
		_, err = c.Write(chunk)
	}
	if err == nil {
		t.Fatal("writes to a peer that reads nothing never failed")
	}
	if _, rerr := c.Read(make([]byte, 1)); rerr == nil {
		t.Error("the socket is still open after the write failed")
	}
	_ = c.Close()
}

// TestBatchConnSlowReader: a peer that reads slowly but steadily is
// back-pressure, not a dead link: the write deadline bounds each chunk,
// not the whole backlog (here over twice the deadline). While much
// waits, congested says so.
//
// The deadline is a second, not less: the small socket buffers make the
// receiver advertise a zero window, and Linux may then leave a drained
// receiver waiting for the sender's persist-timer probe, at least its
// 200 ms minimum RTO (seen: 177 ms without a byte, the reader blocked in
// Read, under CPU load). A 300 ms deadline failed about one run in 30.
func TestBatchConnSlowReader(t *testing.T) {
	client, server := tcpPair(t)
	_ = client.(*net.TCPConn).SetWriteBuffer(16 << 10)
	_ = server.(*net.TCPConn).SetReadBuffer(16 << 10)
	const timeout = time.Second
	c := newBatchConn(client, timeout)
	const total = 3 << 19
	got := make(chan int, 1)
	go func() {
		buf := make([]byte, 16<<10)
		n := 0
		for n < total {
			time.Sleep(25 * time.Millisecond) // a slow reader: at most 16 KiB per 25 ms
			k, err := server.Read(buf)
			n += k
			if err != nil {
				break
			}
		}
		got <- n
	}()
	start := time.Now()
	sawCongested := false
	chunk := bytes.Repeat([]byte("m"), 1000)
	for written := 0; written < total; written += len(chunk) {
		if full, room := c.congested(); full {
			sawCongested = true
			<-room
		}
		if _, err := c.Write(chunk[:min(len(chunk), total-written)]); err != nil {
			t.Fatalf("write after %v: %v (a slow reader taken for a dead one)", time.Since(start), err)
		}
	}
	if n := <-got; n != total {
		t.Fatalf("peer read %d bytes, want %d", n, total)
	}
	took := time.Since(start)
	t.Logf("%d bytes to a slow reader in %v with a write timeout of %v", total, took.Round(time.Millisecond), timeout)
	if took < 2*timeout {
		t.Logf("the reader kept up: the test proved less than it should (took %v)", took)
	}
	if !sawCongested {
		t.Error("congested never reported a full buffer")
	}
	_ = c.Close()
}
