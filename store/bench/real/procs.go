package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/notifier/notifier/notifier"
	"github.com/notifier/notifier/store"
	"github.com/redis/go-redis/v9"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat:
// 100 on every Linux architecture Go supports (the kernel fixes it for
// user space, whatever its internal HZ).
const clockTicks = 100

// cpuTime is the CPU time (user + system) process pid has used so far,
// from /proc/<pid>/stat. It is zero for pid 0 or a process that is gone.
func cpuTime(pid int) time.Duration {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces and parentheses; the
	// fields after its closing parenthesis are plain numbers. utime and
	// stime are fields 14 and 15, so 12th and 13th after it.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / clockTicks
}

// cpuSample is the CPU time of each measured process at one moment.
type cpuSample struct{ serve, redis, partner time.Duration }

// CPU is CPU time per delivered (or enqueued) notice, in microseconds, by
// process: serve, its redis-server, the partner, and the enqueue CLI.
type CPU struct {
	Serve   float64 `json:"serve"`
	Redis   float64 `json:"redis"`
	Partner float64 `json:"partner"`
	Enqueue float64 `json:"enqueue"`
	Total   float64 `json:"total"`
}

// perNotice turns the CPU used between a and b, plus enqueue's own, into
// microseconds per notice.
func perNotice(a, b cpuSample, enqueue time.Duration, n int) CPU {
	if n <= 0 {
		return CPU{}
	}
	us := func(d time.Duration) float64 { return round1(float64(d.Microseconds()) / float64(n)) }
	c := CPU{Serve: us(b.serve - a.serve), Redis: us(b.redis - a.redis), Partner: us(b.partner - a.partner), Enqueue: us(enqueue)}
	c.Total = round1(c.Serve + c.Redis + c.Partner + c.Enqueue)
	return c
}

func round1(f float64) float64 { return float64(int64(f*10+0.5)) / 10 }

// serveProc is `notifier serve` running as its own process on its default
// configuration, with its Redis (embedded unless redisURL names one).
type serveProc struct {
	bin, dir, redisURL string
	noWake             bool
	cmd                *exec.Cmd
	done               chan error
	rdb                *redis.Client
	redisPid           int
	logf               *os.File
	stopped            bool
	// keys is serve's key layout: the default prefix on the embedded
	// Redis, a prefix of the run's own on a Redis named with --redis.
	keys store.Keys
}

