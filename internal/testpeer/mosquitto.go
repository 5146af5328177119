package testpeer

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// MosquittoOptions configures a mosquitto broker. The zero value is an
// anonymous broker without persistence on one plain listener.
type MosquittoOptions struct {
	// Users, if not empty, is written to a password file with
	// mosquitto_passwd -b, and anonymous access is turned off.
	Users map[string]string
	// PasswordFile is an existing password file; like Users, it turns
	// anonymous access off.
	PasswordFile string
	// TLS adds a TLS listener (see TLSAddr) next to the plain one.
	TLS *MosquittoTLS
	// Persistence keeps sessions and queued messages across Stop/Start
	// (SIGTERM saves them; Kill loses what was not autosaved).
	Persistence bool
	// MaxInflightMessages and MaxQueuedMessages set the per-client limits
	// (mosquitto's defaults, 20 and 1000, when zero).
	MaxInflightMessages int
	MaxQueuedMessages   int
	// Debug logs every packet (log_type all); otherwise connections,
	// subscriptions, warnings and errors are logged.
	Debug bool
	// ExtraConfig lines are appended to the generated configuration,
	// after the listeners (so listener options apply to the last one).
	ExtraConfig []string
}

// MosquittoTLS configures the TLS listener.
type MosquittoTLS struct {
	CAFile, CertFile, KeyFile string
	// RequireCertificate makes clients present a certificate signed by
	// CAFile (require_certificate true).
	RequireCertificate bool
	// UseIdentityAsUsername takes the username from the client
	// certificate's common name.
	UseIdentityAsUsername bool
}

// Mosquitto is a mosquitto broker run for a test. It keeps its ports and
// configuration across Stop and Start.
type Mosquitto struct {
	tb      testing.TB
	bin     string
	dir     string
	opts    MosquittoOptions
	logPath string
	out     *tailBuffer // stdout/stderr of every mosquitto process
	port    int
	tlsPort int // 0 without TLS

	mu   sync.Mutex
	proc *process // nil while stopped
}

// StartMosquitto starts a broker on 127.0.0.1 and free ports, with its own
// configuration in a temp dir, and stops it in cleanup.
func StartMosquitto(tb testing.TB, opts MosquittoOptions) *Mosquitto {
	tb.Helper()
	m := &Mosquitto{
		tb: tb, bin: lookPeer(tb, "mosquitto", "mosquitto"), dir: tb.TempDir(),
		opts: opts, out: newTailBuffer(64 << 10),
	}
	m.logPath = filepath.Join(m.dir, "mosquitto.log")
	if len(opts.Users) > 0 {
		pwfile, err := writePasswordFile(tb, m.dir, opts.Users)
		if err != nil {
			tb.Fatalf("testpeer: mosquitto: %v", err)
		}
		m.opts.PasswordFile = pwfile
	}
	logOutputOnFailure(tb, "mosquitto", func() string {
		return fmt.Sprintf("stdout/stderr:\n%s\nlog file %s:\n%s", m.out, m.logPath, m.logSince(0))
	})
	tb.Cleanup(func() { m.stop(false) })

	// The ports come from the kernel a moment before mosquitto binds them;
	// if something else took one meanwhile, try new ones.
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if m.port, err = freePort(); err != nil {
			break
		}
		if opts.TLS != nil {
			if m.tlsPort, err = freePort(); err != nil {
				break
			}
		}
		if err = m.start(0); err == nil {
			return m
		}
	}
	tb.Fatalf("testpeer: start mosquitto: %v", err)
	return nil
}

// Addr returns the plain listener's address, "127.0.0.1:port".
func (m *Mosquitto) Addr() string { return hostPort(m.port) }

// TLSAddr returns the TLS listener's address, or "" without TLS.
func (m *Mosquitto) TLSAddr() string {
	if m.tlsPort == 0 {
		return ""
	}
	return hostPort(m.tlsPort)
}

// Log returns the broker's log file.
func (m *Mosquitto) Log() string {
	b, _ := os.ReadFile(m.logPath)
	return string(b)
}

// Stop ends the broker with SIGTERM and waits for it.
func (m *Mosquitto) Stop() {
	m.tb.Helper()
	if !m.stop(false) {
		m.tb.Fatalf("testpeer: mosquitto Stop: not running")
	}
}

// Kill ends the broker with SIGKILL (no goodbye to clients, no
// persistence save) and waits for it.
func (m *Mosquitto) Kill() {
	m.tb.Helper()
	if !m.stop(true) {
		m.tb.Fatalf("testpeer: mosquitto Kill: not running")
	}
}

// Start starts the broker again on the same ports and waits until it
// accepts connections. A port still held (TIME_WAIT, a slow exit) is
// retried for up to 15 s.
func (m *Mosquitto) Start() {
	m.tb.Helper()
	if err := m.start(startTimeout); err != nil {
		m.tb.Fatalf("testpeer: mosquitto Start: %v", err)
	}
}

