package main

import (
	"context"

	"github.com/fieldbridge/fieldbridge/adapters"
	cmdrouter "github.com/fieldbridge/fieldbridge/internal/commands"
	"github.com/fieldbridge/fieldbridge/localbroker"
)

// startCommands routes commands published on the local broker (by local
// clients, or by the bridge's downlink) to the adapters, until ctx ends.
// It subscribes before the buses run, so no command finds the gateway deaf;
// a command arriving before its bus runs is answered "not sent". A reload
// hands the router the new buses (updateCommands).
func (g *gateway) startCommands(ctx context.Context, gatewayID string, built []adapters.Adapter) error {
	r := cmdrouter.New(gatewayID, built, g.broker, g.log.With("component", "commands"))
	unsubscribe, err := g.broker.SubscribeMessages(cmdrouter.Filter, func(m localbroker.Message) {
		r.Handle(cmdrouter.Message{
			Topic: m.Topic, Payload: m.Payload, Retain: m.Retain, ClientID: m.ClientID,
			ResponseTopic: m.ResponseTopic, CorrelationData: m.CorrelationData, ResponseDenied: m.ResponseDenied,
		})
	})
	if err != nil {
		return err
	}
	g.commands = r
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		defer unsubscribe()
		r.Run(ctx)
	}()
	return nil
}

// updateCommands routes commands to the buses now running.
func (g *gateway) updateCommands(gatewayID string, buses []*bus) {
	if g.commands == nil {
		return
	}
	as := make([]adapters.Adapter, len(buses))
	for i, b := range buses {
		as[i] = b.a
	}
	g.commands.Update(gatewayID, as)
}
