package bridge

import (
	"log/slog"
	"net/url"
	"time"
)

// Config is the `bridge:` section: which local topics go to which cloud
// broker, which cloud topics come down, and how messages are kept while the
// cloud is out of reach. Check fills the defaults given here.
type Config struct {
	// Upstreams are the cloud brokers, tried in order: after FailoverAfter
	// failed attempts in a row on one, the bridge tries the next (and wraps
	// around). It stays on the one that works until that one fails.
	Upstreams []Upstream `yaml:"upstreams"`
	// ClientID is the MQTT client id towards the cloud (default: gateway.id).
	// Two gateways with one id throw each other off the broker in turn.
	ClientID string `yaml:"client_id"`
	// Username for the cloud broker.
	Username string `yaml:"username"`
	// Password for the cloud broker; write password: ${ENV_VAR} rather than
	// the password itself. Never logged.
	Password Secret `yaml:"password"`
	// PasswordFile holds the password instead (read once at start,
	// surrounding whitespace trimmed, and kept in Password); the file can be
	// readable by the gateway's user alone.
	PasswordFile string `yaml:"password_file"`
	// TLS applies to tls://, ssl://, mqtts:// and wss:// upstreams.
	TLS TLS `yaml:"tls"`
	// Keepalive is the MQTT keepalive (default 30s, whole seconds): a link
	// on which nothing arrives for this long is probed with a ping, and a
	// ping unanswered for min(keepalive, 10s) drops it. A dead link is
	// noticed within about 2 × keepalive.
	Keepalive time.Duration `yaml:"keepalive"`
	// ConnectTimeout bounds one connection attempt: TCP, TLS handshake and
	// MQTT CONNECT (default 10s).
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// AckTimeout: when the oldest message in flight is not acknowledged for
	// this long, the link is treated as dead, dropped and redialled, and
	// everything unacknowledged is sent again (default: keepalive). Raise it
	// only for very large payloads over very slow links.
	AckTimeout time.Duration `yaml:"ack_timeout"`
	// BackoffInitial and BackoffMax bound the pause between connection
	// attempts: it doubles after every failure, with random jitter, from
	// BackoffInitial (default 1s) up to BackoffMax (default 1m).
	BackoffInitial time.Duration `yaml:"backoff_initial"`
	BackoffMax     time.Duration `yaml:"backoff_max"`
	// FailoverAfter is the number of failed attempts in a row on one
	// upstream before the next is tried (default 3).
	FailoverAfter int `yaml:"failover_after"`
	// Inflight is the window: how many QoS 1/2 messages may be sent and not
	// yet acknowledged. Over a link with round trip RTT a window of W
	// carries at most W ÷ RTT messages per second. auto (the default)
	// sizes it to the link as it goes, from the round trip and the rate at
	// which acknowledgements come back (about twice the link's
	// bandwidth × round trip; window.go explains how), between 64 and
	// max_inflight. A number fixes the window (1–65535), e.g. for a broker
	// that disconnects clients with more unacknowledged messages.
	Inflight Inflight `yaml:"inflight"`
	// MaxInflight bounds the auto window (default 16384). Each publish in
	// flight costs about 1 KiB of memory (measured: +16.6 MiB of resident
	// memory with 16,384 in flight), so the default stays within what a Pi
	// Zero can spare; it carries up to ~55,000 msg/s over a 300 ms link.
	// After a reconnect the cloud may see up to this many messages again.
	MaxInflight int `yaml:"max_inflight"`
	// MaxRate caps the publishes per second sent upstream (a token bucket
	// with a burst of a tenth of a second; a batch counts as one publish;
	// default 0: no cap). Set it to the cloud's quota (AWS IoT Core: 100 per
	// connection) so that the broker does not throttle or disconnect the
	// gateway: the backlog waits on disk instead.
	MaxRate float64 `yaml:"max_rate"`
	// CleanSession starts every connection with a fresh session (default
	// true). Leave it on: with a persistent session the cloud broker keeps
	// commands (subscribe rules) while the gateway is offline and delivers
	// them when it returns, possibly hours later, to machines whose state has
	// changed meanwhile. Uplink data does not depend on it: the bridge's own
	// queue keeps it.
	CleanSession *bool `yaml:"clean_session"`
	// StatusTopic is the cloud topic of the gateway's status: "online"
	// (retained, QoS 1) after every connect, "offline" (retained) as the
	// will when the gateway vanishes and on a clean shutdown. Default: the
	// first forward rule's prefix + gateway.id + "/status".
	StatusTopic string `yaml:"status_topic"`
	// Forward rules send local messages to the cloud.
	Forward []ForwardRule `yaml:"forward"`
	// Subscribe rules bring cloud messages (commands) to the local broker.
	Subscribe []SubscribeRule `yaml:"subscribe"`
	// Buffer is the on-disk queue of messages waiting for the cloud.
	Buffer Buffer `yaml:"buffer"`

	clientID string // resolved ClientID
	checked  bool
}

// Upstream is one cloud broker.
type Upstream struct {
	// URL is scheme://host:port with scheme tcp (or mqtt), tls (ssl,
	// mqtts), ws or wss. The port defaults to 1883 for tcp and 8883 for
	// tls. Credentials do not go into the URL (see username, password).
	URL string `yaml:"url"`

	u *url.URL
}

