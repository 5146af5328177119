package powercut

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"
)

// The layer through the kernel, with the os package, as the queue uses it.

func writeFile(t *testing.T, path string, data []byte, fsync bool) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if fsync {
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func appendFile(t *testing.T, path string, data []byte, fsync bool) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if fsync {
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func syncDir(t *testing.T, dir string) {
	t.Helper()
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		t.Fatalf("fsync directory %s: %v", dir, err)
	}
}

// readOrMissing returns a file's content, or nil and false when it does not
// exist.
func readOrMissing(t *testing.T, path string) ([]byte, bool) {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return b, true
}

func cutAndRemount(t *testing.T, f *FS, tear Tear) CutReport {
	t.Helper()
	rep := f.Cut(tear)
	f.Remount()
	return rep
}

func TestUnsyncedDataVanishes(t *testing.T) {
	f := Mount(t, Options{})
	p := filepath.Join(f.Dir(), "data")
	writeFile(t, p, []byte("hello"), true)
	syncDir(t, f.Dir())
	appendFile(t, p, []byte(" world"), false)
	if b, _ := readOrMissing(t, p); string(b) != "hello world" {
		t.Fatalf("before the cut: %q", b)
	}
	cutAndRemount(t, f, TearNone)
	if b, ok := readOrMissing(t, p); !ok || string(b) != "hello" {
		t.Fatalf("after the cut: %q (exists %v), want the fsynced %q", b, ok, "hello")
	}
	// The medium is durable again after the remount: a second cut keeps it.
	cutAndRemount(t, f, TearNone)
	if b, _ := readOrMissing(t, p); string(b) != "hello" {
		t.Fatalf("after the second cut: %q", b)
	}
	// fdatasync counts like fsync.
	appendFile(t, p, []byte("!"), false)
	fd, err := syscall.Open(p, syscall.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Fdatasync(fd); err != nil {
		t.Fatal(err)
	}
	syscall.Close(fd)
	cutAndRemount(t, f, TearNone)
	if b, _ := readOrMissing(t, p); string(b) != "hello!" {
		t.Fatalf("after fdatasync and a cut: %q", b)
	}
}

func TestTruncateNeedsFsync(t *testing.T) {
	f := Mount(t, Options{})
	p := filepath.Join(f.Dir(), "data")
	writeFile(t, p, []byte("0123456789"), true)
	syncDir(t, f.Dir())
	if err := os.Truncate(p, 4); err != nil {
		t.Fatal(err)
	}
	cutAndRemount(t, f, TearNone)
	if b, _ := readOrMissing(t, p); string(b) != "0123456789" {
		t.Fatalf("unsynced truncate: %q, want the old content", b)
	}
	// O_TRUNC on open is a truncate too.
	writeFile(t, p, []byte("new"), false)
	cutAndRemount(t, f, TearNone)
	if b, _ := readOrMissing(t, p); string(b) != "0123456789" {
		t.Fatalf("unsynced O_TRUNC rewrite: %q, want the old content", b)
	}
	writeFile(t, p, []byte("new"), true)
	cutAndRemount(t, f, TearNone)
	if b, _ := readOrMissing(t, p); string(b) != "new" {
		t.Fatalf("fsynced rewrite: %q", b)
	}
}

func TestOSyncWritesAreDurable(t *testing.T) {
	f := Mount(t, Options{})
	p := filepath.Join(f.Dir(), "log")
	writeFile(t, p, nil, true)
	syncDir(t, f.Dir())
	w, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_SYNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("a")); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("b")); err != nil {
		t.Fatal(err)
	}
	w.Close()
	cutAndRemount(t, f, TearNone)
	if b, _ := readOrMissing(t, p); string(b) != "ab" {
		t.Fatalf("O_SYNC appends after a cut: %q", b)
	}
}

