// Package httpapi is the gateway's HTTP side, read-only beside the data
// path: Prometheus metrics (/metrics), liveness and readiness (/healthz,
// /readyz), a status page for people (/) and the same as JSON
// (/api/status). It reads the counters each part keeps; the only thing it
// adds to the poll path is the Recorder, which remembers each point's
// latest sample.
package httpapi

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fieldbridge/fieldbridge/internal/publisher"
)

// PublisherStats is the publisher as the HTTP side reads it.
type PublisherStats interface{ Stats() publisher.Stats }

var _ PublisherStats = (*publisher.Publisher)(nil)

// Options are what the server shows and how it is reached.
type Options struct {
	Config             Config
	GatewayID, Version string
	// Source is the running gateway: its buses and its bridge.
	Source Source
	// Broker may be nil.
	Broker BrokerStats
	// Commands is the command router (…/set); may be nil.
	Commands CommandStats
	// BrokerListening and Started, if set, are readiness conditions;
	// Started is false until the gateway has started every part, so that
	// a request that arrives while it starts is not told "ready" before
	// the buses exist.
	BrokerListening, Started func() bool
	// Auth, if set and while it requires it, puts basic auth on
	// everything but /healthz (auth.go).
	Auth Authenticator
	Log  *slog.Logger
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
	// Refresh is how often the status page reloads itself (default 5s).
	Refresh time.Duration
}

// Server is the HTTP side of a running gateway. It outlives reloads: a
// changed http section moves its listener (Reconfigure) while readiness,
// the uptime and the backlog's age estimate carry on.
type Server struct {
	o     Options
	now   func() time.Time
	start time.Time
	log   *slog.Logger
	mux   *http.ServeMux
	ready atomic.Bool
	// authFailures counts requests refused for their credentials (401)
	// or for what the user may read (403).
	authFailures atomic.Uint64
	authLog      logLimiter
	cert         atomic.Pointer[tls.Certificate] // served by every TLS listener; a reload replaces it

	gatewayID atomic.Pointer[string]

	// mu guards what follows; Start, Reconfigure and Close hold it
	// throughout. Handlers never take it (Close waits for them under it).
	mu      sync.Mutex
	cfg     Config
	cur     *listener // nil while not serving
	started bool
	stop    chan struct{}
	wg      sync.WaitGroup // the sampler
}

// New builds the server; nothing listens until Start.
func New(o Options) (*Server, error) {
	if !o.Config.checked {
		return nil, errors.New("httpapi: config not checked (call Config.Check first)")
	}
	if o.Source == nil {
		return nil, errors.New("httpapi: no source")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Refresh <= 0 {
		o.Refresh = 5 * time.Second
	}
	s := &Server{o: o, now: o.Now, start: o.Now(), log: o.Log, mux: http.NewServeMux(), cfg: o.Config}
	id := o.GatewayID
	s.gatewayID.Store(&id)
	s.mux.HandleFunc("GET /healthz", s.handleHealthz)
	s.mux.Handle("GET /readyz", s.authed(s.handleReadyz))
	s.mux.Handle("GET /metrics", s.authed(s.handleMetrics))
	s.mux.Handle("GET /api/status", s.authed(s.handleAPIStatus))
	s.mux.Handle("GET /{$}", s.authed(s.handlePage))
	return s, nil
}

// Handler is the server's routes, for tests and for embedding.
func (s *Server) Handler() http.Handler { return s.mux }

// Start listens and serves (unless the config turns the HTTP side off).
// An address the config names that cannot be bound is an error; the
// default address taken by something else is only logged, because a
// status page must not keep a gateway from polling.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("httpapi: started twice")
	}
	if s.cfg.Enabled() {
		l, err := s.listen(s.cfg)
		switch {
		case err != nil && s.cfg.defaulted:
			s.log.Warn("http: cannot listen on the default address; status page and metrics are off (set http.listen)", "addr", s.cfg.Addr(), "err", err)
		case err != nil:
			return err
		}
		s.cur = l
	}
	s.started, s.stop = true, make(chan struct{})
	s.wg.Add(1)
	go s.sample()
	return nil
}

