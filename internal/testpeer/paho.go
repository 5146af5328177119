package testpeer

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// PahoOptions configures StartPaho: an MQTT client driven by Debian's
// python3-paho-mqtt (1.6), for what mosquitto_sub/pub cannot show: MQTT 5
// properties (CONNACK, topic aliases), sessions that come back, WebSocket.
type PahoOptions struct {
	// Addr is the broker, "host:port".
	Addr string
	// WebSocket connects over MQTT-over-WebSocket (path /mqtt) instead of TCP.
	WebSocket bool
	// V5 speaks MQTT 5; the default is 3.1.1.
	V5 bool
	// ClientID is the client id; empty lets the broker assign one (v5) or
	// paho choose one.
	ClientID string
	// Persistent keeps the session: clean session off (3.1.1), or clean
	// start off with SessionExpiry (v5).
	Persistent bool
	// SessionExpiry in seconds, sent in the v5 CONNECT (0: not sent).
	SessionExpiry int
	// TopicAliasMaximum sent in the v5 CONNECT: how many topic aliases
	// the broker may use towards this client (0: not sent).
	TopicAliasMaximum int
	// Username and Password authenticate.
	Username, Password string
	// CAFile turns on TLS; CertFile and KeyFile add a client certificate.
	CAFile, CertFile, KeyFile string
}

// PahoEvent is one thing the paho client saw, as its driver reports it.
type PahoEvent struct {
	// Ev is connack, suback, msg, puback, disconnect or error.
	Ev string `json:"ev"`
	// RC is the CONNACK or DISCONNECT reason code.
	RC int `json:"rc"`
	// SessionPresent of a CONNACK.
	SessionPresent bool `json:"session_present"`
	// Codes are the SUBACK reason codes (granted QoS or a refusal >= 0x80).
	Codes []int `json:"codes"`
	// Topic, Payload, QoS and Retain of a message.
	Topic   string `json:"topic"`
	Payload string `json:"payload"`
	QoS     int    `json:"qos"`
	Retain  bool   `json:"retain"`
	// Props are the packet's MQTT 5 properties by paho's names
	// (MaximumPacketSize, TopicAliasMaximum, TopicAlias, ...).
	Props map[string]any `json:"props"`
	// Error describes an error event.
	Error string `json:"error"`
	// Conn counts the connections of this client, from 1: an event
	// belongs to the connection it arrived on.
	Conn int `json:"conn"`
}

// Prop returns an integer property, and whether it is present.
func (e PahoEvent) Prop(name string) (int, bool) {
	v, ok := e.Props[name]
	if !ok {
		return 0, false
	}
	f, ok := v.(float64)
	return int(f), ok
}

// Paho is a running paho client.
type Paho struct {
	tb    testing.TB
	proc  *process
	stdin io.WriteCloser
	out   *tailBuffer

	mu      sync.Mutex
	events  []PahoEvent
	changed chan struct{}
}

