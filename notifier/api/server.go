package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"

	"github.com/notifier/notifier/backoff"
	"github.com/notifier/notifier/notifier"
)

// MaxRequestBytes bounds the body of POST /v1/notices: room for the largest
// notice body (notifier.MaxBodyBytes) escaped as a JSON string, and the rest.
// A larger request is refused with 413.
const MaxRequestBytes = 2 << 20

// MinTokenLen is the shortest bearer token New accepts.
const MinTokenLen = 16

// readyTimeout bounds one call of Server.Ready.
const readyTimeout = 5 * time.Second

// Queue is what the API needs of the store of pending notices: status and
// cancel (Notices), new and re-sent notices (Submitter), and what the
// running serve published for new ones (Published). store.Redis
// implements it.
type Queue interface {
	notifier.Notices
	notifier.Submitter
	notifier.Published
}

// Server is the configuration of the handler New returns. Its fields are
// read-only once New has returned.
type Server struct {
	// Queue holds pending notices: enqueue, state, cancel and resend.
	Queue Queue
	// Log is the attempt log and its archive of ended notices, read by
	// status and retry; a read-only handle is enough.
	Log notifier.History
	// Token is the bearer token every /v1 request (and /metrics, unless
	// PublicMetrics) must present. New refuses one shorter than
	// MinTokenLen: without a token the API is off.
	Token string
	// Ready reports whether this serve can do its work (nil error: ready);
	// GET /readyz calls it with a 5 s deadline. Nil: always ready. See
	// Readiness for the check serve uses.
	Ready func(ctx context.Context) error
	// Metrics, if set, is served on GET /metrics; nil: /metrics is 404.
	Metrics *Metrics
	// PublicMetrics serves /metrics without the token, for a scraper on a
	// trusted network. Off by default: the labels name partners.
	PublicMetrics bool
	// Logger receives one debug line per request and the store failures
	// behind 5xx answers; never headers or bodies. Nil discards.
	Logger *slog.Logger
	// Now stamps new and retried notices; nil: time.Now.
	Now func() time.Time
	// DefaultSchedule gives the schedule of a notice that names none and
	// whose partner has none; nil: Queue.DefaultSchedule, the schedule the
	// running serve published.
	DefaultSchedule func(ctx context.Context) (backoff.Schedule, error)
}

type handler struct {
	s Server
	// intake enqueues and re-sends notices as every other entry point does.
	intake notifier.Intake
	// token is the SHA-256 of Server.Token: comparing digests takes the
	// same time whatever the presented token's length.
	token [sha256.Size]byte
}

// New returns the API's handler (see the package comment for its routes).
// It returns an error if s has no Queue, no Log or a token shorter than
// MinTokenLen.
func New(s Server) (http.Handler, error) {
	switch {
	case s.Token == "":
		return nil, errors.New("api: no token: the API is off without one")
	case len(s.Token) < MinTokenLen:
		return nil, fmt.Errorf("api: token is %d characters, want at least %d", len(s.Token), MinTokenLen)
	case s.Queue == nil || s.Log == nil:
		return nil, errors.New("api: Queue and Log are required")
	}
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	if s.Now == nil {
		s.Now = time.Now
	}
	var published notifier.Published = s.Queue
	if s.DefaultSchedule != nil {
		published = defaultSchedule{s.Queue, s.DefaultSchedule}
	}
	h := &handler{s: s, token: sha256.Sum256([]byte(s.Token)),
		intake: notifier.Intake{Queue: s.Queue, Published: published, Now: s.Now}}

	mux := http.NewServeMux()
	// Each path also gets a pattern without a method, which the mux ranks
	// below the ones with a method, so a wrong method is a JSON 405.
	mux.Handle("POST /v1/notices", h.auth(h.enqueue))
	mux.Handle("/v1/notices", h.auth(notAllowed("POST")))
	mux.Handle("GET /v1/notices/{id}", h.auth(h.status))
	mux.Handle("DELETE /v1/notices/{id}", h.auth(h.cancel))
	mux.Handle("/v1/notices/{id}", h.auth(notAllowed("GET, HEAD, DELETE")))
	mux.Handle("POST /v1/notices/{id}/retry", h.auth(h.retry))
	mux.Handle("/v1/notices/{id}/retry", h.auth(notAllowed("POST")))
	mux.Handle("/v1/", h.auth(notFound))

	mux.HandleFunc("GET /healthz", healthz)
	mux.HandleFunc("/healthz", notAllowed("GET, HEAD"))
	mux.HandleFunc("GET /readyz", h.readyz)
	mux.HandleFunc("/readyz", notAllowed("GET, HEAD"))
	if s.Metrics != nil {
		var metrics http.Handler = promhttp.HandlerFor(s.Metrics.gatherer, promhttp.HandlerOpts{
			ErrorLog:      slog.NewLogLogger(s.Logger.Handler(), slog.LevelError),
			ErrorHandling: promhttp.ContinueOnError,
		})
		if !s.PublicMetrics {
			metrics = h.auth(metrics.ServeHTTP)
		}
		mux.Handle("GET /metrics", metrics)
		mux.HandleFunc("/metrics", notAllowed("GET, HEAD"))
	}
	mux.HandleFunc("/", notFound)
	return h.logged(mux), nil
}

