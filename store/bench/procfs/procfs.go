// Package procfs reads what the benchmark and soak drivers measure of a
// process from Linux's /proc: for now, the memory fields of its status.
package procfs

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// StatusBytes returns memory field name of /proc/<pid>/status (VmRSS, the
// resident set; VmHWM, its peak; ...) in bytes, or 0 if the process or the
// field is not there.
func StatusBytes(pid int, name string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}
