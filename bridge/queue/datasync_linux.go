//go:build linux

package queue

import (
	"os"
	"syscall"
)

// datasync flushes f's data and the metadata needed to read it back
// (fdatasync(2)): for an overwrite in place, which changes no size and no
// block map, that is the data alone, without a journal commit.
func datasync(f file) error {
	o, ok := f.(*os.File)
	if !ok {
		return f.Sync() // a test's fault-injecting file
	}
	rc, err := o.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		for {
			serr = syscall.Fdatasync(int(fd))
			if serr != syscall.EINTR {
				return
			}
		}
	}); err != nil {
		return err
	}
	if serr != nil {
		return &os.PathError{Op: "fdatasync", Path: o.Name(), Err: serr}
	}
	return nil
}
