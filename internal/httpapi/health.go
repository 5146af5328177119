package httpapi

import (
	"net/http"

	"github.com/fieldbridge/fieldbridge/adapters"
)

// readiness reports whether the gateway is ready and, if not, what it
// waits for, in words a person reads on /readyz. Every condition holds for
// good once met (a first cycle, a first connection), so readiness never
// flips back: an outage later is for the metrics and the status page, not
// a reason for a supervisor to take the gateway out of service. Nor does a
// reload: once ready, the gateway stays ready (the sampler earns readiness
// every second, asked or not), and a bus a reload restarted counts with
// its predecessor's first cycle (Bus.CycledBefore).
func (s *Server) readiness() (bool, []string) {
	if s.ready.Load() {
		return true, []string{}
	}
	waiting := []string{}
	if s.o.Started != nil && !s.o.Started() {
		return false, append(waiting, "gateway: starting")
	}
	if s.o.BrokerListening != nil && !s.o.BrokerListening() {
		waiting = append(waiting, "broker: listening")
	}
	for _, b := range s.o.Source.Buses() {
		r, ok := b.Adapter.(adapters.StatusReporter)
		if !ok || b.CycledBefore {
			continue
		}
		if bs := r.Status(); !bs.FirstCycleDone {
			waiting = append(waiting, "bus "+b.busName(&bs)+": first cycle")
		}
	}
	if br := s.o.Source.Bridge(); br != nil {
		if st := br.Stats(); st.Connects == 0 {
			what := "bridge: first connection"
			if st.Upstream != "" {
				what += " to " + st.Upstream
			}
			waiting = append(waiting, what)
		}
	}
	if len(waiting) > 0 {
		return false, waiting
	}
	s.ready.Store(true)
	return true, waiting
}

type healthBody struct {
	Status string `json:"status"`
}

type readyBody struct {
	Ready      bool     `json:"ready"`
	WaitingFor []string `json:"waiting_for"`
}

// handleHealthz answers 200 while the process serves HTTP at all.
func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, healthBody{Status: "ok"})
}

// handleReadyz answers 200 once ready, else 503 with what it waits for.
func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	ok, waiting := s.readiness()
	code := http.StatusOK
	if !ok {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, readyBody{Ready: ok, WaitingFor: waiting})
}
