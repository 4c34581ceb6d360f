package notifier

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"
)

// Alerter POSTs one alert per given-up notice to an operator URL. Each alert
// is sent once: a failed alert is logged, never retried, so an outage of
// the alert receiver cannot turn into a retry storm of its own.
type Alerter struct {
	// URL receives the alerts (JSON, see GiveUpAlert).
	URL string
	// Timeout bounds each POST (default 10 s).
	Timeout time.Duration
	// Client sends them (NewAlerter's: NewOutboundClient's, checked by
	// the guard it is given).
	Client *http.Client
	// Logger receives failures; nil discards.
	Logger *slog.Logger

	queue   chan GiveUpAlert
	dropped atomic.Int64
	sent    atomic.Int64
}

// GiveUpAlert is the body of an alert.
type GiveUpAlert struct {
	Event    string    `json:"event"` // "notice.gave_up"
	ID       string    `json:"id"`
	Partner  string    `json:"partner,omitempty"`
	URL      string    `json:"url"` // redacted
	Stamp    time.Time `json:"stamp"`
	Attempts int       `json:"attempts"`
	Status   int       `json:"status"`
	Error    string    `json:"error,omitempty"`
	At       time.Time `json:"at"`
}

// NewAlerter returns an Alerter for url that queues up to 1024 alerts and
// sends them with NewOutboundClient checked by guard (nil: no check), as
// partner attempts are: no proxy from the environment, no redirects.
func NewAlerter(url string, timeout time.Duration, guard *Guard, log *slog.Logger) *Alerter {
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Alerter{URL: url, Timeout: timeout, Logger: log, queue: make(chan GiveUpAlert, 1024),
		Client: NewOutboundClient(timeout, 2, guard)}
}

// Notify queues an alert for the given-up attempt a. It never blocks: when
// the queue is full the alert is dropped and counted.
func (al *Alerter) Notify(a Attempt) {
	g := GiveUpAlert{Event: "notice.gave_up", ID: a.NoticeID, Partner: a.Partner, URL: a.URL, Stamp: a.Stamp.UTC(),
		Attempts: a.N, Status: a.Status, Error: a.Error, At: a.Start.Add(a.Duration).UTC()}
	select {
	case al.queue <- g:
	default:
		al.dropped.Add(1)
		al.Logger.Warn("alert queue full; alert dropped", "id", a.NoticeID)
	}
}

// Sent and Dropped count alerts.
func (al *Alerter) Sent() int64    { return al.sent.Load() }
func (al *Alerter) Dropped() int64 { return al.dropped.Load() }

// Run sends queued alerts until ctx ends, then sends what is still queued
// (each bounded by Timeout) and returns.
func (al *Alerter) Run(ctx context.Context) error {
	for {
		select {
		case g := <-al.queue:
			al.send(context.WithoutCancel(ctx), g)
		case <-ctx.Done():
			for {
				select {
				case g := <-al.queue:
					al.send(context.WithoutCancel(ctx), g)
				default:
					return nil
				}
			}
		}
	}
}

func (al *Alerter) send(ctx context.Context, g GiveUpAlert) {
	ctx, cancel := context.WithTimeout(ctx, al.Timeout)
	defer cancel()
	body, err := json.Marshal(g)
	if err != nil {
		al.Logger.Error("encode alert", "id", g.ID, "err", err)
		return
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, al.URL, bytes.NewReader(body))
	if err != nil {
		al.Logger.Error("alert", "id", g.ID, "err", fmt.Errorf("build request: %w", redactErr(err, al.Timeout)))
		return
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := al.Client.Do(req)
	if err != nil {
		al.Logger.Error("alert not delivered (not retried)", "id", g.ID, "err", redactErr(err, al.Timeout))
		return
	}
	resp.Body.Close()
	if !Succeeded(resp.StatusCode) {
		al.Logger.Error("alert not accepted (not retried)", "id", g.ID, "status", resp.StatusCode)
		return
	}
	al.sent.Add(1)
}
