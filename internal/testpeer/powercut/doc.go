// Package powercut is a file system for tests that loses power: a FUSE
// file system, held in memory, that keeps for every file and directory two
// states, what was written (what the page cache holds, and what every
// reader sees) and what was made durable (what an SD card would hold after
// the power goes):
//
//   - a file's data becomes durable by fsync or fdatasync on that file (or
//     at once when it was opened O_SYNC or O_DSYNC);
//   - a directory's entries (create, mkdir, rename, unlink, rmdir) become
//     durable only by fsync on that directory. A new file whose directory
//     was not fsynced vanishes at a cut even when its data was fsynced; a
//     rename between two directories is durable in each of them separately.
//
// [FS.Cut] pulls the plug at that instant: every later operation on the
// mount fails with EIO, the processes using it are killed (SIGKILL, by the
// functions the test passes), and the mount goes. What remains is the
// durable state, optionally with each file's writes since its last fsync
// torn (see [Tear]): a random number of them reached the medium whole and
// the next one only partly — cut off, zero-filled or junk past a random
// point. [FS.Remount] serves that state again on the same directory, so the
// program under test restarts on what a real card would hold.
//
// Unlike a passthrough to a host directory, nothing bypasses the model:
// files are opened with FUSE direct I/O (no page cache), the kernel caches
// no entries or attributes, there is no writeback cache, and directory
// fsync is served by the model instead of the host. flock(2) works through
// the kernel's local lock emulation (go-fuse's EnableLocks stays off).
//
// The mount uses /dev/fuse directly (no fusermount) and so needs root; Mount
// skips the test when that is not possible, or fails it under
// FIELDBRIDGE_REQUIRE_PEERS=1. Every mount is unmounted in t.Cleanup, also
// when the test fails.
//
// A program under test that runs in the test's own process (a queue opened
// by the test) must not fork while it holds files on the mount open, and
// must close them after a Cut (it gets EIO until then); the mount is then
// unmounted lazily and its serve loop ends when the last file is closed.
package powercut
