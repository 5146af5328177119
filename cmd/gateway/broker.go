package main

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/fieldbridge/fieldbridge/internal/config"
	"github.com/fieldbridge/fieldbridge/localbroker"
)

// The broker's part of starting and reloading: its failures in one line
// with a hint, and a reload that applies broker: changes to the running
// broker (localbroker.Change) or rejects them with everything as it was.

// explainBroker rewrites a listener that cannot open its address into one
// line: "broker: listen on ADDR: address already in use — hint", with the
// listener's key and type when it is not the `listen` shorthand.
func explainBroker(err error) error {
	var le *localbroker.ListenError
	if !errors.As(err, &le) {
		return err
	}
	part := "broker"
	if le.Key != "listen" {
		part = fmt.Sprintf("broker: %s (%s)", le.Key, le.Type)
	}
	hint := "is another MQTT broker (mosquitto) running?"
	if le.Type == "ws" || le.Type == "wss" {
		hint = "is another MQTT broker (mosquitto) or a web server running?"
	}
	for _, errno := range []error{syscall.EADDRINUSE, syscall.EACCES, syscall.EADDRNOTAVAIL} {
		if errors.Is(le.Err, errno) {
			return explainListen(le.Err, part, le.Address, hint)
		}
	}
	return fmt.Errorf("%s: %s listener on %s: %w", part, le.Type, le.Address, le.Err)
}

// prepareBroker binds what a reload adds to the broker. An error rejects
// the whole reload, and the broker stays as it was.
func (g *gateway) prepareBroker(next *config.Config) (*localbroker.Change, error) {
	c, err := g.broker.Prepare(next.Broker)
	if err != nil {
		return nil, explainBroker(err)
	}
	return c, nil
}
