package bridge

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Check fills the defaults and reports every problem with its key path:
// URLs, credentials, certificates (read and parsed now, so that a wrong path
// fails `gateway check` rather than the first connection), filters,
// prefixes, QoS levels and limits. gatewayID and dataDir come from the
// gateway section and give the defaults of client_id, status_topic and
// buffer.dir. A second call does nothing.
func (c *Config) Check(gatewayID, dataDir string, r Reporter) {
	if c.checked {
		return // the defaults and the password file are in place
	}
	c.checkUpstreams(r)
	c.checkCredentials(r)
	c.checkTLS(r)
	c.checkTiming(r)
	c.checkRules(r)
	c.checkBuffer(dataDir, r)
	for i, f := range c.Forward {
		if f.Batch != nil && f.Batch.Topic != "" && c.downlinkCovers(f.Batch.Topic) {
			r.Errorf(fmt.Sprintf("forward[%d].batch.topic", i), "a subscribe rule covers batch topic %q: the batches would come straight back down as commands", f.Batch.Topic)
		}
	}

	c.clientID = c.ClientID
	if c.clientID == "" {
		c.clientID = gatewayID
	}
	if c.CleanSession == nil {
		c.CleanSession = new(bool)
		*c.CleanSession = true
	}
	for i, f := range c.Forward {
		if !*c.CleanSession && f.QoS != nil && *f.QoS == 2 {
			// Every connection is a fresh client numbering its packets from
			// 1: a broker still holding an unfinished QoS 2 exchange of the
			// old session under that number would take a new message for
			// the old one and drop it.
			r.Errorf(fmt.Sprintf("forward[%d].qos", i), "qos 2 needs clean_session: true (a persistent session's unfinished QoS 2 exchanges would make the broker drop new messages); use qos 1")
		}
	}
	if c.StatusTopic == "" {
		prefix := ""
		if len(c.Forward) > 0 {
			prefix = c.Forward[0].Prefix
		}
		c.StatusTopic = prefix + gatewayID + "/status"
	} else if err := checkTopicPart(c.StatusTopic); err != nil {
		r.Errorf("status_topic", "status_topic %v", err)
	}
	c.checked = true
}

// schemes maps the URL schemes paho understands to their default port
// ("" when the URL must name it) and whether they use TLS.
var schemes = map[string]struct {
	port string
	tls  bool
}{
	"tcp": {"1883", false}, "mqtt": {"1883", false},
	"tls": {"8883", true}, "ssl": {"8883", true}, "mqtts": {"8883", true},
	"ws": {"", false}, "wss": {"", true},
}

func (c *Config) checkUpstreams(r Reporter) {
	if len(c.Upstreams) == 0 {
		r.Errorf("upstreams", "the bridge needs at least one upstream (e.g. - url: tls://broker.example.com:8883)")
		return
	}
	for i := range c.Upstreams {
		up := &c.Upstreams[i]
		path := fmt.Sprintf("upstreams[%d].url", i)
		u, err := parseUpstream(up.URL)
		if err != nil {
			r.Errorf(path, "%v", err)
			continue
		}
		up.u = u
	}
}

// parseUpstream parses and completes an upstream URL. Errors show the URL
// with any password redacted.
func parseUpstream(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, fmt.Errorf("url is required (e.g. tls://broker.example.com:8883)")
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url's own error repeats the raw text, which may hold a password.
		return nil, fmt.Errorf("url is not a valid URL (scheme://host:port)")
	}
	shown := raw
	if u.User != nil {
		shown = u.Redacted()
	}
	s, ok := schemes[strings.ToLower(u.Scheme)]
	if !ok {
		return nil, fmt.Errorf("url %s: unknown scheme %q: use tcp://, tls:// (ssl://, mqtts://), ws:// or wss://", shown, u.Scheme)
	}
	u.Scheme = strings.ToLower(u.Scheme)
	if u.User != nil {
		return nil, fmt.Errorf("url %s carries credentials: put them in username and password_file (or password: ${ENV}) so they stay out of logs", shown)
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("url %s has no host", shown)
	}
	if u.Port() == "" && s.port != "" {
		u.Host = net.JoinHostPort(u.Hostname(), s.port)
	}
	return u, nil
}

// usesTLS reports whether any upstream (even one with errors) names a TLS
// scheme.
func (c *Config) usesTLS() bool {
	for _, up := range c.Upstreams {
		if u, err := url.Parse(up.URL); err == nil && schemes[strings.ToLower(u.Scheme)].tls {
			return true
		}
	}
	return false
}

