package queue

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// makeDir creates dir and the parents it lacks, fsyncing every directory it
// creates into its parent: a directory entry is durable only once its
// parent has been fsynced, and without that the first power cut after the
// very first start could take the whole queue, synced records included.
// The parent of dir is fsynced even when dir exists, in case a start before
// was cut short between creating it and the fsync.
func makeDir(dir string, sync func(string) error) error {
	dir = filepath.Clean(dir)
	var missing []string // deepest first
	for p := dir; ; {
		fi, err := os.Stat(p)
		if err == nil {
			if !fi.IsDir() {
				return fmt.Errorf("%s is not a directory", p)
			}
			break
		}
		if !errors.Is(err, os.ErrNotExist) {
			return err
		}
		missing = append(missing, p)
		parent := filepath.Dir(p)
		if parent == p {
			break
		}
		p = parent
	}
	for i := len(missing) - 1; i >= 0; i-- {
		p := missing[i]
		if err := os.Mkdir(p, 0o750); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
		if err := sync(filepath.Dir(p)); err != nil {
			return err
		}
	}
	if len(missing) == 0 {
		// Best effort: an existing directory whose parent we may not read
		// (a data_dir under a root-owned path) is not a reason to refuse.
		sync(filepath.Dir(dir))
	}
	return nil
}
