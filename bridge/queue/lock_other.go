//go:build !unix

package queue

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
)

const lockName = "LOCK"

// lockDir only creates dir/LOCK where flock is not available: the gateway
// runs on Linux, other systems are for development.
func lockDir(dir string) (io.Closer, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockName), os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("queue: lock directory: %w", err)
	}
	return f, nil
}