func TestEntriesNeedDirectoryFsync(t *testing.T) {
	f := Mount(t, Options{})
	root := f.Dir()

	// A file created, its data and its directory fsynced: kept.
	writeFile(t, filepath.Join(root, "kept"), []byte("y"), true)
	syncDir(t, root)
	// A file created after that fsync, its data fsynced: gone.
	writeFile(t, filepath.Join(root, "orphan"), []byte("x"), true)
	// A directory made like os.MkdirAll does, everything inside fsynced,
	// but not its parent: the whole directory is gone (the queue's
	// first-start bug this package was built to show).
	sub := filepath.Join(root, "queue")
	if err := os.MkdirAll(sub, 0o750); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(sub, "seg"), []byte("records"), true)
	syncDir(t, sub)
	if _, _, ok := f.Durable("queue"); ok {
		t.Fatal("Durable sees a directory whose parent was never fsynced")
	}

	rep := cutAndRemount(t, f, TearNone)
	if _, ok := readOrMissing(t, filepath.Join(root, "orphan")); ok {
		t.Error("a file whose directory was not fsynced survived the cut")
	}
	if b, ok := readOrMissing(t, filepath.Join(root, "kept")); !ok || string(b) != "y" {
		t.Errorf("a file and directory both fsynced: %q (exists %v)", b, ok)
	}
	if _, err := os.Stat(sub); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a directory whose parent was not fsynced survived the cut: %v", err)
	}
	if len(rep.Torn) != 0 {
		t.Errorf("TearNone tore %v", rep.Torn)
	}

	// With the parent fsynced too, everything is there.
	if err := os.MkdirAll(sub, 0o750); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(sub, "seg"), []byte("records"), true)
	syncDir(t, sub)
	syncDir(t, root)
	cutAndRemount(t, f, TearNone)
	if b, ok := readOrMissing(t, filepath.Join(sub, "seg")); !ok || string(b) != "records" {
		t.Errorf("fully fsynced nested file: %q (exists %v)", b, ok)
	}

	// An unlink not followed by a directory fsync is undone by the cut.
	if err := os.Remove(filepath.Join(root, "kept")); err != nil {
		t.Fatal(err)
	}
	cutAndRemount(t, f, TearNone)
	if _, ok := readOrMissing(t, filepath.Join(root, "kept")); !ok {
		t.Error("an unlink without a directory fsync survived the cut")
	}
	if err := os.Remove(filepath.Join(root, "kept")); err != nil {
		t.Fatal(err)
	}
	syncDir(t, root)
	cutAndRemount(t, f, TearNone)
	if _, ok := readOrMissing(t, filepath.Join(root, "kept")); ok {
		t.Error("a file unlinked and its directory fsynced came back")
	}
}

func TestRenameDurability(t *testing.T) {
	f := Mount(t, Options{})
	root := f.Dir()
	cur, tmp := filepath.Join(root, "cursor"), filepath.Join(root, "cursor.tmp")
	writeFile(t, cur, []byte("v1"), true)
	syncDir(t, root)

	// The atomic-replace pattern without the directory fsync: the old
	// file is what the medium has.
	writeFile(t, tmp, []byte("v2"), true)
	if err := os.Rename(tmp, cur); err != nil {
		t.Fatal(err)
	}
	cutAndRemount(t, f, TearNone)
	if b, _ := readOrMissing(t, cur); string(b) != "v1" {
		t.Errorf("rename without directory fsync: cursor %q, want v1", b)
	}
	if _, ok := readOrMissing(t, tmp); ok {
		t.Errorf("rename without directory fsync: the temp file, never in a fsynced directory, survived")
	}

	// With the directory fsync: the new file, and no temp file.
	writeFile(t, tmp, []byte("v2"), true)
	if err := os.Rename(tmp, cur); err != nil {
		t.Fatal(err)
	}
	syncDir(t, root)
	cutAndRemount(t, f, TearNone)
	if b, _ := readOrMissing(t, cur); string(b) != "v2" {
		t.Errorf("rename with directory fsync: cursor %q, want v2", b)
	}
	if _, ok := readOrMissing(t, tmp); ok {
		t.Error("rename with directory fsync: the temp file is still there")
	}

	// Temp file fsynced into the directory, data not fsynced, renamed,
	// directory fsynced: the name is durable, the data is not.
	writeFile(t, tmp, []byte("v3"), false)
	if err := os.Rename(tmp, cur); err != nil {
		t.Fatal(err)
	}
	syncDir(t, root)
	cutAndRemount(t, f, TearNone)
	if b, ok := readOrMissing(t, cur); !ok || len(b) != 0 {
		t.Errorf("rename of an unsynced file: cursor %q (exists %v), want empty", b, ok)
	}

	// Between directories, each side is durable by its own fsync: with
	// only the target fsynced the file is in both after the cut.
	a, b := filepath.Join(root, "a"), filepath.Join(root, "b")
	for _, d := range []string{a, b} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	syncDir(t, root)
	writeFile(t, filepath.Join(a, "f"), []byte("moved"), true)
	syncDir(t, a)
	if err := os.Rename(filepath.Join(a, "f"), filepath.Join(b, "f")); err != nil {
		t.Fatal(err)
	}
	syncDir(t, b)
	cutAndRemount(t, f, TearNone)
	for _, p := range []string{filepath.Join(a, "f"), filepath.Join(b, "f")} {
		if got, ok := readOrMissing(t, p); !ok || string(got) != "moved" {
			t.Errorf("%s after a cross-directory rename with only the target fsynced: %q (exists %v)", p, got, ok)
		}
	}
}

