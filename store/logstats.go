package store

import (
	"errors"
	"io/fs"
	"os"
)

// fileSize is the size of the file at path; 0 without error if it does not
// exist (a WAL between checkpoints, say).
func fileSize(path string) (int64, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}