func (c *Config) checkCredentials(r Reporter) {
	if c.PasswordFile != "" {
		if c.Password != "" {
			r.Errorf("password_file", "set password or password_file, not both")
			return
		}
		b, err := os.ReadFile(c.PasswordFile)
		if err != nil {
			r.Errorf("password_file", "cannot read the password file: %v", unwrapPathError(err))
			return
		}
		// Kept in the exported field: fmt prints unexported fields without
		// their String method, and Secret must never be printed in full.
		c.Password = Secret(strings.TrimSpace(string(b)))
		if c.Password == "" {
			r.Errorf("password_file", "the password file %s is empty", c.PasswordFile)
			return
		}
	}
	if c.Password != "" && c.Username == "" {
		r.Errorf("username", "a password needs a username (MQTT 3.1.1 sends no password without one)")
	}
}

func (c *Config) checkTLS(r Reporter) {
	t := &c.TLS
	set := *t != TLS{}
	if set && !c.usesTLS() && len(c.Upstreams) > 0 {
		r.Warnf("tls", "no upstream uses tls://, ssl://, mqtts:// or wss://: these settings are not used")
	}
	if t.InsecureSkipVerify {
		r.Warnf("tls.insecure_skip_verify", "certificate verification is off: anyone on the path can read and forge the cloud traffic")
	}
	if _, err := t.loadCAs(); err != nil {
		r.Errorf(err.key, "%v", err.err)
	}
	if _, err := t.loadCert(); err != nil {
		r.Errorf(err.key, "%v", err.err)
	}
}

func (c *Config) checkTiming(r Reporter) {
	dur := func(key string, v *time.Duration, def, lo, hi time.Duration) {
		switch {
		case *v == 0:
			*v = def
		case *v < lo || *v > hi:
			r.Errorf(key, "%s must be between %v and %v, got %v", key, lo, hi, *v)
		}
	}
	dur("keepalive", &c.Keepalive, DefaultKeepalive, time.Second, 65535*time.Second)
	if c.Keepalive%time.Second != 0 {
		r.Errorf("keepalive", "keepalive must be whole seconds (MQTT counts it in seconds), got %v", c.Keepalive)
	}
	dur("connect_timeout", &c.ConnectTimeout, DefaultConnectTimeout, 100*time.Millisecond, 5*time.Minute)
	dur("ack_timeout", &c.AckTimeout, c.Keepalive, 100*time.Millisecond, time.Hour)
	dur("backoff_initial", &c.BackoffInitial, DefaultBackoffInitial, 10*time.Millisecond, time.Hour)
	dur("backoff_max", &c.BackoffMax, max(DefaultBackoffMax, c.BackoffInitial), 10*time.Millisecond, 24*time.Hour)
	if c.BackoffMax < c.BackoffInitial {
		r.Errorf("backoff_max", "backoff_max (%v) is below backoff_initial (%v)", c.BackoffMax, c.BackoffInitial)
	}
	switch {
	case c.FailoverAfter == 0:
		c.FailoverAfter = DefaultFailoverAfter
	case c.FailoverAfter < 1 || c.FailoverAfter > 1000:
		r.Errorf("failover_after", "failover_after must be between 1 and 1000, got %d", c.FailoverAfter)
	}
	switch {
	case c.MaxInflight == 0:
		c.MaxInflight = DefaultMaxInflight
	case c.MaxInflight < windowFloor || c.MaxInflight > 65535:
		r.Errorf("max_inflight", "max_inflight must be between %d and 65535, got %d", windowFloor, c.MaxInflight)
	}
	if c.Inflight.N > 0 && c.MaxInflight != DefaultMaxInflight {
		r.Warnf("max_inflight", "max_inflight bounds inflight: auto; with inflight: %d it is not used", c.Inflight.N)
	}
	switch {
	case c.MaxRate == 0:
	case c.MaxRate < 0.01 || c.MaxRate > 1e6 || c.MaxRate != c.MaxRate:
		r.Errorf("max_rate", "max_rate must be between 0.01 and 1000000 publishes per second (0 or absent: no limit), got %v", c.MaxRate)
	}
}

// checkQoS fills a QoS default and reports an out-of-range one.
func checkQoS(key string, q **int, r Reporter) {
	if *q == nil {
		*q = new(int)
		**q = DefaultQoS
		return
	}
	if **q < 0 || **q > 2 {
		r.Errorf(key, "qos must be 0, 1 or 2, got %d", **q)
	}
}