// Pid returns the broker's process id, or 0 when it is not running.
func (m *Mosquitto) Pid() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.proc == nil || m.proc.exited() {
		return 0
	}
	return m.proc.cmd.Process.Pid
}

// Running reports whether the broker process is running.
func (m *Mosquitto) Running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.proc != nil && !m.proc.exited()
}

func (m *Mosquitto) stop(kill bool) bool {
	m.mu.Lock()
	p := m.proc
	m.proc = nil
	m.mu.Unlock()
	if p == nil {
		return false
	}
	if kill {
		p.kill()
	} else {
		p.stop(5 * time.Second)
	}
	return true
}

// start writes the configuration and starts mosquitto; bind failures are
// retried until retryFor has passed.
func (m *Mosquitto) start(retryFor time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.proc != nil {
		return errors.New("already running")
	}
	conf := filepath.Join(m.dir, "mosquitto.conf")
	if err := os.WriteFile(conf, []byte(m.config()), 0o644); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	deadline := time.Now().Add(retryFor)
	for {
		p, err := m.startOnce(conf)
		if err == nil {
			m.proc = p
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond) // give the old socket time to go
	}
}

func (m *Mosquitto) startOnce(conf string) (*process, error) {
	logStart, _ := os.Stat(m.logPath)
	cmd := exec.Command(m.bin, "-c", conf)
	cmd.Stdout, cmd.Stderr = m.out, m.out
	p, err := startProcess("mosquitto", cmd)
	if err != nil {
		return nil, err
	}
	addrs := []string{m.Addr()}
	if m.tlsPort != 0 {
		addrs = append(addrs, m.TLSAddr())
	}
	err = waitUntil(startTimeout, "mosquitto listeners", func() (bool, error) {
		if p.exited() {
			return false, errExited
		}
		for _, a := range addrs {
			if !dialable(a) {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		p.stop(time.Second)
		var since int64
		if logStart != nil {
			since = logStart.Size()
		}
		return nil, fmt.Errorf("%w; mosquitto said: %s%s", err, m.out, m.logSince(since))
	}
	return p, nil
}

// config renders mosquitto.conf.
func (m *Mosquitto) config() string {
	o := m.opts
	var c []string
	add := func(format string, args ...any) { c = append(c, fmt.Sprintf(format, args...)) }
	add("# generated by fieldbridge internal/testpeer")
	add("per_listener_settings false")
	if o.PasswordFile != "" {
		add("allow_anonymous false")
		add("password_file %s", o.PasswordFile)
	} else {
		add("allow_anonymous true")
	}
	if os.Geteuid() == 0 {
		add("user root") // else it drops to user mosquitto, who cannot read our temp dir
	}
	if o.Persistence {
		add("persistence true")
		add("persistence_location %s/", m.dir)
	} else {
		add("persistence false")
	}
	add("log_dest file %s", m.logPath)
	add("log_timestamp true")
	add("log_timestamp_format %%H:%%M:%%S")
	if o.Debug {
		add("log_type all")
	} else {
		for _, t := range []string{"error", "warning", "notice", "information", "subscribe", "unsubscribe"} {
			add("log_type %s", t)
		}
	}
	add("connection_messages true")
	if o.MaxInflightMessages > 0 {
		add("max_inflight_messages %d", o.MaxInflightMessages)
	}
	if o.MaxQueuedMessages > 0 {
		add("max_queued_messages %d", o.MaxQueuedMessages)
	}
	add("listener %d 127.0.0.1", m.port)
	if t := o.TLS; t != nil {
		add("listener %d 127.0.0.1", m.tlsPort)
		add("cafile %s", t.CAFile)
		add("certfile %s", t.CertFile)
		add("keyfile %s", t.KeyFile)
		add("require_certificate %v", t.RequireCertificate)
		add("use_identity_as_username %v", t.UseIdentityAsUsername)
	}
	c = append(c, o.ExtraConfig...)
	return strings.Join(c, "\n") + "\n"
}

// logSince returns the log file from offset on, at most its last 64 KiB.
func (m *Mosquitto) logSince(offset int64) string {
	const max = 64 << 10
	b, err := os.ReadFile(m.logPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	b = b[min(int(offset), len(b)):]
	if len(b) > max {
		return fmt.Sprintf("[... %d earlier bytes ...]\n%s", len(b)-max, b[len(b)-max:])
	}
	return string(b)
}

// writePasswordFile creates a mosquitto password file with
// mosquitto_passwd -b (hashing as the broker expects).
func writePasswordFile(tb testing.TB, dir string, users map[string]string) (string, error) {
	tb.Helper()
	bin := lookPeer(tb, "mosquitto_passwd", "mosquitto")
	path := filepath.Join(dir, "passwd")
	names := make([]string, 0, len(users))
	for u := range users {
		names = append(names, u)
	}
	sort.Strings(names)
	for i, u := range names {
		args := []string{"-b", path, u, users[u]}
		if i == 0 {
			args = append([]string{"-c"}, args...)
		}
		if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
			return "", fmt.Errorf("mosquitto_passwd for user %q: %w: %s", u, err, out)
		}
	}
	return path, nil
}
