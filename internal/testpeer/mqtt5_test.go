package testpeer

import (
	"bytes"
	"testing"
)

// TestRequestWithPaho: the MQTT 5 helper sends its properties and reads
// them back. Publishing to its own response topic, it receives its request,
// which mosquitto forwards with the correlation data.
func TestRequestWithPaho(t *testing.T) {
	m := StartMosquitto(t, MosquittoOptions{})
	r, err := Request(t, RequestOptions{Addr: m.Addr(), Topic: "rr/echo", Payload: "ping", ResponseTopic: "rr/echo", CorrelationData: []byte{0xCA, 0xFE, 0}})
	if err != nil {
		t.Fatal(err)
	}
	if r.Topic != "rr/echo" || r.Payload != "ping" || !bytes.Equal(r.CorrelationData, []byte{0xCA, 0xFE, 0}) {
		t.Errorf("response %+v", r)
	}
}
