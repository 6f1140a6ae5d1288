package connectwise

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"psagate/internal/psa"
	"psagate/internal/sanitize"
)

const (
	userAgent = "psagate"
	// maxResponse bounds what is read of one answer; lists are paged far below it.
	maxResponse = 32 << 20
	// maxPages stops a server whose Link header never ends.
	maxPages = 1000
	// listPageSize is the largest page the API serves.
	listPageSize = 1000
)

// response is a read answer.
type response struct {
	status int
	header http.Header
	body   []byte
}

// companyInfo is the answer of /login/companyinfo/{companyId}.
type companyInfo struct {
	CompanyName   string  `json:"CompanyName"`
	Codebase      *string `json:"Codebase"`
	VersionCode   string  `json:"VersionCode"`
	VersionNumber string  `json:"VersionNumber"`
	CompanyID     string  `json:"CompanyID"`
	IsCloud       any     `json:"IsCloud"` // "True" in the guide, a boolean elsewhere
}

var codebaseRE = regexp.MustCompile(`^[A-Za-z0-9_.-]+/$`)

// baseURL is the API base, from the endpoint setting or codebase discovery.
func (c *call) baseURL(ctx context.Context) (string, error) {
	if c.cfg.endpoint != "" {
		return c.cfg.endpoint, nil
	}
	c.cn.mu.Lock()
	b := c.cn.base
	c.cn.mu.Unlock()
	if b != "" {
		return b, nil
	}
	_, b, err := c.discover(ctx)
	return b, err
}

// unknownCompanyError is company info's answer for a company ID the
// server does not know (HTTP 200 with a null body).
type unknownCompanyError struct{ err *psa.Error }

func (e unknownCompanyError) Error() string { return e.err.Error() }
func (e unknownCompanyError) Unwrap() error { return e.err }

func (c *call) unknownCompany(host string) error {
	return unknownCompanyError{err: c.errorf(psa.Auth, fmt.Sprintf("company ID %q (connectwise.company_id) is not known at %s: use the company ID you type on the ConnectWise login page",
		c.cfg.companyID, host))}
}

