package fake

import (
	"encoding/json"
	"io"
	"mime"
	"net"
	"net/http"
	"net/http/httptest"
	"path"
	"strconv"
	"strings"
	"time"

	"psagate/internal/psa/fakehttp"
)

const apiPrefix = "/atservicesrest/v1.0/"

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"errors":["fake: cannot encode answer"]}`)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func writeRaw(w http.ResponseWriter, status int, b []byte) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// writeErrors answers with the Autotask error envelope.
func writeErrors(w http.ResponseWriter, status int, msgs ...string) {
	writeJSON(w, status, map[string][]string{"errors": msgs})
}

func writeEmpty(w http.ResponseWriter, status int) {
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(status)
}

// relPath is the path after ".../V1.0/" for fault matching, or the path
// itself when it has no such prefix.
func relPath(p string) string {
	if len(p) >= len(apiPrefix) && strings.EqualFold(p[:len(apiPrefix)], apiPrefix) {
		return p[len(apiPrefix):]
	}
	return strings.TrimPrefix(p, "/")
}

func (s *Server) takeFault(method, rel string) *Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, f := range s.faults {
		if f.Method != "" && !strings.EqualFold(f.Method, method) {
			continue
		}
		if f.Path != "" {
			ok, err := path.Match(strings.ToLower(f.Path), strings.ToLower(rel))
			if err != nil || !ok {
				continue
			}
		}
		c := *f
		f.Count--
		if f.Count <= 0 {
			s.faults = append(s.faults[:i], s.faults[i+1:]...)
		}
		return &c
	}
	return nil
}

// handler serves one listener. zone is -1 for the discovery listener.
func (s *Server) handler(listener string, zone int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 64<<20))
		rec := Request{
			Time: s.now(), Listener: listener, Host: r.Host, Method: r.Method, Path: r.URL.Path,
			Query: r.URL.RawQuery, Header: r.Header.Clone(), Body: body,
		}
		sw := &fakehttp.StatusWriter{ResponseWriter: w}
		// The record is appended before the client can see the answer: a
		// small answer is flushed after the handler returns, and a dropped
		// connection is dropped after record runs.
		recorded := false
		record := func() {
			if recorded {
				return
			}
			recorded = true
			rec.Status = sw.Status
			s.mu.Lock()
			s.requests = append(s.requests, rec)
			s.mu.Unlock()
		}
		defer record()

		if f := s.takeFault(r.Method, relPath(r.URL.Path)); f != nil {
			rec.Fault = f.Kind.String()
			if done := s.applyFault(sw, r, body, listener, zone, f, &rec, record); done {
				return
			}
		}
		s.serve(sw, r, body, listener, zone)
	}
}

// applyFault shapes the answer; it reports whether the request is finished.
func (s *Server) applyFault(w *fakehttp.StatusWriter, r *http.Request, body []byte, listener string, zone int, f *Fault, rec *Request, record func()) bool {
	msg := func(def string) string {
		if f.Message != "" {
			return f.Message
		}
		return def
	}
	if f.RetryAfter != "" {
		w.Header().Set("Retry-After", f.RetryAfter)
	}
	switch f.Kind {
	case Fault401:
		writeEmpty(w, http.StatusUnauthorized)
	case Fault403:
		writeErrors(w, http.StatusForbidden, msg("The logged in Resource does not have the adequate permissions to perform this operation."))
	case Fault429:
		writeErrors(w, http.StatusTooManyRequests, msg("Request Threshold Exceeded: the database has exceeded its external request threshold."))
	case Fault500Envelope:
		writeErrors(w, http.StatusInternalServerError, msg("Simulated validation failure."))
	case Fault500HTML:
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = io.WriteString(w, "<html><body><h1>500 - Internal server error.</h1></body></html>")
	case Fault500Empty:
		writeEmpty(w, http.StatusInternalServerError)
	case Fault503:
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, "<html><body>Service Unavailable</body></html>")
	case FaultSlow:
		t := time.NewTimer(f.Delay)
		defer t.Stop()
		select {
		case <-t.C:
			return false
		case <-r.Context().Done():
			return true
		}
	case FaultReset:
		record()
		dropConn(w, true)
	case FaultLostResponse:
		rr := httptest.NewRecorder()
		s.serve(rr, r, body, listener, zone)
		rec.Fault = "lost-response (handled with " + strconv.Itoa(rr.Code) + ")"
		record()
		dropConn(w, false)
	default:
		return false
	}
	return true
}

// dropConn closes the connection without an answer; with reset it makes the
// close a TCP RST.
func dropConn(w http.ResponseWriter, reset bool) {
	hj, ok := w.(*fakehttp.StatusWriter).ResponseWriter.(http.Hijacker)
	if !ok {
		writeEmpty(w, http.StatusInternalServerError)
		return
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		return
	}
	if tc, ok := conn.(*net.TCPConn); ok && reset {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

// serve routes one request after faults.
func (s *Server) serve(w http.ResponseWriter, r *http.Request, body []byte, listener string, zone int) {
	p := r.URL.Path
	if strings.Contains(p, "//") {
		writeErrors(w, http.StatusNotFound, "No HTTP resource was found that matches the request URI (empty path segment).")
		return
	}
	if len(p) < len(apiPrefix) || !strings.EqualFold(p[:len(apiPrefix)], apiPrefix) {
		if strings.EqualFold(p, "/atservicesrest/versioninformation") && r.Method == http.MethodGet {
			writeJSON(w, http.StatusOK, map[string][]string{"apiVersions": {"1.0"}})
			return
		}
		writeErrors(w, http.StatusNotFound, "No HTTP resource was found that matches the request URI (expected .../ATServicesRest/V1.0/...).")
		return
	}
	rel := p[len(apiPrefix):]
	segs := strings.Split(strings.ToLower(strings.TrimSuffix(rel, "/")), "/")

	if len(segs) == 1 && segs[0] == "zoneinformation" {
		if r.Method != http.MethodGet {
			writeErrors(w, http.StatusMethodNotAllowed, "The requested resource does not support http method '"+r.Method+"'.")
			return
		}
		s.zoneInformation(w, r)
		return
	}
	if listener == "discovery" {
		writeErrors(w, http.StatusNotFound, "This host only answers zone information; call the zone URL it returns.")
		return
	}

	// Auth: the old zone of a moved tenant refuses everyone as if the user
	// did not exist there.
	s.mu.Lock()
	moved := zone != s.active
	s.mu.Unlock()
	if moved || r.Header.Get("UserName") == "" || r.Header.Get("Secret") == "" ||
		!strings.EqualFold(r.Header.Get("UserName"), s.cfg.Username) || r.Header.Get("Secret") != s.cfg.Secret {
		writeEmpty(w, http.StatusUnauthorized)
		return
	}
	code := r.Header.Get("ApiIntegrationCode")
	if code != s.cfg.IntegrationCode {
		writeErrors(w, http.StatusInternalServerError, "IntegrationCode is invalid.")
		return
	}
	if r.Method == http.MethodPost || r.Method == http.MethodPatch || r.Method == http.MethodPut {
		mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || mt != "application/json" {
			writeErrors(w, http.StatusUnsupportedMediaType, "The request entity's media type '"+r.Header.Get("Content-Type")+"' is not supported for this resource.")
			return
		}
	}

	// Rolling request threshold, per database.
	s.mu.Lock()
	s.pruneHitsLocked()
	if len(s.hits) >= s.cfg.RequestThreshold {
		s.mu.Unlock()
		writeErrors(w, s.cfg.ThresholdStatus, "Request Threshold Exceeded: the database has exceeded its external request threshold of "+itoa(s.cfg.RequestThreshold)+" requests per "+itoa(int(s.cfg.ThresholdTimeframe/time.Minute))+" minutes.")
		return
	}
	s.hits = append(s.hits, s.now())

	// Thread limit per integration code and entity.
	ent := segs[0]
	key := code + "|" + ent
	s.inflight[key]++
	s.inflightAll[code]++
	if s.inflightAll[code] > s.maxInFlight {
		s.maxInFlight = s.inflightAll[code]
	}
	over := s.inflight[key] > s.cfg.ThreadLimit
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.inflight[key]--
		s.inflightAll[code]--
		s.mu.Unlock()
	}()
	if s.cfg.Latency > 0 {
		t := time.NewTimer(s.cfg.Latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	if over {
		writeErrors(w, s.cfg.ThreadLimitStatus, "Thread Threshold Exceeded: more than "+itoa(s.cfg.ThreadLimit)+" concurrent requests for this integration and entity (Itgenatr005).")
		return
	}
	s.route(w, r, body, segs)
}

func (s *Server) zoneInformation(w http.ResponseWriter, r *http.Request) {
	user := r.URL.Query().Get("user")
	if user == "" || !strings.EqualFold(user, s.cfg.Username) {
		writeErrors(w, http.StatusInternalServerError, "Zone information could not be determined")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"zoneName": s.cfg.ZoneName,
		"url":      s.APIURL(),
		"webUrl":   "https://ww5.autotask.net/",
		"ci":       s.cfg.DatabaseID,
	})
}

func notAllowed(w http.ResponseWriter, method string) {
	writeErrors(w, http.StatusMethodNotAllowed, "The requested resource does not support http method '"+method+"'.")
}

func notFound(w http.ResponseWriter) {
	writeErrors(w, http.StatusNotFound, "No HTTP resource was found that matches the request URI.")
}

// route dispatches an authenticated API request; segs are the lower-cased
// path segments after V1.0.
func (s *Server) route(w http.ResponseWriter, r *http.Request, body []byte, segs []string) {
	m := r.Method
	is := func(methods ...string) bool {
		for _, x := range methods {
			if m == x {
				return true
			}
		}
		notAllowed(w, m)
		return false
	}
	n := len(segs)
	s.mu.Lock()
	ro := s.cfg.ReadOnly
	s.mu.Unlock()
	if ro && m != http.MethodGet && !(n >= 2 && segs[1] == "query") {
		// The message Autotask gives a security level without the right
		// (the same wording as its other permission refusals).
		writeErrors(w, http.StatusForbidden, "The logged in Resource does not have the adequate permissions to perform this operation.")
		return
	}
	switch segs[0] {
	case "version":
		s.mu.Lock()
		noVersion := s.cfg.NoVersion
		s.mu.Unlock()
		if noVersion {
			notFound(w)
		} else if n == 1 && is(http.MethodGet) {
			writeJSON(w, http.StatusOK, map[string]any{"majorVersion": 2025, "minorVersion": 1, "build": 42, "customerType": "Production"})
		} else if n != 1 {
			notFound(w)
		}
		return
	case "thresholdinformation":
		if n == 1 && is(http.MethodGet) {
			s.mu.Lock()
			s.pruneHitsLocked()
			c := len(s.hits)
			s.mu.Unlock()
			writeJSON(w, http.StatusOK, map[string]any{
				"externalRequestThreshold":     s.cfg.RequestThreshold,
				"requestThresholdTimeframe":    int(s.cfg.ThresholdTimeframe / time.Minute),
				"currentTimeframeRequestCount": c,
			})
		} else if n != 1 {
			notFound(w)
		}
		return
	case "tickets":
		switch {
		case n == 1:
			if is(http.MethodPost, http.MethodPatch, http.MethodPut) {
				s.writeTicket(w, m, body)
			}
		case segs[1] == "query":
			s.queryRoute(w, r, body, "tickets", segs[2:])
		case segs[1] == "entityinformation":
			if n == 2 && is(http.MethodGet) {
				writeJSON(w, http.StatusOK, map[string]any{"info": map[string]any{
					"name": "Ticket", "canCreate": true, "canUpdate": true, "canQuery": true, "canDelete": false,
					"hasUserDefinedFields": true, "supportsWebhookCallouts": true,
				}})
			} else if n == 3 && segs[2] == "fields" && is(http.MethodGet) {
				s.mu.Lock()
				fi := fieldInfos(ticketEntity, s.cfg.TicketPicklists, s.requiredTicketLocked(), s.cfg.FieldLengths)
				s.mu.Unlock()
				writeJSON(w, http.StatusOK, map[string]any{"fields": fi})
			} else if n == 3 && segs[2] == "userdefinedfields" && is(http.MethodGet) {
				s.mu.Lock()
				udfs := []map[string]any{}
				for _, u := range s.cfg.UDFs {
					udfs = append(udfs, map[string]any{"name": u.Name, "label": u.Name, "type": "string",
						"dataType": "string", "length": u.Length, "isRequired": u.Required, "isActive": true,
						"isPickList": false, "picklistValues": nil})
				}
				s.mu.Unlock()
				writeJSON(w, http.StatusOK, map[string]any{"fields": udfs})
			} else if n > 3 || (n == 3 && segs[2] != "fields" && segs[2] != "userdefinedfields") {
				notFound(w)
			}
		default:
			id, ok := parseID(segs[1])
			if !ok {
				notFound(w)
				return
			}
			switch {
			case n == 2:
				if is(http.MethodGet) {
					s.getTicket(w, id)
				}
			case n == 3 && segs[2] == "notes":
				if is(http.MethodGet, http.MethodPost) {
					if m == http.MethodGet {
						s.listNotes(w, id)
					} else {
						s.createNote(w, id, body)
					}
				}
			case n == 3 && segs[2] == "attachments":
				if is(http.MethodGet, http.MethodPost) {
					if m == http.MethodGet {
						s.listAttachments(w, id)
					} else {
						s.createAttachment(w, id, body)
					}
				}
			case n == 4 && segs[2] == "attachments":
				aid, ok := parseID(segs[3])
				if !ok {
					notFound(w)
				} else if is(http.MethodGet) {
					s.getAttachment(w, id, aid)
				}
			default:
				notFound(w)
			}
		}
		return
	case "ticketnotes":
		switch {
		case n >= 2 && segs[1] == "query":
			s.queryRoute(w, r, body, "ticketnotes", segs[2:])
		case n == 3 && segs[1] == "entityinformation" && segs[2] == "fields":
			if is(http.MethodGet) {
				s.mu.Lock()
				fi := fieldInfos(noteEntity, s.cfg.NotePicklists, map[string]bool{"title": s.cfg.RequireNoteTitle}, nil)
				s.mu.Unlock()
				writeJSON(w, http.StatusOK, map[string]any{"fields": fi})
			}
		default:
			// Notes are created under their ticket only.
			notFound(w)
		}
		return
	case "ticketattachments":
		if n == 3 && segs[1] == "entityinformation" && segs[2] == "fields" {
			if is(http.MethodGet) {
				s.mu.Lock()
				fi := fieldInfos(attachmentEntity, map[string][]PicklistValue{"publish": s.cfg.AttachmentPublish}, nil, nil)
				s.mu.Unlock()
				writeJSON(w, http.StatusOK, map[string]any{"fields": fi})
			}
		} else {
			// Attachments are created under their ticket only.
			notFound(w)
		}
		return
	case "contacts":
		if n >= 2 && segs[1] == "query" {
			s.queryRoute(w, r, body, "contacts", segs[2:])
		} else {
			notFound(w)
		}
		return
	case "companies":
		switch {
		case n >= 2 && segs[1] == "query":
			s.queryRoute(w, r, body, "companies", segs[2:])
		case n == 2:
			id, ok := parseID(segs[1])
			if !ok {
				notFound(w)
			} else if is(http.MethodGet) {
				s.getCompany(w, id)
			}
		default:
			notFound(w)
		}
		return
	case "resources":
		if n >= 2 && segs[1] == "query" {
			s.queryRoute(w, r, body, "resources", segs[2:])
		} else {
			notFound(w)
		}
		return
	}
	notFound(w)
}

func parseID(s string) (int64, bool) {
	if s == "" || len(s) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

func itoa(n int) string { return strconv.Itoa(n) }
