package powercut

import (
	"context"
	"sort"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// node serves one inode of the model over FUSE. Every operation takes the
// FS lock, so a Cut falls between two operations, never inside one, and
// refuses with EIO once the mount it belongs to is cut.
type node struct {
	fs.Inode
	mnt *mount
	in  *inode
}

// handle is an open file or directory: only the open flags matter.
type handle struct{ flags uint32 }

var (
	_ fs.NodeLookuper    = (*node)(nil)
	_ fs.NodeGetattrer   = (*node)(nil)
	_ fs.NodeSetattrer   = (*node)(nil)
	_ fs.NodeOpener      = (*node)(nil)
	_ fs.NodeCreater     = (*node)(nil)
	_ fs.NodeReader      = (*node)(nil)
	_ fs.NodeWriter      = (*node)(nil)
	_ fs.NodeWritever    = (*node)(nil)
	_ fs.NodeFsyncer     = (*node)(nil)
	_ fs.NodeFlusher     = (*node)(nil)
	_ fs.NodeMkdirer     = (*node)(nil)
	_ fs.NodeUnlinker    = (*node)(nil)
	_ fs.NodeRmdirer     = (*node)(nil)
	_ fs.NodeRenamer     = (*node)(nil)
	_ fs.NodeReaddirer   = (*node)(nil)
	_ fs.NodeOpendirer   = (*node)(nil)
	_ fs.NodeStatfser    = (*node)(nil)
	_ fs.NodeAccesser    = (*node)(nil)
	_ fs.NodeReleaser    = (*node)(nil)
	_ fs.NodeAllocater   = (*node)(nil)
	_ fs.InodeEmbedder   = (*node)(nil)
	_ fs.NodeOnForgetter = (*node)(nil)
)

// begin takes the FS lock unless the mount was cut; the caller unlocks.
func (n *node) begin() bool {
	n.mnt.fs.mu.Lock()
	if n.mnt.dead {
		n.mnt.fs.mu.Unlock()
		n.mnt.fs.refused.Add(1)
		return false
	}
	n.mnt.fs.ops.Add(1)
	return true
}

func (n *node) end() { n.mnt.fs.mu.Unlock() }

// child returns the kernel-side inode for a model inode. It is called
// without the FS lock: NewInode takes go-fuse's own locks.
func (n *node) child(ctx context.Context, in *inode) *fs.Inode {
	return n.NewInode(ctx, &node{mnt: n.mnt, in: in}, fs.StableAttr{Mode: in.mode & syscall.S_IFMT, Ino: in.ino})
}

// fill copies the attributes; the FS lock is held.
func (in *inode) fill(out *fuse.Attr) {
	out.Ino = in.ino
	out.Mode = in.mode
	out.Uid, out.Gid = in.uid, in.gid
	out.Nlink = 1
	if in.isDir() {
		out.Nlink = 2
		for _, ch := range in.live {
			if ch.isDir() {
				out.Nlink++
			}
		}
	} else {
		out.Size = uint64(len(in.data))
		out.Blocks = (out.Size + 511) / 512
	}
	out.Blksize = 4096
	out.SetTimes(&in.mtime, &in.mtime, &in.mtime)
}

func owner(ctx context.Context) (uint32, uint32) {
	if c, ok := fuse.FromContext(ctx); ok {
		return c.Uid, c.Gid
	}
	return 0, 0
}

// Lookup finds a live entry.
func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if !n.begin() {
		return nil, syscall.EIO
	}
	if !n.in.isDir() {
		n.end()
		return nil, syscall.ENOTDIR
	}
	ch, ok := n.in.live[name]
	if ok {
		ch.fill(&out.Attr)
	}
	n.end()
	if !ok {
		return nil, syscall.ENOENT
	}
	return n.child(ctx, ch), 0
}

// Getattr reports the live attributes.
func (n *node) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if !n.begin() {
		return syscall.EIO
	}
	defer n.end()
	n.in.fill(&out.Attr)
	return 0
}

// Setattr truncates (a change that needs an fsync like a write) and
// changes the mode; owner and time changes are taken as they come.
func (n *node) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if !n.begin() {
		return syscall.EIO
	}
	defer n.end()
	if size, ok := in.GetSize(); ok {
		if n.in.isDir() {
			return syscall.EISDIR
		}
		n.in.truncate(int64(size))
	}
	if mode, ok := in.GetMode(); ok {
		n.in.mode = n.in.mode&syscall.S_IFMT | mode&07777
	}
	if uid, ok := in.GetUID(); ok {
		n.in.uid = uid
	}
	if gid, ok := in.GetGID(); ok {
		n.in.gid = gid
	}
	if mt, ok := in.GetMTime(); ok {
		n.in.mtime = mt
	}
	n.in.fill(&out.Attr)
	return 0
}

