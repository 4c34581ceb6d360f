package console

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/notifier/notifier/notifier"
	"github.com/notifier/notifier/notifier/api"
)

// SessionTTL is how long a login lasts.
const SessionTTL = 12 * time.Hour

const (
	cookieName = "notifier_console"
	// maxFormBytes bounds a POSTed form: the largest is the login form.
	maxFormBytes = 16 << 10
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Queue is what the console needs of the store of pending notices: to list,
// show and cancel them (Notices), to re-send ended ones (Submitter), and
// the partners: their pause state (PartnerAdmin) and, when
// Options.Partners is nil, the names the running serve published
// (Published). store.Redis implements it.
type Queue interface {
	notifier.Notices
	notifier.Submitter
	notifier.PartnerAdmin
	notifier.Published
}

// Options configure the handler New returns. They are read-only once New
// has returned.
type Options struct {
	// Queue holds pending notices: listed, cancelled and re-sent.
	Queue Queue
	// Log is the attempt log and its archive of ended notices; a read-only
	// handle is enough.
	Log notifier.History
	// Token grants full access: the same token as the API (at least
	// api.MinTokenLen characters).
	Token string
	// ReadToken, if set, grants read-only access: pages without buttons.
	// It must differ from Token and be as long.
	ReadToken string
	// Partners names the configured partners; nil: the partners the
	// running serve published to Redis.
	Partners func() []string
	// Logger receives store failures behind 5xx answers; never tokens,
	// cookies or bodies. Nil discards.
	Logger *slog.Logger
	// Now is the clock; nil: time.Now.
	Now func() time.Time
	// Done, if set, ends the live feeds when it is closed. Serve closes it
	// when it stops: http.Server.Shutdown waits for open streams.
	Done <-chan struct{}
	// ListSlots bounds the notices lists read at once (0: 1), and ListWait
	// (0: 5 s) is how long a list waits for a slot before it is answered
	// 503 with Retry-After.
	ListSlots int
	ListWait  time.Duration
}

// access is what a session may do.
type access int

const (
	noAccess access = iota
	readAccess
	fullAccess
)

// session is the authenticated state of one request.
type session struct {
	access access
	// cookie is the session cookie's value; the CSRF token is derived
	// from it.
	cookie string
}

type handler struct {
	o Options
	// intake re-sends ended notices as every other entry point does.
	intake notifier.Intake
	// keys[a] is the HMAC key of sessions with access a, derived from its
	// token; nil when that token is not configured.
	keys [3][]byte
	// sums[a] is the SHA-256 of a's token: comparing digests takes the same
	// time whatever the length of what was typed.
	sums  [3][sha256.Size]byte
	pages map[string]*template.Template
	mux   *http.ServeMux
	// lists holds a token per notices list being read (see limited).
	lists chan struct{}
}

// New returns the console's handler; it serves every path under /ui/ (see
// the package comment). It returns an error if o has no Queue or Log, or a
// token that is too short, or a ReadToken equal to Token.
func New(o Options) (http.Handler, error) {
	switch {
	case len(o.Token) < api.MinTokenLen:
		return nil, fmt.Errorf("console: token is %d characters, want at least %d", len(o.Token), api.MinTokenLen)
	case o.ReadToken != "" && len(o.ReadToken) < api.MinTokenLen:
		return nil, fmt.Errorf("console: read-only token is %d characters, want at least %d", len(o.ReadToken), api.MinTokenLen)
	case o.ReadToken == o.Token:
		return nil, errors.New("console: the read-only token must differ from the token")
	case o.Queue == nil || o.Log == nil:
		return nil, errors.New("console: Queue and Log are required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.ListSlots <= 0 {
		o.ListSlots = defaultListSlots
	}
	if o.ListWait <= 0 {
		o.ListWait = defaultListWait
	}
	h := &handler{o: o, pages: map[string]*template.Template{}, lists: make(chan struct{}, o.ListSlots),
		intake: notifier.Intake{Queue: o.Queue, Published: o.Queue, Now: o.Now}}
	h.keys[fullAccess], h.sums[fullAccess] = deriveKey(o.Token), sha256.Sum256([]byte(o.Token))
	if o.ReadToken != "" {
		h.keys[readAccess], h.sums[readAccess] = deriveKey(o.ReadToken), sha256.Sum256([]byte(o.ReadToken))
	}
	for _, name := range []string{"login", "message", "notices", "notice", "feed", "partners"} {
		t, err := template.New(name).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/timeline.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("console: template %s: %w", name, err)
		}
		h.pages[name] = t
	}
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, err
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /ui/login", h.loginForm)
	mux.HandleFunc("POST /ui/login", h.login)
	mux.HandleFunc("POST /ui/logout", h.action(h.logout, readAccess))
	mux.HandleFunc("GET /ui/{$}", h.page(h.limited(h.notices)))
	mux.HandleFunc("GET /ui/notices/{id}", h.page(h.notice))
	mux.HandleFunc("POST /ui/notices/{id}/retry", h.action(h.retry, fullAccess))
	mux.HandleFunc("POST /ui/notices/{id}/cancel", h.action(h.cancel, fullAccess))
	mux.HandleFunc("GET /ui/feed", h.page(h.feed))
	mux.HandleFunc("GET /ui/feed/events", h.stream(h.events))
	mux.HandleFunc("GET /ui/partners", h.page(h.partners))
	mux.HandleFunc("POST /ui/partners/{name}/pause", h.action(h.pause, fullAccess))
	mux.HandleFunc("POST /ui/partners/{name}/resume", h.action(h.resume, fullAccess))
	// Assets are public: the login page needs them, and they hold nothing
	// that is not in this repository.
	files := http.StripPrefix("/ui/static/", http.FileServerFS(static))
	mux.HandleFunc("GET /ui/static/{file}", func(w http.ResponseWriter, r *http.Request) { files.ServeHTTP(w, r) })
	mux.HandleFunc("/ui/", h.page(func(w http.ResponseWriter, r *http.Request, s session) {
		h.message(w, r, s, http.StatusNotFound, "No such page.")
	}))
	h.mux = mux
	return h, nil
}

// ServeHTTP sets the headers every answer gets, then routes.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	setSecurityHeaders(w.Header())
	h.mux.ServeHTTP(w, r)
}

