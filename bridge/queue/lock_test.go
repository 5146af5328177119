//go:build unix

package queue

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestLockNamesHolder: the lock file holds the pid of the process that has
// the queue open, and a second Open says who holds it.
func TestLockNamesHolder(t *testing.T) {
	dir := t.TempDir()
	q, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	b, err := os.ReadFile(filepath.Join(dir, lockName))
	if err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(os.Getpid()) {
		t.Errorf("lock file holds %q (%v), want our pid %d", b, err, os.Getpid())
	}
	_, err = Open(Options{Dir: dir})
	if err == nil || !strings.Contains(err.Error(), "in use by this process") {
		t.Fatalf("second open: %v", err)
	}
}
