// Package storetest gives tests outside package store a real SQLite
// attempt log with its writer running, as serve runs it.
package storetest

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/notifier/notifier/store"
)

// StartLog opens a writable attempt log in a new file under t.TempDir()
// and runs its writer until the test ends; cleanup stops the writer,
// checks that it returned nil and closes the log. It returns the log and
// its file's path.
func StartLog(t testing.TB) (*store.SQLite, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "attempts.db")
	log, err := store.OpenSQLite(path)
	if err != nil {
		t.Fatalf("open attempt log: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- log.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("attempt log: %v", err)
		}
		if err := log.Close(); err != nil {
			t.Errorf("close attempt log: %v", err)
		}
	})
	return log, path
}