// setSecurityHeaders sets the headers every answer of the console and of
// the partner portal gets. No inline script or style anywhere: the CSP
// forbids both, so an escaping mistake cannot run anything.
func setSecurityHeaders(hd http.Header) {
	hd.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
		"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Cache-Control", "no-store")
}

// deriveKey derives the HMAC key of sessions from a token, so that no
// cookie holds a token or a plain hash of one.
func deriveKey(token string) []byte {
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte("notifier console session key v1"))
	return m.Sum(nil)
}

func sign(key []byte, parts ...string) string {
	m := hmac.New(sha256.New, key)
	for _, p := range parts {
		m.Write([]byte(p))
		m.Write([]byte{0})
	}
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// newCookie returns a session cookie value for access a:
// "<expiry in Unix seconds>.<random nonce>.<HMAC of both under a's key>".
// The nonce makes each login's session, and so its CSRF token, its own.
func (h *handler) newCookie(a access) string {
	exp := strconv.FormatInt(h.o.Now().Add(SessionTTL).Unix(), 10)
	nonce := rand.Text()
	return exp + "." + nonce + "." + sign(h.keys[a], "session", exp, nonce)
}

// session returns the request's session; noAccess if it has no valid one.
func (h *handler) session(r *http.Request) session {
	c, err := r.Cookie(cookieName)
	if err != nil {
		return session{}
	}
	parts := strings.Split(c.Value, ".")
	if len(parts) != 3 {
		return session{}
	}
	exp, nonce, mac := parts[0], parts[1], parts[2]
	if unix, err := strconv.ParseInt(exp, 10, 64); err != nil || h.o.Now().Unix() >= unix {
		return session{}
	}
	for _, a := range []access{fullAccess, readAccess} {
		if h.keys[a] == nil {
			continue
		}
		if subtle.ConstantTimeCompare([]byte(mac), []byte(sign(h.keys[a], "session", exp, nonce))) == 1 {
			return session{access: a, cookie: c.Value}
		}
	}
	return session{}
}

// csrf is the CSRF token of session s: every POST form carries it.
func (h *handler) csrf(s session) string {
	if s.access == noAccess {
		return ""
	}
	return sign(h.keys[s.access], "csrf", s.cookie)
}

func (h *handler) setCookie(w http.ResponseWriter, r *http.Request, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: value, Path: "/ui/", MaxAge: maxAge,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
}

// page runs fn for a request with a session, and sends the others to the
// login form.
func (h *handler) page(fn func(http.ResponseWriter, *http.Request, session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := h.session(r)
		if s.access == noAccess {
			http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
			return
		}
		fn(w, r, s)
	}
}

// stream runs fn for a request with a session and answers 401 to the
// others: a script asked, not a person.
func (h *handler) stream(fn func(http.ResponseWriter, *http.Request, session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := h.session(r)
		if s.access == noAccess {
			http.Error(w, "log in first", http.StatusUnauthorized)
			return
		}
		fn(w, r, s)
	}
}

// action runs fn for a POST from a session with at least access need that
// carries the session's CSRF token; it answers 403 to the others.
func (h *handler) action(fn func(http.ResponseWriter, *http.Request, session), need access) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := h.session(r)
		if s.access == noAccess {
			h.message(w, r, s, http.StatusUnauthorized, "Your session has ended: log in again.")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		given := []byte(r.PostFormValue("csrf"))
		if subtle.ConstantTimeCompare(given, []byte(h.csrf(s))) != 1 {
			h.message(w, r, s, http.StatusForbidden, "This form is stale or did not come from the console: reload the page and try again.")
			return
		}
		if s.access < need {
			h.message(w, r, s, http.StatusForbidden, "Read-only session: log in with the full token to change anything.")
			return
		}
		fn(w, r, s)
	}
}

