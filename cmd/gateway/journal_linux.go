package main

import (
	"fmt"
	"os"
	"syscall"
)

// stderrIsJournal reports whether stderr is the stream that JOURNAL_STREAM
// ("device:inode", set by systemd) names, as systemd.exec(5) advises: a
// process whose stderr was redirected elsewhere keeps its timestamps.
func stderrIsJournal(stream string) bool {
	if stream == "" {
		return false
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(os.Stderr.Fd()), &st); err != nil {
		return false
	}
	return stream == fmt.Sprintf("%d:%d", st.Dev, st.Ino)
}
