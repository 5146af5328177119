package main

import (
	"log/slog"
	"strings"
	"time"

	"github.com/fieldbridge/fieldbridge/adapters"
	"github.com/fieldbridge/fieldbridge/internal/config"
	"github.com/fieldbridge/fieldbridge/internal/httpapi"
)

// startHTTP starts the metrics, health and status endpoint when the config
// has it on, and returns the sink the adapters run with: the recorder the
// status page reads, in front of the publisher. It runs after the broker
// listens and the bridge exists, so that /readyz needs to wait only for
// the buses' first cycles and the bridge's first connection.
func (g *gateway) startHTTP(cfg *config.Config, log *slog.Logger) (adapters.Sink, error) {
	if cfg.HTTP == nil || !cfg.HTTP.Enabled() {
		return g.pub, nil
	}
	rec := httpapi.NewRecorder(g.adapters, g.pub, time.Now())
	o := httpapi.Options{
		Config:    *cfg.HTTP,
		GatewayID: cfg.Gateway.ID,
		Version:   strings.TrimPrefix(versionString(), "fieldbridge gateway "),
		Adapters:  g.adapters,
		Recorder:  rec,
		Broker:    g.broker,
		Publisher: g.pub,
		Log:       log.With("component", "http"),
	}
	if g.bridge != nil {
		o.Bridge = g.bridge
	}
	// Until the broker has users (broker.users), the HTTP side has no
	// authentication either: like the broker, it listens on loopback by
	// default, and check warns when it does not.
	srv, err := httpapi.New(o)
	if err != nil {
		return nil, err
	}
	if err := srv.Start(); err != nil {
		return nil, err
	}
	g.http = srv
	return rec, nil
}
