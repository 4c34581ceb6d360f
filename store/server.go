package store

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrNoRedisServer is returned by StartServer when redis-server is not on PATH.
var ErrNoRedisServer = errors.New("redis-server not found on PATH: install it (Debian/Ubuntu: apt-get install redis-server) or pass --redis URL")

// ServerConfig describes a private redis-server.
type ServerConfig struct {
	// Dir holds the socket, the AOF and the log. It is created 0700.
	Dir string
	// AppendFsync is the AOF fsync policy: "everysec" (default: at most
	// about a second of writes lost on a crash of the machine) or "always".
	AppendFsync string
	// AppendOnly turns the AOF off when false-y "no"; default "yes".
	AppendOnly string
	// Extra holds further redis.conf lines (tests use it for hz and such).
	Extra []string
	// StartTimeout is how long the server may take to answer at all
	// (default 15 s). While it answers that it is loading its AOF, it is
	// making progress and is waited for however long that takes: a crash
	// with a million notices pending leaves a file that takes minutes to
	// load on a small machine, and giving up would keep serve down for
	// good.
	StartTimeout time.Duration
}

// Server is a redis-server child process listening on a unix socket.
type Server struct {
	cfg    ServerConfig
	Socket string

	mu     sync.Mutex // guards the fields below, replaced by Restart
	cmd    *exec.Cmd
	exited chan struct{}
	err    error
}

// SocketPath is where a server for dir listens; enqueue, tail and status
// find a running serve's Redis through it.
func SocketPath(dir string) string { return filepath.Join(dir, "redis.sock") }

