package main

import (
	"reflect"
	"strings"

	"github.com/fieldbridge/fieldbridge/internal/config"
	"github.com/fieldbridge/fieldbridge/internal/httpapi"
	"github.com/fieldbridge/fieldbridge/localbroker"
)

// startHTTP builds the metrics, health and status endpoint and starts it
// (it listens only when the config has it on, which is the default). It
// runs after the broker listens and the bridge runs, and before the buses
// start: it reads the running buses and the bridge afresh on every request
// (gatewaySource), so what a reload changes shows at once.
func (g *gateway) startHTTP(cfg *config.Config) error {
	// Basic auth with the broker's users (brokerUsers). Until the broker
	// has users, the HTTP side has no authentication either: like the
	// broker, it listens on loopback by default, and check warns when it
	// does not.
	o := httpapi.Options{
		Auth:      brokerUsers{g.broker},
		Config:    *cfg.HTTP,
		GatewayID: cfg.Gateway.ID,
		Version:   strings.TrimPrefix(versionString(), "fieldbridge gateway "),
		Source:    gatewaySource{g},
		Broker:    g.broker,
		Started:   g.running.Load,
		Log:       g.log.With("component", "http"),
	}
	if g.commands != nil { // started before: it lives as long as the gateway
		o.Commands = g.commands
	}
	srv, err := httpapi.New(o)
	if err != nil {
		return err
	}
	if err := srv.Start(); err != nil {
		return explainListen(err, "http", cfg.HTTP.Addr(), `is another gateway running? Set http.listen to another address, or to "" to turn the HTTP side off`)
	}
	g.http = srv
	return nil
}

// applyHTTP applies a reload's http section: the listener moves, changes
// scheme or stops in place, and readiness, uptime and the page carry on.
// With TLS, every reload reads the certificate again (a renewed one is
// served from then on). A change that cannot be applied (the new address
// is taken) is logged, and the HTTP side keeps serving as it did.
func (g *gateway) applyHTTP(old, next *config.Config) {
	if g.http == nil {
		return
	}
	if reflect.DeepEqual(old.HTTP, next.HTTP) && old.Gateway.ID == next.Gateway.ID && next.HTTP.TLS == nil {
		return
	}
	if err := g.http.Reconfigure(*next.HTTP, next.Gateway.ID); err != nil {
		err = explainListen(err, "http", next.HTTP.Addr(), "is another program listening there?")
		g.log.Error("reload: the HTTP side keeps its settings", "err", err, "serving_on", g.http.Addr())
	}
}

// gatewaySource is the running gateway as the HTTP side reads it.
type gatewaySource struct{ g *gateway }

func (s gatewaySource) Buses() []httpapi.Bus {
	buses := s.g.currentBuses()
	out := make([]httpapi.Bus, len(buses))
	for i, b := range buses {
		out[i] = httpapi.Bus{Name: b.name, Adapter: b.a, Recorder: b.rec, Publisher: b.pub, CycledBefore: b.cycledBefore}
	}
	return out
}

func (s gatewaySource) Bridge() httpapi.BridgeStats {
	if b := s.g.currentBridge(); b != nil {
		return b // not a nil *bridge.Bridge in an interface
	}
	return nil
}

// brokerUsers is the HTTP side's basic auth: the broker's users as they
// are since the last reload (a user added, removed or given a new password
// by SIGHUP logs in, or fails, at the next request). A user gets the pages
// if its ACL would let it subscribe to {gateway.id}/#, since the pages show
// every value under it; other users get 403. No users: no authentication.
type brokerUsers struct{ b *localbroker.Broker }

func (u brokerUsers) Required() bool { return u.b.Users().Len() > 0 }

func (u brokerUsers) Authenticate(username, password, gatewayID string) httpapi.Access {
	users := u.b.Users()
	switch {
	case !users.Verify(username, password):
		return httpapi.Denied
	case !users.MaySubscribe(username, gatewayID+"/#"):
		return httpapi.Forbidden
	}
	return httpapi.Granted
}
