//go:build unix

package queue

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

const lockName = "LOCK"

// lockDir takes an exclusive flock on dir/LOCK, so that two processes (or two
// Opens in one process) never write the same queue. The kernel drops the lock
// when the process dies, so a crash never leaves the directory locked. The
// holder writes its pid into the file, so that the refusal can name it.
func lockDir(dir string) (io.Closer, error) {
	path := filepath.Join(dir, lockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("queue: lock directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			holder := "another process"
			if b, rerr := os.ReadFile(path); rerr == nil {
				if pid, perr := strconv.Atoi(string(bytes.TrimSpace(b))); perr == nil && pid > 0 {
					holder = "process " + strconv.Itoa(pid)
					if pid == os.Getpid() {
						holder = "this process (opened twice)"
					}
				}
			}
			return nil, fmt.Errorf("queue: directory %s is in use by %s: is another gateway running with the same data_dir?", dir, holder)
		}
		return nil, fmt.Errorf("queue: lock directory %s: %w", dir, err)
	}
	// Best effort: the lock works without it, only the message is poorer.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}
