package cli

import (
	"io"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// largeFile is the size from which `enqueue --file` shows a progress bar:
// about 5,000 typical lines, which take long enough to be worth watching.
const largeFile = 1 << 20

// progress is a progress bar on standard error for a long command
// (replay, enqueue --file of a large file), drawn by progressbar/v3. It
// is drawn only when w is a terminal: logs, pipes and --json output never
// get one. Its methods are safe from several goroutines (EnqueueLines
// reports bad lines from its senders while the reader moves the bar), and
// on a progress that draws nothing they do nothing.
type progress struct {
	mu  sync.Mutex
	bar *progressbar.ProgressBar
}

// newProgress returns a bar to total on w, in bytes (bytes) or items,
// when on is set, total is known and w is a terminal.
func newProgress(w io.Writer, on bool, total int64, desc string, bytes bool) *progress {
	if !on || total <= 0 || !isTerminal(w) {
		return &progress{}
	}
	opts := []progressbar.Option{
		progressbar.OptionSetWriter(w), progressbar.OptionSetDescription(desc),
		progressbar.OptionSetWidth(30), progressbar.OptionThrottle(100 * time.Millisecond),
		progressbar.OptionSetPredictTime(true), progressbar.OptionClearOnFinish(),
	}
	if bytes {
		opts = append(opts, progressbar.OptionShowBytes(true))
	} else {
		opts = append(opts, progressbar.OptionShowCount())
	}
	// A known total: the library starts no goroutine of its own (it
	// does only to spin for an unknown one).
	return &progress{bar: progressbar.NewOptions64(total, opts...)}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// set moves the bar to done.
func (p *progress) set(done int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		_ = p.bar.Set64(done)
	}
}

// add moves the bar on by n.
func (p *progress) add(n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		_ = p.bar.Add64(n)
	}
}

// print writes line to w with the bar cleared first, so the line does
// not run into the bar; the bar comes back at its next move.
func (p *progress) print(w io.Writer, line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		_ = p.bar.Clear()
	}
	_, _ = io.WriteString(w, line)
}

// finish removes the bar, leaving the line for the summary.
func (p *progress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		_ = p.bar.Finish()
	}
}

// reader counts what r reads into p.
type reader struct {
	r io.Reader
	p *progress
}

func (r reader) Read(b []byte) (int, error) {
	n, err := r.r.Read(b)
	r.p.add(int64(n))
	return n, err
}
