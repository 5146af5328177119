package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/fieldbridge/fieldbridge/internal/config"
)

// bcryptHash is a broker.users password_hash for pw (cheapest cost: tests
// log in often).
func bcryptHash(t *testing.T, pw string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// runGatewayFile starts the gateway in-process on the config file at path,
// as `gateway run` does; a signal on hup reloads the file. It stops at the
// end of the test.
func runGatewayFile(t *testing.T, path string) (g *gateway, logs *syncBuffer, hup chan<- os.Signal) {
	t.Helper()
	cfg, err := config.Load(path, config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	logs = &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	g, err = startGateway(ctx, cfg, slog.New(slog.NewTextHandler(io.MultiWriter(logs, testLog{t}), nil)), nil)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	signals := make(chan os.Signal, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); g.wait(ctx, signals, path) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
	return g, logs, signals
}

// getAs fetches a URL with basic auth (none when user is "").
func getAs(t *testing.T, url, user, pass string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, resp.Header, string(body)
}

// scrapeAs is scrape with basic auth.
func scrapeAs(t *testing.T, base, user, pass string) map[string]float64 {
	t.Helper()
	code, _, body := getAs(t, base+"/metrics", user, pass)
	if code != http.StatusOK {
		t.Fatalf("/metrics as %s: %d %s", user, code, body)
	}
	m, err := parseMetrics(body)
	if err != nil {
		t.Fatalf("/metrics: %v", err)
	}
	return m
}

// TestHTTPBasicAuthWithBrokerUsers: with broker.users set, the HTTP side
// asks for them with real HTTP requests: 401 with a Basic challenge
// without or with wrong credentials, 200 with a user who may read the
// gateway's topics, 403 for one who may not; /healthz stays open for
// liveness probes. A reload's user changes apply to the next request (a
// new password, a removed user, a new one), and with no users left the
// pages are open again, as the broker is. No password reaches the log.
func TestHTTPBasicAuthWithBrokerUsers(t *testing.T) {
	httpAddr := loopbackAddr(t)
	base := "http://" + httpAddr
	brokerAddr := loopbackAddr(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "gateway.yaml")
	write := func(users ...string) {
		t.Helper()
		text := fmt.Sprintf("gateway: {id: it, data_dir: %q}\nbroker:\n  listen: %q\n", dir, brokerAddr)
		if len(users) > 0 {
			text += "  users:\n    - " + strings.Join(users, "\n    - ") + "\n"
		}
		text += fmt.Sprintf("http: {listen: %q}\n", httpAddr)
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	user := func(name, pw, acl string) string {
		s := fmt.Sprintf("{username: %s, password_hash: %q", name, bcryptHash(t, pw))
		if acl != "" {
			s += ", acl: " + acl
		}
		return s + "}"
	}
	viewer := func(pw string) string { return user("viewer", pw, `[{filter: "it/#", access: read}]`) }
	commands := user("commands", "commands-pw-1", `[{filter: "it/+/+/set", access: write}]`)
	write(viewer("viewer-pw-1"), commands)
	_, logs, hup := runGatewayFile(t, path)

	expect := func(what, path, user, pass string, want int) {
		t.Helper()
		code, h, body := getAs(t, base+path, user, pass)
		if code != want {
			t.Errorf("%s: GET %s as %q: %d %s, want %d", what, path, user, code, strings.TrimSpace(body), want)
		}
		if code == http.StatusUnauthorized && !strings.HasPrefix(h.Get("WWW-Authenticate"), "Basic ") {
			t.Errorf("%s: GET %s: 401 without a Basic challenge", what, path)
		}
	}
	for _, p := range []string{"/", "/api/status", "/metrics", "/readyz"} {
		expect("no credentials", p, "", "", http.StatusUnauthorized)
		expect("wrong password", p, "viewer", "nope", http.StatusUnauthorized)
		expect("unknown user", p, "nobody", "viewer-pw-1", http.StatusUnauthorized)
		expect("viewer", p, "viewer", "viewer-pw-1", http.StatusOK)
		expect("a user who may not read it/#", p, "commands", "commands-pw-1", http.StatusForbidden)
	}
	expect("liveness", "/healthz", "", "", http.StatusOK)
	if m := scrapeAs(t, base, "viewer", "viewer-pw-1"); m["fieldbridge_http_auth_failures_total"] != 4*3 {
		t.Errorf("fieldbridge_http_auth_failures_total = %v, want 12 (wrong, unknown, forbidden on four paths)", m["fieldbridge_http_auth_failures_total"])
	}

	// A reload: viewer's password changes, commands goes, ops comes (no
	// ACL: full access).
	write(viewer("viewer-pw-2"), user("ops", "ops-pw-1", ""))
	hup <- syscall.SIGHUP
	waitUntil(t, 10*time.Second, "the reload", func() bool { return strings.Count(logs.String(), "config reloaded") == 1 })
	expect("old password after the reload", "/", "viewer", "viewer-pw-1", http.StatusUnauthorized)
	expect("new password after the reload", "/", "viewer", "viewer-pw-2", http.StatusOK)
	expect("removed user", "/", "commands", "commands-pw-1", http.StatusUnauthorized)
	expect("new user", "/metrics", "ops", "ops-pw-1", http.StatusOK)

	// No users: the broker (on loopback) lets anonymous clients in, and the
	// HTTP side asks for nothing either.
	write()
	hup <- syscall.SIGHUP
	waitUntil(t, 10*time.Second, "the second reload", func() bool { return strings.Count(logs.String(), "config reloaded") == 2 })
	expect("no users", "/api/status", "", "", http.StatusOK)

	for _, pw := range []string{"viewer-pw-1", "viewer-pw-2", "commands-pw-1", "ops-pw-1", "nope"} {
		if strings.Contains(logs.String(), pw) {
			t.Errorf("the log holds the password %q", pw)
		}
	}
}
