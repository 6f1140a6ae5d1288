package autotask

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"psagate/internal/psa"
	"psagate/internal/sanitize"
)

const (
	thresholdReached = "Autotask's hourly request threshold was reached"
	zoneTTL          = 12 * time.Hour
	maxBody          = 32 << 20 // answers are small; attachment data is never read back
)

// zoneInfo is a discovered zone.
type zoneInfo struct {
	base   *url.URL // REST base with version: ".../ATServicesRest/V1.0/"
	name   string
	webURL string
	ci     int
}

// job is one provider operation: the integration it runs against, its
// settings, the op name for errors, and whether the request budget may hold
// it back (ticket operations yes; Test, Lookup and Probe no).
type job struct {
	p    *Provider
	in   *integration
	c    *config
	op   string
	hold bool
	// noBudget skips the threshold bookkeeping before each call (Test and
	// Lookup read or need no budget; the calls still count).
	noBudget bool
}

func (p *Provider) job(s psa.Settings, op string, full, hold bool) (*job, error) {
	c, in, err := p.setup(s, op, full)
	if err != nil {
		return nil, err
	}
	return &job{p: p, in: in, c: c, op: op, hold: hold}, nil
}

func (j *job) fail(kind psa.Kind, msg string) *psa.Error {
	return &psa.Error{Provider: Name, Op: j.op, Kind: kind, Message: j.c.settings.Scrub(msg)}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// call makes one API request to path (relative to ".../V1.0/", may carry a
// query) and decodes a 2xx answer into out.
func (j *job) call(ctx context.Context, method, path string, body, out any) error {
	return j.request(ctx, method, path, "", body, out)
}

// callAbs requests an absolute URL the API gave us (a next page). It must
// be on the zone host; the body is sent byte for byte.
func (j *job) callAbs(ctx context.Context, method, abs string, body []byte, out any) error {
	return j.request(ctx, method, "", abs, body, out)
}

func (j *job) request(ctx context.Context, method, path, abs string, body, out any) error {
	var raw []byte
	switch b := body.(type) {
	case nil:
	case []byte:
		raw = b
	default:
		var err error
		if raw, err = json.Marshal(b); err != nil {
			return &psa.Error{Provider: Name, Op: j.op, Kind: psa.Permanent, Message: "cannot encode the request", Err: err}
		}
	}
	z, gen, err := j.zone(ctx)
	if err != nil {
		return err
	}
	if err := j.spend(ctx, z); err != nil {
		return err
	}
	resp, err := j.send(ctx, z, method, path, abs, raw)
	if err != nil {
		return err
	}
	if resp.status == http.StatusUnauthorized && abs == "" {
		// Autotask answers a tenant that moved to another zone like bad
		// credentials. Look the zone up again, once.
		z2, derr := j.rediscover(ctx, gen)
		if derr != nil {
			return derr
		}
		if z2.base.String() != z.base.String() {
			j.p.log.Info("autotask: the API user moved to another zone; retrying there",
				"user", j.c.username, "zone", z2.name, "url", z2.base.String())
			if resp, err = j.send(ctx, z2, method, path, abs, raw); err != nil {
				return err
			}
		}
	}
	if resp.status >= 200 && resp.status < 300 {
		if out != nil {
			if err := json.Unmarshal(resp.body, out); err != nil {
				// The call may have had its effect: a transient error lets the
				// retry look for it.
				return &psa.Error{Provider: Name, Op: j.op, Kind: psa.Transient, Status: resp.status,
					Message: "Autotask answered " + itoa(resp.status) + " with a body that is not the expected JSON", Err: err}
			}
		}
		return nil
	}
	e := j.classify(resp)
	if isThresholdErr(e) {
		j.thresholdFull()
	}
	return e
}

// send makes one HTTP exchange with the credentials, under the integration's
// in-flight limit and the per-call timeout.
func (j *job) send(ctx context.Context, z *zoneInfo, method, path, abs string, body []byte) (*response, error) {
	target := z.base.String() + path
	if abs != "" {
		u, err := url.Parse(abs)
		if err != nil || u.Scheme != z.base.Scheme || !strings.EqualFold(u.Host, z.base.Host) {
			host := "?"
			if err == nil {
				host = u.Host
			}
			return nil, j.fail(psa.Permanent, "Autotask gave a next-page URL on another host ("+sanitize.Line(host)+"); psagate sends credentials to the zone host "+z.base.Host+" only")
		}
		target = abs
	}
	select {
	case j.in.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, j.netErr(ctx, ctx.Err())
	}
	defer func() { <-j.in.sem }()

	cctx, cancel := context.WithTimeout(ctx, j.c.timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(cctx, method, target, rd)
	if err != nil {
		return nil, j.fail(psa.Permanent, "cannot build the request for "+sanitize.Line(path))
	}
	req.Header.Set("ApiIntegrationCode", j.c.code)
	req.Header.Set("UserName", j.c.username)
	req.Header.Set("Secret", j.c.secret)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	start := time.Now()
	resp, err := j.p.http.Do(req)
	if err != nil {
		return nil, j.netErr(ctx, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, j.netErr(ctx, err)
	}
	j.p.log.Debug("autotask request", "op", j.op, "method", method, "path", req.URL.Path,
		"status", resp.StatusCode, "duration", time.Since(start).Round(time.Millisecond))
	return &response{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// netErr classifies a failure without an HTTP answer: always transient.
func (j *job) netErr(parent context.Context, err error) *psa.Error {
	e := &psa.Error{Provider: Name, Op: j.op, Kind: psa.Transient, Err: err}
	var ne net.Error
	switch {
	case parent.Err() != nil:
		e.Message = "cancelled: " + parent.Err().Error()
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		e.Message = "no answer from Autotask within " + j.c.timeout.String() + " (autotask.timeout)"
	default:
		e.Message = "network error: " + j.c.settings.Scrub(sanitize.Line(err.Error()))
	}
	return e
}

// envelope returns the messages of an {"errors":[...]} body, or nil when the
// body is not one.
func envelope(body []byte) []string {
	var env struct {
		Errors []json.RawMessage `json:"errors"`
	}
	if json.Unmarshal(body, &env) != nil {
		return nil
	}
	var out []string
	for _, e := range env.Errors {
		var s string
		if json.Unmarshal(e, &s) == nil {
			out = append(out, s)
			continue
		}
		var o struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(e, &o) == nil && o.Message != "" {
			out = append(out, o.Message)
		}
	}
	return out
}

var (
	// "dueDateTime is required.; on record number [0]." (WYRE-AI/autotask-mcp#288)
	fieldRe0 = regexp.MustCompile(`^\s*([A-Za-z][A-Za-z0-9]*) is required`)
	// A user-defined field names itself with spaces: "User defined field
	// Backup Vault is required." (the wording is modelled, see the fake).
	udfRe    = regexp.MustCompile(`(?i)user[- ]defined field "?([^".;]+?)"? (?:is required|does not exist|exceeds)`)
	fieldRe1 = regexp.MustCompile(`(?i)\bfield:?\s+([A-Za-z][A-Za-z0-9]*)`)
	fieldRe2 = regexp.MustCompile(`(?i)\bfor\s+([a-z][A-Za-z0-9]*)\s*\.`)
	// validationRe recognises the messages of a refused value or a missing
	// field. Autotask sends them, and server faults, as HTTP 500 with the
	// same {"errors":[...]} envelope; only the wording tells them apart.
	// Shapes from the API digest and public clients: "Missing required
	// field", "X is required", "Reference value on field: contactID of type:
	// Contact does not exist or is invalid.", "Picklist value [99] does not
	// exist for priority.", "Value does not reference an existing entity",
	// "Unable to convert value", "exceeds the maximum length", "When
	// assigning a Resource, you must assign both ...".
	validationRe = regexp.MustCompile(`(?i)\brequired\b|\binvalid\b|is not valid|does not exist|does not reference|unable to convert|exceeds|maximum length|\bmust\b|not allowed|\binactive\b|picklist|read-only|\bduplicate\b|\bcannot\b|can not|\bvalidation\b`)
)

func isValidation(msg string) bool { return validationRe.MatchString(msg) }

// settingOfField names the psagate setting behind an Autotask field.
var settingOfField = map[string]string{
	"companyid": "autotask.company_id", "queueid": "autotask.queue_id", "priority": "autotask.priority",
	"status": "autotask.status", "issuetype": "autotask.issue_type", "subissuetype": "autotask.sub_issue_type",
	"tickettype": "autotask.ticket_type", "source": "autotask.source", "notetype": "autotask.note_type",
	"publish": "autotask.note_publish", "duedatetime": "autotask.due_in",
	"ticketcategory": "autotask.ticket_category", "billingcodeid": "autotask.billing_code_id",
	"contactid": "autotask.contact",
}

func fieldOf(msg string) string {
	if m := udfRe.FindStringSubmatch(msg); m != nil {
		return "autotask.fields." + m[1]
	}
	var name string
	if m := fieldRe0.FindStringSubmatch(msg); m != nil {
		name = m[1]
	} else if m := fieldRe1.FindStringSubmatch(msg); m != nil {
		name = m[1]
	} else if m := fieldRe2.FindStringSubmatch(msg); m != nil {
		name = m[1]
	}
	if s, ok := settingOfField[strings.ToLower(name)]; ok {
		return s
	}
	return name
}

// classify turns a non-2xx answer into a *psa.Error. Autotask reports most
// validation failures as HTTP 500 with an errors envelope; a 500 without one
// is a server fault and transient.
func (j *job) classify(r *response) *psa.Error {
	msgs := envelope(r.body)
	parts := make([]string, 0, len(msgs))
	for _, m := range msgs {
		if m = sanitize.Line(m); m != "" {
			parts = append(parts, m)
		}
	}
	text := sanitize.Truncate(j.c.settings.Scrub(strings.Join(parts, "; ")), 1000, "…")
	low := strings.ToLower(text)
	e := &psa.Error{Provider: Name, Op: j.op, Status: r.status,
		RetryAfter: psa.ParseRetryAfter(r.header.Get("Retry-After"), j.p.now())}
	with := func(s string) string {
		if text == "" {
			return s
		}
		return s + ": " + text
	}
	switch {
	case strings.Contains(low, "integrationcode is invalid"):
		e.Kind = psa.Auth
		e.Reason = "auth"
		e.Message = "Autotask rejected the API tracking identifier (IntegrationCode is invalid): check autotask.integration_code"
	case r.status == http.StatusUnauthorized:
		e.Kind = psa.Auth
		e.Reason = "auth"
		e.Message = "Autotask refused the username or secret (HTTP 401): check autotask.username and autotask.secret; the user needs the \"API User (API-only)\" security level"
	case r.status == http.StatusForbidden || strings.Contains(low, "adequate permission"):
		e.Kind = psa.Auth
		e.Reason = psa.ReasonPermission
		e.Message = with("the API user's security level does not allow this; give the user the \"API User (API-only)\" security level with access to tickets, ticket notes, attachments and companies")
	case strings.Contains(low, "thread threshold"):
		e.Kind = psa.Transient
		if e.RetryAfter == 0 {
			e.RetryAfter = 2 * time.Second
		}
		e.Message = with("Autotask's thread limit for this integration was reached")
	case r.status == http.StatusTooManyRequests || strings.Contains(low, "request threshold"):
		e.Kind = psa.Transient
		if e.RetryAfter == 0 {
			e.RetryAfter = time.Minute
		}
		e.Message = with(thresholdReached)
	case strings.Contains(low, "attachment") && (strings.Contains(low, "blocked") || strings.Contains(low, "upload limit")):
		e.Kind = psa.Transient
		if e.RetryAfter == 0 {
			e.RetryAfter = 5 * time.Minute
		}
		e.Message = with("Autotask's attachment upload limit was reached")
	case (r.status == http.StatusInternalServerError || r.status == http.StatusBadRequest) && isValidation(text):
		// A refused value: the same call fails the same way until the
		// config changes. Name the field and the setting behind it.
		e.Kind = psa.Permanent
		e.Reason = psa.ReasonValidation
		e.Field = fieldOf(text)
		e.Message = text
		if strings.HasPrefix(e.Field, "autotask.") {
			e.Message += " (set " + e.Field + ")"
		}
	case r.status >= 500 || r.status == http.StatusRequestTimeout:
		// A server fault, with or without an envelope: retried.
		e.Kind = psa.Transient
		e.Reason = psa.ReasonServer
		e.Message = with("Autotask answered HTTP " + itoa(r.status) + " (" + http.StatusText(r.status) + ")")
	case r.status >= 300 && r.status < 400:
		e.Kind = psa.Permanent
		e.Message = "Autotask answered a redirect to " + sanitize.Line(r.header.Get("Location")) + "; zone URLs do not redirect: check autotask.zone_url"
	case r.status == http.StatusNotFound:
		e.Kind = psa.Permanent
		e.Message = with("not found in Autotask")
	default:
		e.Kind = psa.Permanent
		e.Message = with("Autotask answered HTTP " + itoa(r.status) + " (" + http.StatusText(r.status) + ")")
	}
	return e
}

// zone returns the cached zone, discovering it when needed, with its
// generation (for rediscover).
func (j *job) zone(ctx context.Context) (*zoneInfo, int, error) {
	in := j.in
	in.mu.Lock()
	z, gen, at := in.zone, in.zoneGen, in.zoneAt
	in.mu.Unlock()
	if z != nil && j.p.now().Sub(at) < zoneTTL {
		return z, gen, nil
	}
	in.zoneMu.Lock()
	defer in.zoneMu.Unlock()
	in.mu.Lock()
	z, gen, at = in.zone, in.zoneGen, in.zoneAt
	in.mu.Unlock()
	if z != nil && j.p.now().Sub(at) < zoneTTL {
		return z, gen, nil
	}
	return j.discoverLocked(ctx)
}

// rediscover looks the zone up again unless another call already did since
// generation gen.
func (j *job) rediscover(ctx context.Context, gen int) (*zoneInfo, error) {
	in := j.in
	in.zoneMu.Lock()
	defer in.zoneMu.Unlock()
	in.mu.Lock()
	if in.zoneGen != gen && in.zone != nil {
		z := in.zone
		in.mu.Unlock()
		return z, nil
	}
	in.mu.Unlock()
	z, _, err := j.discoverLocked(ctx)
	return z, err
}

// discoverLocked discovers and stores the zone; in.zoneMu is held.
func (j *job) discoverLocked(ctx context.Context) (*zoneInfo, int, error) {
	z, err := j.discover(ctx)
	if err != nil {
		return nil, 0, err
	}
	in := j.in
	in.mu.Lock()
	defer in.mu.Unlock()
	in.zone, in.zoneAt = z, j.p.now()
	in.zoneGen++
	return z, in.zoneGen, nil
}

// discover asks the discovery host for the user's zone. It sends no
// credentials: zone discovery needs none and the discovery host is not the
// zone host.
func (j *job) discover(ctx context.Context) (*zoneInfo, error) {
	u := *j.c.discovery
	u.Path += "zoneInformation"
	u.RawQuery = "user=" + url.QueryEscape(j.c.username)
	cctx, cancel := context.WithTimeout(ctx, j.c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(cctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, j.fail(psa.Permanent, "cannot build the zone discovery request: check autotask.zone_url")
	}
	req.Header.Set("Accept", "application/json")
	resp, err := j.p.http.Do(req)
	if err != nil {
		return nil, j.netErr(ctx, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, j.netErr(ctx, err)
	}
	j.p.log.Debug("autotask zone discovery", "user", j.c.username, "status", resp.StatusCode)
	if resp.StatusCode != http.StatusOK {
		for _, m := range envelope(b) {
			if strings.Contains(strings.ToLower(m), "zone information could not be determined") {
				return nil, &psa.Error{Provider: Name, Op: j.op, Kind: psa.Auth, Status: resp.StatusCode,
					Message: fmt.Sprintf("Autotask does not know the API user %q (zone information could not be determined): check autotask.username", sanitize.Line(j.c.username))}
			}
		}
		e := j.classify(&response{status: resp.StatusCode, header: resp.Header, body: b})
		e.Message = "zone discovery at " + j.c.discovery.Host + " (autotask.zone_url): " + e.Message
		return nil, e
	}
	var zi struct {
		ZoneName string `json:"zoneName"`
		URL      string `json:"url"`
		WebURL   string `json:"webUrl"`
		CI       int    `json:"ci"`
	}
	if err := json.Unmarshal(b, &zi); err != nil || zi.URL == "" {
		return nil, &psa.Error{Provider: Name, Op: j.op, Kind: psa.Transient, Status: resp.StatusCode,
			Message: "zone discovery answered without a zone URL"}
	}
	base, err := url.Parse(zi.URL)
	if err != nil || (base.Scheme != "https" && base.Scheme != "http") || base.Host == "" || base.User != nil {
		return nil, j.fail(psa.Permanent, "zone discovery answered an unusable zone URL "+fmt.Sprintf("%q", sanitize.Line(zi.URL)))
	}
	if j.c.discovery.Scheme == "https" && base.Scheme != "https" {
		return nil, j.fail(psa.Permanent, "zone discovery answered a zone URL without https ("+sanitize.Line(zi.URL)+"); psagate does not send credentials over plain HTTP")
	}
	p := strings.TrimRight(base.Path, "/")
	if !strings.HasSuffix(strings.ToLower(p), "/v1.0") {
		p += "/V1.0"
	}
	base.Path, base.RawPath, base.RawQuery, base.Fragment = p+"/", "", "", ""
	return &zoneInfo{base: base, name: zi.ZoneName, webURL: zi.WebURL, ci: zi.CI}, nil
}
