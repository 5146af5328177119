package bridge

import (
	"bufio"
	"net"
	"sync"
	"time"
)

// batchConn is the network connection as paho sees it. paho writes every
// packet with its own write(2), and reads every packet as a byte, a length
// and a body, each straight from the socket. Draining a backlog, that is a
// system call and a TCP segment per message on our side and a read per
// message on the broker's: a single-threaded broker such as mosquitto then
// accepts barely half of what it accepts from its own bridge, which writes
// many packets at once.
//
// batchConn buffers reads, and hands writes to a flusher goroutine that
// writes whatever has accumulated in one system call: while one write is
// in progress the next packets gather behind it, and an idle link writes a
// lone packet at once, so latency does not grow. Write blocks (backpressure)
// when maxPending bytes wait; the sender asks congested first, and waits
// for room instead of blocking inside paho. A write failure, or a socket
// that takes no bytes for writeTimeout (the broker stopped reading: a dead
// link, as a slow one keeps taking some), closes the socket, which paho's
// reader reports as a lost connection. Close flushes what is pending
// (paho's DISCONNECT) before it closes the socket.
type batchConn struct {
	net.Conn
	r            *bufio.Reader
	writeTimeout time.Duration

	mu      sync.Mutex
	cond    *sync.Cond
	pending []byte
	err     error // sticky: the first write failure
	closing bool
	done    chan struct{} // the flusher has exited
	room    chan struct{} // signalled when the flusher takes what is pending

	closeOnce sync.Once
	closeErr  error
}

const (
	maxPending = 256 << 10
	// congestedAt is where the sender stops publishing until the flusher
	// has taken what waits: half of maxPending, so that paho's writer never
	// blocks on a full buffer.
	congestedAt = maxPending / 2
	// writeChunk is the most one write(2) is given, so that the deadline
	// measures a socket that takes nothing, not a large write's total time.
	writeChunk = 64 << 10
)

func newBatchConn(nc net.Conn, writeTimeout time.Duration) *batchConn {
	c := &batchConn{
		Conn:         nc,
		r:            bufio.NewReaderSize(nc, 16<<10),
		writeTimeout: writeTimeout,
		done:         make(chan struct{}),
		room:         make(chan struct{}, 1),
	}
	c.cond = sync.NewCond(&c.mu)
	go c.flusher()
	return c
}

// Read is called by paho's single reader goroutine.
func (c *batchConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// Write queues p for the flusher.
func (c *batchConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.err == nil && !c.closing && len(c.pending) >= maxPending {
		c.cond.Wait()
	}
	switch {
	case c.err != nil:
		return 0, c.err
	case c.closing:
		return 0, net.ErrClosed
	}
	c.pending = append(c.pending, p...)
	c.cond.Broadcast()
	return len(p), nil
}

// congested reports whether so much waits to be written that the sender
// should hold back, and a channel signalled when the flusher made room.
func (c *batchConn) congested() (bool, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending) >= congestedAt && c.err == nil, c.room
}

// SetWriteDeadline is ignored: paho sets a deadline around each Write, which
// now only queues; the flusher bounds each real write by writeTimeout.
func (c *batchConn) SetWriteDeadline(time.Time) error { return nil }

// SetDeadline sets the read deadline only, for the same reason.
func (c *batchConn) SetDeadline(t time.Time) error { return c.Conn.SetReadDeadline(t) }

func (c *batchConn) flusher() {
	defer close(c.done)
	defer func() {
		select {
		case c.room <- struct{}{}: // whoever waits for room finds the error
		default:
		}
	}()
	var spare []byte
	for {
		c.mu.Lock()
		for len(c.pending) == 0 && !c.closing && c.err == nil {
			c.cond.Wait()
		}
		if len(c.pending) == 0 || c.err != nil {
			c.mu.Unlock()
			return
		}
		buf := c.pending
		c.pending = spare[:0]
		c.cond.Broadcast() // room for blocked writers
		c.mu.Unlock()
		select {
		case c.room <- struct{}{}:
		default:
		}

		var err error
		for rest := buf; len(rest) > 0 && err == nil; {
			n := min(len(rest), writeChunk)
			_ = c.Conn.SetWriteDeadline(time.Now().Add(c.writeTimeout))
			_, err = c.Conn.Write(rest[:n])
			rest = rest[n:]
		}
		if cap(buf) <= maxPending*2 {
			spare = buf // reuse, unless a huge payload would pin its memory
		}
		if err != nil {
			c.mu.Lock()
			c.err = err
			c.cond.Broadcast()
			c.mu.Unlock()
			_ = c.Conn.Close() // paho's reader fails: connection lost
			return
		}
	}
}

// Close flushes what is pending, for at most a second, and closes the
// socket.
func (c *batchConn) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closing = true
		c.cond.Broadcast()
		c.mu.Unlock()
		select {
		case <-c.done:
		case <-time.After(time.Second):
		}
		c.closeErr = c.Conn.Close()
		<-c.done
	})
	return c.closeErr
}
