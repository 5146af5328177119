package testpeer

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Chromium is Debian's headless chromium, for tests of pages served by the
// gateway: what a real browser builds from them (DumpDOM) and what it
// draws (Screenshot). Every call runs a fresh browser with its own profile
// directory and no network beyond the URL it is given.
type Chromium struct {
	tb   testing.TB
	path string
}

// chromiumTimeout bounds one browser run: a cold start on a loaded
// 2-core machine takes a few seconds.
const chromiumTimeout = 60 * time.Second

// StartChromium finds chromium (Debian package chromium), or skips/fails
// the test like every missing peer.
func StartChromium(tb testing.TB) *Chromium {
	tb.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return &Chromium{tb: tb, path: p}
		}
	}
	missingPeer(tb, "chromium not found (Debian package chromium)")
	return nil
}

// DumpDOM loads url and returns the DOM as the browser serialised it after
// loading the page.
func (c *Chromium) DumpDOM(url string) string {
	c.tb.Helper()
	out, err := c.run("--dump-dom", url)
	if err != nil {
		c.tb.Fatalf("testpeer: chromium --dump-dom %s: %v", url, err)
	}
	return out
}

// Screenshot loads url in a window of width × height CSS pixels and writes
// a PNG to file.
func (c *Chromium) Screenshot(url, file string, width, height int) {
	c.tb.Helper()
	if _, err := c.run("--screenshot="+file, "--window-size="+strconv.Itoa(width)+","+strconv.Itoa(height), "--hide-scrollbars", url); err != nil {
		c.tb.Fatalf("testpeer: chromium --screenshot %s: %v", url, err)
	}
	if st, err := os.Stat(file); err != nil || st.Size() == 0 {
		c.tb.Fatalf("testpeer: chromium wrote no screenshot to %s (%v)", file, err)
	}
}

// run starts one headless browser with a fresh profile and waits for it.
func (c *Chromium) run(args ...string) (string, error) {
	profile, err := os.MkdirTemp("", "fieldbridge-chromium-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(profile)
	base := []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-extensions", "--disable-default-apps", "--no-first-run", "--no-default-browser-check",
		"--mute-audio", "--user-data-dir=" + profile,
	}
	cmd := exec.Command(c.path, append(base, args...)...)
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Env = append(os.Environ(), "HOME="+profile) // no writes to the real home
	p, err := startProcess("chromium", cmd)
	if err != nil {
		return "", err
	}
	select {
	case <-p.done:
	case <-time.After(chromiumTimeout):
		p.kill()
		return "", fmt.Errorf("still running after %v; output:\n%s", chromiumTimeout, p.out)
	}
	if p.err != nil {
		return "", fmt.Errorf("%w; output:\n%s", p.err, p.out)
	}
	if strings.TrimSpace(stdout.String()) == "" && strings.Contains(strings.Join(args, " "), "--dump-dom") {
		return "", fmt.Errorf("empty DOM; output:\n%s", p.out)
	}
	return stdout.String(), nil
}
