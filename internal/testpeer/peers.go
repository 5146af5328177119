package testpeer

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// RequirePeersEnv is the environment variable that turns a missing peer
// program from a skipped test into a failed one.
const RequirePeersEnv = "FIELDBRIDGE_REQUIRE_PEERS"

// PythonEnv overrides the Python interpreter used for the Modbus device.
// The default is /usr/bin/python3, the only one that sees Debian's
// python3-pymodbus.
const PythonEnv = "FIELDBRIDGE_PYTHON"

// startTimeout bounds how long any peer may take to become ready.
const startTimeout = 15 * time.Second

// missingPeer skips or fails the test because a peer program is missing.
func missingPeer(tb testing.TB, format string, args ...any) {
	tb.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv(RequirePeersEnv) == "1" {
		tb.Fatalf("testpeer: %s (required because %s=1)", msg, RequirePeersEnv)
	}
	tb.Skipf("testpeer: %s (set %s=1 to make this a failure)", msg, RequirePeersEnv)
}

// MissingPeer is missingPeer for helpers in other packages (such as
// testpeer/powercut, which needs /dev/fuse): it skips the test, or fails it
// when FIELDBRIDGE_REQUIRE_PEERS=1.
func MissingPeer(tb testing.TB, format string, args ...any) {
	tb.Helper()
	missingPeer(tb, format, args...)
}

// lookPeer returns the path of a peer program or skips/fails the test.
func lookPeer(tb testing.TB, name, debianPackage string) string {
	tb.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		missingPeer(tb, "%s not found (Debian package %s)", name, debianPackage)
	}
	return path
}

var pythonCheck struct {
	once sync.Once
	path string
	err  error
}

// lookPython returns an interpreter that imports pymodbus and serial_asyncio.
func lookPython(tb testing.TB) string {
	tb.Helper()
	pythonCheck.once.Do(func() {
		path := os.Getenv(PythonEnv)
		if path == "" {
			path = "/usr/bin/python3"
		}
		out, err := exec.Command(path, "-c",
			"import pymodbus, serial_asyncio; print(pymodbus.__version__)").CombinedOutput()
		if err != nil {
			pythonCheck.err = fmt.Errorf("%s cannot import pymodbus and serial_asyncio: %w", path, err)
			if len(out) > 0 {
				pythonCheck.err = fmt.Errorf("%w: %s", pythonCheck.err, bytes.TrimSpace(out))
			}
			return
		}
		pythonCheck.path = path
	})
	if pythonCheck.err != nil {
		missingPeer(tb, "%v (Debian package python3-pymodbus)", pythonCheck.err)
	}
	return pythonCheck.path
}

// process is one started peer program, in its own process group.
type process struct {
	name string
	cmd  *exec.Cmd
	out  *tailBuffer
	done chan struct{} // closed once the process has been waited for
	err  error         // Wait's result, valid after done
}

// startProcess starts cmd in a new process group. Output not already
// redirected goes to the process's tail buffer.
func startProcess(name string, cmd *exec.Cmd) (*process, error) {
	p := &process{name: name, cmd: cmd, out: newTailBuffer(256 << 10), done: make(chan struct{})}
	if cmd.Stdout == nil {
		cmd.Stdout = p.out
	}
	if cmd.Stderr == nil {
		cmd.Stderr = p.out
	}
	// Setpgid lets stop() reach anything the peer forks. Pdeathsig kills
	// the peer if the test binary dies without running its cleanups (it is
	// tied to the forking OS thread, which the Go runtime keeps alive
	// unless a goroutine exits while locked to it; nothing here does).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// pid returns the process id.
func (p *process) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// signal sends sig to the process group (and so to the process). Only while
// the leader has not been reaped: its pid, and so the group id, is ours
// until then.
func (p *process) signal(sig syscall.Signal) {
	if p.exited() {
		return
	}
	if err := syscall.Kill(-p.pid(), sig); err != nil {
		_ = p.cmd.Process.Signal(sig)
	}
}

// stop sends SIGTERM, waits up to grace, then SIGKILLs and waits.
func (p *process) stop(grace time.Duration) {
	p.signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.signal(syscall.SIGKILL)
		<-p.done
	}
}

// kill sends SIGKILL to the group and waits for the process.
func (p *process) kill() {
	p.signal(syscall.SIGKILL)
	<-p.done
}

// exitError describes how the process ended, for error messages.
func (p *process) exitError() error {
	if p.err == nil {
		return fmt.Errorf("%s exited", p.name)
	}
	return fmt.Errorf("%s exited: %w", p.name, p.err)
}

// logOutputOnFailure registers a cleanup that shows the output of the
// process when the test failed. Register it before the stop cleanup so it
// runs after it (cleanups run last-in, first-out) and sees everything.
func logOutputOnFailure(tb testing.TB, name string, out func() string) {
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("testpeer: output of %s:\n%s", name, out())
		}
	})
}

// tailBuffer is a concurrency-safe writer that keeps the last max bytes.
type tailBuffer struct {
	mu      sync.Mutex
	buf     []byte
	max     int
	dropped int
}

func newTailBuffer(max int) *tailBuffer { return &tailBuffer{max: max} }

// Write appends p, dropping the oldest bytes beyond the limit.
func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.max; over > 0 {
		b.dropped += over
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

// String returns the kept output, noting how much was dropped.
func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dropped > 0 {
		return fmt.Sprintf("[... %d earlier bytes dropped ...]\n%s", b.dropped, b.buf)
	}
	return string(b.buf)
}

// waitUntil polls cond every few milliseconds until it returns true, returns
// an error, or the timeout passes.
func waitUntil(timeout time.Duration, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if err != nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("waiting for %s: timed out after %v", what, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago. Only
// for peers that cannot bind port 0 and report it (mosquitto); callers
// retry with a new port if the start fails on the bind.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// hostPort joins 127.0.0.1 and port.
func hostPort(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// dialable reports whether a TCP connection to addr succeeds right now.
func dialable(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

// errExited is returned by readiness checks when the peer process ended.
var errExited = errors.New("process exited")
