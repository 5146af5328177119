package publisher

import (
	"testing"

	"github.com/fieldbridge/fieldbridge/adapters"
)

// TestForcePublishesUnchangedValues: a write's read-back is published even
// when it equals the last value or lies within the deadband, so subscribers
// see at once what the device holds after a command.
func TestForcePublishesUnchangedValues(t *testing.T) {
	pt := &adapters.Point{Topic: "t/sp", Deadband: 5}
	p, b := setup(pt)
	p.Publish([]adapters.Sample{{Point: pt, Value: adapters.Int(100), Time: t0}})
	p.Publish([]adapters.Sample{{Point: pt, Value: adapters.Int(102), Time: t0}})
	if got := b.take(); len(got) != 1 {
		t.Fatalf("on_change with deadband: %v", got)
	}
	p.Publish([]adapters.Sample{{Point: pt, Value: adapters.Int(102), Time: t0, Force: true}})
	p.Publish([]adapters.Sample{{Point: pt, Value: adapters.Int(102), Time: t0, Force: true}})
	if got := b.take(); len(got) != 2 || got[0].payload != `{"value":102,"ts":"2026-11-26T09:00:00.123Z","quality":"good"}` {
		t.Errorf("forced: %v", got)
	}
	// The deadband now counts from the forced value.
	p.Publish([]adapters.Sample{{Point: pt, Value: adapters.Int(106), Time: t0}})
	if got := b.take(); len(got) != 0 {
		t.Errorf("within the deadband of the forced value: %v", got)
	}
}