// startServe starts serve and waits until it listens for wake-ups. The
// partner is on loopback, so the SSRF guard is opened for 127.0.0.1 only.
// On a Redis named by redisURL, serve and enqueue use the key prefix
// prefix, so that the run's keys can be told apart and deleted.
func startServe(ctx context.Context, bin, dir, redisURL, prefix string, noWake bool, env []string) (*serveProc, error) {
	args := []string{"serve", "--data-dir", dir, "--allow-cidr", "127.0.0.1/32"}
	k := store.Keys{Prefix: "noticeId"}
	if redisURL != "" {
		args = append(args, "--redis", redisURL, "--prefix", prefix)
		k.Prefix = prefix
	}
	if noWake {
		args = append(args, "--no-wake")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	logf, err := os.OpenFile(filepath.Join(dir, "serve.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	s := &serveProc{bin: bin, dir: dir, redisURL: redisURL, noWake: noWake, done: make(chan error, 1), logf: logf, keys: k}
	s.cmd = exec.Command(bin, args...)
	if len(env) > 0 {
		s.cmd.Env = append(os.Environ(), env...)
	}
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start serve: %w", err)
	}
	go func() { s.done <- s.cmd.Wait() }()
	url := redisURL
	if url == "" {
		url = "unix://" + store.SocketPath(dir)
	}
	opt, err := store.ParseURL(url)
	if err != nil {
		s.stop()
		return nil, err
	}
	s.rdb = redis.NewClient(opt)
	deadline := time.Now().Add(3 * time.Minute) // a million notices load from the AOF first
	for s.rdb.PubSubNumSub(ctx, k.Wake()).Val()[k.Wake()] < 1 {
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("serve never subscribed (log: %s)", logf.Name())
		}
		select {
		case err := <-s.done:
			s.done <- err
			s.stop()
			return nil, fmt.Errorf("serve exited: %v: %s", err, lastLine(logf.Name()))
		case <-ctx.Done():
			s.stop()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	info, err := s.rdb.Info(ctx, "server").Result()
	if err != nil {
		s.stop()
		return nil, fmt.Errorf("redis INFO: %w", err)
	}
	s.redisPid, _ = strconv.Atoi(infoField(info, "process_id"))
	return s, nil
}

// waker says whether serve runs with its waker, for Result.Waker.
func (s *serveProc) waker() *bool {
	on := !s.noWake
	return &on
}

func (s *serveProc) sample(partnerPid int) cpuSample {
	return cpuSample{serve: cpuTime(s.cmd.Process.Pid), redis: cpuTime(s.redisPid), partner: cpuTime(partnerPid)}
}

// stop sends SIGTERM and waits for serve (and its embedded Redis) to exit.
// Stopping a stopped serve does nothing.
func (s *serveProc) stop() {
	if s.stopped {
		return
	}
	s.stopped = true
	if s.rdb != nil {
		_ = s.rdb.Close()
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(time.Minute):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	_ = s.logf.Close()
}

// enqueueFile runs `notifier enqueue --file path` against this serve and
// returns its wall time and its CPU time.
func (s *serveProc) enqueueFile(ctx context.Context, path string) (wall, cpu time.Duration, err error) {
	args := []string{"enqueue", "--data-dir", s.dir, "--file", path}
	if s.redisURL != "" {
		args = append(args, "--redis", s.redisURL, "--prefix", s.keys.Prefix)
	}
	cmd := exec.CommandContext(ctx, s.bin, args...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err = cmd.Run()
	wall = time.Since(start)
	if cmd.ProcessState != nil {
		cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	if err != nil {
		return wall, cpu, fmt.Errorf("enqueue --file %s: %v: %s", path, err, firstLine(out.String()))
	}
	return wall, cpu, nil
}

// lastLine is the last line of the file at path, where serve says why it
// stopped.
func lastLine(path string) string {
	b, _ := os.ReadFile(path)
	s := strings.TrimSpace(string(b))
	return s[strings.LastIndexByte(s, '\n')+1:]
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

// lastSeq is the seq of the newest row in serve's attempt log (0 if none).
func (s *serveProc) lastSeq(ctx context.Context) (int64, error) {
	log, err := store.OpenSQLiteReadOnly(filepath.Join(s.dir, "attempts.db"))
	if err != nil {
		return 0, err
	}
	defer log.Close()
	rows, err := log.Last(ctx, notifier.AttemptFilter{}, 1)
	if err != nil || len(rows) == 0 {
		return 0, err
	}
	return rows[0].Seq, nil
}

// waitLogged waits until the attempt log holds n rows after seq from.
func (s *serveProc) waitLogged(ctx context.Context, from int64, n int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		last, err := s.lastSeq(ctx)
		if err == nil && last-from >= int64(n) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("attempt log: %d of %d rows within %s (%v)", last-from, n, limit, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond): // another process's writer: polled, as tail does
		}
	}
}

// dues reads the due time of every attempt logged after seq from whose
// notice id starts with prefix and whose slot is above 1.
func (s *serveProc) dues(ctx context.Context, from int64, prefix string) (map[string]time.Time, error) {
	log, err := store.OpenSQLiteReadOnly(filepath.Join(s.dir, "attempts.db"))
	if err != nil {
		return nil, err
	}
	defer log.Close()
	due := map[string]time.Time{}
	err = log.Each(ctx, notifier.AttemptFilter{AfterSeq: from}, func(a notifier.Attempt) error {
		if a.N > 1 && strings.HasPrefix(a.NoticeID, prefix) {
			due[a.NoticeID] = a.Due
		}
		return nil
	})
	return due, err
}

// usedMemory is Redis's used_memory once the enqueue receipts are gone (as
// they are a minute after each enqueue): it deletes them and waits for
// Redis's background free to finish.
func (s *serveProc) usedMemory(ctx context.Context) (int64, error) {
	if err := s.unlink(ctx, s.keys.ReceiptPattern()); err != nil {
		return 0, err
	}
	for range 500 {
		info, err := s.rdb.Info(ctx, "memory").Result()
		if err != nil {
			return 0, fmt.Errorf("redis INFO memory: %w", err)
		}
		if infoField(info, "lazyfree_pending_objects") == "0" {
			return strconv.ParseInt(infoField(info, "used_memory"), 10, 64)
		}
		time.Sleep(10 * time.Millisecond) // Redis's background free, polled
	}
	return 0, errors.New("redis never finished freeing the receipts")
}

// unlink deletes the keys matching pattern.
func (s *serveProc) unlink(ctx context.Context, pattern string) error {
	rdb := s.rdb
	var cursor uint64
	for {
		ks, next, err := rdb.Scan(ctx, cursor, pattern, 10000).Result()
		if err != nil {
			return fmt.Errorf("redis SCAN: %w", err)
		}
		if len(ks) > 0 {
			if err := rdb.Unlink(ctx, ks...).Err(); err != nil {
				return fmt.Errorf("redis UNLINK: %w", err)
			}
		}
		if cursor = next; cursor == 0 {
			return nil
		}
	}
}

func infoField(info, name string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return ""
}

// commands is how many commands Redis has run, from INFO commandstats:
// every command the scripts ran, and every other command but the scripts
// themselves (EVAL, EVALSHA) and INFO (which this driver sends).
func (s *serveProc) commands(ctx context.Context) (int64, error) {
	info, err := s.rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		return 0, fmt.Errorf("redis INFO commandstats: %w", err)
	}
	return commandCalls(info), nil
}

// commandCalls sums the calls of INFO commandstats' lines
// (cmdstat_<name>:calls=<n>,usec=...), as commands says.
func commandCalls(info string) int64 {
	var total int64
	for name, n := range commandsByName(info) {
		if name != "eval" && name != "evalsha" && name != "info" {
			total += n
		}
	}
	return total
}

// commandsByName is the calls of each command in INFO commandstats, by
// its name there (lpos, client|setinfo).
func commandsByName(info string) map[string]int64 {
	calls := map[string]int64{}
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		name, isStat := strings.CutPrefix(name, "cmdstat_")
		if !ok || !isStat {
			continue
		}
		n, _, _ := strings.Cut(strings.TrimPrefix(rest, "calls="), ",")
		if v, err := strconv.ParseInt(n, 10, 64); err == nil {
			calls[name] = v
		}
	}
	return calls
}

// persistence reads Redis's INFO persistence.
func (s *serveProc) persistence(ctx context.Context) (string, error) {
	info, err := s.rdb.Info(ctx, "persistence").Result()
	if err != nil {
		return "", fmt.Errorf("redis INFO persistence: %w", err)
	}
	return info, nil
}

// aofRewrites is how many AOF rewrites serve's Redis has done since it
// started (0 without an AOF).
func (s *serveProc) aofRewrites(ctx context.Context) (int, error) {
	info, err := s.persistence(ctx)
	if err != nil {
		return 0, err
	}
	n, _ := strconv.Atoi(infoField(info, "aof_rewrites"))
	return n, nil
}

// rewriteAOF starts an AOF rewrite (BGREWRITEAOF) and reports whether one
// started: false on a Redis without an AOF or one whose ACL refuses the
// command.
func (s *serveProc) rewriteAOF(ctx context.Context) (bool, error) {
	info, err := s.persistence(ctx)
	if err != nil {
		return false, err
	}
	if infoField(info, "aof_enabled") != "1" {
		return false, nil
	}
	if err := s.rdb.BgRewriteAOF(ctx).Err(); err != nil {
		if redis.HasErrorPrefix(err, "NOPERM") {
			return false, nil
		}
		return false, fmt.Errorf("redis BGREWRITEAOF: %w", err)
	}
	return true, nil
}

// settleAOF rewrites serve's AOF and waits for the rewrite to finish, so
// that a lateness scenario starts as it would on a serve that has run for
// a while: the backlog in the AOF's base, the next rewrite at least
// auto-aof-rewrite-min-size of writes away (64 MB at Redis's defaults).
// Without it the backlog just loaded sits in the AOF's tail and an
// automatic rewrite comes due during the scenario, wherever that happens to
// land (lateness-aof-rewrite measures one on purpose). It does nothing on a
// Redis without an AOF or one that refuses BGREWRITEAOF.
func (s *serveProc) settleAOF(ctx context.Context) error {
	if err := s.waitRewrite(ctx); err != nil {
		return err
	}
	started, err := s.rewriteAOF(ctx)
	if err != nil || !started {
		return err
	}
	return s.waitRewrite(ctx)
}

// waitRewrite waits until no AOF rewrite is running or scheduled.
func (s *serveProc) waitRewrite(ctx context.Context) error {
	deadline := time.Now().Add(5 * time.Minute) // a million notices take seconds
	for {
		info, err := s.persistence(ctx)
		if err != nil {
			return err
		}
		if infoField(info, "aof_rewrite_in_progress") != "1" && infoField(info, "aof_rewrite_scheduled") != "1" {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("redis's AOF rewrite never finished")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond): // INFO polled: Redis sends no event for it
		}
	}
}