// TestTears checks each tear against the report: the oldest Whole pending
// writes landed whole, the next one kept Kept bytes and the rest of its
// range is cut off, zeros or junk, and later writes vanished.
func TestTears(t *testing.T) {
	f := Mount(t, Options{Seed: 42})
	p := filepath.Join(f.Dir(), "seg")
	base := bytes.Repeat([]byte("D"), 100)
	writes := [][]byte{
		bytes.Repeat([]byte("a"), 50), bytes.Repeat([]byte("b"), 70),
		bytes.Repeat([]byte("c"), 30), bytes.Repeat([]byte("d"), 90),
	}
	wholes := map[Tear]map[int]bool{}
	for round := range 40 {
		tear := Tears[round%len(Tears)]
		writeFile(t, p, base, true)
		syncDir(t, f.Dir())
		for _, w := range writes {
			appendFile(t, p, w, false)
		}
		rep := cutAndRemount(t, f, tear)
		got, ok := readOrMissing(t, p)
		if !ok {
			t.Fatalf("round %d: the file vanished", round)
		}
		if tear == TearNone {
			if !bytes.Equal(got, base) || len(rep.Torn) != 0 {
				t.Fatalf("round %d: TearNone left %d bytes, torn %v", round, len(got), rep.Torn)
			}
			continue
		}
		if len(rep.Torn) != 1 {
			t.Fatalf("round %d: torn %v, want one file", round, rep.Torn)
		}
		tr := rep.Torn[0]
		if tr.Path != "/seg" || tr.Pending != len(writes) || tr.Tear != tear || tr.Whole >= len(writes) {
			t.Fatalf("round %d: report %+v", round, tr)
		}
		want := slices.Clone(base)
		for _, w := range writes[:tr.Whole] {
			want = append(want, w...)
		}
		torn := writes[tr.Whole]
		if tr.Off != int64(len(want)) || tr.Len != len(torn) || tr.Kept < 0 || tr.Kept >= len(torn) {
			t.Fatalf("round %d: torn range [%d,+%d) kept %d, want [%d,+%d)", round, tr.Off, tr.Len, tr.Kept, len(want), len(torn))
		}
		want = append(want, torn[:tr.Kept]...)
		switch tear {
		case TearZero:
			want = append(want, make([]byte, len(torn)-tr.Kept)...)
		case TearJunk:
			// Anything may be in the rest of the range; only its length
			// is known.
			if len(got) == len(want)+len(torn)-tr.Kept {
				got = got[:len(want)]
			}
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("round %d (%s, %s): got %d bytes %q, want %d bytes %q", round, tear, tr, len(got), got, len(want), want)
		}
		if int64(len(got)) != tr.DurableLen && tear != TearJunk {
			t.Fatalf("round %d: report says %d bytes, file has %d", round, tr.DurableLen, len(got))
		}
		if wholes[tear] == nil {
			wholes[tear] = map[int]bool{}
		}
		wholes[tear][tr.Whole] = true
	}
	for _, tear := range Tears[1:] {
		if len(wholes[tear]) < 2 {
			t.Errorf("%s: the cut always tore write %v: the choice is not random", tear, wholes[tear])
		}
	}
}

// TestCutRefusesAndDetaches: a file of the test process open across the
// cut gets EIO, the kill functions run after the medium froze, the mount
// is unmounted lazily, and Remount serves the durable state beside it.
func TestCutRefusesAndDetaches(t *testing.T) {
	f := Mount(t, Options{})
	p := filepath.Join(f.Dir(), "open")
	writeFile(t, p, []byte("durable"), true)
	syncDir(t, f.Dir())
	w, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.Write([]byte(" lost")); err != nil {
		t.Fatal(err)
	}

	var inKill error
	rep := f.Cut(TearNone, func() {
		// What a process still running in the cut would see.
		_, inKill = w.Write([]byte(" more"))
	})
	if !errors.Is(inKill, syscall.EIO) {
		t.Errorf("write during the cut: %v, want EIO", inKill)
	}
	if !rep.Detached {
		t.Error("Cut with a file open did not report a lazy unmount")
	}
	if _, err := w.Write([]byte("x")); !errors.Is(err, syscall.EIO) {
		t.Errorf("write after the cut: %v, want EIO", err)
	}
	if err := w.Sync(); !errors.Is(err, syscall.EIO) {
		t.Errorf("fsync after the cut: %v, want EIO", err)
	}
	if s := f.Stats(); s.Refused < 3 || s.Cuts != 1 {
		t.Errorf("stats %+v", s)
	}
	if data, _, ok := f.Durable("open"); !ok || string(data) != "durable" {
		t.Errorf("Durable after the cut: %q %v", data, ok)
	}

	f.Remount()
	if b, _ := readOrMissing(t, p); string(b) != "durable" {
		t.Errorf("after remount: %q", b)
	}
	w.Close() // the old mount's serve loop ends now; cleanup waits for it
}