// pahoDriver connects, then runs JSON commands from stdin and reports
// everything as JSON lines. A second "connect" command reconnects the same
// client (same id, clean start off when Persistent).
const pahoDriver = `
import json, sys, threading
import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

o = json.loads(sys.argv[1])
v5 = o["v5"]
lock = threading.Lock()
conn = [0]

def emit(**kw):
    kw["conn"] = conn[0]
    with lock:
        sys.stdout.write(json.dumps(kw) + "\n")
        sys.stdout.flush()

def code(rc):
    return rc.value if hasattr(rc, "value") else int(rc)

def props(p):
    if p is None:
        return {}
    d = p.json()
    return json.loads(d) if isinstance(d, str) else d

def on_connect(c, u, flags, rc, p=None):
    emit(ev="connack", rc=code(rc), session_present=bool(flags.get("session present")), props=props(p))

def on_subscribe(c, u, mid, granted, p=None):
    emit(ev="suback", codes=[code(g) for g in granted])

def on_message(c, u, m):
    emit(ev="msg", topic=m.topic, payload=m.payload.decode("utf-8", "replace"), qos=m.qos, retain=bool(m.retain),
         props=props(getattr(m, "properties", None)) if v5 else {})

def on_publish(c, u, mid):
    emit(ev="puback")

def on_disconnect(c, u, rc, p=None):
    emit(ev="disconnect", rc=code(rc))

kw = {"client_id": o["client_id"], "transport": "websockets" if o["ws"] else "tcp", "reconnect_on_failure": False}
if v5:
    kw["protocol"] = mqtt.MQTTv5
else:
    kw["protocol"] = mqtt.MQTTv311
    kw["clean_session"] = not o["persistent"]
c = mqtt.Client(**kw)
if o["ws"]:
    c.ws_set_options(path="/mqtt")
if o["ca"]:
    c.tls_set(ca_certs=o["ca"], certfile=o["cert"] or None, keyfile=o["key"] or None)
if o["username"]:
    c.username_pw_set(o["username"], o["password"] or None)
c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
c.on_publish, c.on_disconnect = on_publish, on_disconnect

def connect(first):
    if not first:
        c.loop_stop()
    conn[0] += 1
    try:
        if v5:
            p = Properties(PacketTypes.CONNECT)
            if o["session_expiry"]:
                p.SessionExpiryInterval = o["session_expiry"]
            if o["topic_alias_maximum"]:
                p.TopicAliasMaximum = o["topic_alias_maximum"]
            c.connect(o["host"], o["port"], 30, clean_start=not o["persistent"], properties=p)
        else:
            c.connect(o["host"], o["port"], 30)
    except Exception as e:
        emit(ev="error", error="connect: %s" % e)
        return
    c.loop_start()

connect(True)
for line in sys.stdin:
    cmd = json.loads(line)
    op = cmd["op"]
    try:
        if op == "sub":
            c.subscribe(cmd["filter"], cmd.get("qos", 0))
        elif op == "pub":
            p = None
            if v5 and cmd.get("props"):
                p = Properties(PacketTypes.PUBLISH)
                for k, v in cmd["props"].items():
                    if k == "CorrelationData":
                        v = bytes.fromhex(v)  # JSON has no bytes; events report it in hex too
                    setattr(p, k, v)
            c.publish(cmd["topic"], cmd.get("payload", ""), cmd.get("qos", 0), cmd.get("retain", False), properties=p)
        elif op == "disconnect":
            c.disconnect()
        elif op == "connect":
            connect(False)
    except Exception as e:
        emit(ev="error", error="%s: %s" % (op, e))
c.disconnect()
c.loop_stop()
`

// pythonPath is the interpreter that sees Debian's python3 packages.
func pythonPath() string {
	if p := os.Getenv(PythonEnv); p != "" {
		return p
	}
	return "/usr/bin/python3"
}

var pahoCheck struct {
	once sync.Once
	err  error
}