// openFlags are the FUSE open flags of every file: direct I/O, so that
// every read and write reaches the model at its own offset and size and
// the kernel's page cache holds nothing that a Cut should have lost.
const openFlags = fuse.FOPEN_DIRECT_IO

// Open opens a file.
func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if !n.begin() {
		return nil, 0, syscall.EIO
	}
	defer n.end()
	if n.in.isDir() {
		return nil, 0, syscall.EISDIR
	}
	if flags&syscall.O_TRUNC != 0 && flags&syscall.O_ACCMODE != syscall.O_RDONLY && len(n.in.data) > 0 {
		n.in.truncate(0)
	}
	return &handle{flags: flags}, openFlags, 0
}

// Create makes a file, or opens an existing one.
func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	if !n.begin() {
		return nil, nil, 0, syscall.EIO
	}
	ch, exists := n.in.live[name]
	switch {
	case exists && flags&syscall.O_EXCL != 0:
		n.end()
		return nil, nil, 0, syscall.EEXIST
	case exists && ch.isDir():
		n.end()
		return nil, nil, 0, syscall.EISDIR
	case exists:
		if flags&syscall.O_TRUNC != 0 && len(ch.data) > 0 {
			ch.truncate(0)
		}
	default:
		uid, gid := owner(ctx)
		ch = n.mnt.fs.newInode(syscall.S_IFREG|mode&07777, uid, gid)
		n.in.live[name] = ch
		n.in.mtime = ch.mtime
	}
	ch.fill(&out.Attr)
	n.end()
	return n.child(ctx, ch), &handle{flags: flags}, openFlags, 0
}

// Read reads the live data.
func (n *node) Read(ctx context.Context, f fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if !n.begin() {
		return nil, syscall.EIO
	}
	defer n.end()
	if n.in.isDir() {
		return nil, syscall.EISDIR
	}
	if off >= int64(len(n.in.data)) {
		return fuse.ReadResultData(nil), 0
	}
	k := copy(dest, n.in.data[off:])
	return fuse.ReadResultData(dest[:k]), 0
}

// Write changes the live data; the change reaches the medium with the next
// fsync of the file (at once for O_SYNC and O_DSYNC handles).
func (n *node) Write(ctx context.Context, f fs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	if !n.begin() {
		return 0, syscall.EIO
	}
	defer n.end()
	var flags uint32
	if h, ok := f.(*handle); ok {
		flags = h.flags
	}
	if flags&syscall.O_APPEND != 0 {
		off = int64(len(n.in.data))
	}
	n.in.write(off, data)
	if flags&syscall.O_DSYNC != 0 { // O_SYNC includes the O_DSYNC bit
		n.in.fsync()
	}
	return uint32(len(data)), 0
}

// Writev is Write of several buffers, which go-fuse hands over when the
// kernel's request was not contiguous in its buffer.
func (n *node) Writev(ctx context.Context, f fs.FileHandle, data [][]byte, off int64) (uint32, syscall.Errno) {
	var all []byte
	for _, d := range data {
		all = append(all, d...)
	}
	return n.Write(ctx, f, all, off)
}

// Fsync puts a file's data, or a directory's entries, on the medium.
// fdatasync is taken as fsync: the model has no metadata that only fsync
// would write.
func (n *node) Fsync(ctx context.Context, f fs.FileHandle, flags uint32) syscall.Errno {
	if !n.begin() {
		return syscall.EIO
	}
	defer n.end()
	n.in.fsync()
	n.mnt.fs.fsyncs.Add(1)
	n.mnt.fs.lastFsync.Store(time.Now().UnixNano())
	return 0
}

// Flush (each close) changes nothing on the medium, as on a local disk.
func (n *node) Flush(ctx context.Context, f fs.FileHandle) syscall.Errno {
	if !n.begin() {
		return syscall.EIO
	}
	n.end()
	return 0
}

// Release always succeeds, also after a Cut, so that closing frees the
// kernel's references and the mount can go.
func (n *node) Release(ctx context.Context, f fs.FileHandle) syscall.Errno { return 0 }

