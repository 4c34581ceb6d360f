// Command soak runs the built notifier binary for a long while at a steady
// rate and shows whether anything it stores keeps growing: `make soak`.
//
// It starts `notifier serve` on its embedded default (a private
// redis-server child and an attempt log in a temporary data dir), with
// --retain and --dedup-window shortened to -window so that expiry happens
// during the run, and a partner as a separate process (this program with
// the argument "partner"). It enqueues -rate notices per second through
// serve's HTTP API, the path applications use: 80% are delivered at once,
// 20% after one failure (the partner answers 503 to their first attempt).
// Every -every it prints Redis used_memory and keys, the attempt log's file
// sizes, serve's RSS, goroutines and open files (from serve's /metrics and
// /proc), and at the end each figure's growth per hour, fitted over the
// samples taken after the first window (the window, the enqueue receipts'
// minute, and the retry, have passed).
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"syscall"
	"time"
)

// config is the run's flags.
type config struct {
	bin            string
	rate           float64
	duration       time.Duration
	every          time.Duration
	window         time.Duration
	body           int
	senders        int
	failEvery      int
	keep           bool
	serveExtraArgs []string
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "partner" {
		if err := runPartner(os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "soak partner:", err)
			os.Exit(1)
		}
		return
	}
	var c config
	flag.StringVar(&c.bin, "bin", "bin/notifier", "the notifier binary to run")
	flag.Float64Var(&c.rate, "rate", 1000, "notices enqueued per second")
	flag.DurationVar(&c.duration, "duration", 10*time.Minute, "how long to enqueue")
	flag.DurationVar(&c.every, "every", 30*time.Second, "how often to print a sample")
	flag.DurationVar(&c.window, "window", 2*time.Minute, "serve's --retain and --dedup-window")
	flag.IntVar(&c.body, "body", 200, "body bytes per notice")
	flag.IntVar(&c.senders, "senders", 64, "concurrent HTTP senders")
	flag.IntVar(&c.failEvery, "fail-every", 5, "every Nth notice fails its first attempt (5: 20%)")
	flag.BoolVar(&c.keep, "keep", false, "keep the data dir (its path is printed)")
	flag.Parse()
	if c.rate <= 0 || c.duration <= 0 || c.every <= 0 || c.window <= 0 || c.senders < 1 || c.failEvery < 1 {
		fmt.Fprintln(os.Stderr, "soak: -rate, -duration, -every, -window, -senders and -fail-every must be positive")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, c, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
}

// run starts the partner and serve, drives the load, samples, and prints
// the growth table; it stops both processes before returning.
func run(ctx context.Context, c config, out io.Writer) error {
	dir, err := os.MkdirTemp("", "notifier-soak")
	if err != nil {
		return err
	}
	if c.keep {
		fmt.Fprintln(out, "data dir:", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	partner, partnerAddr, err := start(exec.Command(self, "partner"), regexp.MustCompile(`^listening (\S+)`), nil)
	if err != nil {
		return fmt.Errorf("partner: %w", err)
	}
	defer stopProcess(partner)

	token := randomToken()
	port, err := freePort()
	if err != nil {
		return err
	}
	serveLog, err := os.Create(filepath.Join(dir, "serve.log"))
	if err != nil {
		return err
	}
	defer serveLog.Close()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	win := c.window.String()
	cmd := exec.Command(c.bin, "serve", "--data-dir", filepath.Join(dir, "data"), "--listen", addr, "--public-metrics",
		"--allow-private", "--retain", win, "--dedup-window", win, "--schedule", "0,1s")
	cmd.Env = append(os.Environ(), "NOTIFIER_API_TOKEN="+token)
	serve, _, err := start(cmd, regexp.MustCompile(`msg="api listening" addr=(\S+)`), serveLog)
	if err != nil {
		return fmt.Errorf("serve: %w (log: %s)", err, serveLog.Name())
	}
	defer stopProcess(serve)
	fmt.Fprintf(out, "soak: %g notices/s for %s, 1 in %d failing once, --retain and --dedup-window %s, a sample every %s\n",
		c.rate, c.duration, c.failEvery, win, c.every)
	fmt.Fprintf(out, "serve pid %d (log %s), partner %s\n\n", serve.Process.Pid, serveLog.Name(), partnerAddr)

	base := "http://" + addr
	load := newLoad(base, token, "http://"+partnerAddr+"/hook", c)
	// The figures settle once every kind of stored thing has started
	// expiring: the window (retention, dedup), the enqueue receipts' minute,
	// the retry's second, and a read of the gauges (every 10 s).
	warm := max(c.window, time.Minute) + 15*time.Second
	s := &sampler{base: base, pid: serve.Process.Pid, out: out, warm: warm}
	lctx, cancel := context.WithTimeout(ctx, c.duration)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- load.run(lctx) }()
	start := time.Now()
	s.header()
	tick := time.NewTicker(c.every)
	defer tick.Stop()
	// Samples are taken while the load runs; a last one when it ends,
	// unless one was just taken (the fit is over a steady load).
	last := time.Now()
	for running := true; running; {
		select {
		case err := <-done:
			if err != nil {
				return err
			}
			running = false
			if time.Since(last) < c.every/2 {
				continue
			}
		case <-tick.C:
		}
		last = time.Now()
		if err := s.sample(time.Since(start), load); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	s.summary(load)
	return nil
}

// start starts cmd and waits up to a minute for a line of its stderr (or
// stdout) matching ready, returning the line's first group. The rest of its
// output goes to logTo (or is discarded).
func start(cmd *exec.Cmd, ready *regexp.Regexp, logTo io.Writer) (*exec.Cmd, string, error) {
	if logTo == nil {
		logTo = io.Discard
	}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		sent := false
		for sc.Scan() {
			fmt.Fprintln(logTo, sc.Text())
			if m := ready.FindStringSubmatch(sc.Text()); m != nil && !sent {
				found <- m[1]
				sent = true
			}
		}
		io.Copy(io.Discard, pr) // a line too long for the scanner: keep draining
	}()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); pw.Close() }()
	select {
	case v := <-found:
		go func() { <-exited }()
		return cmd, v, nil
	case err := <-exited:
		return nil, "", fmt.Errorf("exited before it was ready: %v", err)
	case <-time.After(time.Minute):
		cmd.Process.Kill()
		return nil, "", errors.New("not ready within a minute")
	}
}

// stopProcess sends SIGTERM and waits up to 30 s for the process to go,
// then kills it.
func stopProcess(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if cmd.Process.Signal(syscall.Signal(0)) != nil {
			return
		}
	}
	_ = cmd.Process.Kill()
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func randomToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
