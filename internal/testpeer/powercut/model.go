package powercut

import (
	"fmt"
	"math/rand/v2"
	"path"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"
)

// The model: what a file system holds in the page cache (live) and what
// has reached the medium (durable). It knows nothing of FUSE; the nodes in
// node.go serve it, and FS.mu guards all of it.

// inode is one file or directory.
type inode struct {
	ino      uint64
	mode     uint32 // type and permission bits
	uid, gid uint32
	mtime    time.Time

	// Regular files: data is what reads return; durable is what an fsync
	// put on the medium; pending are the changes since, oldest first.
	data    []byte
	durable []byte
	pending []change

	// Directories: live are the entries lookups see; durable are the
	// entries as of the last fsync of this directory.
	live    map[string]*inode
	durEnts map[string]*inode
}

// change is one write or truncate not yet on the medium.
type change struct {
	truncate bool
	off      int64  // write
	data     []byte // write (a copy)
	size     int64  // truncate
}

func (in *inode) isDir() bool { return in.mode&syscall.S_IFMT == syscall.S_IFDIR }

// apply returns buf with c done to it.
func apply(buf []byte, c change) []byte {
	if c.truncate {
		return resize(buf, c.size)
	}
	end := c.off + int64(len(c.data))
	if int64(len(buf)) < end {
		buf = resize(buf, end)
	}
	copy(buf[c.off:], c.data)
	return buf
}

// resize truncates buf or extends it with zeros.
func resize(buf []byte, size int64) []byte {
	if int64(len(buf)) >= size {
		return buf[:size]
	}
	n := int(size) - len(buf)
	buf = slices.Grow(buf, n)
	return append(buf, make([]byte, n)...)
}

// write changes the live data and remembers the change for the medium.
func (in *inode) write(off int64, p []byte) {
	c := change{off: off, data: slices.Clone(p)}
	in.data = apply(in.data, c)
	in.pending = append(in.pending, c)
	in.mtime = time.Now()
}

// truncate sets the live size and remembers it for the medium.
func (in *inode) truncate(size int64) {
	c := change{truncate: true, size: size}
	in.data = apply(in.data, c)
	in.pending = append(in.pending, c)
	in.mtime = time.Now()
}

// fsync puts the inode on the medium: a file's data, or a directory's
// entries (not the entries' own content, and not the inode's entry in its
// parent: that takes an fsync of the parent).
func (in *inode) fsync() {
	if in.isDir() {
		in.durEnts = cloneEntries(in.live)
		return
	}
	for _, c := range in.pending {
		in.durable = apply(in.durable, c)
	}
	in.pending = nil
}

