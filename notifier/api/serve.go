package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// shutdownGrace is how long Serve lets requests in flight finish once its
// context ends.
const shutdownGrace = 5 * time.Second

// Serve serves h on ln until ctx ends, then shuts down: it stops accepting,
// lets requests in flight finish for up to 5 s and closes the rest. It
// returns nil after a shutdown caused by ctx, else the error that stopped
// serving. It closes ln. The server has read, write and idle timeouts, so
// a slow client cannot hold a connection open. A nil log discards.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return fmt.Errorf("api: serve %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("api: requests still running at shutdown; closing them", "err", err)
		_ = srv.Close()
	}
	if err := <-done; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("api: serve %s: %w", ln.Addr(), err)
	}
	return nil
}

// DefaultMaxSilence is how old Readiness lets the subscription's last proof
// of life be: the canary proves it every 5 s, give or take its 2 s deadline.
const DefaultMaxSilence = 15 * time.Second

// Readiness is the readiness check of serve (Server.Ready = r.Check): Redis
// answers, the expired-event subscription is alive, and the attempt log's
// writer commits. Nil funcs are skipped.
type Readiness struct {
	// Ping checks that Redis answers, such as redis.Client.Ping(ctx).Err.
	Ping func(ctx context.Context) error
	// LastHeard is store.Redis.LastHeard: zero (never subscribed) or
	// older than MaxSilence is not ready.
	LastHeard func() time.Time
	// MaxSilence defaults to DefaultMaxSilence.
	MaxSilence time.Duration
	// Sync is store.SQLite.Sync: it returns once the writer has committed
	// what was queued, so a stuck or stopped writer fails it.
	Sync func(ctx context.Context) error
	// Now is the clock; nil: time.Now.
	Now func() time.Time
}

// Check returns nil if every check passes, else an error naming the first
// that failed.
func (r Readiness) Check(ctx context.Context) error {
	if r.Ping != nil {
		if err := r.Ping(ctx); err != nil {
			return fmt.Errorf("redis: %w", err)
		}
	}
	if r.LastHeard != nil {
		now, silence := time.Now, r.MaxSilence
		if r.Now != nil {
			now = r.Now
		}
		if silence <= 0 {
			silence = DefaultMaxSilence
		}
		switch heard := r.LastHeard(); {
		case heard.IsZero():
			return errors.New("expired-event subscription not established yet")
		case now().Sub(heard) > silence:
			return fmt.Errorf("expired-event subscription silent for %s", now().Sub(heard).Round(time.Second))
		}
	}
	if r.Sync != nil {
		if err := r.Sync(ctx); err != nil {
			return fmt.Errorf("attempt log: %w", err)
		}
	}
	return nil
}