// logged logs one debug line per request: never its headers or body.
func (h *handler) logged(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		// The mux set r.Pattern and the path values on r.
		h.s.Logger.LogAttrs(r.Context(), slog.LevelDebug, "api request",
			slog.String("method", r.Method), slog.String("route", r.Pattern), slog.String("id", r.PathValue("id")),
			slog.Int("status", rec.status), slog.Duration("took", time.Since(start)), slog.String("remote", r.RemoteAddr))
	})
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// auth runs next only for a request that presents the token.
func (h *handler) auth(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !h.authorized(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="notifier"`)
			writeError(w, http.StatusUnauthorized, "missing or wrong bearer token")
			return
		}
		next(w, r)
	}
}

func (h *handler) authorized(r *http.Request) bool {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(token)))
	return subtle.ConstantTimeCompare(sum[:], h.token[:]) == 1
}

// created is the body of a 201 from POST /v1/notices and of a 200 from
// POST /v1/notices/{id}/retry.
type created struct {
	ID    string    `json:"id"`
	Stamp time.Time `json:"stamp"`
}

// enqueue stores one notice through the Intake, resolved as `notifier
// enqueue` resolves it: its partner from the published summaries, its
// schedule its own, else its partner's, else the default.
func (h *handler) enqueue(w http.ResponseWriter, r *http.Request) {
	var l notifier.Line
	if code, msg := decodeStrict(w, r, &l); code != 0 {
		writeError(w, code, msg)
		return
	}
	// Validate before any round trip; the default schedule stands in until
	// the real one is read.
	n, err := l.Notice(backoff.Default, h.s.Now())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if l.Schedule == "" {
		n.Schedule = nil // its partner's, else the published default
	}
	ns := []notifier.Notice{n}
	// A caller's traceparent makes the enqueue span (and so the notice's
	// attempts) part of the caller's trace; without tracing it is ignored.
	ctx := otel.GetTextMapPropagator().Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	errs, err := h.intake.Enqueue(ctx, ns)
	if err == nil {
		err = errs[0]
	}
	switch {
	case errors.Is(err, notifier.ErrPublished):
		// What serve published is not the client's fault if it is wrong.
		h.internal(w, r, err)
	case err != nil && errs == nil:
		h.unavailable(w, r, err) // what serve published could not be read
	case err != nil:
		h.fail(w, r, err)
	default:
		w.Header().Set("Location", "/v1/notices/"+url.PathEscape(n.ID))
		writeJSON(w, http.StatusCreated, created{ID: n.ID, Stamp: ns[0].Stamp.UTC()})
	}
}

// defaultSchedule is Published with Server.DefaultSchedule in place of
// its own.
type defaultSchedule struct {
	notifier.Published
	def func(ctx context.Context) (backoff.Schedule, error)
}

func (d defaultSchedule) DefaultSchedule(ctx context.Context) (backoff.Schedule, error) {
	return d.def(ctx)
}

// noticeJSON is the body of GET /v1/notices/{id}.
type noticeJSON struct {
	Status   notifier.Status   `json:"status"`
	Attempts []json.RawMessage `json:"attempts"`
}

// status reports a notice as `notifier status --json` does, with its
// attempts: only the current generation's while it is pending.
func (h *handler) status(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	st, attempts, err := notifier.NoticeStatus(r.Context(), h.s.Queue, h.s.Log, id)
	switch {
	case errors.Is(err, notifier.ErrNotFound):
		writeError(w, http.StatusNotFound, fmt.Sprintf("notice %s: %v", id, notifier.ErrNotFound))
		return
	case err != nil:
		h.unavailable(w, r, err)
		return
	}
	out := noticeJSON{Status: st, Attempts: make([]json.RawMessage, 0, len(attempts))}
	for _, a := range attempts {
		b, err := notifier.MarshalAttempt(a)
		if err != nil {
			h.internal(w, r, err)
			return
		}
		out.Attempts = append(out.Attempts, b)
	}
	writeJSON(w, http.StatusOK, out)
}

// retry sends an ended notice again with a fresh stamp, as `notifier retry`.
func (h *handler) retry(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	e, err := h.s.Log.Ended(ctx, id)
	switch {
	case errors.Is(err, notifier.ErrNotFound):
		// Never ended; say so if it is still waiting.
		switch state, serr := h.s.Queue.State(ctx, id); {
		case serr != nil && !errors.Is(serr, notifier.ErrNotFound):
			h.unavailable(w, r, serr)
		case serr == nil && (state == notifier.StatePending || state == notifier.StateParked):
			writeError(w, http.StatusConflict, fmt.Sprintf("notice %s is %s: it has not ended", id, state))
		default:
			writeError(w, http.StatusNotFound, fmt.Sprintf("notice %s: no ended notice to send again", id))
		}
		return
	case err != nil:
		h.internal(w, r, err)
		return
	}
	ns := []notifier.Notice{e.Notice}
	errs, err := h.intake.Resend(ctx, ns)
	if err == nil {
		err = errs[0]
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, created{ID: id, Stamp: ns[0].Stamp.UTC()})
}

// cancel ends a pending notice, as `notifier cancel`.
func (h *handler) cancel(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	if err := h.s.Queue.Cancel(r.Context(), id); err != nil {
		h.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = io.WriteString(w, "ok\n")
}

func (h *handler) readyz(w http.ResponseWriter, r *http.Request) {
	if h.s.Ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		defer cancel()
		if err := h.s.Ready(ctx); err != nil {
			writeError(w, http.StatusServiceUnavailable, "not ready: "+err.Error())
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// pathID returns the {id} of r, or answers 400 if it cannot name a notice.
func pathID(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.PathValue("id")
	if err := notifier.ValidateID(id); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return "", false
	}
	return id, true
}

// fail answers err with the status its kind calls for. Store failures are
// logged (their text names no secret and no body); the client gets a
// generic message.
func (h *handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, notifier.ErrDuplicate), errors.Is(err, notifier.ErrEnded):
		writeError(w, http.StatusConflict, err.Error())
	case errors.Is(err, notifier.ErrNotFound):
		writeError(w, http.StatusNotFound, err.Error())
	case badInput(err):
		writeError(w, http.StatusBadRequest, err.Error())
	default:
		h.unavailable(w, r, err)
	}
}

func badInput(err error) bool {
	for _, target := range []error{notifier.ErrInvalidNotice, backoff.ErrInvalid, notifier.ErrInvalidRule,
		notifier.ErrInvalidSecret, notifier.ErrUnknownPartner} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// unavailable answers 503 for a failure of Redis, which may pass.
func (h *handler) unavailable(w http.ResponseWriter, r *http.Request, err error) {
	h.s.Logger.Error("api: store failed", "method", r.Method, "route", r.Pattern, "err", err)
	writeError(w, http.StatusServiceUnavailable, "store unavailable; try again")
}

// internal answers 500 for a failure that retrying will not fix by itself
// (an attempt log that cannot be read, a corrupt archive).
func (h *handler) internal(w http.ResponseWriter, r *http.Request, err error) {
	h.s.Logger.Error("api: internal error", "method", r.Method, "route", r.Pattern, "err", err)
	writeError(w, http.StatusInternalServerError, "internal error")
}

func notFound(w http.ResponseWriter, _ *http.Request) {
	writeError(w, http.StatusNotFound, "no such route")
}

func notAllowed(allow string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		writeError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed; allowed: "+allow)
	}
}

// decodeStrict decodes the request body, one JSON object, into v. Unknown
// fields and text after the object are errors. It returns 0 on success,
// else the status and a one-line message that quotes no part of the body.
func decodeStrict(w http.ResponseWriter, r *http.Request, v any) (int, string) {
	r.Body = http.MaxBytesReader(w, r.Body, MaxRequestBytes)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		// Only the end of the body may follow the object.
		if _, err = dec.Token(); err == io.EOF {
			return 0, ""
		}
		if err == nil {
			return http.StatusBadRequest, "text after the JSON object"
		}
	}
	var tooLarge *http.MaxBytesError
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &tooLarge):
		return http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is larger than %d bytes", tooLarge.Limit)
	case errors.Is(err, io.EOF):
		return http.StatusBadRequest, "empty body: want one JSON object"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return http.StatusBadRequest, "truncated JSON"
	case errors.As(err, &syntax):
		return http.StatusBadRequest, fmt.Sprintf("malformed JSON at byte %d", syntax.Offset)
	case errors.As(err, &typ):
		if typ.Field == "" {
			return http.StatusBadRequest, "want one JSON object"
		}
		return http.StatusBadRequest, fmt.Sprintf("field %s: want %s", typ.Field, typ.Type)
	default:
		// Such as `json: unknown field "x"`: it names the field only.
		return http.StatusBadRequest, oneLine(err.Error())
	}
}

// errorJSON is the body of every error answer.
type errorJSON struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, errorJSON{Error: oneLine(msg)})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"error":"internal error"}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
