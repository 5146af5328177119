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
	// Listen is the TCP address of the MQTT listener (default
	// 127.0.0.1:1883). Listening beyond loopback exposes the broker to the
	// network: there is no authentication yet.
	Listen string `yaml:"listen"`
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
	// (default 1h).
	MessageExpiry time.Duration `yaml:"message_expiry"`
}

// Defaults, in one place.
const (
	DefaultListen        = "127.0.0.1:1883"
	defaultMaxClients    = 64
	defaultMaxPacketSize = 256 << 10
	defaultMaxInflight   = 256
	defaultMaxPending    = 4096
	defaultSessionExpiry = time.Hour
	defaultMessageExpiry = time.Hour
)

// Reporter receives configuration problems by key path.
type Reporter interface {
	Errorf(path, format string, args ...any)
	Warnf(path, format string, args ...any)
}

// Check fills defaults and reports problems.
func (c *Config) Check(r Reporter) {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	host, _, err := net.SplitHostPort(c.Listen)
	if err != nil {
		r.Errorf("listen", "listen %q is not host:port: %v", c.Listen, err)
	} else if ip := net.ParseIP(host); host == "" || (ip != nil && !ip.IsLoopback()) || (ip == nil && host != "localhost") {
		r.Warnf("listen", "the broker listens beyond loopback (%s) without authentication: any host that reaches it can read and publish", c.Listen)
	}
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
}
