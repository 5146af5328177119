package queue

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Policy says what Append does when MaxBytes is reached.
type Policy int

const (
	// DropOldest deletes the oldest segments, acknowledged or not, to make
	// room: the cloud gets the most recent data. The default.
	DropOldest Policy = iota
	// DropNewest refuses new batches with ErrFull until the sender has made
	// room: the cloud gets the oldest data.
	DropNewest
)

// String returns the policy's configuration name.
func (p Policy) String() string {
	switch p {
	case DropOldest:
		return "drop-oldest"
	case DropNewest:
		return "drop-newest"
	}
	return fmt.Sprintf("Policy(%d)", int(p))
}

// MarshalText returns the policy's configuration name.
func (p Policy) MarshalText() ([]byte, error) {
	if p != DropOldest && p != DropNewest {
		return nil, fmt.Errorf("queue: unknown policy %d", int(p))
	}
	return []byte(p.String()), nil
}

// UnmarshalText accepts "drop-oldest" and "drop-newest", so that configuration
// decoders can fill a Policy directly.
func (p *Policy) UnmarshalText(b []byte) error {
	switch string(b) {
	case "drop-oldest":
		*p = DropOldest
	case "drop-newest":
		*p = DropNewest
	default:
		return fmt.Errorf("queue: unknown policy %q (want drop-oldest or drop-newest)", b)
	}
	return nil
}

// Defaults, applied by Open to zero fields (SyncInterval excepted: zero
// there means fsync on every Append, so the configuration layer applies
// DefaultSyncInterval itself; CursorInterval defaults to SyncInterval and
// to DefaultCursorInterval only with SyncInterval 0).
const (
	DefaultSegmentBytes   = 4 << 20
	DefaultSyncInterval   = 100 * time.Millisecond
	DefaultCursorInterval = 100 * time.Millisecond
)

// Sentinel errors; match them with errors.Is.
var (
	// ErrFull: the quota left no room for the batch; nothing was appended.
	ErrFull = errors.New("queue full")
	// ErrClosed: the queue was closed.
	ErrClosed = errors.New("queue closed")
	// ErrInvalidRecord: a record the format cannot hold (QoS above 2, topic
	// over 65535 bytes, payload over MaxPayload); nothing was appended.
	ErrInvalidRecord = errors.New("invalid record")
)

// Options configures Open.
type Options struct {
	// Dir holds the queue's files; created if missing. One Queue per
	// directory: Open locks it.
	Dir string
	// SegmentBytes is the size at which a segment is sealed and a new one
	// started; default 4 MiB. With MaxBytes set it is capped at MaxBytes/4
	// so that DropOldest never throws away more than a quarter of the log.
	SegmentBytes int64
	// MaxBytes limits the bytes of the segment files; 0 = no limit.
	MaxBytes int64
	// MaxAge drops records older than this (counted as expired); 0 = no limit.
	MaxAge time.Duration
	// WhenFull is the policy applied when MaxBytes is reached.
	WhenFull Policy
	// SyncInterval is the group-commit interval: appended records are
	// fsynced at most this long after they were written. 0 = fsync in every
	// Append ("sync: always"), slower and harder on the SD card.
	SyncInterval time.Duration
	// CursorInterval is the longest an acknowledgement of a record that
	// reached the disk waits to be persisted; default SyncInterval
	// (DefaultCursorInterval with SyncInterval 0). It bounds the redelivery
	// after a crash: records on disk acknowledged during the last
	// CursorInterval are sent again. Acknowledgements of records that never
	// reached the disk cost no cursor write at all.
	CursorInterval time.Duration
	// StagingBytes bounds the records held in memory between group commits
	// (default DefaultStagingBytes, at most SegmentBytes): beyond it Append
	// writes them out early, without waiting for the commit.
	StagingBytes int64
	// Logger receives the queue's events; nil = discard.
	Logger *slog.Logger

	openFile openFileFunc           // fault injection in tests; nil = os.OpenFile
	syncDir  func(dir string) error // directory fsync, observed in tests; nil = syncDir
}