// TLS configures TLS towards the cloud. Certificate verification is on
// unless turned off by name.
type TLS struct {
	// CAFile is a PEM bundle of the CAs that may sign the broker's
	// certificate (default: the system's roots).
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are a PEM client certificate and its key, for
	// brokers that authenticate clients by certificate (AWS IoT, Azure,
	// HiveMQ Cloud). They are read at start and again at every connection,
	// so a renewed certificate is picked up without a restart.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName is the name expected in the broker's certificate
	// (default: the upstream's host name).
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify accepts any certificate: anyone on the path can
	// then read and forge the traffic. For tests only; check warns.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// ForwardRule sends local messages matching Filter to the cloud. Two
// kinds of local message are never sent: those the downlink published, and
// those whose cloud topic a subscribe rule covers (commands flow down only;
// sent up, they would come straight back down as a second command, since
// MQTT 3.1.1 has no "no local" option).
type ForwardRule struct {
	// Filter is an MQTT topic filter on the local broker, e.g. plant1/#.
	Filter string `yaml:"filter"`
	// Prefix is put before the local topic to make the cloud topic, e.g.
	// "site-a/" (default none). It is literal text: no wildcards.
	Prefix string `yaml:"prefix"`
	// QoS towards the cloud, 0, 1 or 2, whatever the local QoS was (default
	// 1). Every message is queued on disk first, whatever its QoS; a QoS 0
	// message counts as delivered once written to the connection, so one
	// written just before the link dies can be lost. QoS 2 needs
	// clean_session: true.
	QoS *int `yaml:"qos"`
	// Retain is keep (default: forward the local retain flag) or false.
	Retain RetainMode `yaml:"retain"`
	// Batch, when set, packs the rule's messages into batch messages on
	// one cloud topic instead of one publish each (default off): for
	// clouds that meter publishes (AWS IoT Core: 100/s per connection) or
	// count messages against a quota (Azure IoT Hub). The format is in
	// batch.go and the README.
	Batch *Batch `yaml:"batch"`
}

// Batch configures the batch messages of a forward rule. A batch is sent
// when it holds max_records records or max_bytes bytes, or max_delay after
// it was opened (its first record taken from the queue), whichever comes
// first; its records leave the queue only when the cloud acknowledged the
// whole batch.
type Batch struct {
	// Topic is the cloud topic of the batch messages (required; literal
	// text, no wildcards; the prefix is not added).
	Topic string `yaml:"topic"`
	// MaxRecords per batch (default 500).
	MaxRecords int `yaml:"max_records"`
	// MaxBytes bounds a batch message's payload (default 120KiB, under AWS
	// IoT Core's 128 KB). A record too large for any batch is sent on its
	// own topic instead, and counted.
	MaxBytes ByteSize `yaml:"max_bytes"`
	// MaxDelay is the longest a batch stays open waiting for more records
	// (default 1s; 0 sends what there is at once). Live data waits at most
	// this long; a backlog fills whole batches.
	MaxDelay *time.Duration `yaml:"max_delay"`
}

// SubscribeRule brings cloud messages matching Filter to the local broker.
type SubscribeRule struct {
	// Filter is an MQTT topic filter on the cloud broker; it must start
	// with StripPrefix.
	Filter string `yaml:"filter"`
	// StripPrefix is removed from the cloud topic to make the local topic.
	StripPrefix string `yaml:"strip_prefix"`
	// QoS of the subscription, 0, 1 or 2 (default 1).
	QoS *int `yaml:"qos"`
	// AcceptRetained passes on retained messages that the cloud broker
	// replays on every subscribe (default false: they are dropped and
	// counted). A retained command would otherwise be carried out again
	// after every reconnect.
	AcceptRetained bool `yaml:"accept_retained"`
}

// Buffer configures the store-and-forward queue.
type Buffer struct {
	// Dir holds the queue's files (default {gateway.data_dir}/queue).
	Dir string `yaml:"dir"`
	// MaxBytes caps the queue on disk (default 512MiB, at least 1MiB).
	MaxBytes ByteSize `yaml:"max_bytes"`
	// MaxAge drops queued messages older than this, counted as expired
	// (default 168h; 0 keeps them until max_bytes is reached).
	MaxAge *time.Duration `yaml:"max_age"`
	// WhenFull is drop_oldest (default) or drop_newest. Every dropped
	// message is counted and logged once per episode.
	WhenFull WhenFull `yaml:"when_full"`
	// Sync is the group-commit interval: a queued message that the cloud
	// has not acknowledged this long after it arrived is written and
	// fsynced then (one acknowledged sooner never touches the disk), so a
	// power cut loses at most that window of unacknowledged messages
	// (default 100ms). "always" writes and fsyncs every batch before it
	// counts as queued: nothing is lost, at a cost in speed and SD-card wear.
	Sync SyncPolicy `yaml:"sync"`
}

// Secret is a string that is never printed or logged in full.
type Secret string

// String hides the secret.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// GoString hides the secret from %#v too.
func (s Secret) GoString() string { return `"` + s.String() + `"` }

// LogValue hides the secret from slog.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// Defaults, in one place (applied by Check).
const (
	DefaultKeepalive      = 30 * time.Second
	DefaultConnectTimeout = 10 * time.Second
	DefaultBackoffInitial = time.Second
	DefaultBackoffMax     = time.Minute
	DefaultFailoverAfter  = 3
	DefaultMaxInflight    = 16384
	DefaultBatchRecords   = 500
	DefaultBatchBytes     = 120 << 10
	DefaultBatchDelay     = time.Second
	DefaultQoS            = 1
	DefaultMaxBytes       = 512 << 20
	DefaultMaxAge         = 7 * 24 * time.Hour
	DefaultSync           = 100 * time.Millisecond
)

// Reporter receives configuration problems by key path (relative to the
// bridge section); the config loader turns them into file:line:col.
type Reporter interface {
	Errorf(path, format string, args ...any)
	Warnf(path, format string, args ...any)
}
