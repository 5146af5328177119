// Package httpapi is the gateway's HTTP side, read-only beside the data
// path: Prometheus metrics (/metrics), liveness and readiness (/healthz,
// /readyz), a status page for people (/) and the same as JSON
// (/api/status). It reads the counters each part keeps; the only thing it
// adds to the poll path is the Recorder, which remembers each point's
// latest sample.
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fieldbridge/fieldbridge/adapters"
	"github.com/fieldbridge/fieldbridge/internal/publisher"
)

// Authenticator checks HTTP basic-auth credentials. The broker's user list
// (broker.users) is meant to satisfy it, so that the people who may read
// the plant's values over MQTT are the ones who may read them here.
type Authenticator interface {
	Authenticate(username, password string) bool
}

// PublisherStats is the publisher as the HTTP side reads it.
type PublisherStats interface{ Stats() publisher.Stats }

var _ PublisherStats = (*publisher.Publisher)(nil)

// Options are what the server shows and how it is reached.
type Options struct {
	Config             Config
	GatewayID, Version string
	Adapters           []adapters.Adapter
	// Recorder must be the Sink the adapters run with.
	Recorder *Recorder
	// Broker, Bridge and Publisher may be nil (no bridge configured).
	Broker    BrokerStats
	Bridge    BridgeStats
	Publisher PublisherStats
	// BrokerListening, if set, is a readiness condition.
	BrokerListening func() bool
	// Auth, if set, requires basic auth on everything but /healthz.
	Auth Authenticator
	Log  *slog.Logger
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
	// Refresh is how often the status page reloads itself (default 5s).
	Refresh time.Duration
}

// Server is the HTTP side of a running gateway.
type Server struct {
	o      Options
	now    func() time.Time
	start  time.Time
	log    *slog.Logger
	mux    *http.ServeMux
	ready  atomic.Bool
	oldest oldestTracker

	srv  *http.Server
	ln   net.Listener
	done chan struct{}
	stop chan struct{}
	wg   sync.WaitGroup
}

// New builds the server; nothing listens until Start.
func New(o Options) (*Server, error) {
	if !o.Config.checked {
		return nil, errors.New("httpapi: config not checked (call Config.Check first)")
	}
	if o.Recorder == nil {
		return nil, errors.New("httpapi: no recorder")
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
	s := &Server{o: o, now: o.Now, start: o.Now(), log: o.Log, mux: http.NewServeMux()}
	s.mux.HandleFunc("GET /healthz", s.handleHealthz)
	s.mux.Handle("GET /readyz", s.authed(s.handleReadyz))
	s.mux.Handle("GET /metrics", s.authed(s.handleMetrics))
	s.mux.Handle("GET /api/status", s.authed(s.handleAPIStatus))
	s.mux.Handle("GET /{$}", s.authed(s.handlePage))
	return s, nil
}

// Handler is the server's routes, for tests and for embedding.
func (s *Server) Handler() http.Handler { return s.mux }

// Start listens and serves. An address the config names that cannot be
// bound is an error; the default address taken by something else is only
// logged, because a status page must not keep a gateway from polling.
func (s *Server) Start() error {
	addr := s.o.Config.Addr()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if s.o.Config.defaulted {
			s.log.Warn("http: cannot listen on the default address; status page and metrics are off (set http.listen)", "addr", addr, "err", err)
			return nil
		}
		return fmt.Errorf("http: listen on %s: %w", addr, err)
	}
	scheme := "http"
	s.srv = &http.Server{
		Handler:           s.mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	if t := s.o.Config.TLS; t != nil {
		conf, err := t.load()
		if err != nil {
			ln.Close()
			return fmt.Errorf("http: %w", err)
		}
		s.srv.TLSConfig = conf
		scheme = "https"
	}
	s.ln, s.done, s.stop = ln, make(chan struct{}), make(chan struct{})
	go func() {
		defer close(s.done)
		var err error
		if s.srv.TLSConfig != nil {
			err = s.srv.ServeTLS(ln, "", "")
		} else {
			err = s.srv.Serve(ln)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("http server stopped", "err", err)
		}
	}()
	if s.o.Bridge != nil {
		s.wg.Add(1)
		go s.sampleQueue()
	}
	s.log.Info("status page and metrics", "url", scheme+"://"+ln.Addr().String()+"/", "auth", s.o.Auth != nil)
	return nil
}

// sampleQueue looks at the bridge's backlog every second, so that the
// oldest-message estimate sees the queue empty even between scrapes.
func (s *Server) sampleQueue() {
	defer s.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.oldest.observe(s.o.Bridge.Stats().Pending, s.now())
		}
	}
}

// Addr is the listening address ("" when not listening).
func (s *Server) Addr() string {
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Close stops serving: requests in progress get up to two seconds.
func (s *Server) Close() error {
	if s.srv == nil {
		return nil
	}
	close(s.stop)
	s.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if err != nil {
		err = s.srv.Close()
	}
	<-s.done
	s.srv = nil
	return err
}

// authed requires basic auth when an Authenticator is set; the realm
// makes browsers ask. Comparing passwords is the Authenticator's business
// (bcrypt for the broker's users).
func (s *Server) authed(h http.HandlerFunc) http.Handler {
	if s.o.Auth == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := r.BasicAuth()
		if !ok || user == "" || !s.o.Auth.Authenticate(user, pass) {
			w.Header().Set("WWW-Authenticate", `Basic realm="fieldbridge", charset="UTF-8"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		h(w, r)
	})
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
