package api

import (
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/notifier/notifier/notifier"
)

// PartnerServer configures the partner API NewPartner returns: the
// /v1/partner routes a partner's portal token reaches, and nothing else.
type PartnerServer struct {
	// Portal answers for each partner; its tokens authenticate.
	Portal *notifier.Portal
	// Logger receives the store failures behind 5xx answers. Nil discards.
	Logger *slog.Logger
	// Now signs pulled bodies with the time of the request; nil: time.Now.
	Now func() time.Time
}

type partnerHandler struct {
	s PartnerServer
}

// NewPartner returns the partner API. Its routes, each behind
// "Authorization: Bearer <portal token>":
//
//	GET  /v1/partner/notices?state=&since=&limit=  a page: {"notices","next","more"}
//	GET  /v1/partner/notices/{id}                  one notice with its body and a signature
//	GET  /v1/partner/notices/{id}?format=raw       the body as sent, signature in Webhook-* headers
//	POST /v1/partner/notices/{id}/retry            re-send an ended notice: 200 {"id","stamp"}; 409, 429
//	POST /v1/partner/test                          a test notice to {"url"} or the first url_prefix: 201
//
// Another partner's notice is 404, as an unknown one. An operator token is
// not a portal token: 401.
func NewPartner(s PartnerServer) (http.Handler, error) {
	if s.Portal == nil {
		return nil, errors.New("api: partner API needs a Portal")
	}
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	if s.Now == nil {
		s.Now = time.Now
	}
	h := &partnerHandler{s: s}
	mux := http.NewServeMux()
	mux.Handle("GET /v1/partner/notices", h.auth(h.pull))
	mux.Handle("/v1/partner/notices", h.auth(plain(notAllowed("GET, HEAD"))))
	mux.Handle("GET /v1/partner/notices/{id}", h.auth(h.notice))
	mux.Handle("/v1/partner/notices/{id}", h.auth(plain(notAllowed("GET, HEAD"))))
	mux.Handle("POST /v1/partner/notices/{id}/retry", h.auth(h.retry))
	mux.Handle("/v1/partner/notices/{id}/retry", h.auth(plain(notAllowed("POST"))))
	mux.Handle("POST /v1/partner/test", h.auth(h.test))
	mux.Handle("/v1/partner/test", h.auth(plain(notAllowed("POST"))))
	mux.Handle("/v1/partner/", h.auth(plain(notFound)))
	return mux, nil
}

