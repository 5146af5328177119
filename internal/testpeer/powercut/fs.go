package powercut

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/fieldbridge/fieldbridge/internal/testpeer"
)

// Options configures Mount.
type Options struct {
	// Seed makes the tears of every Cut reproducible; 0 picks one, which
	// Mount logs.
	Seed uint64
}

// FS is a power-cut file system mounted for a test. Its methods are safe
// for concurrent use; Cut and Remount are meant for the test's goroutine.
type FS struct {
	tb   testing.TB
	dir  string
	seed uint64

	mu      sync.Mutex
	rng     *rand.Rand
	nextIno uint64
	root    *inode // the live tree while mounted; after a Cut, what the medium holds
	cur     *mount // nil between Cut and Remount
	gone    []*mount
	cuts    int

	refused   atomic.Uint64 // operations refused with EIO after a Cut
	fsyncs    atomic.Uint64
	ops       atomic.Uint64 // operations served
	lastFsync atomic.Int64  // Unix nanoseconds of the last fsync served
}

// mount is one mounting of the tree; a Cut ends it for good.
type mount struct {
	fs     *FS
	server *fuse.Server
	dead   bool // FS.mu
	// detached: unmounted lazily because files were still open; its serve
	// loop ends when the last of them is closed.
	detached bool
}

// Require skips the test when FUSE cannot be used here (no /dev/fuse, not
// root), or fails it when FIELDBRIDGE_REQUIRE_PEERS=1.
func Require(tb testing.TB) {
	tb.Helper()
	fd, err := syscall.Open("/dev/fuse", syscall.O_RDWR|syscall.O_CLOEXEC, 0)
	if err != nil {
		testpeer.MissingPeer(tb, "powercut: cannot open /dev/fuse: %v (load the fuse module; a container needs --device /dev/fuse)", err)
		return
	}
	syscall.Close(fd)
	if os.Geteuid() != 0 {
		testpeer.MissingPeer(tb, "powercut: mounting FUSE without fusermount needs root")
	}
}

