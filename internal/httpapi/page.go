package httpapi

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"time"
)

//go:embed page.html
var pageHTML string

// The status page is rendered on the server from one embedded template:
// no JavaScript, no external assets, a meta refresh to stay current, and
// a layout that wraps rather than scrolls sideways on a phone.
var pageTemplate = template.Must(template.New("page").Funcs(template.FuncMap{
	"dur": humanSeconds,
	"ms":  millis,
	"ago": func(now time.Time, t *time.Time) string { return humanSeconds(now.Sub(*t).Seconds()) },
	"val": valueText,
}).Parse(pageHTML))

type pageData struct {
	S       Status
	Refresh int
	Device  string
}

func (s *Server) handlePage(w http.ResponseWriter, r *http.Request) {
	device := r.URL.Query().Get("device")
	data := pageData{S: s.status(device), Refresh: int(math.Ceil(s.o.Refresh.Seconds())), Device: device}
	var buf bytes.Buffer
	if err := pageTemplate.Execute(&buf, data); err != nil {
		s.log.Error("status page", "err", err)
		http.Error(w, "cannot render the status page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	// Nothing on the page comes from elsewhere; say so to the browser.
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'")
	_, _ = w.Write(buf.Bytes())
}

// valueText renders a published JSON value for people: strings without
// their quotes, everything else as published.
func valueText(v json.RawMessage) string {
	if len(v) > 0 && v[0] == '"' {
		var s string
		if json.Unmarshal(v, &s) == nil {
			return s
		}
	}
	return string(v)
}

// millis renders a round trip: "0.4 ms", "38 ms", "1.2 s".
func millis(sec float64) string {
	switch ms := sec * 1000; {
	case ms < 10:
		return fmt.Sprintf("%.1f ms", ms)
	case ms < 1000:
		return fmt.Sprintf("%.0f ms", ms)
	}
	return fmt.Sprintf("%.1f s", sec)
}

// humanSeconds renders an age or uptime: "0.4 s", "12 s", "3 min", "5 h", "2 d".
func humanSeconds(sec float64) string {
	switch {
	case sec < 0:
		sec = 0
		fallthrough
	case sec < 10:
		return fmt.Sprintf("%.1f s", sec)
	case sec < 120:
		return fmt.Sprintf("%.0f s", sec)
	case sec < 2*3600:
		return fmt.Sprintf("%.0f min", sec/60)
	case sec < 2*86400:
		return fmt.Sprintf("%.0f h", sec/3600)
	}
	return fmt.Sprintf("%.0f d", sec/86400)
}
