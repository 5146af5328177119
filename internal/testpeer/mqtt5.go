package testpeer

import (
	"encoding/hex"
	"errors"
	"fmt"
	"testing"
	"time"
)

// RequestOptions is one MQTT 5 request/response exchange (Request).
type RequestOptions struct {
	// Addr is the broker, "host:port".
	Addr    string
	Topic   string
	Payload string
	// ResponseTopic and CorrelationData are the request's MQTT 5
	// properties; the client subscribes to ResponseTopic first.
	ResponseTopic   string
	CorrelationData []byte
	Retain          bool
	// Username and Password authenticate the client.
	Username, Password string
	// Timeout for the answer (default 10s).
	Timeout time.Duration
}

// Response is what came back on the response topic.
type Response struct {
	Topic, Payload, ContentType string
	CorrelationData             []byte
}

// ErrNoResponse is Request's error when nothing came back on the response
// topic within the timeout (the exchange itself worked).
var ErrNoResponse = errors.New("no response")

// Request makes one MQTT 5 request with a paho client (StartPaho): it
// subscribes to the response topic, publishes the request at QoS 1 with its
// Response Topic and Correlation Data, and returns the first message on the
// response topic. A refused connection or subscription is an error, and so
// is silence (ErrNoResponse).
func Request(tb testing.TB, o RequestOptions) (Response, error) {
	tb.Helper()
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Second
	}
	c := StartPaho(tb, PahoOptions{Addr: o.Addr, V5: true, Username: o.Username, Password: o.Password})
	if e, _ := c.Await(0, func(e PahoEvent) bool { return e.Ev == "connack" || e.Ev == "error" }); e.Ev != "connack" || e.RC != 0 {
		return Response{}, fmt.Errorf("paho request: not connected: %+v", e)
	}
	c.Send(map[string]any{"op": "sub", "filter": o.ResponseTopic, "qos": 1})
	ack, ok := c.Await(o.Timeout, func(e PahoEvent) bool { return e.Ev == "suback" })
	if !ok {
		return Response{}, fmt.Errorf("paho request: no SUBACK for %s", o.ResponseTopic)
	}
	if len(ack.Codes) != 1 || ack.Codes[0] >= 0x80 {
		return Response{}, fmt.Errorf("paho request: subscription to %s refused: %v", o.ResponseTopic, ack.Codes)
	}
	c.Send(map[string]any{"op": "pub", "topic": o.Topic, "payload": o.Payload, "qos": 1, "retain": o.Retain,
		"props": map[string]any{"ResponseTopic": o.ResponseTopic, "CorrelationData": hex.EncodeToString(o.CorrelationData)}})
	m, ok := c.Await(o.Timeout, func(e PahoEvent) bool { return e.Ev == "msg" && e.Topic == o.ResponseTopic })
	if !ok {
		return Response{}, fmt.Errorf("paho request on %s: %w on %s within %v", o.Topic, ErrNoResponse, o.ResponseTopic, o.Timeout)
	}
	r := Response{Topic: m.Topic, Payload: m.Payload}
	r.ContentType, _ = m.Props["ContentType"].(string)
	if s, _ := m.Props["CorrelationData"].(string); s != "" {
		corr, err := hex.DecodeString(s)
		if err != nil {
			return Response{}, fmt.Errorf("paho request: correlation %q: %w", s, err)
		}
		r.CorrelationData = corr
	}
	return r, nil
}