// Mount mounts an empty file system (a blank card) on a new directory under
// tb.TempDir() and unmounts it in cleanup, also when the test fails.
func Mount(tb testing.TB, opts Options) *FS {
	tb.Helper()
	Require(tb)
	seed := opts.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	f := &FS{tb: tb, dir: filepath.Join(tb.TempDir(), "card"), seed: seed, nextIno: 1,
		rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	if err := os.Mkdir(f.dir, 0o755); err != nil {
		tb.Fatalf("powercut: %v", err)
	}
	f.root = f.newInode(syscall.S_IFDIR|0o755, uint32(os.Geteuid()), uint32(os.Getegid()))
	f.root.durEnts = map[string]*inode{}
	tb.Cleanup(f.close)
	if err := f.mount(); err != nil {
		testpeer.MissingPeer(tb, "powercut: mount on %s: %v", f.dir, err)
	}
	tb.Logf("powercut: mounted %s (seed %d)", f.dir, seed)
	return f
}

// Dir is the mount point; it stays the same across Cut and Remount.
func (f *FS) Dir() string { return f.dir }

// Seed is the seed of the tears, for reproducing a failure.
func (f *FS) Seed() uint64 { return f.seed }

// newInode makes an inode with the next number; f.mu is held or f is not
// shared yet.
func (f *FS) newInode(mode, uid, gid uint32) *inode {
	f.nextIno++ // go-fuse reserves 0 and 1
	in := &inode{ino: f.nextIno, mode: mode, uid: uid, gid: gid, mtime: time.Now()}
	if in.isDir() {
		in.live = map[string]*inode{}
	}
	return in
}

// mount serves f.root on f.dir.
func (f *FS) mount() error {
	m := &mount{fs: f}
	zero := time.Duration(0)
	opts := &fs.Options{
		// No caching of entries or attributes in the kernel: every lookup
		// and stat sees the model, and nothing survives a Cut in a cache.
		EntryTimeout:    &zero,
		AttrTimeout:     &zero,
		NegativeTimeout: &zero,
		RootStableAttr:  &fs.StableAttr{Ino: f.root.ino},
		MountOptions: fuse.MountOptions{
			DirectMountStrict: true, // no fusermount: root mounts it itself
			FsName:            "powercut",
			Name:              "powercut",
			DisableXAttrs:     true,
			// No EnableLocks: flock(2) and fcntl locks are then kept by the
			// kernel for this mount (local lock emulation), which is all a
			// LOCK file needs. No writeback cache (go-fuse's default).
		},
	}
	root := &node{mnt: m, in: f.root}
	server, err := fs.Mount(f.dir, root, opts)
	if err != nil {
		return err
	}
	// go-fuse opens /dev/fuse without O_CLOEXEC on a direct mount: every
	// process the test starts would inherit the connection.
	closeOnExecFuse()
	m.server = server
	f.mu.Lock()
	f.cur = m
	f.mu.Unlock()
	return nil
}

// closeOnExecFuse sets FD_CLOEXEC on this process's /dev/fuse descriptors.
func closeOnExecFuse() {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range ents {
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && target == "/dev/fuse" {
			var fd int
			if _, err := fmt.Sscan(e.Name(), &fd); err == nil {
				syscall.CloseOnExec(fd)
			}
		}
	}
}

// CutReport says what a Cut did.
type CutReport struct {
	// At is the instant of the cut: every file system operation after it
	// failed with EIO, and only what was durable then is on the medium.
	At time.Time
	// Tear is how pending writes were treated; Torn lists each file that
	// had some (empty with TearNone).
	Tear Tear
	Torn []Torn
	// Took is how long the Cut took, killing and unmounting included.
	Took time.Duration
	// Detached: files were still open at the unmount (a process of the
	// test itself using the mount), so it was unmounted lazily.
	Detached bool
}

// Cut pulls the plug: from this instant every operation on the mount
// fails with EIO and the medium holds only what was durable — file data
// as of each file's last fsync, directory entries as of each directory's
// last fsync — with the writes since treated as tear says. Then kill runs
// (each should SIGKILL a process using the mount and wait for it: the power
// loss stops the processes too) and the file system is unmounted. A process
// of the test itself that still has files open gets EIO from them until it
// closes them; Remount serves the medium again.
func (f *FS) Cut(tear Tear, kill ...func()) CutReport {
	f.tb.Helper()
	f.mu.Lock()
	m := f.cur
	if m == nil {
		f.mu.Unlock()
		f.tb.Fatalf("powercut: Cut: not mounted")
	}
	rep := CutReport{At: time.Now(), Tear: tear}
	m.dead = true
	f.cur = nil
	f.root, rep.Torn = powerLoss(f.root, tear, f.rng)
	f.cuts++
	f.mu.Unlock()

	for _, k := range kill {
		k()
	}
	rep.Detached = f.unmount(m)
	rep.Took = time.Since(rep.At)
	return rep
}

// unmount takes m off the mount point: at once when nothing is open, else
// lazily (MNT_DETACH), reporting whether it had to.
func (f *FS) unmount(m *mount) (detached bool) {
	f.mu.Lock()
	m.dead = true // a cleanup of a live mount gets here without a Cut
	f.mu.Unlock()
	err := syscall.Unmount(f.dir, 0)
	if errors.Is(err, syscall.EBUSY) {
		err = syscall.Unmount(f.dir, syscall.MNT_DETACH)
		detached = true
	}
	if err != nil {
		f.tb.Errorf("powercut: unmount %s: %v", f.dir, err)
	}
	m.detached = detached
	if detached {
		f.gone = append(f.gone, m)
	} else {
		m.server.Wait()
	}
	return detached
}

// Remount serves what the medium holds, on the same directory.
func (f *FS) Remount() {
	f.tb.Helper()
	f.mu.Lock()
	if f.cur != nil {
		f.mu.Unlock()
		f.tb.Fatalf("powercut: Remount: still mounted")
	}
	f.mu.Unlock()
	if err := f.mount(); err != nil {
		f.tb.Fatalf("powercut: remount %s: %v", f.dir, err)
	}
}

// SyncAll puts everything on the medium, as sync(2) does, or as a journal
// commit eventually does on a system that keeps running: for preparing a
// steady state that a long-running gateway would have reached.
func (f *FS) SyncAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	syncAll(f.root, map[*inode]bool{})
}

// Durable returns what the medium holds at path (relative to the mount
// point): a file's data, or for a directory its entry names, sorted. ok is
// false when the medium has no such entry.
func (f *FS) Durable(path string) (data []byte, names []string, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	in, ok := walk(f.root, path, func(d *inode) map[string]*inode { return d.durEnts })
	if !ok {
		return nil, nil, false
	}
	if in.isDir() {
		for n := range in.durEnts {
			names = append(names, n)
		}
		slices.Sort(names)
		return nil, names, true
	}
	return slices.Clone(in.durable), nil, true
}

// Stats are counters for test logs.
type Stats struct {
	Cuts      int
	Ops       uint64    // operations served (not refused), all mounts
	Fsyncs    uint64    // file and directory fsyncs served
	LastFsync time.Time // when the last of them was served
	Refused   uint64    // operations refused with EIO because of a Cut
}

// Stats returns the counters.
func (f *FS) Stats() Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := Stats{Cuts: f.cuts, Ops: f.ops.Load(), Fsyncs: f.fsyncs.Load(), Refused: f.refused.Load()}
	if ns := f.lastFsync.Load(); ns != 0 {
		st.LastFsync = time.Unix(0, ns)
	}
	return st
}

// close unmounts in cleanup and waits for the serve loops of lazily
// unmounted mounts, whose last files the test should have closed by now.
func (f *FS) close() {
	f.mu.Lock()
	m := f.cur
	f.cur = nil
	f.mu.Unlock()
	if m != nil {
		f.unmount(m)
	}
	for _, m := range f.gone {
		done := make(chan struct{})
		go func() { m.server.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			f.tb.Errorf("powercut: a lazily unmounted instance of %s still has open files 10 s after the test", f.dir)
		}
	}
}