// StartServer starts redis-server with expired keyspace events on, the AOF
// on, RDB snapshots off and no TCP port, and waits until it answers. The
// child gets SIGTERM if this process dies, so a crashed serve does not leave
// it behind. A server left over from an earlier run on the same dir (one
// answering on the socket) is shut down first, saving its AOF.
func StartServer(ctx context.Context, cfg ServerConfig) (*Server, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, ErrNoRedisServer
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("data dir %s: %w", cfg.Dir, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	sock := SocketPath(dir)
	if len(sock) > 100 {
		return nil, fmt.Errorf("data dir %s: path too long for a unix socket (%d bytes, at most 100)", dir, len(sock))
	}
	shutdownStale(ctx, sock)
	if cfg.AppendFsync == "" {
		cfg.AppendFsync = "everysec"
	}
	if cfg.AppendOnly == "" {
		cfg.AppendOnly = "yes"
	}
	conf := []string{
		"port 0",
		"unixsocket " + quote(sock),
		"unixsocketperm 700",
		"dir " + quote(dir),
		"appendonly " + cfg.AppendOnly,
		"appendfsync " + cfg.AppendFsync,
		`save ""`,
		"notify-keyspace-events Ex",
		// Pending notices' payloads share small hashes (see records.go).
		"maxmemory-policy noeviction",
		"daemonize no",
		"logfile " + quote(filepath.Join(dir, "redis.log")),
	}
	conf = append(conf, cfg.Extra...)
	confPath := filepath.Join(dir, "redis.conf")
	if err := os.WriteFile(confPath, []byte(strings.Join(conf, "\n")+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("write %s: %w", confPath, err)
	}
	s := &Server{cfg: cfg, Socket: sock, exited: make(chan struct{})}
	if err := s.start(ctx, bin, confPath); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Server) start(ctx context.Context, bin, confPath string) error {
	cmd := exec.Command(bin, confPath)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	exited := make(chan struct{})
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
	go func() {
		err := cmd.Wait()
		s.mu.Lock()
		s.err = err
		s.mu.Unlock()
		close(exited)
	}()
	// Wait for the socket to answer; there is no readiness signal from a
	// non-daemonized redis-server other than accepting connections.
	timeout := s.cfg.StartTimeout
	if timeout <= 0 {
		timeout = 15 * time.Second
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		switch reply := pingReply("unix", s.Socket); {
		case strings.HasPrefix(reply, "+PONG"):
			return nil
		case strings.HasPrefix(reply, "-LOADING"):
			// Loading its data: alive and progressing.
			deadline.Reset(timeout)
		}
		select {
		case <-exited:
			return fmt.Errorf("redis-server exited at start (%v): %s", s.exitErr(), s.logTail())
		case <-deadline.C:
			s.Kill()
			return fmt.Errorf("redis-server did not answer on %s within %v: %s", s.Socket, timeout, s.logTail())
		case <-ctx.Done():
			s.Kill()
			return ctx.Err()
		case <-tick.C:
		}
	}
}

func (s *Server) exitErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *Server) current() (*exec.Cmd, chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd, s.exited
}

// Exited is closed when the current redis-server process ends.
func (s *Server) Exited() <-chan struct{} {
	_, exited := s.current()
	return exited
}

// Run keeps the server up until ctx ends, restarting it (with backoff) if
// it dies, then stops it. serve calls it with a context that ends after the
// dispatcher has stopped, so Redis outlives every attempt in flight.
func (s *Server) Run(ctx context.Context, log *slog.Logger) error {
	wait := 100 * time.Millisecond
	for {
		select {
		case <-ctx.Done():
			return s.Stop()
		case <-s.Exited():
		}
		log.Error("embedded redis-server exited; restarting it", "err", s.exitErr(), "log", s.logTail(), "in", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		if err := s.Restart(ctx); err != nil {
			log.Error("restart embedded redis-server", "err", err)
			wait = min(wait*2, 10*time.Second)
			continue
		}
		log.Info("embedded redis-server is back")
		wait = 100 * time.Millisecond
	}
}

// URL is the redis:// URL of the server, for go-redis ParseURL.
func (s *Server) URL() string { return "unix://" + s.Socket }

// Stop asks the server to shut down (it fsyncs the AOF) and waits up to
// 10 s before killing it.
func (s *Server) Stop() error {
	cmd, exited := s.current()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
		return nil
	case <-time.After(10 * time.Second):
		s.Kill()
		return errors.New("redis-server did not stop within 10s; killed")
	}
}

// Kill stops the server at once with SIGKILL, as a crash would.
func (s *Server) Kill() {
	cmd, exited := s.current()
	_ = cmd.Process.Kill()
	<-exited
}

// Restart starts the server again on the same directory, after Stop or Kill;
// with the AOF on it reloads what was written.
func (s *Server) Restart(ctx context.Context) error {
	cmd, exited := s.current()
	select {
	case <-exited:
	default:
		return errors.New("redis-server is still running")
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return ErrNoRedisServer
	}
	_ = os.Remove(s.Socket)
	return s.start(ctx, bin, cmd.Args[1])
}

func (s *Server) logTail() string { return LogTail(filepath.Join(filepath.Dir(s.Socket), "redis.log")) }

// LogTail returns the last lines of a redis-server log file, joined on one
// line for an error message ("no log" if it cannot be read).
func LogTail(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return "no log"
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > 5 {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, " | ")
}

func ping(sock string) bool { return Ping("unix", sock) }

// Ping reports whether a Redis server answers PING at addr on network
// ("unix" or "tcp") within about a second, without a client: start-up
// checks of the embedded server and of test clusters use it.
func Ping(network, addr string) bool { return strings.HasPrefix(pingReply(network, addr), "+PONG") }

// pingReply is the start of a Redis server's reply to PING at addr ("" if
// none came within about a second): "+PONG", or an error such as
// "-LOADING" while it loads its data.
func pingReply(network, addr string) string {
	c, err := net.DialTimeout(network, addr, 100*time.Millisecond)
	if err != nil {
		return ""
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return ""
	}
	buf := make([]byte, 16)
	n, _ := c.Read(buf)
	return string(buf[:n])
}

// shutdownStale stops a redis-server still answering on sock: the private
// child of a serve that was killed before it could stop it.
func shutdownStale(ctx context.Context, sock string) {
	if !ping(sock) {
		_ = os.Remove(sock)
		return
	}
	c, err := net.DialTimeout("unix", sock, time.Second)
	if err != nil {
		return
	}
	_, _ = c.Write([]byte("SHUTDOWN\r\n"))
	c.Close()
	for i := 0; i < 500 && ping(sock); i++ {
		select {
		case <-ctx.Done():
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func quote(s string) string { return ConfQuote(s) }

// ConfQuote quotes s as one redis.conf argument.
func ConfQuote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"` }

// ErrDirLocked is returned by LockDir when another serve uses the data dir.
var ErrDirLocked = errors.New("another notifier serve is using this data dir")

// LockDir takes an exclusive lock on dir (created 0700), so two serve
// processes never start two redis-servers on one AOF. The lock goes with the
// process, so a killed serve never leaves it stuck.
func LockDir(dir string) (unlock func(), err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "serve.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock data dir: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s: %w", dir, ErrDirLocked)
		}
		return nil, fmt.Errorf("lock data dir: %w", err)
	}
	return func() { f.Close() }, nil
}