func (c *Config) checkRules(r Reporter) {
	if len(c.Forward) == 0 && len(c.Subscribe) == 0 {
		r.Warnf("forward", "the bridge has no forward and no subscribe rules: it connects but carries nothing")
	}
	seen := map[[2]string]int{}
	for i := range c.Forward {
		f := &c.Forward[i]
		path := fmt.Sprintf("forward[%d]", i)
		if err := checkFilter(f.Filter); err != nil {
			r.Errorf(path+".filter", "%v", err)
		}
		if err := checkTopicPart(f.Prefix); err != nil {
			r.Errorf(path+".prefix", "prefix %v", err)
		} else if f.Prefix != "" && !strings.HasSuffix(f.Prefix, "/") {
			r.Warnf(path+".prefix", "prefix %q does not end with '/': cloud topics will read %s<local topic>", f.Prefix, f.Prefix)
		}
		checkQoS(path+".qos", &f.QoS, r)
		if f.Batch != nil {
			c.checkBatch(path+".batch", f.Batch, r)
		}
		k := [2]string{f.Filter, f.Prefix}
		if prev, dup := seen[k]; dup {
			r.Errorf(path+".filter", "forward[%d] has the same filter and prefix: every message would be sent twice", prev)
		}
		seen[k] = i
	}
	for i := range c.Subscribe {
		s := &c.Subscribe[i]
		path := fmt.Sprintf("subscribe[%d]", i)
		if err := checkFilter(s.Filter); err != nil {
			r.Errorf(path+".filter", "%v", err)
		} else if err := checkTopicPart(s.StripPrefix); err != nil {
			r.Errorf(path+".strip_prefix", "strip_prefix %v", err)
		} else if !strings.HasPrefix(literalPrefix(s.Filter), s.StripPrefix) {
			r.Errorf(path+".strip_prefix", "filter %q does not start with strip_prefix %q: the prefix could not be removed from what it receives", s.Filter, s.StripPrefix)
		}
		checkQoS(path+".qos", &s.QoS, r)
		if s.AcceptRetained {
			r.Warnf(path+".accept_retained", "retained cloud messages are passed on without their retain flag: a retained command on %s is carried out again after every reconnect", s.Filter)
		}
	}
}

func (c *Config) checkBatch(path string, b *Batch, r Reporter) {
	switch {
	case b.Topic == "":
		r.Errorf(path+".topic", "a batch needs the cloud topic its messages go to (e.g. topic: site-a/plant1/batch)")
	default:
		if err := checkTopicPart(b.Topic); err != nil {
			r.Errorf(path+".topic", "topic %v", err)
		}
	}
	switch {
	case b.MaxRecords == 0:
		b.MaxRecords = DefaultBatchRecords
	case b.MaxRecords < 1 || b.MaxRecords > 100000:
		r.Errorf(path+".max_records", "max_records must be between 1 and 100000, got %d", b.MaxRecords)
	}
	switch {
	case b.MaxBytes == 0:
		b.MaxBytes = DefaultBatchBytes
	case b.MaxBytes < 1<<10 || b.MaxBytes > 64<<20:
		r.Errorf(path+".max_bytes", "max_bytes must be between 1KiB and 64MiB, got %v", b.MaxBytes)
	case b.MaxBytes > 128_000:
		r.Warnf(path+".max_bytes", "max_bytes %v is above AWS IoT Core's 128 KB payload limit", b.MaxBytes)
	}
	switch {
	case b.MaxDelay == nil:
		b.MaxDelay = new(time.Duration)
		*b.MaxDelay = DefaultBatchDelay
	case *b.MaxDelay < 0 || *b.MaxDelay > time.Hour:
		r.Errorf(path+".max_delay", "max_delay must be between 0s and 1h, got %v", *b.MaxDelay)
	}
}

func (c *Config) checkBuffer(dataDir string, r Reporter) {
	b := &c.Buffer
	if b.Dir == "" {
		b.Dir = filepath.Join(dataDir, "queue")
	}
	switch {
	case b.MaxBytes == 0:
		b.MaxBytes = DefaultMaxBytes
	case b.MaxBytes < 1<<20:
		r.Errorf("buffer.max_bytes", "max_bytes must be at least 1MiB, got %v", b.MaxBytes)
	}
	if b.MaxAge == nil {
		b.MaxAge = new(time.Duration)
		*b.MaxAge = DefaultMaxAge
	}
	switch {
	case !b.Sync.Always && b.Sync.Interval == 0:
		b.Sync.Interval = DefaultSync
	case b.Sync.Interval > 10*time.Second:
		r.Errorf("buffer.sync", "sync %v is too long: a power cut loses up to that much data; use at most 10s", b.Sync.Interval)
	case b.Sync.Interval > time.Second:
		r.Warnf("buffer.sync", "sync %v: a power cut can lose up to %v of messages", b.Sync.Interval, b.Sync.Interval)
	}
}

// unwrapPathError drops the "open /path:" part that the messages around
// it already say.
func unwrapPathError(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return fmt.Errorf("%s: %w", pe.Path, pe.Err)
	}
	return err
}
