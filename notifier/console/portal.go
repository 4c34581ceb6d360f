package console

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/notifier/notifier/notifier"
)

// The partner portal is the console's pages for partners, under /portal/:
// a partner logs in with one of its portal tokens and sees only its own
// notices (list, timeline, live feed), re-requests an ended one and sends
// itself a test notice. It shares the console's drawing, feed and list code
// but none of its sessions: its cookie (notifier_portal, Path=/portal/) is
// signed with a key derived from the partner's token, and the operator
// pages under /ui/ never accept it, as the portal never accepts an
// operator's session. What it shows is whatever notifier.Portal returns for
// the session's partner; another partner's notice is "No such notice".

const portalCookie = "notifier_portal"

// PortalOptions configure the handler NewPortal returns.
type PortalOptions struct {
	// Portal answers for each partner; its tokens authenticate.
	Portal *notifier.Portal
	// Queue and Log are the console's: pending notices and the attempt log.
	Queue notifier.Notices
	Log   notifier.History
	// Logger receives store failures and refused logins; never tokens.
	// Nil discards.
	Logger *slog.Logger
	// Now is the clock; nil: time.Now.
	Now func() time.Time
	// Done, if set, ends the live feeds when it is closed.
	Done <-chan struct{}
	// ListSlots and ListWait bound the notices lists read at once, as
	// the console's.
	ListSlots int
	ListWait  time.Duration
}

// portal serves /portal/. core is a console handler without tokens: the
// list, feed and timeline code it shares reads only core.o's stores.
type portal struct {
	o     PortalOptions
	core  *handler
	pages map[string]*template.Template
	mux   *http.ServeMux
}

// partnerSession is the authenticated state of one portal request.
type partnerSession struct {
	caller notifier.Caller
	cookie string
	key    []byte
}

func (s partnerSession) ok() bool { return s.caller.Partner != "" }

// NewPortal returns the partner portal's handler; it serves every path
// under /portal/.
func NewPortal(o PortalOptions) (http.Handler, error) {
	if o.Portal == nil || o.Queue == nil || o.Log == nil {
		return nil, errors.New("console: portal needs Portal, Queue and Log")
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
	core := &handler{o: Options{Log: o.Log, Logger: o.Logger, Now: o.Now, Done: o.Done, ListWait: o.ListWait},
		lists: make(chan struct{}, o.ListSlots)}
	p := &portal{o: o, core: core, pages: map[string]*template.Template{}}
	fm := template.FuncMap{}
	for k, v := range funcs {
		fm[k] = v
	}
	fm["noticeURL"] = portalNoticeURL
	for _, name := range []string{"login", "message", "notices", "notice", "feed"} {
		t, err := template.New(name).Funcs(fm).ParseFS(templateFS, "templates/portal_layout.html", "templates/timeline.html", "templates/portal_"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("console: portal template %s: %w", name, err)
		}
		p.pages[name] = t
	}
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /portal/login", p.loginForm)
	mux.HandleFunc("POST /portal/login", p.login)
	mux.HandleFunc("POST /portal/logout", p.action(p.logout))
	mux.HandleFunc("GET /portal/{$}", p.page(p.notices))
	mux.HandleFunc("GET /portal/notices/{id}", p.page(p.notice))
	mux.HandleFunc("POST /portal/notices/{id}/retry", p.action(p.retry))
	mux.HandleFunc("POST /portal/test", p.action(p.test))
	mux.HandleFunc("GET /portal/feed", p.page(p.feed))
	mux.HandleFunc("GET /portal/feed/events", p.stream(p.events))
	files := http.StripPrefix("/portal/static/", http.FileServerFS(static))
	mux.HandleFunc("GET /portal/static/{file}", func(w http.ResponseWriter, r *http.Request) { files.ServeHTTP(w, r) })
	mux.HandleFunc("/portal/", p.page(func(w http.ResponseWriter, r *http.Request, s partnerSession) {
		p.message(w, r, s, http.StatusNotFound, "No such page.")
	}))
	p.mux = mux
	return p, nil
}

// ServeHTTP sets the console's security headers, then routes.
func (p *portal) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	setSecurityHeaders(w.Header())
	p.mux.ServeHTTP(w, r)
}

// newCookie returns a session cookie value for c:
// "<expiry>.<nonce>.<token fingerprint>.<HMAC of the three under the
// token's key>". The fingerprint says which token's key to check with;
// the token itself is never in the cookie.
func (p *portal) newCookie(c notifier.Caller) string {
	key, _, _ := p.o.Portal.Tokens().SessionKey(c.Token)
	exp := strconv.FormatInt(p.o.Now().Add(SessionTTL).Unix(), 10)
	nonce := rand.Text()
	return exp + "." + nonce + "." + c.Token + "." + sign(key, "portal session", exp, nonce, c.Token)
}