// companyInfo asks origin (scheme and host) for the login company's
// details; host is how the messages name the server.
func (c *call) companyInfo(ctx context.Context, origin, host string) (*companyInfo, error) {
	u := origin + "/login/companyinfo/" + url.PathEscape(c.cfg.companyID)
	rctx, cancel := context.WithTimeout(ctx, c.cfg.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, c.errorf(psa.Auth, "connectwise.site "+host+" gives no valid URL: "+err.Error())
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", userAgent)
	start := c.p.now()
	resp, err := c.p.hc.Do(req)
	if err != nil {
		return nil, c.netErr(ctx, rctx, err, "GET /login/companyinfo")
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, c.netErr(ctx, rctx, err, "GET /login/companyinfo")
	}
	c.p.log.Debug("connectwise request", "op", c.op, "method", "GET", "path", "/login/companyinfo", "status", resp.StatusCode,
		"duration", c.p.now().Sub(start))
	switch {
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		e := c.errorf(psa.Transient, fmt.Sprintf("company info at %s answered HTTP %d", host, resp.StatusCode))
		e.Status = resp.StatusCode
		e.RetryAfter = psa.ParseRetryAfter(resp.Header.Get("Retry-After"), c.p.now())
		return nil, e
	case resp.StatusCode != http.StatusOK:
		e := c.errorf(psa.Auth, fmt.Sprintf("%s/login/companyinfo answered HTTP %d: is connectwise.site %q the ConnectWise API host (cloud: api-na.myconnectwise.net, api-eu..., api-au...)?",
			origin, resp.StatusCode, host))
		e.Status = resp.StatusCode
		return nil, e
	}
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || string(trimmed) == "null" {
		return nil, c.unknownCompany(host)
	}
	var info companyInfo
	if err := json.Unmarshal(trimmed, &info); err != nil {
		return nil, c.errorf(psa.Auth, fmt.Sprintf("%s/login/companyinfo did not answer with ConnectWise company info: is connectwise.site %q a ConnectWise server?",
			origin, host))
	}
	return &info, nil
}

// discover asks the site for the login company's codebase and remembers the
// resulting base URL. It needs no credentials.
func (c *call) discover(ctx context.Context) (*companyInfo, string, error) {
	info, err := c.companyInfo(ctx, "https://"+c.cfg.site, c.cfg.site)
	if err != nil {
		return nil, "", err
	}
	codebase := fallbackCodebase
	if info.Codebase != nil {
		cb := strings.TrimPrefix(strings.TrimSpace(*info.Codebase), "/")
		if cb != "" && !strings.HasSuffix(cb, "/") {
			cb += "/"
		}
		if codebaseRE.MatchString(cb) {
			codebase = cb
		}
	}
	base := "https://" + c.cfg.site + "/" + codebase + "apis/3.0"
	c.cn.mu.Lock()
	c.cn.base = base
	c.cn.mu.Unlock()
	return info, base, nil
}

// do sends one API request and returns a 2xx answer or a classified error.
// After a 404 it re-discovers the codebase once, since hosted ConnectWise
// moves it on upgrades, and repeats the request when the codebase changed.
func (c *call) do(ctx context.Context, method, path string, q url.Values, body []byte, contentType string) (*response, error) {
	if err := c.ctxErr(ctx); err != nil {
		return nil, err
	}
	base, err := c.baseURL(ctx)
	if err != nil {
		return nil, err
	}
	rediscovered := false
	for {
		resp, err := c.send(ctx, method, base, path, q, body, contentType)
		if err != nil {
			return nil, err
		}
		if resp.status == http.StatusNotFound && c.cfg.endpoint == "" && !rediscovered {
			rediscovered = true
			if _, nb, derr := c.discover(ctx); derr == nil && nb != base {
				c.p.log.Info("connectwise codebase moved", "from", base, "to", nb)
				base = nb
				continue
			}
		}
		if resp.status >= 200 && resp.status < 300 {
			return resp, nil
		}
		return nil, c.httpErr(method, path, resp)
	}
}

func (c *call) send(ctx context.Context, method, base, path string, q url.Values, body []byte, contentType string) (*response, error) {
	u := base + path
	if len(q) > 0 {
		u += "?" + encodeQuery(q)
	}
	rctx, cancel := context.WithTimeout(ctx, c.cfg.timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(rctx, method, u, rd)
	if err != nil {
		return nil, c.errorf(psa.Permanent, "cannot build the request "+method+" "+path+": "+err.Error())
	}
	req.Header.Set("Authorization", "Basic "+c.cfg.authToken())
	// Header names are case-insensitive, but send the documented spelling
	// rather than Go's canonical "Clientid".
	req.Header["clientId"] = []string{c.cfg.clientID}
	req.Header.Set("Accept", "application/vnd.connectwise.com+json; version="+c.cfg.apiVersion)
	req.Header.Set("User-Agent", userAgent)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	start := c.p.now()
	resp, err := c.p.hc.Do(req)
	if err != nil {
		return nil, c.netErr(ctx, rctx, err, method+" "+path)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return nil, c.netErr(ctx, rctx, err, method+" "+path)
	}
	c.p.log.Debug("connectwise request", "op", c.op, "method", method, "path", path, "status", resp.StatusCode,
		"duration", c.p.now().Sub(start))
	return &response{status: resp.StatusCode, header: resp.Header, body: data}, nil
}

// encodeQuery encodes like url.Values.Encode but writes spaces as %20:
// conditions are full of spaces, and %20 means a space to every server
// while "+" in a query is ambiguous.
func encodeQuery(q url.Values) string {
	var b strings.Builder
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range q {
			if !yield(k) {
				return
			}
		}
	}) {
		for _, v := range q[k] {
			if b.Len() > 0 {
				b.WriteByte('&')
			}
			b.WriteString(url.QueryEscape(k))
			b.WriteByte('=')
			b.WriteString(strings.ReplaceAll(url.QueryEscape(v), "+", "%20"))
		}
	}
	return b.String()
}

// netErr classifies a failure to get an answer at all.
func (c *call) netErr(ctx, rctx context.Context, err error, what string) error {
	e := &psa.Error{Provider: Name, Op: c.op, Kind: psa.Transient, Err: err}
	inner := err
	var ue *url.Error
	if errors.As(err, &ue) {
		inner = ue.Err
	}
	var cve *tls.CertificateVerificationError
	switch {
	case ctx.Err() != nil:
		e.Message = what + ": cancelled: " + ctx.Err().Error()
	case rctx.Err() == context.DeadlineExceeded || errors.Is(err, context.DeadlineExceeded):
		e.Message = fmt.Sprintf("%s: no answer from %s within %s (connectwise.timeout)", what, c.cfg.where(), c.cfg.timeout)
		e.Err = fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
	case errors.As(err, &cve):
		e.Kind = psa.Auth
		e.Message = fmt.Sprintf("%s: the TLS certificate of %s is not trusted (%v): check connectwise.site", what, c.cfg.where(), inner)
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		e.Message = fmt.Sprintf("%s: %s closed the connection without an answer", what, c.cfg.where())
	default:
		e.Message = fmt.Sprintf("%s: connection to %s failed: %v", what, c.cfg.where(), inner)
	}
	e.Message = c.cfg.scrub(e.Message)
	return e
}

