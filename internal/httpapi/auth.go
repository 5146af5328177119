package httpapi

import (
	"net/http"
	"sync"
	"time"
)

// Access is an Authenticator's verdict on one request's credentials.
type Access int

const (
	// Denied: no such user, or the wrong password (401, asked again).
	Denied Access = iota
	// Forbidden: the right password, but the user may not read what the
	// HTTP side shows (403).
	Forbidden
	// Granted: serve the request.
	Granted
)

// Authenticator decides HTTP basic auth. The broker's user list
// (broker.users) satisfies it in the gateway, so that the people who may
// read the plant's values over MQTT are the ones who may read them here.
// Both methods are asked on every request, so that a reload that changes
// the users applies to the next request.
type Authenticator interface {
	// Required reports whether requests must authenticate (the gateway:
	// while broker.users is not empty).
	Required() bool
	// Authenticate checks a username and password. gatewayID is the
	// root of every topic the HTTP side shows values of.
	Authenticate(username, password, gatewayID string) Access
}

// authRequired reports whether requests authenticate now.
func (s *Server) authRequired() bool { return s.o.Auth != nil && s.o.Auth.Required() }

// authed puts basic auth in front of h while the Authenticator requires
// it; the realm makes browsers ask. Comparing passwords is the
// Authenticator's business (bcrypt for the broker's users). Refusals are
// counted (fieldbridge_http_auth_failures_total) and logged at most once
// per 10 s, with the username and never the password.
func (s *Server) authed(h http.HandlerFunc) http.Handler {
	if s.o.Auth == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.o.Auth.Required() {
			h(w, r)
			return
		}
		user, pass, ok := r.BasicAuth()
		verdict := Denied
		if ok && user != "" {
			verdict = s.o.Auth.Authenticate(user, pass, s.GatewayID())
		}
		switch verdict {
		case Granted:
			h(w, r)
			return
		case Forbidden:
			s.refused(r, user, "this user may not read "+s.GatewayID()+"/#")
			http.Error(w, "forbidden: this user may not read the gateway's values", http.StatusForbidden)
		default:
			if ok {
				s.refused(r, user, "wrong username or password")
			}
			w.Header().Set("WWW-Authenticate", `Basic realm="fieldbridge", charset="UTF-8"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
		}
	})
}

// refused counts and logs a request refused for its credentials. A
// browser's first request, without any, is not a failure.
func (s *Server) refused(r *http.Request, user, reason string) {
	s.authFailures.Add(1)
	if n, ok := s.authLog.allow(s.now()); ok {
		s.log.Info("http request refused", "reason", reason, "username", user, "remote", r.RemoteAddr, "path", r.URL.Path, "refusals_not_logged", n)
	}
}

// logLimiter lets one line through per 10 s and counts the others, so
// that a client retrying a wrong password costs one line in ten seconds.
type logLimiter struct {
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

func (l *logLimiter) allow(now time.Time) (suppressed int, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() && now.Sub(l.last) < 10*time.Second {
		l.suppressed++
		return 0, false
	}
	n := l.suppressed
	l.last, l.suppressed = now, 0
	return n, true
}