// TestFlock: the queue's LOCK file works as on a local disk.
func TestFlock(t *testing.T) {
	f := Mount(t, Options{})
	p := filepath.Join(f.Dir(), "LOCK")
	lock := func() (*os.File, error) {
		l, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o640)
		if err != nil {
			t.Fatal(err)
		}
		if err := syscall.Flock(int(l.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			l.Close()
			return nil, err
		}
		return l, nil
	}
	first, err := lock()
	if err != nil {
		t.Fatalf("first lock: %v", err)
	}
	if second, err := lock(); !errors.Is(err, syscall.EWOULDBLOCK) {
		if second != nil {
			second.Close()
		}
		t.Fatalf("second lock: %v, want EWOULDBLOCK", err)
	}
	syncDir(t, f.Dir())
	// The power goes: a new boot's lock does not see the old holder,
	// although the test still has its file open.
	f.Cut(TearNone)
	f.Remount()
	again, err := lock()
	if err != nil {
		t.Fatalf("lock after the cut: %v", err)
	}
	again.Close()
	first.Close()
	if third, err := lock(); err != nil {
		t.Fatalf("lock after release: %v", err)
	} else {
		third.Close()
	}
}

func TestSyncAllAndDurable(t *testing.T) {
	f := Mount(t, Options{})
	if err := os.MkdirAll(filepath.Join(f.Dir(), "data", "queue"), 0o750); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(f.Dir(), "data", "queue", "seg"), []byte("abc"), false)
	if _, _, ok := f.Durable("data"); ok {
		t.Fatal("durable before any fsync")
	}
	f.SyncAll()
	if _, names, ok := f.Durable("data/queue"); !ok || !slices.Equal(names, []string{"seg"}) {
		t.Fatalf("Durable(data/queue) = %v %v", names, ok)
	}
	if data, _, _ := f.Durable("data/queue/seg"); string(data) != "abc" {
		t.Fatalf("Durable(seg) = %q", data)
	}
	cutAndRemount(t, f, TearJunk)
	if b, _ := readOrMissing(t, filepath.Join(f.Dir(), "data", "queue", "seg")); string(b) != "abc" {
		t.Fatalf("after SyncAll and a cut: %q", b)
	}
}

// TestMain fails the package when a test left a mount behind.
func TestMain(m *testing.M) {
	code := m.Run()
	if b, err := os.ReadFile("/proc/self/mounts"); err == nil && bytes.Contains(b, []byte("powercut ")) && code == 0 {
		os.Stderr.WriteString("powercut: a mount was left behind:\n" + string(b))
		code = 1
	}
	os.Exit(code)
}

func TestStallMeterArithmetic(t *testing.T) {
	m := StartStallMeter(t)
	base := time.Now().Add(time.Hour) // after anything the running meter notes
	m.mu.Lock()
	m.stalls = append(m.stalls, stall{base.Add(100 * time.Millisecond), base.Add(400 * time.Millisecond)},
		stall{base.Add(time.Second), base.Add(1100 * time.Millisecond)})
	m.mu.Unlock()
	for _, c := range []struct {
		from, to      time.Duration
		stalled, long time.Duration
	}{
		{0, 50 * time.Millisecond, 0, 0},
		{0, 2 * time.Second, 400 * time.Millisecond, 300 * time.Millisecond},
		{200 * time.Millisecond, 1050 * time.Millisecond, 250 * time.Millisecond, 300 * time.Millisecond},
		{500 * time.Millisecond, 900 * time.Millisecond, 0, 0},
	} {
		from, to := base.Add(c.from), base.Add(c.to)
		if got := m.Stalled(from, to); got != c.stalled {
			t.Errorf("Stalled(%v, %v) = %v, want %v", c.from, c.to, got, c.stalled)
		}
		if got := m.Longest(from, to); got != c.long {
			t.Errorf("Longest(%v, %v) = %v, want %v", c.from, c.to, got, c.long)
		}
	}
}