// cwError is ConnectWise's error envelope. The 429 answer uses "error"
// instead of "code".
type cwError struct {
	Code    string `json:"code"`
	Error   string `json:"error"`
	Message string `json:"message"`
	Errors  []struct {
		Code     string `json:"code"`
		Message  string `json:"message"`
		Resource string `json:"resource"`
		Field    string `json:"field"`
	} `json:"errors"`
}

// settingOfField names the setting behind a ticket field a validation error
// points at, so the message says what to change.
var settingOfField = map[string]string{
	"company": "connectwise.company", "board": "connectwise.board", "status": "connectwise.status",
	"type": "connectwise.type", "subtype": "connectwise.subtype", "item": "connectwise.item",
	"priority": "connectwise.priority", "contact": "connectwise.contact",
	"addressline1": "connectwise.address_line1", "addressline2": "connectwise.address_line2",
	"city": "connectwise.city", "stateidentifier": "connectwise.state", "zip": "connectwise.zip",
	"country": "connectwise.country", "location": "connectwise.location",
}

// httpErr classifies a non-2xx answer.
func (c *call) httpErr(method, path string, resp *response) error {
	var env cwError
	_ = json.Unmarshal(resp.body, &env)
	msg := env.Message
	var field string
	var inner []string
	for _, ie := range env.Errors {
		if field == "" {
			field = ie.Field
		}
		m := ie.Message
		if ie.Field != "" && len(env.Errors) > 1 {
			m = ie.Field + ": " + m
		}
		if m != "" {
			inner = append(inner, m)
		}
	}
	if len(inner) > 0 {
		if msg != "" {
			msg += ": "
		}
		msg += strings.Join(inner, "; ")
	}
	if msg == "" {
		if text := strings.TrimSpace(string(resp.body)); text != "" && !strings.HasPrefix(text, "<") && len(env.Errors) == 0 && env.Code == "" {
			msg = text
		} else {
			msg = http.StatusText(resp.status)
		}
	}
	// Scrub before cutting: a secret that straddles the cut would otherwise
	// survive as a prefix no scrub recognises.
	msg = sanitize.Truncate(sanitize.Line(c.cfg.scrub(msg)), 1000, "…")

	e := &psa.Error{Provider: Name, Op: c.op, Status: resp.status}
	st := resp.status
	switch {
	case st == http.StatusTooManyRequests:
		e.Kind = psa.Transient
		e.RetryAfter = psa.ParseRetryAfter(resp.header.Get("Retry-After"), c.p.now())
		msg = "rate limited by ConnectWise: " + msg
	case st >= 500 || st == http.StatusRequestTimeout:
		e.Kind = psa.Transient
		e.Reason = psa.ReasonServer
		e.RetryAfter = psa.ParseRetryAfter(resp.header.Get("Retry-After"), c.p.now())
	case st == http.StatusUnauthorized:
		e.Kind = psa.Auth
		msg = addHint(msg, fmt.Sprintf("ConnectWise refused the API key: check connectwise.public_key and connectwise.private_key (an API member's key pair) and that connectwise.company_id %q is the company they belong to; a deleted key or an inactive API member also gives 401",
			c.cfg.companyID))
	case st == http.StatusForbidden:
		e.Kind = psa.Auth
		e.Reason = psa.ReasonPermission
		msg = addHint(msg, "the API member's security role lacks "+permissionFor(c.op, method, path)+
			" (System > Security Roles; the API member's role)")
	case st == http.StatusBadRequest && strings.Contains(strings.ToLower(msg), "clientid"):
		e.Kind = psa.Auth
		msg = addHint(msg, "check connectwise.client_id (register a clientId at developer.connectwise.com)")
	case st == http.StatusBadRequest:
		// {"code":"InvalidObject","message":"ticket object is invalid",
		// "errors":[{"code":"MissingRequiredField","message":...,
		// "resource":"ticket","field":...}]} (christaylorcodes/
		// ConnectWiseManageAPI issue #30): a validation error.
		e.Kind = psa.Permanent
		e.Reason = psa.ReasonValidation
		e.Field = field
		top, _, _ := strings.Cut(strings.ToLower(field), "/")
		if s, ok := settingOfField[top]; ok {
			msg += " (check " + s + ")"
			c.cn.forget() // a stale cached id gives the same answer as a wrong name
		}
	case st == http.StatusNotFound:
		e.Kind = psa.Permanent
		msg = method + " " + path + ": " + msg
	case st >= 300 && st < 400:
		e.Kind = psa.Permanent
		msg = fmt.Sprintf("%s %s was redirected to %q: check connectwise.site / connectwise.endpoint",
			method, path, sanitize.Line(resp.header.Get("Location")))
	default:
		e.Kind = psa.Permanent
	}
	e.Message = c.cfg.scrub(msg)
	return e
}

