//go:build unix

package queue

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
)

const lockName = "LOCK"

// lockDir takes an exclusive flock on dir/LOCK, so that two processes (or two
// Opens in one process) never write the same queue. The kernel drops the lock
// when the process dies, so a crash never leaves the directory locked.
func lockDir(dir string) (io.Closer, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockName), os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("queue: lock directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("queue: directory %s is in use by another queue: %w", dir, err)
	}
	return f, nil
}
