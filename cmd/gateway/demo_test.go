package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fieldbridge/fieldbridge/internal/config"
	"github.com/fieldbridge/fieldbridge/internal/simulator"
	"github.com/fieldbridge/fieldbridge/internal/testpeer"
)

func loopbackAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestShippedConfigsCheck: every config under configs/ passes `gateway
// check` as shipped.
func TestShippedConfigsCheck(t *testing.T) {
	files, _ := filepath.Glob("../../configs/*.yaml")
	if len(files) < 2 {
		t.Fatalf("configs: %v", files)
	}
	for _, f := range files {
		var out bytes.Buffer
		if code := run([]string{"check", "--config", f}, &out, &out); code != exitOK {
			t.Errorf("gateway check %s: exit %d\n%s", f, code, out.String())
		}
	}
}

// TestDemoEndToEnd runs the demo config in-process and reads every point
// from the embedded broker with mosquitto_sub: all good, every "same value,
// four orders" group agrees, availability online, and a clean shutdown.
func TestDemoEndToEnd(t *testing.T) {
	data, err := os.ReadFile("../../configs/demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	brokerAddr, simAddr := loopbackAddr(t), loopbackAddr(t)
	text := strings.ReplaceAll(string(data), "127.0.0.1:1885", brokerAddr)
	text = strings.ReplaceAll(text, "127.0.0.1:5020", simAddr)
	cfg, err := config.Parse("demo.yaml", []byte(withoutHTTP(text)), config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(testLog{t}, nil))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	g, err := startGateway(ctx, cfg, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	var waited sync.WaitGroup
	waited.Add(1)
	go func() { defer waited.Done(); g.wait(ctx, nil, "") }()

	sub := testpeer.Subscribe(t, testpeer.SubOptions{Addr: brokerAddr, Filter: "demo/#"})
	latest := map[string]map[string]any{}
	points := len(simulator.Map())
	sub.WaitFor(t, 15*time.Second, func(m testpeer.Message) bool {
		var v map[string]any
		if json.Unmarshal(m.Payload, &v) == nil {
			latest[m.Topic] = v
		}
		return len(latest) >= points
	})
	groups := map[string]string{}
	compared := 0
	for _, p := range simulator.Map() {
		topic := "demo/" + p.Device + "/" + p.Name
		v, ok := latest[topic]
		if !ok {
			t.Errorf("%s never published", topic)
			continue
		}
		if v["quality"] != "good" {
			t.Errorf("%s: %v", topic, v)
			continue
		}
		if p.Group == "" {
			continue
		}
		// Values move with time: compare members published at the same
		// instant (one request reads the whole group).
		key := p.Device + "/" + p.Group + "@" + fmt.Sprint(v["ts"])
		got := fmt.Sprint(v["value"])
		if prev, seen := groups[key]; seen {
			compared++
			if prev != got {
				t.Errorf("group %s: %s = %s, another member = %s", p.Group, p.Name, got, prev)
			}
		}
		groups[key] = got
	}
	if compared < 10 {
		t.Errorf("only %d group members could be compared", compared)
	}
	for _, dev := range []string{"power_meter", "pump_drive"} {
		sub.WaitFor(t, 5*time.Second, func(m testpeer.Message) bool {
			return m.Topic == "demo/"+dev+"/availability" && string(m.Payload) == "online"
		})
	}
	cancel()
	waited.Wait()
	sub.WaitFor(t, 5*time.Second, func(m testpeer.Message) bool {
		return m.Topic == "demo/power_meter/availability" && string(m.Payload) == "offline"
	})
}

type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// withoutHTTP turns the HTTP side off in a test config that does not set
// it: its default address, 127.0.0.1:8980, may be held by a gateway or
// another test process on the machine (the HTTP tests use free ports).
func withoutHTTP(text string) string {
	if strings.HasPrefix(text, "http:") || strings.Contains(text, "\nhttp:") {
		return text
	}
	return strings.TrimRight(text, "\n") + "\nhttp: {listen: \"\"}\n"
}
