package simulator

import (
	"context"
	"errors"
	"fmt"
	stdlog "log"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/simonvetter/modbus"
)

// DefaultListen is where the simulator listens when Config.Listen is empty:
// loopback, so the demo never exposes a writable Modbus device to the network.
const DefaultListen = "127.0.0.1:5020"

// Config is the simulator block of the gateway's config.
type Config struct {
	// Listen is the TCP host:port to serve Modbus TCP on; empty means
	// DefaultListen. Port 0 picks a free port, which Addr then reports.
	Listen string `yaml:"listen"`
}

// Simulator serves the simulated plant on one Modbus TCP endpoint.
// Build it with New, then Start it once and Close it once.
type Simulator struct {
	log  *slog.Logger
	host string
	port int

	// mu guards everything below. A request holds it from start to end, so
	// each response is computed at one instant and Close can wait for the
	// request in flight by taking it.
	mu      sync.Mutex
	state   state
	server  *modbus.ModbusServer
	addr    string
	started time.Time
	// clock returns the time since start; nil means the real clock. Tests
	// set it (Freeze, or a stepping clock) to make values predictable.
	clock func() time.Duration
	// stored holds the registers (a bit as 0 or 1) of writable points.
	stored map[*entry][]uint16
}

type state int

const (
	stateNew state = iota
	stateRunning
	stateClosed
)

// New checks the config and prepares a simulator; nothing listens until Start.
func New(cfg Config, log *slog.Logger) (*Simulator, error) {
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	host, portText, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("simulator: listen %q: %w", cfg.Listen, err)
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("simulator: listen %q: port must be 0..65535: %w", cfg.Listen, err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Simulator{
		log:    log,
		host:   host,
		port:   int(port),
		stored: map[*entry][]uint16{},
	}
	for _, e := range plant.entries {
		if e.Writable {
			regs, err := e.encode(e.initial)
			if err != nil { // cannot happen: build encoded it already
				return nil, fmt.Errorf("simulator: %s: %w", e.Name, err)
			}
			s.stored[e] = regs
		}
	}
	return s, nil
}

// Start starts serving and returns once the port is listening. The clock of
// the simulated values starts here.
func (s *Simulator) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch s.state {
	case stateRunning:
		return errors.New("simulator: already started")
	case stateClosed:
		// The library cannot restart a stopped server without a data race
		// on its listener, so a closed simulator stays closed.
		return errors.New("simulator: closed")
	}
	server, addr, err := s.listen()
	if err != nil {
		return err
	}
	s.server, s.addr, s.started, s.state = server, addr, time.Now(), stateRunning
	units := make([]string, 0, len(plant.units))
	for id := range plant.units {
		units = append(units, strconv.Itoa(int(id))+"="+plant.units[id].device)
	}
	slices.Sort(units)
	s.log.Info("modbus simulator listening", "addr", addr, "units", strings.Join(units, " "))
	return nil
}

// listen starts the library's server. The library listens by itself and does
// not reveal its listener, so for port 0 we find a free port first and retry
// if another program takes it in between.
func (s *Simulator) listen() (*modbus.ModbusServer, string, error) {
	const attempts = 5
	for i := 1; ; i++ {
		port := s.port
		if port == 0 {
			p, err := freePort(s.host)
			if err != nil {
				return nil, "", fmt.Errorf("simulator: find a free port on %q: %w", s.host, err)
			}
			port = p
		}
		addr := net.JoinHostPort(s.host, strconv.Itoa(port))
		server, err := modbus.NewServer(&modbus.ServerConfiguration{
			URL:    "tcp://" + addr,
			Logger: stdlog.New(libLog{s.log}, "", 0),
		}, handler{s})
		if err != nil {
			return nil, "", fmt.Errorf("simulator: serve on %s: %w", addr, err)
		}
		err = server.Start()
		if err == nil {
			return server, addr, nil
		}
		if s.port != 0 || i == attempts || !errors.Is(err, syscall.EADDRINUSE) {
			return nil, "", fmt.Errorf("simulator: listen on %s: %w", addr, err)
		}
	}
}

// freePort asks the kernel for a free port on host.
func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	return port, l.Close()
}

// Addr returns the host:port the simulator listens on, with the actual port
// when the config asked for port 0; empty before Start.
func (s *Simulator) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Freeze stops the simulated clock at the given time since start, so every
// value is predictable; it may be called before Start and again to move the
// clock. Meant for tests and reproducible screenshots.
func (s *Simulator) Freeze(at time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clock = func() time.Duration { return at }
}

// now returns the simulated time since start. Callers hold mu.
func (s *Simulator) now() time.Duration {
	switch {
	case s.clock != nil:
		return s.clock()
	case s.started.IsZero():
		return 0
	}
	return time.Since(s.started)
}

// Close stops listening, closes client connections and returns once no
// request is being served; it is safe to call more than once.
//
// The library's accept and connection goroutines are not joinable: its Stop
// closes the listener and every connection, and those goroutines then return
// on the failed read, within moments. The tests check that they do.
func (s *Simulator) Close() error {
	s.mu.Lock()
	server := s.server
	wasRunning := s.state == stateRunning
	s.state = stateClosed
	s.mu.Unlock()
	// Taking mu above waited for the request in flight, and handlers refuse
	// work once the state is closed, so none touches the simulator after this.
	if !wasRunning {
		return nil
	}
	if err := server.Stop(); err != nil {
		return fmt.Errorf("simulator: stop: %w", err)
	}
	s.log.Info("modbus simulator stopped")
	return nil
}

// libLog routes simonvetter/modbus's log lines ("prefix [warn]: message")
// into the injected slog logger at the matching level; left alone the
// library writes to stdout.
type libLog struct{ log *slog.Logger }

func (l libLog) Write(p []byte) (int, error) {
	line := strings.TrimRight(string(p), "\n")
	level, component, msg := slog.LevelInfo, "", line
	if c, rest, ok := strings.Cut(line, " ["); ok {
		if lvl, m, ok := strings.Cut(rest, "]: "); ok {
			component, msg = c, m
			switch lvl {
			case "warn":
				level = slog.LevelWarn
			case "error":
				level = slog.LevelError
			}
		}
	}
	l.log.Log(context.Background(), level, msg, "component", component)
	return len(p), nil
}