// withDefaults checks opts and fills zero values, in one place.
func (o Options) withDefaults() (Options, error) {
	switch {
	case o.Dir == "":
		return o, errors.New("queue: no directory given")
	case o.SegmentBytes < 0, o.MaxBytes < 0, o.MaxAge < 0, o.SyncInterval < 0, o.CursorInterval < 0, o.StagingBytes < 0:
		return o, fmt.Errorf("queue: %s: negative size or duration in options", o.Dir)
	case o.WhenFull != DropOldest && o.WhenFull != DropNewest:
		return o, fmt.Errorf("queue: %s: unknown policy %v", o.Dir, o.WhenFull)
	}
	if o.SegmentBytes == 0 {
		o.SegmentBytes = DefaultSegmentBytes
	}
	if o.MaxBytes > 0 {
		o.SegmentBytes = min(o.SegmentBytes, max(o.MaxBytes/4, 1024))
	}
	if o.CursorInterval == 0 {
		o.CursorInterval = o.SyncInterval
		if o.CursorInterval == 0 {
			o.CursorInterval = DefaultCursorInterval
		}
	}
	if o.StagingBytes == 0 {
		o.StagingBytes = DefaultStagingBytes
	}
	// One commit's records go into one segment.
	o.StagingBytes = max(min(o.StagingBytes, o.SegmentBytes-segOverhead), 1)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.openFile == nil {
		o.openFile = osOpenFile
	}
	if o.syncDir == nil {
		o.syncDir = syncDir
	}
	return o, nil
}

// Queue is the durable store-and-forward log. All methods are safe for
// concurrent use. It is built for one goroutine appending, one reading (Next,
// Rewind), acknowledgements from the reader or from the goroutine that
// collects PUBACKs, and Stats from anywhere; the package documentation
// describes the locks.
type Queue struct {
	opts     Options
	dir      string
	log      *slog.Logger
	openFile openFileFunc
	syncDir  func(string) error
	lock     io.Closer
	epoch    time.Time // the monotonic clock of staging deadlines

	ready chan struct{} // Ready()
	kick  chan struct{} // → flusher: a deadline may have moved closer
	stop  chan struct{}
	wg    sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
	failing   atomic.Bool // in a write-error episode

	wmu     sync.Mutex
	nextSeq uint64 // wmu
	wbuf    []byte // wmu
	woffs   []int  // wmu
	padBuf  []byte // wmu

	cmu       sync.Mutex
	reserved  uint64      // written under wmu+cmu, read under either
	persisted cursorState // cmu
	cur       cursorFile  // cmu

	smu sync.Mutex

	rmu sync.Mutex
	rd  reader // rmu

	mu          sync.Mutex
	segs        []*segment // oldest first
	active      *segment   // the segment being written, nil until the next commit writes
	stg         staging    // appended records not written yet
	acked       uint64
	lastSeq     uint64 // Seq of the newest record, staged or on disk
	diskLast    uint64 // Seq of the newest record written to a segment
	durAcked    uint64 // persisted.acked, readable under mu
	lostThrough uint64 // records up to here were counted as dropped or expired
	used        int64  // bytes of all segment files
	dirDirty    bool   // a segment was created or removed since the last directory fsync
	rollNext    bool   // an fsync failed: stop writing to the active segment
	closed      bool
	// Deadlines on the monotonic clock (q.now), 0 = none.
	unsyncedAt int64 // oldest append time of records written but not fsynced
	curDirtyAt int64 // since when an acknowledgement of a record on disk is not persisted
	retryAt    int64 // after a failed commit: not before this
	lastAck    int64 // when an Ack last moved the cursor
	armed      int64 // the flusher's timer
	st         Stats
	full       episode
	expiry     episode
}

// Open opens or creates the queue in opts.Dir. A damaged directory is
// repaired, not refused: torn tails are cut, unreadable segments moved
// aside, a bad cursor replaced, each counted in Stats and logged. Open fails
// only when the directory cannot be used at all (not a directory, no
// permission, locked by another process).
func Open(opts Options) (*Queue, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := makeDir(o.Dir, o.syncDir); err != nil {
		return nil, fmt.Errorf("queue: create directory: %w", err)
	}
	if fi, err := os.Stat(o.Dir); err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("queue: %s is not a directory", o.Dir)
	}
	lock, err := lockDir(o.Dir)
	if err != nil {
		return nil, err
	}
	q := &Queue{
		opts:     o,
		dir:      o.Dir,
		log:      o.Logger,
		openFile: o.openFile,
		syncDir:  o.syncDir,
		lock:     lock,
		epoch:    time.Now(),
		ready:    make(chan struct{}, 1),
		kick:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
	}
	if err := q.load(); err != nil {
		lock.Close()
		return nil, err
	}
	q.wg.Add(1)
	go q.run()
	return q, nil
}

