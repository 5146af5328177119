package bridge

import (
	"fmt"
	"io"
	"strings"
)

// Describe prints what the bridge will do, for `gateway check`: where it
// connects, what goes up and comes down, and how the backlog is kept. Call
// it on a checked config. Secrets are never printed.
func (c *Config) Describe(w io.Writer) {
	urls := make([]string, len(c.Upstreams))
	for i, up := range c.Upstreams {
		urls[i] = up.URL
		if up.u != nil {
			urls[i] = up.u.Redacted()
		}
	}
	auth := "anonymous"
	switch {
	case c.TLS.CertFile != "":
		auth = "client certificate"
	case c.Username != "":
		auth = "user " + c.Username
	}
	window := fmt.Sprintf("window auto (up to %d in flight)", c.MaxInflight)
	if c.Inflight.N > 0 {
		window = fmt.Sprintf("window %d in flight", c.Inflight.N)
	}
	if c.MaxRate > 0 {
		window += fmt.Sprintf(", at most %g publishes/s", c.MaxRate)
	}
	fmt.Fprintf(w, "bridge: %s as %q (%s), keepalive %s, %s\n",
		strings.Join(urls, ", then "), c.clientID, auth, c.Keepalive, window)
	for _, r := range c.Forward {
		fmt.Fprintf(w, "  forward   %s -> %s%s (qos %d, retain %s)\n", r.Filter, r.Prefix, r.Filter, qosOf(r.QoS), r.Retain)
		if b := r.Batch; b != nil && b.MaxDelay != nil {
			fmt.Fprintf(w, "            in batches to %s: up to %d records, %v, %v\n", b.Topic, b.MaxRecords, b.MaxBytes, *b.MaxDelay)
		}
	}
	for _, r := range c.Subscribe {
		fmt.Fprintf(w, "  subscribe %s -> strip %q (qos %d)\n", r.Filter, r.StripPrefix, qosOf(r.QoS))
	}
	age := "no age limit"
	if c.Buffer.MaxAge != nil && *c.Buffer.MaxAge > 0 {
		age = "at most " + c.Buffer.MaxAge.String() + " old"
	}
	fmt.Fprintf(w, "  status topic %s; queue in %s: up to %s, %s, %s when full, sync %s\n",
		c.StatusTopic, c.Buffer.Dir, c.Buffer.MaxBytes, age, c.Buffer.WhenFull, c.Buffer.Sync)
}

func qosOf(q *int) int {
	if q == nil {
		return DefaultQoS
	}
	return *q
}