// Allocate (fallocate) is refused, as on file systems without it.
func (n *node) Allocate(ctx context.Context, f fs.FileHandle, off, size uint64, mode uint32) syscall.Errno {
	return syscall.EOPNOTSUPP
}

// OnForget does nothing: the model, not go-fuse's tree, holds the files.
func (n *node) OnForget() {}

// Mkdir makes a directory.
func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if !n.begin() {
		return nil, syscall.EIO
	}
	if _, exists := n.in.live[name]; exists {
		n.end()
		return nil, syscall.EEXIST
	}
	uid, gid := owner(ctx)
	ch := n.mnt.fs.newInode(syscall.S_IFDIR|mode&07777, uid, gid)
	n.in.live[name] = ch
	n.in.mtime = ch.mtime
	ch.fill(&out.Attr)
	n.end()
	return n.child(ctx, ch), 0
}

// Unlink removes a file's live entry.
func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	if !n.begin() {
		return syscall.EIO
	}
	defer n.end()
	ch, ok := n.in.live[name]
	switch {
	case !ok:
		return syscall.ENOENT
	case ch.isDir():
		return syscall.EISDIR
	}
	delete(n.in.live, name)
	n.in.mtime = time.Now()
	return 0
}

// Rmdir removes an empty directory's live entry.
func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	if !n.begin() {
		return syscall.EIO
	}
	defer n.end()
	ch, ok := n.in.live[name]
	switch {
	case !ok:
		return syscall.ENOENT
	case !ch.isDir():
		return syscall.ENOTDIR
	case len(ch.live) > 0:
		return syscall.ENOTEMPTY
	}
	delete(n.in.live, name)
	n.in.mtime = time.Now()
	return 0
}

// renameNoreplace is RENAME_NOREPLACE of renameat2(2).
const renameNoreplace = 0x1

// Rename moves a live entry; each of the two directories puts the change
// on the medium with its own fsync.
func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	dst, ok := newParent.(*node)
	if !ok {
		return syscall.EXDEV
	}
	if !n.begin() {
		return syscall.EIO
	}
	defer n.end()
	src, ok := n.in.live[name]
	if !ok {
		return syscall.ENOENT
	}
	old, exists := dst.in.live[newName]
	switch {
	case flags&fs.RENAME_EXCHANGE != 0:
		if !exists {
			return syscall.ENOENT
		}
		n.in.live[name], dst.in.live[newName] = old, src
		return 0
	case flags&^renameNoreplace != 0:
		return syscall.EINVAL
	case exists && flags&renameNoreplace != 0:
		return syscall.EEXIST
	case exists && old == src:
		return 0
	case exists && old.isDir() && !src.isDir():
		return syscall.EISDIR
	case exists && !old.isDir() && src.isDir():
		return syscall.ENOTDIR
	case exists && old.isDir() && len(old.live) > 0:
		return syscall.ENOTEMPTY
	}
	delete(n.in.live, name)
	dst.in.live[newName] = src
	now := time.Now()
	n.in.mtime, dst.in.mtime = now, now
	return 0
}

// Opendir refuses after a Cut, like every other operation.
func (n *node) Opendir(ctx context.Context) syscall.Errno {
	if !n.begin() {
		return syscall.EIO
	}
	defer n.end()
	if !n.in.isDir() {
		return syscall.ENOTDIR
	}
	return 0
}

// Readdir lists the live entries, sorted by name.
func (n *node) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	if !n.begin() {
		return nil, syscall.EIO
	}
	defer n.end()
	list := make([]fuse.DirEntry, 0, len(n.in.live))
	for name, ch := range n.in.live {
		list = append(list, fuse.DirEntry{Name: name, Mode: ch.mode & syscall.S_IFMT, Ino: ch.ino})
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	return fs.NewListDirStream(list), 0
}

// Statfs reports a card with plenty of room.
func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	if !n.begin() {
		return syscall.EIO
	}
	defer n.end()
	const blocks = 8 << 20 // 32 GiB of 4 KiB blocks
	out.Bsize, out.Frsize, out.NameLen = 4096, 4096, 255
	out.Blocks, out.Bfree, out.Bavail = blocks, blocks, blocks
	out.Files, out.Ffree = 1<<20, 1<<20
	return 0
}

// Access allows everything (the tests run as root); after a Cut it fails.
func (n *node) Access(ctx context.Context, mask uint32) syscall.Errno {
	if !n.begin() {
		return syscall.EIO
	}
	n.end()
	return 0
}
