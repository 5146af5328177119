package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"syscall"
)

// Startup failures are one clear line each: what failed, where, and what
// to check. These helpers turn the errors of the system calls into that.

// explainListen rewrites a failed listen of part (broker, simulator) into
// "part: listen on ADDR: address already in use — hint". addr is the
// configured address, used when the error does not carry one.
func explainListen(err error, part, addr, inUseHint string) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Addr != nil {
		addr = op.Addr.String()
	}
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return fmt.Errorf("%s: listen on %s: %w — %s", part, addr, syscall.EADDRINUSE, inUseHint)
	case errors.Is(err, syscall.EACCES):
		return fmt.Errorf("%s: listen on %s: %w — ports below 1024 need root or CAP_NET_BIND_SERVICE", part, addr, syscall.EACCES)
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return fmt.Errorf("%s: listen on %s: %w — no network interface of this machine has that address", part, addr, syscall.EADDRNOTAVAIL)
	}
	return err
}

// prepareDataDir creates gateway.data_dir if needed and proves that the
// gateway can write there, so that a wrong owner is reported at start, by
// name, rather than by the first part that needs the directory.
func prepareDataDir(dir string) error {
	fail := func(err error) error {
		var pe *os.PathError
		if errors.As(err, &pe) && pe.Path == dir {
			err = pe.Err // the message names the directory already
		}
		return fmt.Errorf("gateway.data_dir %s: %w (the gateway runs as %s; the directory must be writable by it)", dir, err, whoAmI())
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fail(err)
	}
	f, err := os.CreateTemp(dir, ".write-test-")
	if err != nil {
		return fail(err)
	}
	name := f.Name()
	f.Close()
	if err := os.Remove(name); err != nil {
		return fail(err)
	}
	return nil
}

func whoAmI() string {
	uid := os.Getuid()
	if u, err := user.LookupId(fmt.Sprint(uid)); err == nil {
		return fmt.Sprintf("user %s (uid %d)", u.Username, uid)
	}
	return fmt.Sprintf("uid %d", uid)
}
