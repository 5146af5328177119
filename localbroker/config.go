package localbroker

import (
	"net"
	"time"
)

// Config is the `broker:` section: the MQTT broker embedded in the gateway.
// The limits keep a small device safe from a misbehaving or forgotten client;
// mochi's own defaults (sessions kept forever, 8192 queued messages per
// client) suit a server, not a Raspberry Pi.
type Config struct {
	// Listen is the shorthand for one plain TCP listener (default
	// 127.0.0.1:1883 when Listeners is empty too).
	Listen string `yaml:"listen"`
	// Listeners are the network listeners: tcp, tls, ws (MQTT over
	// WebSocket) and wss. Every limit below holds on each of them.
	Listeners []ListenerConfig `yaml:"listeners"`
	// AllowAnonymous admits clients that send no username. Default: true
	// only while no users are configured and every listener is on
	// loopback.
	AllowAnonymous *bool `yaml:"allow_anonymous"`
	// AnonymousACL limits what anonymous clients may do (default: all).
	AnonymousACL []ACLRule `yaml:"anonymous_acl"`
	// Users are the accounts, with bcrypt password hashes and ACLs.
	Users []User `yaml:"users"`
	// ConnectTimeout is how long a new connection may take to complete
	// its TLS handshake and CONNECT (default 10s).
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// MaxClients caps simultaneous client connections (default 64).
	MaxClients int `yaml:"max_clients"`
	// MaxPacketSize caps a packet in bytes, both ways (default 262144).
	MaxPacketSize int `yaml:"max_packet_size"`
	// MaxInflight caps unacknowledged QoS 1/2 messages held per client
	// (default 256).
	MaxInflight int `yaml:"max_inflight"`
	// MaxPending caps messages queued for writing to one client; a client
	// that cannot keep up loses the excess (counted) instead of growing the
	// gateway's memory (default 4096).
	MaxPending int `yaml:"max_pending"`
	// SessionExpiry caps how long a disconnected persistent session is kept
	// (default 1h).
	SessionExpiry time.Duration `yaml:"session_expiry"`
	// MessageExpiry caps how long a message waits for an offline client
	// (default 1h). Retained values do not expire: they live until
	// replaced.
	MessageExpiry time.Duration `yaml:"message_expiry"`

	// anonymous is AllowAnonymous resolved by Check, and why.
	anonymous       bool
	anonymousReason string
}

// Defaults, in one place.
const (
	DefaultListen         = "127.0.0.1:1883"
	defaultMaxClients     = 64
	defaultMaxPacketSize  = 256 << 10
	defaultMaxInflight    = 256
	defaultMaxPending     = 4096
	defaultSessionExpiry  = time.Hour
	defaultMessageExpiry  = time.Hour
	defaultConnectTimeout = 10 * time.Second
)

// Reporter receives configuration problems by key path.
type Reporter interface {
	Errorf(path, format string, args ...any)
	Warnf(path, format string, args ...any)
}

// Check fills defaults and reports problems. Certificate and key files are
// read here, so a wrong path fails `gateway check`.
func (c *Config) Check(r Reporter) {
	switch {
	case c.Listen != "" && len(c.Listeners) > 0:
		r.Errorf("listen", "set listen (one plain TCP listener) or listeners, not both")
	case len(c.Listeners) == 0:
		if c.Listen == "" {
			c.Listen = DefaultListen
		}
		if _, _, err := net.SplitHostPort(c.Listen); err != nil {
			r.Errorf("listen", "listen %q is not host:port: %v", c.Listen, err)
		} else {
			c.Listeners = []ListenerConfig{{Type: "tcp", Address: c.Listen, fromListen: true}}
		}
	}
	c.checkListeners(r)
	c.checkUsers(r)
	c.checkAnonymous(r)
	positive := func(key string, v *int, def, max int) {
		switch {
		case *v == 0:
			*v = def
		case *v < 1 || *v > max:
			r.Errorf(key, "%s must be between 1 and %d, got %d", key, max, *v)
		}
	}
	positive("max_clients", &c.MaxClients, defaultMaxClients, 100000)
	positive("max_packet_size", &c.MaxPacketSize, defaultMaxPacketSize, 256<<20)
	positive("max_inflight", &c.MaxInflight, defaultMaxInflight, 65535)
	positive("max_pending", &c.MaxPending, defaultMaxPending, 1<<20)
	if c.SessionExpiry == 0 {
		c.SessionExpiry = defaultSessionExpiry
	}
	if c.MessageExpiry == 0 {
		c.MessageExpiry = defaultMessageExpiry
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = defaultConnectTimeout
	}
}