// load rebuilds the bookkeeping from the directory. It runs before any
// other goroutine sees q.
func (q *Queue) load() error {
	entries, err := os.ReadDir(q.dir)
	if err != nil {
		return fmt.Errorf("queue: read directory: %w", err)
	}
	cur, gen, cerr := readCursor(q.dir)
	switch {
	case errors.Is(cerr, os.ErrNotExist):
		q.log.Info("queue: no cursor file, starting from the oldest record", "dir", q.dir)
	case cerr != nil:
		q.log.Warn("queue: cursor file unusable, starting from the oldest record", "dir", q.dir, "err", cerr)
	}
	var aside, unknown []string
	for _, e := range entries {
		name := e.Name()
		switch {
		case name == cursorName || name == lockName:
			continue
		case name == cursorTmpName, strings.HasPrefix(name, cursorTmpName+"."):
			os.Remove(filepath.Join(q.dir, name)) // a cursor write cut short
			continue
		case strings.HasSuffix(name, corruptSuffix):
			aside = append(aside, name)
			continue
		}
		base, ok := parseSegName(name)
		if !ok || !e.Type().IsRegular() {
			unknown = append(unknown, name)
			continue
		}
		// ReadDir sorts by name and names are zero-padded: oldest first.
		if s := q.loadSegment(base, filepath.Join(q.dir, name), math.MaxUint64); s != nil {
			q.segs = append(q.segs, s)
		}
	}
	if len(aside) > 0 {
		q.log.Warn("queue: segments moved aside earlier are still in the directory", "dir", q.dir, "files", aside)
	}
	if len(unknown) > 0 {
		q.log.Warn("queue: ignoring files that are not segments", "dir", q.dir, "files", unknown)
	}

	var maxBase uint64
	for _, s := range q.segs {
		q.used += s.size
		q.lastSeq = max(q.lastSeq, s.last)
		maxBase = max(maxBase, s.base)
	}
	if cerr == nil {
		q.acked = cur.acked
		q.persisted = cur
		q.durAcked = cur.acked
		q.cur.gen = gen
	}
	// A new segment is always started, named above every existing one, and
	// numbers handed out before a crash are skipped (see seqReserveBlock).
	q.nextSeq = max(q.lastSeq+1, maxBase+1, cur.acked+1, cur.reserved+1)
	q.reserved = q.nextSeq - 1
	q.diskLast = q.lastSeq
	q.rd.last = q.acked
	q.maintain(time.Now())
	if q.Stats().PendingRecords > 0 {
		signal(q.ready) // a sender that starts by waiting finds the backlog
	}
	return nil
}

// isClosed reports whether Close has begun.
func (q *Queue) isClosed() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.closed
}

// Ready returns a channel that receives a value after Append added records,
// and after Open when a backlog is waiting. Signals coalesce: one value may
// stand for many appends, so the sender drains with Next until it returns
// nothing before waiting again. The channel is never closed.
func (q *Queue) Ready() <-chan struct{} { return q.ready }

// signal does a non-blocking, coalescing send.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Close writes the staged records not yet acknowledged, seals the active
// segment, fsyncs, persists the cursor and releases the directory. Records handed out but not acknowledged are delivered again
// after the next Open. Close is idempotent; other methods return ErrClosed
// afterwards.
func (q *Queue) Close() error {
	q.closeOnce.Do(func() { q.closeErr = q.close() })
	return q.closeErr
}

func (q *Queue) close() error {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	close(q.stop)
	q.wg.Wait()

	q.wmu.Lock()
	defer q.wmu.Unlock()
	var errs []error
	// What is staged and not acknowledged goes to disk; the acknowledged
	// rest is dropped.
	errs = append(errs, q.spill(false)) // a seal follows, not more records
	q.mu.Lock()
	s := q.active
	q.mu.Unlock()
	if s != nil {
		errs = append(errs, q.retire(s, true))
	}
	errs = append(errs, q.fsyncActive())
	q.cmu.Lock()
	// Nothing more will be numbered: record exactly where numbering stops so
	// that a clean restart leaves no gap.
	q.reserved = q.nextSeq - 1
	errs = append(errs, q.persistLocked(q.reserved))
	done := q.persisted.acked
	q.cur.close()
	q.cmu.Unlock()
	errs = append(errs, q.removeSegments(q.collectVictims(done, time.Now())))

	q.rmu.Lock()
	q.rd.closeFile()
	q.rmu.Unlock()
	errs = append(errs, q.lock.Close())
	return errors.Join(errs...)
}

// now is the queue's monotonic clock in ns, never 0 (0 means "no deadline").
func (q *Queue) now() int64 { return int64(time.Since(q.epoch)) + 1 }
