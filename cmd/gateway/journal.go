package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"

	"github.com/fieldbridge/fieldbridge/internal/config"
)

// Logging under systemd. The journal stamps every line itself, and reads a
// syslog priority from a "<N>" prefix (sd-daemon(3)): with it, `journalctl
// -p warning` shows warnings and errors only. So when stderr is the journal
// stream, lines carry that prefix and no timestamp of their own; elsewhere
// they are slog's usual text or JSON.

// Syslog priorities (sd-daemon.h).
const (
	prioErr     = 3
	prioWarning = 4
	prioInfo    = 6
	prioDebug   = 7
)

func priority(l slog.Level) int {
	switch {
	case l >= slog.LevelError:
		return prioErr
	case l >= slog.LevelWarn:
		return prioWarning
	case l >= slog.LevelInfo:
		return prioInfo
	}
	return prioDebug
}

// journalStream is stubbed by tests.
var journalStream = func() bool { return stderrIsJournal(os.Getenv("JOURNAL_STREAM")) }

// newLogger builds the gateway's one logger, at a level that a reload can
// change.
func newLogger(c config.Log, w io.Writer, level *slog.LevelVar) *slog.Logger {
	_ = level.UnmarshalText([]byte(strings.ToUpper(c.Level)))
	opts := &slog.HandlerOptions{Level: level}
	journal := journalStream()
	if journal {
		opts.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{} // the journal has its own
			}
			return a
		}
		out := &journalOut{w: w}
		w = out
		var h slog.Handler
		if strings.EqualFold(c.Format, "json") {
			h = slog.NewJSONHandler(w, opts)
		} else {
			h = slog.NewTextHandler(w, opts)
		}
		return slog.New(journalHandler{h, out})
	}
	if strings.EqualFold(c.Format, "json") {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// journalOut prefixes each record's line with the priority that
// journalHandler set for it.
type journalOut struct {
	mu   sync.Mutex
	w    io.Writer
	prio int
	buf  []byte
}

// Write is called by the inner handler, once per record, with mu held.
func (o *journalOut) Write(p []byte) (int, error) {
	o.buf = append(o.buf[:0], '<', byte('0'+o.prio), '>')
	o.buf = append(o.buf, p...)
	if _, err := o.w.Write(o.buf); err != nil {
		return 0, err
	}
	return len(p), nil
}

// journalHandler sets the priority of a record before its inner handler
// writes it.
type journalHandler struct {
	slog.Handler
	out *journalOut
}

func (h journalHandler) Handle(ctx context.Context, r slog.Record) error {
	h.out.mu.Lock()
	defer h.out.mu.Unlock()
	h.out.prio = priority(r.Level)
	return h.Handler.Handle(ctx, r)
}

func (h journalHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return journalHandler{h.Handler.WithAttrs(as), h.out}
}

func (h journalHandler) WithGroup(name string) slog.Handler {
	return journalHandler{h.Handler.WithGroup(name), h.out}
}

// printLines writes text line by line, each with the syslog priority
// prefix when stderr is the journal: for what commands print rather than
// log (config problems).
func printLines(w io.Writer, prio int, text string) {
	journal := journalStream()
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(nil, 1<<20)
	var b bytes.Buffer
	for sc.Scan() {
		if journal {
			b.WriteString("<" + string(rune('0'+prio)) + ">")
		}
		b.Write(sc.Bytes())
		b.WriteByte('\n')
	}
	_, _ = w.Write(b.Bytes())
}