// addHint appends what to do to the server's message.
func addHint(msg, hint string) string {
	if strings.HasSuffix(msg, ".") {
		return msg + " " + strings.ToUpper(hint[:1]) + hint[1:]
	}
	return msg + ": " + hint
}

// permissionFor names the security role permission a 403 most likely lacks.
func permissionFor(op, method, path string) string {
	switch {
	case op == "close" && method == http.MethodPatch:
		return "Service Desk > Close Service Tickets (and Service Tickets: Edit)"
	case strings.HasPrefix(path, "/system/documents"):
		if method == http.MethodGet {
			return "Companies > Manage Attachments: Inquire"
		}
		return "Companies > Manage Attachments: Add"
	case strings.HasPrefix(path, "/service/boards"), strings.HasPrefix(path, "/service/priorities"):
		return "System > Table Setup: Inquire"
	case strings.HasPrefix(path, "/company/contacts"):
		return "Companies > Contacts: Inquire"
	case strings.HasPrefix(path, "/company/"):
		return "Companies > Company Maintenance: Inquire"
	case strings.HasPrefix(path, "/system/"):
		return "System > My Company: Inquire"
	case strings.HasPrefix(path, "/service/tickets"):
		switch {
		case method == http.MethodGet:
			return "Service Desk > Service Tickets: Inquire"
		case method == http.MethodPost && path == "/service/tickets":
			return "Service Desk > Service Tickets: Add"
		}
		return "Service Desk > Service Tickets: Edit"
	}
	return "a permission for " + method + " " + path
}

// getJSON GETs one object.
func (c *call) getJSON(ctx context.Context, path string, q url.Values, out any) error {
	resp, err := c.do(ctx, http.MethodGet, path, q, nil, "")
	if err != nil {
		return err
	}
	return c.decode(path, resp.body, out)
}

// sendJSON sends a JSON body and decodes the answer into out (if not nil).
func (c *call) sendJSON(ctx context.Context, method, path string, in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return c.errorf(psa.Permanent, "cannot encode the request: "+err.Error())
	}
	resp, err := c.do(ctx, method, path, nil, b, "application/json")
	if err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	return c.decode(path, resp.body, out)
}

func (c *call) decode(path string, body []byte, out any) error {
	if err := json.Unmarshal(body, out); err != nil {
		e := c.errorf(psa.Permanent, fmt.Sprintf("%s: the answer is not the expected JSON: %v", path, err))
		e.Err = err
		return e
	}
	return nil
}

// getAll GETs every page of a list, following the Link header's rel="next".
func getAll[T any](ctx context.Context, c *call, path string, q url.Values) ([]T, error) {
	page := url.Values{}
	for k, v := range q {
		page[k] = slices.Clone(v)
	}
	page.Set("page", "1")
	page.Set("pageSize", fmt.Sprint(listPageSize))
	var out []T
	seen := map[string]bool{}
	for range maxPages {
		resp, err := c.do(ctx, http.MethodGet, path, page, nil, "")
		if err != nil {
			return nil, err
		}
		var rows []T
		if err := c.decode(path, resp.body, &rows); err != nil {
			return nil, err
		}
		out = append(out, rows...)
		next := nextLink(resp.header.Values("Link"))
		if next == "" || len(rows) == 0 {
			return out, nil
		}
		// Only the query of the link is used: credentials go to the
		// configured server only, whatever host a proxy wrote in the link.
		nu, err := url.Parse(next)
		if err != nil || seen[nu.RawQuery] {
			return out, nil
		}
		seen[nu.RawQuery] = true
		page = nu.Query()
	}
	return out, nil
}

// nextLink finds the rel="next" target of RFC 8288 Link header values.
func nextLink(values []string) string {
	for _, v := range values {
		for {
			i := strings.IndexByte(v, '<')
			if i < 0 {
				break
			}
			j := strings.IndexByte(v[i:], '>')
			if j < 0 {
				break
			}
			target := v[i+1 : i+j]
			rest := v[i+j+1:]
			params := rest
			if k := strings.IndexByte(rest, '<'); k >= 0 {
				params = rest[:k]
			}
			for p := range strings.SplitSeq(params, ";") {
				k, val, ok := strings.Cut(strings.TrimSpace(strings.TrimRight(strings.TrimSpace(p), ",")), "=")
				if ok && strings.EqualFold(strings.TrimSpace(k), "rel") {
					for r := range strings.FieldsSeq(strings.Trim(strings.TrimSpace(val), `"`)) {
						if strings.EqualFold(r, "next") {
							return target
						}
					}
				}
			}
			v = rest
		}
	}
	return ""
}
