//go:build !linux

package queue

// datasync is fsync where fdatasync(2) is not available.
func datasync(f file) error { return f.Sync() }