// session returns the request's partner session; zero if it has none.
func (p *portal) session(r *http.Request) partnerSession {
	ck, err := r.Cookie(portalCookie)
	if err != nil {
		return partnerSession{}
	}
	parts := strings.Split(ck.Value, ".")
	if len(parts) != 4 {
		return partnerSession{}
	}
	exp, nonce, fp, mac := parts[0], parts[1], parts[2], parts[3]
	if unix, err := strconv.ParseInt(exp, 10, 64); err != nil || p.o.Now().Unix() >= unix {
		return partnerSession{}
	}
	key, c, ok := p.o.Portal.Tokens().SessionKey(fp)
	if !ok || subtle.ConstantTimeCompare([]byte(mac), []byte(sign(key, "portal session", exp, nonce, fp))) != 1 {
		return partnerSession{}
	}
	return partnerSession{caller: c, cookie: ck.Value, key: key}
}

func (p *portal) csrf(s partnerSession) string {
	if !s.ok() {
		return ""
	}
	return sign(s.key, "portal csrf", s.cookie)
}

func (p *portal) setCookie(w http.ResponseWriter, r *http.Request, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: portalCookie, Value: value, Path: "/portal/", MaxAge: maxAge,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
}

// page runs fn for a request with a partner session and sends the others
// to the portal's login form.
func (p *portal) page(fn func(http.ResponseWriter, *http.Request, partnerSession)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := p.session(r)
		if !s.ok() {
			http.Redirect(w, r, "/portal/login", http.StatusSeeOther)
			return
		}
		fn(w, r, s)
	}
}

// stream is page for a script's request: 401 instead of a redirect.
func (p *portal) stream(fn func(http.ResponseWriter, *http.Request, partnerSession)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := p.session(r)
		if !s.ok() {
			http.Error(w, "log in first", http.StatusUnauthorized)
			return
		}
		fn(w, r, s)
	}
}

// action runs fn for a POST from a partner session that carries its CSRF
// token.
func (p *portal) action(fn func(http.ResponseWriter, *http.Request, partnerSession)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := p.session(r)
		if !s.ok() {
			p.message(w, r, s, http.StatusUnauthorized, "Your session has ended: log in again.")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		if subtle.ConstantTimeCompare([]byte(r.PostFormValue("csrf")), []byte(p.csrf(s))) != 1 {
			p.message(w, r, s, http.StatusForbidden, "This form is stale or did not come from the portal: reload the page and try again.")
			return
		}
		fn(w, r, s)
	}
}

func (p *portal) loginForm(w http.ResponseWriter, r *http.Request) {
	p.render(w, r, partnerSession{}, http.StatusOK, "login", "Partner log in", nil)
}

// login checks a pasted token against every portal token (in constant
// time, see PortalTokens.Check) and starts a session.
func (p *portal) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	c, ok := p.o.Portal.Tokens().Check(strings.TrimSpace(r.PostFormValue("token")))
	if !ok {
		p.o.Logger.Info("portal: login refused", "remote", r.RemoteAddr)
		p.render(w, r, partnerSession{}, http.StatusUnauthorized, "login", "Partner log in", "That token is not right.")
		return
	}
	p.o.Logger.Info("portal: login", "partner", c.Partner, "token", c.Token, "remote", r.RemoteAddr)
	p.setCookie(w, r, p.newCookie(c), int(SessionTTL/time.Second))
	http.Redirect(w, r, "/portal/", http.StatusSeeOther)
}

func (p *portal) logout(w http.ResponseWriter, r *http.Request, _ partnerSession) {
	p.setCookie(w, r, "", -1)
	http.Redirect(w, r, "/portal/login", http.StatusSeeOther)
}

// portalView is what every portal template gets.
type portalView struct {
	Title, Page string
	Partner     string
	CSRF        string
	Data        any
}

func (p *portal) render(w http.ResponseWriter, r *http.Request, s partnerSession, code int, name, title string, data any) {
	v := portalView{Title: title, Page: name, Partner: s.caller.Partner, CSRF: p.csrf(s), Data: data}
	var b bytes.Buffer
	if err := p.pages[name].ExecuteTemplate(&b, "layout", v); err != nil {
		p.o.Logger.Error("portal: render", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write(b.Bytes())
}

func (p *portal) message(w http.ResponseWriter, r *http.Request, s partnerSession, code int, msg string) {
	p.render(w, r, s, code, "message", http.StatusText(code), msg)
}

func (p *portal) fail(w http.ResponseWriter, r *http.Request, s partnerSession, err error) {
	if errors.Is(err, r.Context().Err()) && r.Context().Err() != nil {
		return // the browser went away
	}
	p.o.Logger.Error("portal: store failed", "method", r.Method, "route", r.Pattern, "partner", s.caller.Partner, "err", err)
	p.message(w, r, s, http.StatusServiceUnavailable, "The store did not answer; try again.")
}

func portalNoticeURL(id string) string { return "/portal/notices/" + url.PathEscape(id) }