func (h *handler) loginForm(w http.ResponseWriter, r *http.Request) {
	h.render(w, r, session{}, http.StatusOK, "login", "Log in", nil)
}

// login checks a pasted token against both tokens (always both, so the time
// taken does not say which one was close) and starts a session.
func (h *handler) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	sum := sha256.Sum256([]byte(strings.TrimSpace(r.PostFormValue("token"))))
	full := subtle.ConstantTimeCompare(sum[:], h.sums[fullAccess][:])
	read := subtle.ConstantTimeCompare(sum[:], h.sums[readAccess][:]) & boolInt(h.keys[readAccess] != nil)
	var a access
	switch {
	case full == 1:
		a = fullAccess
	case read == 1:
		a = readAccess
	default:
		h.o.Logger.Info("console: login refused", "remote", r.RemoteAddr)
		h.render(w, r, session{}, http.StatusUnauthorized, "login", "Log in", "That token is not right.")
		return
	}
	h.setCookie(w, r, h.newCookie(a), int(SessionTTL/time.Second))
	http.Redirect(w, r, "/ui/", http.StatusSeeOther)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (h *handler) logout(w http.ResponseWriter, r *http.Request, _ session) {
	h.setCookie(w, r, "", -1)
	http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
}

// view is what every page template gets.
type view struct {
	Title    string
	Page     string
	LoggedIn bool
	CanWrite bool
	CSRF     string
	Data     any
}

// render executes page name into a buffer, so a template error is a clean
// 500 rather than half a page.
func (h *handler) render(w http.ResponseWriter, r *http.Request, s session, code int, name, title string, data any) {
	v := view{Title: title, Page: name, LoggedIn: s.access != noAccess, CanWrite: s.access == fullAccess,
		CSRF: h.csrf(s), Data: data}
	var b bytes.Buffer
	if err := h.pages[name].ExecuteTemplate(&b, "layout", v); err != nil {
		h.o.Logger.Error("console: render", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write(b.Bytes())
}

func (h *handler) message(w http.ResponseWriter, r *http.Request, s session, code int, msg string) {
	h.render(w, r, s, code, "message", http.StatusText(code), msg)
}

// fail answers a store failure: logged here, a generic page for the user.
func (h *handler) fail(w http.ResponseWriter, r *http.Request, s session, err error) {
	if errors.Is(err, context.Canceled) {
		return // the browser went away
	}
	h.o.Logger.Error("console: store failed", "method", r.Method, "route", r.Pattern, "err", err)
	h.message(w, r, s, http.StatusServiceUnavailable, "The store did not answer; try again.")
}

// partnerNames lists the partners, sorted.
func (h *handler) partnerNames(ctx context.Context) ([]string, error) {
	if h.o.Partners != nil {
		return h.o.Partners(), nil
	}
	raw, err := h.o.Queue.PublishedPartners(ctx)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(raw))
	for n := range raw {
		names = append(names, n)
	}
	slices.Sort(names)
	return names, nil
}

var funcs = template.FuncMap{
	"time":      formatTime,
	"dur":       notifier.FormatDuration,
	"plural":    func(n int, noun string) string { return notifier.Plural(int64(n), noun) },
	"noticeURL": noticeURL,
	"partnerURL": func(name, verb string) string {
		return "/ui/partners/" + url.PathEscape(name) + "/" + verb
	},
	"pct": func(f float64) string { return strconv.FormatFloat(100*f, 'f', 1, 64) + "%" },
	"px":  func(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) },
	"rfc": func(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) },
}

func noticeURL(id string) string { return "/ui/notices/" + url.PathEscape(id) }

// formatTime is the attempt log's format: UTC with milliseconds.
func formatTime(t time.Time) string {
	if t.IsZero() {
		return "–"
	}
	return t.UTC().Format("2006-01-02 15:04:05.000Z")
}
