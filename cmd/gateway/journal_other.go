//go:build !linux

package main

// stderrIsJournal: the journal exists on Linux only.
func stderrIsJournal(string) bool { return false }
