package queue

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// queueAPI is the method set the bridge uses; both implementations have it.
type queueAPI interface {
	Append(recs []Record) error
	Sync() error
	Next(max int) ([]Record, error)
	Ready() <-chan struct{}
	Ack(seq uint64) error
	Rewind()
	Stats() Stats
	Close() error
}

var (
	_ queueAPI = (*Queue)(nil)
	_ queueAPI = (*Memory)(nil)
)

// testTopic is about as long as the publisher's topics.
const testTopic = "plant1/line3/press07/temp_oil"

// mkRecs builds n records whose payload (size bytes) starts with their index.
func mkRecs(from, n, size int) []Record {
	recs := make([]Record, n)
	for i := range recs {
		p := make([]byte, size)
		copy(p, fmt.Sprintf("#%08d:", from+i))
		for j := 10; j < size; j++ {
			p[j] = byte(from + i + j)
		}
		recs[i] = Record{Topic: testTopic, Payload: p, QoS: byte((from + i) % 3), Retain: (from+i)%5 == 0}
	}
	return recs
}

// idOf returns the index mkRecs put into a payload.
func idOf(t testing.TB, r Record) int {
	t.Helper()
	var id int
	if _, err := fmt.Sscanf(string(r.Payload[:10]), "#%08d:", &id); err != nil {
		t.Fatalf("record %d: payload %q: %v", r.Seq, r.Payload[:10], err)
	}
	return id
}

// appendN appends n records in batches and returns them with Seq set.
func appendN(t testing.TB, q queueAPI, from, n, batch, size int) []Record {
	t.Helper()
	var all []Record
	for i := 0; i < n; i += batch {
		recs := mkRecs(from+i, min(batch, n-i), size)
		if err := q.Append(recs); err != nil {
			t.Fatalf("append %d: %v", from+i, err)
		}
		all = append(all, recs...)
	}
	return all
}

// drain reads with Next until it returns nothing.
func drain(t testing.TB, q queueAPI, max int) []Record {
	t.Helper()
	var out []Record
	for {
		recs, err := q.Next(max)
		if err != nil {
			t.Fatalf("next: %v", err)
		}
		if len(recs) == 0 {
			return out
		}
		out = append(out, recs...)
	}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// logSink records log messages so tests can check "logged once".
type logSink struct {
	mu   sync.Mutex
	msgs []string
}

func (l *logSink) logger() *slog.Logger { return slog.New(sinkHandler{l}) }

func (l *logSink) count(substr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, m := range l.msgs {
		if strings.Contains(m, substr) {
			n++
		}
	}
	return n
}

func (l *logSink) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.msgs, "\n")
}

type sinkHandler struct{ l *logSink }

func (h sinkHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h sinkHandler) Handle(_ context.Context, r slog.Record) error {
	h.l.mu.Lock()
	var b strings.Builder
	b.WriteString(r.Level.String() + " " + r.Message)
	r.Attrs(func(a slog.Attr) bool {
		b.WriteString(" " + a.String())
		return true
	})
	h.l.msgs = append(h.l.msgs, b.String())
	h.l.mu.Unlock()
	return nil
}
func (h sinkHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h sinkHandler) WithGroup(string) slog.Handler      { return h }

// faultFS hands out files that fail like a full or broken disk.
type faultFS struct {
	mu        sync.Mutex
	budget    int64  // bytes that may still be written; < 0 = unlimited
	syncFails int    // the next syncFails fsyncs fail with EIO
	badFile   string // reads of this file fail with EIO
}

func newFaultFS() *faultFS { return &faultFS{budget: -1} }

func (fs *faultFS) setBudget(n int64)  { fs.mu.Lock(); fs.budget = n; fs.mu.Unlock() }
func (fs *faultFS) failSyncs(n int)    { fs.mu.Lock(); fs.syncFails = n; fs.mu.Unlock() }
func (fs *faultFS) failReads(p string) { fs.mu.Lock(); fs.badFile = p; fs.mu.Unlock() }

// take grants up to n bytes of the budget.
func (fs *faultFS) take(n int) int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.budget < 0 {
		return n
	}
	k := int(min(int64(n), fs.budget))
	fs.budget -= int64(k)
	return k
}

func (fs *faultFS) open(name string, flag int, perm os.FileMode) (file, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &faultFile{File: f, fs: fs}, nil
}

type faultFile struct {
	*os.File
	fs *faultFS
}

// WriteAt writes what the budget allows, like a disk filling up mid-write.
func (f *faultFile) WriteAt(b []byte, off int64) (int, error) {
	k := f.fs.take(len(b))
	if k < len(b) {
		n, _ := f.File.WriteAt(b[:k], off)
		return n, &os.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
	}
	return f.File.WriteAt(b, off)
}

// ReadAt fails like a bad sector on the file chosen by failReads.
func (f *faultFile) ReadAt(b []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	bad := f.fs.badFile == f.Name()
	f.fs.mu.Unlock()
	if bad {
		return 0, &os.PathError{Op: "read", Path: f.Name(), Err: syscall.EIO}
	}
	return f.File.ReadAt(b, off)
}

func (f *faultFile) Sync() error {
	f.fs.mu.Lock()
	fail := f.fs.syncFails > 0
	if fail {
		f.fs.syncFails--
	}
	f.fs.mu.Unlock()
	if fail {
		return &os.PathError{Op: "fsync", Path: f.Name(), Err: syscall.EIO}
	}
	return f.File.Sync()
}

// crash stops q the way a killed process does: no seal, no final fsync, no
// cursor write. The page cache keeps what was written, as after a crash.
func crash(q *Queue) {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.closeOnce.Do(func() {
		close(q.stop)
		q.wg.Wait()
		q.wmu.Lock()
		defer q.wmu.Unlock()
		if q.active != nil {
			q.active.f.Close()
		}
		q.rd.closeFile()
		q.cmu.Lock()
		q.cur.close()
		q.cmu.Unlock()
		q.lock.Close()
		q.closeErr = ErrClosed
	})
}

// powerCut crashes q and then destroys what had not been fsynced, as a power
// cut does: each segment is cut back to its synced size and torn bytes (a
// partial record) are left behind it.
func powerCut(t testing.TB, q *Queue, torn []byte) {
	t.Helper()
	crash(q)
	for _, s := range q.segs {
		if s.size <= s.synced {
			continue
		}
		if err := os.Truncate(s.path, s.synced); err != nil {
			t.Fatal(err)
		}
		appendFile(t, s.path, torn)
	}
}

func appendFile(t testing.TB, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// segFiles lists the segment files in dir, oldest first.
func segFiles(t testing.TB, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*"+segSuffix))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// spillNoSync writes what q has staged to its segment without an fsync, as
// Append does when the staged records exceed StagingBytes: the page cache
// has it, the medium may not.
func spillNoSync(t testing.TB, q *Queue) {
	t.Helper()
	q.wmu.Lock()
	defer q.wmu.Unlock()
	if err := q.spill(false); err != nil {
		t.Fatal(err)
	}
}