// auth runs next for a request that presents a portal token, with the
// partner it names.
func (h *partnerHandler) auth(next func(http.ResponseWriter, *http.Request, notifier.Caller)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
		var c notifier.Caller
		if ok && strings.EqualFold(scheme, "Bearer") {
			c, ok = h.s.Portal.Tokens().Check(strings.TrimSpace(token))
		}
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="notifier partner"`)
			writeError(w, http.StatusUnauthorized, "missing or wrong partner portal token")
			return
		}
		next(w, r, c)
	}
}

// plain adapts a handler that needs no caller.
func plain(f http.HandlerFunc) func(http.ResponseWriter, *http.Request, notifier.Caller) {
	return func(w http.ResponseWriter, r *http.Request, _ notifier.Caller) { f(w, r) }
}

// pull returns one page of the partner's notices after ?since.
func (h *partnerHandler) pull(w http.ResponseWriter, r *http.Request, c notifier.Caller) {
	q := r.URL.Query()
	st, err := notifier.ParsePullState(q.Get("state"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "state: want delivered, gave-up or pending")
		return
	}
	limit := 0
	if l := q.Get("limit"); l != "" {
		if limit, err = strconv.Atoi(l); err != nil || limit < 1 || limit > notifier.MaxPullLimit {
			writeError(w, http.StatusBadRequest, "limit: want 1 to "+strconv.Itoa(notifier.MaxPullLimit))
			return
		}
	}
	page, err := h.s.Portal.Pull(r.Context(), c, notifier.PullQuery{State: st, Since: q.Get("since"), Limit: limit})
	switch {
	case errors.Is(err, notifier.ErrBadCursor):
		writeError(w, http.StatusBadRequest, "since: "+err.Error())
	case errors.Is(err, notifier.ErrBusy):
		w.Header().Set("Retry-After", "2")
		writeError(w, http.StatusServiceUnavailable, err.Error()+"; try again")
	case err != nil:
		h.unavailable(w, r, err)
	default:
		writeJSON(w, http.StatusOK, page)
	}
}

// pulledBody is the body of GET /v1/partner/notices/{id}.
type pulledBody struct {
	ID      string              `json:"id"`
	State   notifier.State      `json:"state"`
	Stamp   time.Time           `json:"stamp"`
	URL     string              `json:"url"`
	Headers map[string][]string `json:"headers,omitempty"`
	// Body is the body as text when it is valid UTF-8; BodyBase64
	// always holds its exact bytes.
	Body       *string `json:"body,omitempty"`
	BodyBase64 []byte  `json:"body_base64"`
	// Webhook holds the headers a delivery made now would carry, so the
	// receiver checks the body with the code that checks deliveries.
	Webhook webhookHeaders `json:"webhook"`
}

type webhookHeaders struct {
	ID        string `json:"webhook-id"`
	Timestamp string `json:"webhook-timestamp"`
	Signature string `json:"webhook-signature,omitempty"`
}

// notice returns one of the partner's notices with its body, signed with
// the partner's secrets as of now.
func (h *partnerHandler) notice(w http.ResponseWriter, r *http.Request, c notifier.Caller) {
	id := r.PathValue("id")
	n, st, err := h.s.Portal.Body(r.Context(), c, id)
	switch {
	case errors.Is(err, notifier.ErrNotFound):
		writeError(w, http.StatusNotFound, "notice "+strconv.Quote(id)+": not found")
		return
	case err != nil:
		h.unavailable(w, r, err)
		return
	}
	now := h.s.Now()
	wh := webhookHeaders{ID: n.ID, Timestamp: strconv.FormatInt(now.Unix(), 10),
		Signature: h.s.Portal.Signature(c.Partner, n.ID, now, n.Body)}
	if r.URL.Query().Get("format") == "raw" {
		hd := w.Header()
		ct := n.Header.Get("Content-Type")
		if ct == "" {
			ct = "application/json"
		}
		hd.Set("Content-Type", ct)
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Cache-Control", "no-store")
		hd.Set("Webhook-Id", wh.ID)
		hd.Set("Webhook-Timestamp", wh.Timestamp)
		if wh.Signature != "" {
			hd.Set("Webhook-Signature", wh.Signature)
		}
		hd.Set("Notice-Stamp", strconv.FormatInt(n.Stamp.UnixMilli(), 10))
		hd.Set("Notice-State", string(st))
		hd.Set("Content-Length", strconv.Itoa(len(n.Body)))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(n.Body)
		return
	}
	out := pulledBody{ID: n.ID, State: st, Stamp: n.Stamp.UTC(), URL: notifier.RedactURL(n.URL), Headers: n.Header,
		BodyBase64: n.Body, Webhook: wh}
	if out.BodyBase64 == nil {
		out.BodyBase64 = []byte{}
	}
	if utf8.Valid(n.Body) {
		s := string(n.Body)
		out.Body = &s
	}
	writeJSON(w, http.StatusOK, out)
}

// retry re-sends one of the partner's ended notices.
func (h *partnerHandler) retry(w http.ResponseWriter, r *http.Request, c notifier.Caller) {
	n, err := h.s.Portal.Resend(r.Context(), c, r.PathValue("id"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, created{ID: n.ID, Stamp: n.Stamp.UTC()})
}

// testRequest is the optional body of POST /v1/partner/test.
type testRequest struct {
	URL string `json:"url"`
}

// test sends the partner a test notice to one of its own URLs.
func (h *partnerHandler) test(w http.ResponseWriter, r *http.Request, c notifier.Caller) {
	var req testRequest
	if r.ContentLength != 0 {
		if code, msg := decodeStrict(w, r, &req); code != 0 && msg != "empty body: want one JSON object" {
			writeError(w, code, msg)
			return
		}
	}
	n, err := h.s.Portal.SendTest(r.Context(), c, req.URL)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	w.Header().Set("Location", "/v1/partner/notices/"+url.PathEscape(n.ID))
	writeJSON(w, http.StatusCreated, created{ID: n.ID, Stamp: n.Stamp.UTC()})
}

// fail answers err with the status its kind calls for.
func (h *partnerHandler) fail(w http.ResponseWriter, r *http.Request, err error) {
	var rl *notifier.RateLimitError
	switch {
	case errors.As(err, &rl):
		w.Header().Set("Retry-After", strconv.Itoa(int((rl.RetryAfter+time.Second-1)/time.Second)))
		writeError(w, http.StatusTooManyRequests, rl.Error())
	case errors.Is(err, notifier.ErrNotFound):
		writeError(w, http.StatusNotFound, "notice "+strconv.Quote(r.PathValue("id"))+": not found")
	case errors.Is(err, notifier.ErrDuplicate):
		writeError(w, http.StatusConflict, err.Error())
	case errors.Is(err, notifier.ErrNoPrefix), badInput(err):
		writeError(w, http.StatusBadRequest, err.Error())
	default:
		h.unavailable(w, r, err)
	}
}

func (h *partnerHandler) unavailable(w http.ResponseWriter, r *http.Request, err error) {
	h.s.Logger.Error("api: store failed", "method", r.Method, "route", r.Pattern, "err", err)
	writeError(w, http.StatusServiceUnavailable, "store unavailable; try again")
}
