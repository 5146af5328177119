package main

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/fieldbridge/fieldbridge/internal/config"
)

// TestJournalLogger: under systemd every line starts with its syslog
// priority and carries no timestamp of its own; elsewhere the lines are
// slog's.
func TestJournalLogger(t *testing.T) {
	for _, format := range []string{"text", "json"} {
		var buf bytes.Buffer
		journalStream = func() bool { return true }
		log := newLogger(config.Log{Level: "debug", Format: format}, &buf, new(slog.LevelVar))
		journalStream = func() bool { return false }
		log.Debug("d")
		log.With("bus", "line1").Info("i")
		log.Warn("w", "n", 1)
		log.Error("e")
		lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
		want := []string{"<7>", "<6>", "<4>", "<3>"}
		if len(lines) != len(want) {
			t.Fatalf("%s: %d lines:\n%s", format, len(lines), buf.String())
		}
		for i, l := range lines {
			if !strings.HasPrefix(l, want[i]) || strings.Contains(l, "time") {
				t.Errorf("%s: line %q: want prefix %s and no time", format, l, want[i])
			}
		}
		if !strings.Contains(lines[1], "bus=line1") && !strings.Contains(lines[1], `"bus":"line1"`) {
			t.Errorf("%s: attributes lost: %q", format, lines[1])
		}
	}
	var buf bytes.Buffer
	newLogger(config.Log{Level: "info", Format: "text"}, &buf, new(slog.LevelVar)).Info("plain")
	if !strings.HasPrefix(buf.String(), "time=") {
		t.Errorf("without the journal: %q", buf.String())
	}
}

// TestJournalStreamDetected: the gateway process recognises the journal by
// JOURNAL_STREAM naming its stderr, as systemd sets it, and then prints
// each problem of a bad config with the error priority.
func TestJournalStreamDetected(t *testing.T) {
	bin := buildGateway(t)
	dir := t.TempDir()
	logPath := filepath.Join(dir, "stderr")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	config := writeConfig(t, dir, fmt.Sprintf("gateway: {id: plant1, data_dir: %s}\nbroker: {listen: 127.0.0.1:1}\nadapters: [{name: x, type: modbus, transport: tcp, address: 127.0.0.1:1, devices: [{name: d, unit: 1, points: [{name: v, table: holding, adress: 0}]}]}]\n", dir))
	cmd := exec.Command(bin, "run", "--config", config)
	cmd.Env = append(os.Environ(), fmt.Sprintf("JOURNAL_STREAM=%d:%d", st.Dev, st.Ino))
	cmd.Stderr = f
	_ = cmd.Run()
	out, _ := os.ReadFile(logPath)
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if cmd.ProcessState.ExitCode() != exitConfig || len(lines) < 2 {
		t.Fatalf("exit %d, output:\n%s", cmd.ProcessState.ExitCode(), out)
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "<3>") {
			t.Errorf("line without the error priority: %q", l)
		}
	}
}