// StartPaho starts a paho client and waits for its CONNACK (or a
// connection error, reported as an event: see WaitEvent). It is stopped in
// cleanup.
func StartPaho(tb testing.TB, o PahoOptions) *Paho {
	tb.Helper()
	py := pythonPath()
	pahoCheck.once.Do(func() {
		if out, err := exec.Command(py, "-c", "import paho.mqtt.client").CombinedOutput(); err != nil {
			pahoCheck.err = fmt.Errorf("%s cannot import paho.mqtt: %v: %s", py, err, strings.TrimSpace(string(out)))
		}
	})
	if pahoCheck.err != nil {
		missingPeer(tb, "%v (Debian package python3-paho-mqtt)", pahoCheck.err)
	}
	host, port, err := net.SplitHostPort(o.Addr)
	if err != nil {
		tb.Fatalf("testpeer: paho: broker address %q: %v", o.Addr, err)
	}
	portN, _ := strconv.Atoi(port)
	args, _ := json.Marshal(map[string]any{
		"host": host, "port": portN, "ws": o.WebSocket, "v5": o.V5, "client_id": o.ClientID,
		"persistent": o.Persistent, "session_expiry": o.SessionExpiry, "topic_alias_maximum": o.TopicAliasMaximum,
		"username": o.Username, "password": o.Password, "ca": o.CAFile, "cert": o.CertFile, "key": o.KeyFile,
	})
	cmd := exec.Command(py, "-u", "-c", pahoDriver, string(args))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatalf("testpeer: paho: %v", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatalf("testpeer: paho: %v", err)
	}
	p := &Paho{tb: tb, stdin: stdin, out: newTailBuffer(256 << 10), changed: make(chan struct{})}
	cmd.Stderr = p.out
	p.proc, err = startProcess("paho", cmd)
	if err != nil {
		tb.Fatalf("testpeer: %v", err)
	}
	readerDone := make(chan struct{})
	go p.read(stdout, readerDone)
	logOutputOnFailure(tb, "paho client", func() string { return p.out.String() + p.summary() })
	tb.Cleanup(func() {
		_ = p.stdin.Close()
		select {
		case <-p.proc.done:
		case <-time.After(3 * time.Second):
		}
		p.proc.stop(2 * time.Second)
		<-readerDone
	})
	p.WaitEvent(tb, startTimeout, func(e PahoEvent) bool { return e.Ev == "connack" || e.Ev == "error" })
	return p
}

func (p *Paho) read(r io.Reader, done chan<- struct{}) {
	defer close(done)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var e PahoEvent
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			fmt.Fprintf(p.out, "unparsed: %s\n", sc.Text())
			continue
		}
		p.mu.Lock()
		p.events = append(p.events, e)
		close(p.changed)
		p.changed = make(chan struct{})
		p.mu.Unlock()
	}
}

// Send runs one driver command: {"op": "sub", "filter": F, "qos": Q},
// {"op": "pub", "topic": T, "payload": P, "qos": Q, "retain": R, "props": {...}},
// {"op": "disconnect"} or {"op": "connect"} (reconnect).
func (p *Paho) Send(cmd map[string]any) {
	p.tb.Helper()
	line, _ := json.Marshal(cmd)
	if _, err := p.stdin.Write(append(line, '\n')); err != nil {
		p.tb.Fatalf("testpeer: paho: send %s: %v", line, err)
	}
}

// Events returns a copy of every event so far.
func (p *Paho) Events() []PahoEvent {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]PahoEvent(nil), p.events...)
}

// WaitEvent returns the first event (so far or later) that match accepts,
// or fails the test after timeout.
func (p *Paho) WaitEvent(tb testing.TB, timeout time.Duration, match func(PahoEvent) bool) PahoEvent {
	tb.Helper()
	e, ok := p.Await(timeout, match)
	if !ok {
		if p.exited() {
			tb.Fatalf("testpeer: paho exited (%v) before a matching event; got:%s", p.proc.exitError(), p.summary())
		}
		tb.Fatalf("testpeer: paho: no matching event within %v; got:%s", timeout, p.summary())
	}
	return e
}

// Await is WaitEvent for an event that may rightly never come (a message
// the ACLs withhold): false after timeout, or once the client has exited
// without it. A timeout of 0 looks only at the events so far.
func (p *Paho) Await(timeout time.Duration, match func(PahoEvent) bool) (PahoEvent, bool) {
	e, end := entryLog[PahoEvent]{&p.mu, &p.events, &p.changed}.watch(timeout, p.proc.done, match)
	return e, end == found
}

func (p *Paho) exited() bool {
	select {
	case <-p.proc.done:
		return true
	default:
		return false
	}
}

func (p *Paho) summary() string {
	var b strings.Builder
	for _, e := range p.Events() {
		line, _ := json.Marshal(e)
		fmt.Fprintf(&b, "\n  %s", line)
	}
	return b.String()
}