func cloneEntries(m map[string]*inode) map[string]*inode {
	out := make(map[string]*inode, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// syncAll puts everything reachable from in on the medium, as sync(2) or
// a journal commit eventually does.
func syncAll(in *inode, seen map[*inode]bool) {
	if seen[in] {
		return
	}
	seen[in] = true
	in.fsync()
	for _, ch := range in.live {
		syncAll(ch, seen)
	}
}

// Tear says what happens, at a Cut, to the writes a file received since
// its last fsync.
type Tear int

const (
	// TearNone: they all vanish; the file is as of its last fsync.
	TearNone Tear = iota
	// TearTruncate: a random number of the oldest of them reached the
	// medium whole and the next one only partly: its first bytes, up to a
	// random point; the rest vanish.
	TearTruncate
	// TearZero: like TearTruncate, but the torn write's range past that
	// point reads as zeros (the file's size reached the medium, its data
	// did not).
	TearZero
	// TearJunk: like TearZero with random bytes instead of zeros (the
	// medium was programming those pages when the power went).
	TearJunk
)

// Tears lists every Tear, for tests that pick one per cut.
var Tears = []Tear{TearNone, TearTruncate, TearZero, TearJunk}

// String names the tear for logs.
func (t Tear) String() string {
	switch t {
	case TearNone:
		return "none"
	case TearTruncate:
		return "truncate"
	case TearZero:
		return "zero"
	case TearJunk:
		return "junk"
	}
	return fmt.Sprintf("Tear(%d)", int(t))
}

// Torn describes what a Cut did to one file's pending writes.
type Torn struct {
	Path string
	// Pending is how many writes and truncates were not yet fsynced;
	// Whole of them reached the medium whole, one more was torn (when
	// Whole < Pending), the rest vanished.
	Pending, Whole int
	// Off and Len are the torn write's range, Kept how many of its bytes
	// landed as written (the rest are cut off, zeros or junk). Len is 0
	// when the torn change was a truncate (applied or not, Kept 1 or 0).
	Off        int64
	Len, Kept  int
	Tear       Tear
	LostBytes  int64 // live size minus size on the medium, when positive
	DurableLen int64 // size on the medium after the cut
}

// String shows the tear in one line for test logs.
func (t Torn) String() string {
	return fmt.Sprintf("%s: %d pending, %d whole, torn [%d,+%d) kept %d as %s, size %d",
		t.Path, t.Pending, t.Whole, t.Off, t.Len, t.Kept, t.Tear, t.DurableLen)
}

// powerLoss returns the tree the medium holds: from root, the durable
// entries of each directory, and the durable data of each file, with its
// pending writes torn as tear says. The new inodes keep their numbers;
// their live and durable states are equal. A node reachable twice (a
// rename whose source and target directories were fsynced at different
// times) becomes one node with two names, as a hard link.
func powerLoss(root *inode, tear Tear, rng *rand.Rand) (*inode, []Torn) {
	p := &lossPass{tear: tear, rng: rng, done: map[*inode]*inode{}}
	return p.clone(root, "/"), p.torn
}

type lossPass struct {
	tear Tear
	rng  *rand.Rand
	done map[*inode]*inode
	torn []Torn
}

func (p *lossPass) clone(in *inode, name string) *inode {
	if c, ok := p.done[in]; ok {
		return c
	}
	c := &inode{ino: in.ino, mode: in.mode, uid: in.uid, gid: in.gid, mtime: in.mtime}
	p.done[in] = c
	if in.isDir() {
		c.live = make(map[string]*inode, len(in.durEnts))
		// Sorted, so that a seed reproduces the same tears.
		names := make([]string, 0, len(in.durEnts))
		for n := range in.durEnts {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			c.live[n] = p.clone(in.durEnts[n], path.Join(name, n))
		}
		c.durEnts = cloneEntries(c.live)
		return c
	}
	data := slices.Clone(in.durable)
	if p.tear != TearNone && len(in.pending) > 0 {
		data = p.tearFile(in, name, data)
	}
	c.data, c.durable = data, slices.Clone(data)
	return c
}

// tearFile applies a random number of in's pending changes whole to data
// and tears the next one.
func (p *lossPass) tearFile(in *inode, name string, data []byte) []byte {
	t := Torn{Path: name, Pending: len(in.pending), Tear: p.tear}
	t.Whole = p.rng.IntN(len(in.pending))
	for _, c := range in.pending[:t.Whole] {
		data = apply(data, c)
	}
	c := in.pending[t.Whole]
	switch {
	case c.truncate:
		if p.rng.IntN(2) == 0 {
			data = apply(data, c)
			t.Kept = 1
		}
	case len(c.data) > 0:
		t.Off, t.Len = c.off, len(c.data)
		t.Kept = p.rng.IntN(len(c.data))
		torn := slices.Clone(c.data)
		switch p.tear {
		case TearTruncate:
			torn = torn[:t.Kept]
		case TearZero:
			clear(torn[t.Kept:])
		case TearJunk:
			for i := t.Kept; i < len(torn); i++ {
				torn[i] = byte(p.rng.Uint32())
			}
		}
		data = apply(data, change{off: c.off, data: torn})
	}
	t.DurableLen = int64(len(data))
	if lost := int64(len(in.data)) - t.DurableLen; lost > 0 {
		t.LostBytes = lost
	}
	p.torn = append(p.torn, t)
	return data
}

// walk follows path (slash-separated, relative to root) through the
// entries that next returns for each directory.
func walk(root *inode, p string, next func(*inode) map[string]*inode) (*inode, bool) {
	in := root
	for _, name := range splitPath(p) {
		if !in.isDir() {
			return nil, false
		}
		ch, ok := next(in)[name]
		if !ok {
			return nil, false
		}
		in = ch
	}
	return in, true
}

func splitPath(p string) []string {
	var out []string
	for _, s := range strings.Split(path.Clean("/"+p), "/") {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}