// Reconfigure applies a changed http section (a reload) and the gateway
// id: the listener moves to a new address, switches between HTTP and
// HTTPS, or stops; an unchanged one is kept, and its certificate is read
// again (so a reload picks up a renewed certificate). On error the server
// keeps serving as before and the error says why.
func (s *Server) Reconfigure(c Config, gatewayID string) error {
	if !c.checked {
		return errors.New("httpapi: config not checked (call Config.Check first)")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started {
		return errors.New("httpapi: not started")
	}
	s.gatewayID.Store(&gatewayID)
	old, cur := s.cfg, s.cur
	switch {
	case !c.Enabled():
		if cur != nil {
			cur.close()
			s.cur = nil
			s.log.Info("http: status page and metrics are off (http.listen is \"\")")
		}
		s.cfg = c
		return nil
	case cur != nil && cur.addr == c.Addr() && cur.tls == (c.TLS != nil):
		if c.TLS != nil {
			cert, err := c.TLS.certificate()
			if err != nil {
				return fmt.Errorf("http: %w", err)
			}
			s.cert.Store(cert)
		}
		s.cfg = c
		return nil
	}
	// A new listener. On the same address the old one has to go first;
	// should the new one fail there, the old settings are restored.
	sameAddr := cur != nil && cur.addr == c.Addr()
	if sameAddr {
		cur.close()
		s.cur = nil
	}
	next, err := s.listen(c)
	if err != nil {
		if sameAddr {
			if back, err2 := s.listen(old); err2 == nil {
				s.cur = back
			} else {
				s.log.Error("http: cannot serve on the old settings either; status page and metrics are off", "err", err2)
			}
		}
		return err
	}
	if cur != nil && !sameAddr {
		cur.close()
	}
	s.cur, s.cfg = next, c
	return nil
}

// listener is one bound address with its http.Server.
type listener struct {
	addr string // as configured
	tls  bool
	srv  *http.Server
	ln   net.Listener
	done chan struct{}
}

// listen binds c's address and serves on it.
func (s *Server) listen(c Config) (*listener, error) {
	var conf *tls.Config
	if c.TLS != nil {
		// The certificate is read before binding: a bad one leaves the
		// current listener alone.
		cert, err := c.TLS.certificate()
		if err != nil {
			return nil, fmt.Errorf("http: %w", err)
		}
		s.cert.Store(cert)
		conf = &tls.Config{
			MinVersion:     tls.VersionTLS12,
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return s.cert.Load(), nil },
		}
	}
	addr := c.Addr()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("http: listen on %s: %w", addr, err)
	}
	l := &listener{addr: addr, tls: conf != nil, ln: ln, done: make(chan struct{})}
	l.srv = &http.Server{
		Handler:           s.mux,
		TLSConfig:         conf,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	go func() {
		defer close(l.done)
		var err error
		if conf != nil {
			err = l.srv.ServeTLS(ln, "", "")
		} else {
			err = l.srv.Serve(ln)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("http server stopped", "err", err)
		}
	}()
	scheme := "http"
	if conf != nil {
		scheme = "https"
	}
	s.log.Info("status page and metrics", "url", scheme+"://"+ln.Addr().String()+"/", "auth", s.authRequired())
	return l, nil
}

// close stops serving: requests in progress get up to two seconds.
func (l *listener) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := l.srv.Shutdown(ctx); err != nil {
		_ = l.srv.Close()
	}
	<-l.done
}

// sample runs every second while the server runs: it looks at readiness,
// so that readiness is earned once for good whether or not anybody asked (a
// reload afterwards never makes the gateway unready).
func (s *Server) sample() {
	defer s.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.readiness()
		}
	}
}

// Addr is the listening address ("" when not listening).
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == nil {
		return ""
	}
	return s.cur.ln.Addr().String()
}

// GatewayID is the gateway id the page shows.
func (s *Server) GatewayID() string { return *s.gatewayID.Load() }

// Close stops serving: requests in progress get up to two seconds.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started {
		return nil
	}
	s.started = false
	close(s.stop)
	s.wg.Wait()
	if s.cur != nil {
		s.cur.close()
		s.cur = nil
	}
	return nil
}

func (s *Server) handleAPIStatus(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.status(r.URL.Query().Get("device")))
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(append(data, '\n'))
}
