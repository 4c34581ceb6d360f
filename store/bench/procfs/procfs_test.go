package procfs

import (
	"os"
	"runtime"
	"testing"
)

// TestStatusBytesReadsThisProcess: after touching 64 MiB, this process's
// resident set and its peak are at least that; a missing process or field
// reads 0.
func TestStatusBytesReadsThisProcess(t *testing.T) {
	if got := StatusBytes(-1, "VmHWM"); got != 0 {
		t.Errorf("pid -1: %d", got)
	}
	if got := StatusBytes(os.Getpid(), "NoSuchField"); got != 0 {
		t.Errorf("a missing field: %d", got)
	}
	b := make([]byte, 64<<20)
	for i := range b {
		b[i] = byte(i)
	}
	for _, f := range []string{"VmRSS", "VmHWM"} {
		if got := StatusBytes(os.Getpid(), f); got < int64(len(b)) {
			t.Errorf("%s = %d bytes after touching %d", f, got, len(b))
		}
	}
	runtime.KeepAlive(b)
}
