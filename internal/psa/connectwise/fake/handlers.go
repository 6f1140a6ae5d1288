package fake

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"

	"psagate/internal/psa/fakehttp"
)

const timeLayout = "2006-01-02T15:04:05Z"

// maxBody bounds what the fake reads of a request body.
const maxBody = 64 << 20

// apiError is one entry of the "errors" array of ConnectWise's envelope.
type apiError struct {
	Code     string `json:"code"`
	Message  string `json:"message"`
	Resource string `json:"resource,omitempty"`
	Field    string `json:"field,omitempty"`
}

type envelope struct {
	Code    string     `json:"code"`
	Message string     `json:"message"`
	Errors  []apiError `json:"errors"`
}

// ServeHTTP records the request, applies a matching fault and answers it.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
	if err != nil {
		return // the client went away while sending
	}
	s.mu.Lock()
	prefix := "/" + s.codebase + "apis/3.0"
	s.mu.Unlock()
	apiPath, inAPI := strings.CutPrefix(r.URL.Path, prefix)
	if inAPI && apiPath != "" && apiPath[0] != '/' {
		apiPath, inAPI = r.URL.Path, false // "/v4_6_release/apis/3.01..." is not under the prefix
	}
	if !inAPI {
		apiPath = r.URL.Path
	}
	idx := s.record(Request{
		Method: r.Method, Path: r.URL.Path, APIPath: apiPath,
		Query: r.URL.Query(), Header: r.Header.Clone(), Body: body,
	})
	sw := &fakehttp.StatusWriter{ResponseWriter: w}
	defer func() { s.setStatus(idx, sw.Status) }()

	if f := s.matchFault(r.Method, apiPath); f != nil {
		if f.Delay > 0 {
			t := time.NewTimer(f.Delay)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return
			}
		}
		switch {
		case f.Drop:
			hijackClose(w)
			return
		case f.Status != 0:
			writeFault(sw, f)
			return
		case f.LoseResponse:
			s.handle(httptest.NewRecorder(), r, body, inAPI, prefix, apiPath)
			hijackClose(w)
			return
		}
	}
	s.handle(sw, r, body, inAPI, prefix, apiPath)
}

func (s *Server) record(r Request) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, r)
	return len(s.requests) - 1
}

func (s *Server) setStatus(idx, status int) {
	s.mu.Lock()
	if idx < len(s.requests) {
		s.requests[idx].Status = status
	}
	s.mu.Unlock()
}

// hijackClose ends the connection without an answer, as a reset or a
// crashed proxy would.
func hijackClose(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic("fake: the connection cannot be hijacked (HTTP/2?)")
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		return
	}
	conn.Close()
}

func writeFault(w http.ResponseWriter, f *Fault) {
	body := f.Body
	if body == "" {
		var v any
		switch f.Status {
		case http.StatusUnauthorized:
			v = envelope{Code: "Unauthorized", Message: "The supplied authentication is incorrect."}
		case http.StatusForbidden:
			v = envelope{Code: "Security", Message: "You do not have security permission to perform this action."}
		case http.StatusTooManyRequests:
			v = map[string]string{"error": "ConnectWiseAPI", "message": "Too many requests. Please try again in 30 seconds."}
		case http.StatusNotFound:
			v = envelope{Code: "NotFound", Message: "The requested resource was not found."}
		default:
			v = envelope{Code: "InternalServerError", Message: "An error has occurred. Please try again later."}
		}
		b, _ := json.Marshal(v)
		body = string(b)
	}
	if f.RetryAfter != "" {
		w.Header().Set("Retry-After", f.RetryAfter)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(f.Status)
	io.WriteString(w, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"code":"InternalServerError","message":"fake: cannot encode answer"}`)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	w.Write(b)
}

func writeErr(w http.ResponseWriter, status int, code, msg string, errs ...apiError) {
	writeJSON(w, status, envelope{Code: code, Message: msg, Errors: errs})
}

func invalid(w http.ResponseWriter, resource string, errs ...apiError) {
	for i := range errs {
		errs[i].Resource = resource
	}
	writeErr(w, http.StatusBadRequest, "InvalidObject", resource+" object is invalid", errs...)
}

var acceptVersion = regexp.MustCompile(`^\d{4}\.\d+$`)

// acceptable reports whether an Accept header is one a ConnectWise server
// answers: none, */*, application/json or the vendor type with an optional
// version parameter.
func acceptable(accept string) bool {
	if strings.TrimSpace(accept) == "" {
		return true
	}
	for part := range strings.SplitSeq(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		switch mt {
		case "*/*", "application/*", "application/json":
			return true
		case "application/vnd.connectwise.com+json":
			if v, ok := params["version"]; !ok || acceptVersion.MatchString(v) {
				return true
			}
		}
	}
	return false
}

func (s *Server) handle(w http.ResponseWriter, r *http.Request, body []byte, inAPI bool, prefix, apiPath string) {
	if !inAPI {
		if id, ok := strings.CutPrefix(r.URL.Path, "/login/companyinfo/"); ok && r.Method == http.MethodGet {
			s.companyInfo(w, r, id)
			return
		}
		http.NotFound(w, r)
		return
	}
	if r.Header.Get("Authorization") != s.AuthHeader() {
		writeErr(w, http.StatusUnauthorized, "Unauthorized", "The supplied authentication is incorrect.")
		return
	}
	if r.Header.Get("clientId") == "" || r.Header.Get("clientId") != s.cfg.ClientID {
		writeErr(w, http.StatusBadRequest, "BadRequest",
			"A valid clientId header is required: register one at developer.connectwise.com.")
		return
	}
	if !acceptable(r.Header.Get("Accept")) {
		writeErr(w, http.StatusNotAcceptable, "NotAcceptable", "The Accept header names no media type or version this server supports.")
		return
	}
	s.mu.Lock()
	ro := s.cfg.ReadOnlyMember
	s.mu.Unlock()
	if ro && r.Method != http.MethodGet {
		writeErr(w, http.StatusForbidden, "Forbidden", "You do not have permission to perform this action.")
		return
	}
	r2 := r.Clone(r.Context())
	r2.URL.Path, r2.URL.RawPath = apiPath, ""
	r2.Body = io.NopCloser(bytes.NewReader(body))
	r2.Header.Set("X-Fake-Prefix", prefix)
	s.mux.ServeHTTP(w, r2)
}

func (s *Server) routes() *http.ServeMux {
	m := http.NewServeMux()
	m.HandleFunc("GET /system/info", s.systemInfo)

	m.HandleFunc("GET /service/tickets", s.listTickets(false))
	m.HandleFunc("GET /service/tickets/count", s.listTickets(true))
	m.HandleFunc("POST /service/tickets", s.createTicket)
	m.HandleFunc("GET /service/tickets/{id}", s.getTicket)
	m.HandleFunc("PATCH /service/tickets/{id}", s.patchTicket)
	m.HandleFunc("GET /service/tickets/{id}/notes", s.listNotes(false))
	m.HandleFunc("GET /service/tickets/{id}/notes/count", s.listNotes(true))
	m.HandleFunc("POST /service/tickets/{id}/notes", s.createNote)

	m.HandleFunc("GET /service/boards", s.listBoards(false))
	m.HandleFunc("GET /service/boards/count", s.listBoards(true))
	m.HandleFunc("GET /service/boards/{id}", s.getBoard)
	m.HandleFunc("GET /service/boards/{id}/{sub}", s.listBoardSub(false))
	m.HandleFunc("GET /service/boards/{id}/{sub}/count", s.listBoardSub(true))
	m.HandleFunc("GET /service/priorities", s.listPriorities(false))
	m.HandleFunc("GET /service/priorities/count", s.listPriorities(true))

	m.HandleFunc("GET /company/companies", s.listCompanies(false))
	m.HandleFunc("GET /company/companies/count", s.listCompanies(true))
	m.HandleFunc("GET /company/companies/{id}", s.getCompany)
	m.HandleFunc("GET /company/countries", s.listNamed(func() []Named { return s.cfg.Countries }))
	m.HandleFunc("GET /system/locations", s.listNamed(func() []Named { return s.cfg.Locations }))
	m.HandleFunc("GET /company/contacts", s.listContacts(false))
	m.HandleFunc("GET /company/contacts/count", s.listContacts(true))

	m.HandleFunc("GET /system/documents", s.listDocuments(false))
	m.HandleFunc("GET /system/documents/count", s.listDocuments(true))
	m.HandleFunc("POST /system/documents", s.createDocument)
	m.HandleFunc("GET /system/documents/{id}/download", s.downloadDocument)
	return m
}

// --- company info and system info ---

func (s *Server) companyInfo(w http.ResponseWriter, r *http.Request, id string) {
	if !strings.EqualFold(id, s.cfg.CompanyID) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		io.WriteString(w, "null")
		return
	}
	s.mu.Lock()
	var codebase any = s.codebase
	s.mu.Unlock()
	if s.cfg.NullCodebase {
		codebase = nil
	}
	ver := strings.TrimPrefix(s.cfg.Version, "v")
	if p := strings.SplitN(ver, ".", 3); len(p) >= 2 {
		ver = p[0] + "." + p[1]
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"CompanyName":   s.cfg.CompanyName,
		"Codebase":      codebase,
		"VersionCode":   "v" + ver,
		"VersionNumber": "v4.6.10431",
		"CompanyID":     s.cfg.CompanyID,
		"IsCloud":       "True",
		"SiteUrl":       r.Host,
	})
}

func (s *Server) systemInfo(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"version":        s.cfg.Version,
		"isCloud":        true,
		"serverTimeZone": "Eastern Standard Time",
		"licenseBits":    []map[string]any{{"name": "ServiceDesk", "activeFlag": true}},
		"cloudRegion":    "NA",
	})
}

// --- lists ---

// list filters, orders, counts or pages items as the query asks and writes them.
func (s *Server) list(w http.ResponseWriter, r *http.Request, items []map[string]any, count bool) {
	q := r.URL.Query()
	if c := q.Get("conditions"); c != "" {
		cd, err := parseConditions(c)
		if err != nil {
			writeErr(w, http.StatusBadRequest, "InvalidObject", err.Error())
			return
		}
		var kept []map[string]any
		for _, it := range items {
			ok, err := cd.eval(it)
			if err != nil {
				writeErr(w, http.StatusBadRequest, "InvalidObject", err.Error())
				return
			}
			if ok {
				kept = append(kept, it)
			}
		}
		items = kept
	}
	if count {
		writeJSON(w, http.StatusOK, map[string]int{"count": len(items)})
		return
	}
	if ob := q.Get("orderBy"); ob != "" {
		if err := sortItems(items, ob); err != nil {
			writeErr(w, http.StatusBadRequest, "InvalidObject", err.Error())
			return
		}
	}
	page, size := 1, 25
	if v := q.Get("page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			writeErr(w, http.StatusBadRequest, "InvalidObject", "page must be a whole number of at least 1")
			return
		}
		page = n
	}
	if v := q.Get("pageSize"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			writeErr(w, http.StatusBadRequest, "InvalidObject", "pageSize must be a whole number of at least 1")
			return
		}
		size = n
	}
	size = min(size, s.cfg.PageSizeLimit)
	last := max(1, (len(items)+size-1)/size)
	start := min((page-1)*size, len(items))
	end := min(start+size, len(items))
	out := items[start:end]
	if out == nil {
		out = []map[string]any{}
	}

	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	link := func(p int) string {
		lq := cloneValues(q)
		lq.Set("page", strconv.Itoa(p))
		lq.Set("pageSize", strconv.Itoa(size))
		return "<" + scheme + "://" + r.Host + r.Header.Get("X-Fake-Prefix") + r.URL.Path + "?" + lq.Encode() + ">"
	}
	var links []string
	if page > 1 {
		links = append(links, link(1)+`; rel="first"`, link(min(page-1, last))+`; rel="prev"`)
	}
	if page < last {
		links = append(links, link(page+1)+`; rel="next"`, link(last)+`; rel="last"`)
	}
	if len(links) > 0 {
		w.Header().Set("Link", strings.Join(links, ", "))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) listTickets(count bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		items := make([]map[string]any, 0, len(s.tickets))
		for _, t := range s.tickets {
			items = append(items, s.ticketJSON(t))
		}
		s.mu.Unlock()
		s.list(w, r, items, count)
	}
}

func (s *Server) listNotes(count bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		t := s.findTicket(r.PathValue("id"))
		var items []map[string]any
		if t != nil {
			for i := range t.Notes {
				items = append(items, s.noteJSON(&t.Notes[i]))
			}
		}
		s.mu.Unlock()
		if t == nil {
			ticketNotFound(w, r.PathValue("id"))
			return
		}
		s.list(w, r, items, count)
	}
}

func (s *Server) listBoards(count bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var items []map[string]any
		for _, b := range s.cfg.Boards {
			items = append(items, boardJSON(b))
		}
		s.list(w, r, items, count)
	}
}

func (s *Server) getBoard(w http.ResponseWriter, r *http.Request) {
	b := s.board(atoi(r.PathValue("id")))
	if b == nil {
		writeErr(w, http.StatusNotFound, "NotFound", "Service Board "+r.PathValue("id")+" not found")
		return
	}
	writeJSON(w, http.StatusOK, boardJSON(*b))
}

func (s *Server) listBoardSub(count bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		b := s.board(atoi(r.PathValue("id")))
		if b == nil {
			writeErr(w, http.StatusNotFound, "NotFound", "Service Board "+r.PathValue("id")+" not found")
			return
		}
		bref := map[string]any{"id": b.ID, "name": b.Name, "_info": map[string]any{}}
		var items []map[string]any
		switch r.PathValue("sub") {
		case "statuses":
			for _, st := range b.Statuses {
				items = append(items, map[string]any{
					"id": st.ID, "name": st.Name, "board": bref, "sortOrder": st.SortOrder,
					"displayOnBoard": true, "inactive": st.Inactive, "closedStatus": st.Closed,
					"timeEntryNotAllowed": false, "defaultFlag": st.Default, "escalationStatus": "NotResponded",
					"customerPortalDescription": nil, "customerPortalFlag": false, "_info": map[string]any{},
				})
			}
		case "types":
			for _, t := range b.Types {
				items = append(items, map[string]any{"id": t.ID, "name": t.Name, "category": "Reactive",
					"defaultFlag": false, "inactiveFlag": t.Inactive, "board": bref, "_info": map[string]any{}})
			}
		case "subtypes":
			ids := make([]int, 0, len(b.Types))
			for _, t := range b.Types {
				ids = append(ids, t.ID)
			}
			for _, t := range b.SubTypes {
				items = append(items, map[string]any{"id": t.ID, "name": t.Name, "inactiveFlag": t.Inactive,
					"typeAssociationIds": ids, "board": bref, "_info": map[string]any{}})
			}
		case "typeSubTypeItemAssociations":
			ref := func(list []Named, id int) any {
				for _, n := range list {
					if n.ID == id {
						return map[string]any{"id": n.ID, "name": n.Name, "_info": map[string]any{}}
					}
				}
				return nil
			}
			for i, a := range b.associations() {
				items = append(items, map[string]any{"id": i + 1, "type": ref(b.Types, a.Type),
					"subType": ref(b.SubTypes, a.SubType), "item": ref(b.Items, a.Item), "board": bref, "_info": map[string]any{}})
			}
		case "items":
			for _, t := range b.Items {
				items = append(items, map[string]any{"id": t.ID, "name": t.Name, "inactiveFlag": t.Inactive,
					"board": bref, "_info": map[string]any{}})
			}
		default:
			http.NotFound(w, r)
			return
		}
		s.list(w, r, items, count)
	}
}

// listNamed lists countries or locations: {id, name, inactiveFlag}.
func (s *Server) listNamed(rows func() []Named) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		list := slices.Clone(rows())
		s.mu.Unlock()
		var items []map[string]any
		for _, n := range list {
			items = append(items, map[string]any{"id": n.ID, "name": n.Name, "inactiveFlag": n.Inactive, "_info": map[string]any{}})
		}
		s.list(w, r, items, false)
	}
}

func (s *Server) listPriorities(count bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var items []map[string]any
		for _, p := range s.cfg.Priorities {
			items = append(items, map[string]any{"id": p.ID, "name": p.Name, "color": "Blue",
				"sortOrder": p.SortOrder, "defaultFlag": p.Default, "level": "NotApplicable", "_info": map[string]any{}})
		}
		s.list(w, r, items, count)
	}
}

func (s *Server) listCompanies(count bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var items []map[string]any
		for _, c := range s.cfg.Companies {
			items = append(items, companyJSON(c))
		}
		s.list(w, r, items, count)
	}
}

func (s *Server) getCompany(w http.ResponseWriter, r *http.Request) {
	c := s.company(atoi(r.PathValue("id")), "")
	if c == nil {
		writeErr(w, http.StatusNotFound, "NotFound", "Company "+r.PathValue("id")+" not found")
		return
	}
	writeJSON(w, http.StatusOK, companyJSON(*c))
}

func (s *Server) listContacts(count bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var items []map[string]any
		for _, c := range s.cfg.Contacts {
			m := map[string]any{"id": c.ID, "firstName": c.FirstName, "lastName": c.LastName,
				"company": nil, "inactiveFlag": c.Inactive, "defaultPhoneNbr": nil,
				"communicationItems": []map[string]any{}, "_info": map[string]any{}}
			if co := s.company(c.CompanyID, ""); co != nil {
				m["company"] = map[string]any{"id": co.ID, "identifier": co.Identifier, "name": co.Name}
			}
			if c.Email != "" {
				m["communicationItems"] = []map[string]any{{"type": map[string]any{"id": 1, "name": "Email"},
					"value": c.Email, "defaultFlag": true, "communicationType": "Email"}}
			}
			items = append(items, m)
		}
		s.list(w, r, items, count)
	}
}

func (s *Server) listDocuments(count bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		rt, rid := q.Get("recordType"), q.Get("recordId")
		s.mu.Lock()
		var items []map[string]any
		for _, d := range s.documents {
			if rt != "" && !strings.EqualFold(rt, d.RecordType) || rid != "" && rid != strconv.Itoa(d.RecordID) {
				continue
			}
			items = append(items, s.documentJSON(d))
		}
		s.mu.Unlock()
		s.list(w, r, items, count)
	}
}

func (s *Server) downloadDocument(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	var doc *Document
	for _, d := range s.documents {
		if strconv.Itoa(d.ID) == r.PathValue("id") {
			doc = d
		}
	}
	s.mu.Unlock()
	if doc == nil {
		writeErr(w, http.StatusNotFound, "NotFound", "Document "+r.PathValue("id")+" not found")
		return
	}
	w.Header().Set("Content-Type", doc.ContentType)
	w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": doc.FileName}))
	w.Write(doc.Data)
}

// --- tickets ---

type refIn struct {
	ID         *int    `json:"id"`
	Name       *string `json:"name"`
	Identifier *string `json:"identifier"`
}

func (r *refIn) describe() string {
	switch {
	case r.ID != nil:
		return strconv.Itoa(*r.ID)
	case r.Name != nil:
		return strconv.Quote(*r.Name)
	case r.Identifier != nil:
		return strconv.Quote(*r.Identifier)
	}
	return "(empty)"
}

type ticketIn struct {
	Summary              *string `json:"summary"`
	RecordType           *string `json:"recordType"`
	Company              *refIn  `json:"company"`
	Board                *refIn  `json:"board"`
	Status               *refIn  `json:"status"`
	Priority             *refIn  `json:"priority"`
	Type                 *refIn  `json:"type"`
	SubType              *refIn  `json:"subType"`
	Item                 *refIn  `json:"item"`
	Contact              *refIn  `json:"contact"`
	InitialDescription   *string `json:"initialDescription"`
	ExternalXRef         *string `json:"externalXRef"`
	ProcessNotifications *bool   `json:"processNotifications"`

	ContactName           *string `json:"contactName"`
	ContactPhoneNumber    *string `json:"contactPhoneNumber"`
	ContactPhoneExtension *string `json:"contactPhoneExtension"`
	ContactEmailAddress   *string `json:"contactEmailAddress"`
	SiteName              *string `json:"siteName"`
	AddressLine1          *string `json:"addressLine1"`
	AddressLine2          *string `json:"addressLine2"`
	City                  *string `json:"city"`
	StateIdentifier       *string `json:"stateIdentifier"`
	Zip                   *string `json:"zip"`
	Country               *refIn  `json:"country"`
	Location              *refIn  `json:"location"`
	PoNumber              *string `json:"poNumber"`
	AutomaticEmailCc      *string `json:"automaticEmailCc"`
}

// strLen counts as SQL Server's nvarchar does: UTF-16 code units, so a
// character outside the BMP (an emoji) counts twice.
func strLen(s string) int { return len(utf16.Encode([]rune(s))) }

// jsonBody checks the Content-Type and decodes a JSON body, answering the
// request itself when it cannot.
func jsonBody(w http.ResponseWriter, r *http.Request, v any) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		writeErr(w, http.StatusUnsupportedMediaType, "UnsupportedMediaType",
			fmt.Sprintf("The request entity's media type '%s' is not supported for this resource.", r.Header.Get("Content-Type")))
		return false
	}
	dec := json.NewDecoder(r.Body)
	if err := dec.Decode(v); err != nil {
		writeErr(w, http.StatusBadRequest, "InvalidObject", "The request body is not valid JSON: "+err.Error())
		return false
	}
	if dec.More() {
		writeErr(w, http.StatusBadRequest, "InvalidObject", "The request body has data after the JSON value.")
		return false
	}
	return true
}

func (s *Server) createTicket(w http.ResponseWriter, r *http.Request) {
	var in ticketIn
	if !jsonBody(w, r, &in) {
		return
	}
	var errs []apiError
	notFound := func(field, msg string) { errs = append(errs, apiError{Code: "NotFound", Message: msg, Field: field}) }

	if in.Summary == nil || strings.TrimSpace(*in.Summary) == "" {
		errs = append(errs, apiError{Code: "MissingRequiredField", Message: "summary is required.", Field: "summary"})
	}
	for _, f := range []struct {
		name string
		v    *string
		max  int
	}{
		{"summary", in.Summary, 100}, {"externalXRef", in.ExternalXRef, 100},
		{"contactName", in.ContactName, 62}, {"contactPhoneNumber", in.ContactPhoneNumber, 20},
		{"contactPhoneExtension", in.ContactPhoneExtension, 15}, {"contactEmailAddress", in.ContactEmailAddress, 250},
		{"siteName", in.SiteName, 50}, {"addressLine1", in.AddressLine1, 50}, {"addressLine2", in.AddressLine2, 50},
		{"city", in.City, 50}, {"stateIdentifier", in.StateIdentifier, 50}, {"zip", in.Zip, 12},
		{"poNumber", in.PoNumber, 50}, {"automaticEmailCc", in.AutomaticEmailCc, 1000},
	} {
		if f.v != nil && strLen(*f.v) > f.max {
			errs = append(errs, apiError{Code: "MaxLengthField", Field: f.name,
				Message: fmt.Sprintf("The field %s must be a string with a maximum length of %d.", f.name, f.max)})
		}
	}
	if in.RecordType != nil && *in.RecordType != "ServiceTicket" && *in.RecordType != "ProjectTicket" && *in.RecordType != "ProjectIssue" {
		errs = append(errs, apiError{Code: "InvalidEnum", Field: "recordType",
			Message: "recordType must be one of ServiceTicket, ProjectTicket, ProjectIssue."})
	}

	t := Ticket{RecordType: "ServiceTicket", ProcessNotifications: in.ProcessNotifications}
	if in.RecordType != nil {
		t.RecordType = *in.RecordType
	}
	if in.Summary != nil {
		t.Summary = *in.Summary
	}
	if in.ExternalXRef != nil {
		t.ExternalXRef = *in.ExternalXRef
	}
	if in.InitialDescription != nil {
		t.InitialDescription = *in.InitialDescription
	}

	var company *Company
	switch {
	case in.Company == nil:
		errs = append(errs, apiError{Code: "MissingRequiredField", Message: "company is required.", Field: "company"})
	default:
		ident := ""
		if in.Company.Identifier != nil {
			ident = *in.Company.Identifier
		}
		company = s.company(ptrInt(in.Company.ID), ident)
		if company == nil {
			notFound("company/id", "Company "+in.Company.describe()+" not found")
		} else {
			t.CompanyID = company.ID
		}
	}

	var board *Board
	if in.Board == nil {
		if len(s.cfg.Boards) > 0 {
			board = &s.cfg.Boards[0]
		}
	} else {
		board = s.boardRef(in.Board)
	}
	if board == nil {
		notFound("board/id", "Service Board "+in.Board.describe()+" not found")
	} else {
		t.BoardID = board.ID
		if in.Status == nil {
			for _, st := range board.Statuses {
				if st.Default {
					t.StatusID = st.ID
					t.ClosedFlag = st.Closed
				}
			}
		} else if st := findStatus(board, in.Status); st == nil {
			notFound("status/id", fmt.Sprintf("Service Status %s not found for Service Board %d", in.Status.describe(), board.ID))
		} else {
			t.StatusID = st.ID
			t.ClosedFlag = st.Closed
		}
		for _, x := range []struct {
			in    *refIn
			list  []Named
			field string
			what  string
			out   *int
		}{
			{in.Type, board.Types, "type/id", "Service Type", &t.TypeID},
			{in.SubType, board.SubTypes, "subType/id", "Service SubType", &t.SubTypeID},
			{in.Item, board.Items, "item/id", "Service Item", &t.ItemID},
		} {
			if x.in == nil {
				continue
			}
			if n := findNamed(x.list, x.in); n == nil {
				notFound(x.field, fmt.Sprintf("%s %s not found for Service Board %d", x.what, x.in.describe(), board.ID))
			} else {
				*x.out = n.ID
			}
		}
	}
	if in.Priority == nil {
		for _, p := range s.cfg.Priorities {
			if p.Default {
				t.PriorityID = p.ID
			}
		}
	} else if p := s.priorityRef(in.Priority); p == nil {
		notFound("priority/id", "Priority "+in.Priority.describe()+" not found")
	} else {
		t.PriorityID = p.ID
	}
	if in.Contact != nil {
		c := s.contact(ptrInt(in.Contact.ID))
		switch {
		case c == nil:
			notFound("contact/id", "Contact "+in.Contact.describe()+" not found")
		case company != nil && c.CompanyID != company.ID:
			notFound("contact/id", fmt.Sprintf("Contact %d not found for Company %d", c.ID, company.ID))
		default:
			t.ContactID = c.ID
		}
	}
	for _, x := range []struct {
		v   *string
		out *string
	}{{in.AddressLine1, &t.AddressLine1}, {in.AddressLine2, &t.AddressLine2}, {in.City, &t.City}, {in.StateIdentifier, &t.StateIdentifier}, {in.Zip, &t.Zip}} {
		if x.v != nil {
			*x.out = *x.v
		}
	}
	for _, x := range []struct {
		in    *refIn
		list  []Named
		field string
		what  string
		out   *int
	}{
		{in.Country, s.cfg.Countries, "country/id", "Country", &t.CountryID},
		{in.Location, s.cfg.Locations, "location/id", "Location", &t.LocationID},
	} {
		if x.in == nil {
			continue
		}
		if n := findNamed(x.list, x.in); n == nil || n.Inactive {
			notFound(x.field, fmt.Sprintf("%s %s not found", x.what, x.in.describe()))
		} else {
			*x.out = n.ID
		}
	}
	if board != nil && t.TypeID != 0 && (t.SubTypeID != 0 || t.ItemID != 0) {
		ok := false
		for _, a := range board.associations() {
			if a.Type == t.TypeID && a.SubType == t.SubTypeID && (t.ItemID == 0 || a.Item == t.ItemID) {
				ok = true
			}
		}
		if !ok {
			errs = append(errs, apiError{Code: "InvalidObject", Field: "subType",
				Message: fmt.Sprintf("The type/subtype/item combination %d/%d/%d is not valid for Service Board %d.", t.TypeID, t.SubTypeID, t.ItemID, board.ID)})
		}
	}
	if board != nil {
		set := map[string]bool{
			"type": t.TypeID != 0, "subtype": t.SubTypeID != 0, "item": t.ItemID != 0, "contact": t.ContactID != 0,
			"addressline1": t.AddressLine1 != "", "addressline2": t.AddressLine2 != "", "city": t.City != "",
			"stateidentifier": t.StateIdentifier != "", "zip": t.Zip != "", "country": t.CountryID != 0,
			"location": t.LocationID != 0, "status": true, "priority": true,
		}
		for _, f := range board.Required {
			if !set[strings.ToLower(f)] {
				errs = append(errs, apiError{Code: "MissingRequiredField", Field: f,
					Message: fmt.Sprintf("%s is required for Service Board %d.", f, board.ID)})
			}
		}
	}
	if len(errs) > 0 {
		invalid(w, "ticket", errs...)
		return
	}

	s.mu.Lock()
	t.ID = s.newID("ticket")
	t.DateEntered = s.now()
	if t.ClosedFlag {
		t.ClosedDate, t.ClosedBy = t.DateEntered, s.cfg.Member
	}
	if strings.TrimSpace(t.InitialDescription) != "" {
		t.Notes = append(t.Notes, Note{ID: s.newID("note"), TicketID: t.ID, Text: t.InitialDescription,
			DetailDescriptionFlag: true, DateCreated: t.DateEntered, CreatedBy: s.cfg.Member})
	}
	s.tickets = append(s.tickets, &t)
	out := s.ticketJSON(&t)
	s.mu.Unlock()
	writeJSON(w, http.StatusCreated, out)
}

func (s *Server) getTicket(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	t := s.findTicket(r.PathValue("id"))
	var out map[string]any
	if t != nil {
		out = s.ticketJSON(t)
	}
	s.mu.Unlock()
	if t == nil {
		ticketNotFound(w, r.PathValue("id"))
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func ticketNotFound(w http.ResponseWriter, id string) {
	writeErr(w, http.StatusNotFound, "NotFound", "Ticket "+id+" not found")
}

type patchOp struct {
	Op    *string         `json:"op"`
	Path  *string         `json:"path"`
	Value json.RawMessage `json:"value"`
}

func (s *Server) patchTicket(w http.ResponseWriter, r *http.Request) {
	var raw json.RawMessage
	if !jsonBody(w, r, &raw) {
		return
	}
	var ops []patchOp
	if err := json.Unmarshal(raw, &ops); err != nil {
		writeErr(w, http.StatusBadRequest, "InvalidObject",
			"The PATCH body must be a JSON array of operations like [{\"op\":\"replace\",\"path\":\"status\",\"value\":{\"id\":1}}].")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.findTicket(r.PathValue("id"))
	if t == nil {
		ticketNotFound(w, r.PathValue("id"))
		return
	}
	nt := *t
	board := s.board(t.BoardID)
	for i, op := range ops {
		if op.Op == nil || (*op.Op != "add" && *op.Op != "replace" && *op.Op != "remove") {
			writeErr(w, http.StatusBadRequest, "InvalidObject", fmt.Sprintf("operation %d: op must be add, replace or remove", i))
			return
		}
		if op.Path == nil || *op.Path == "" {
			writeErr(w, http.StatusBadRequest, "InvalidObject", fmt.Sprintf("operation %d: path is required", i))
			return
		}
		p := strings.TrimPrefix(*op.Path, "/")
		if *op.Op == "remove" {
			writeErr(w, http.StatusBadRequest, "InvalidObject", fmt.Sprintf("operation %d: %s cannot be removed", i, p))
			return
		}
		var ref refIn
		switch p {
		case "status", "status/id", "status/name":
			if p != "status" {
				if s.cfg.StrictPatch {
					writeErr(w, http.StatusBadRequest, "InvalidObject",
						fmt.Sprintf("operation %d: replace the whole object (path \"status\", value {\"id\":N}), not %q", i, p))
					return
				}
				v := op.Value
				if p == "status/id" {
					v = []byte(`{"id":` + string(op.Value) + `}`)
				} else {
					v = []byte(`{"name":` + string(op.Value) + `}`)
				}
				op.Value = v
			}
			if err := json.Unmarshal(op.Value, &ref); err != nil || (ref.ID == nil && ref.Name == nil) {
				writeErr(w, http.StatusBadRequest, "InvalidObject", fmt.Sprintf("operation %d: status needs a value {\"id\":N} or {\"name\":\"...\"}", i))
				return
			}
			st := findStatus(board, &ref)
			if st == nil {
				invalid(w, "ticket", apiError{Code: "NotFound", Field: "status/id",
					Message: fmt.Sprintf("Service Status %s not found for Service Board %d", ref.describe(), t.BoardID)})
				return
			}
			nt.StatusID = st.ID
			switch {
			case st.Closed && !t.ClosedFlag:
				nt.ClosedFlag, nt.ClosedDate, nt.ClosedBy = true, s.now(), s.cfg.Member
			case !st.Closed:
				nt.ClosedFlag, nt.ClosedDate, nt.ClosedBy = false, time.Time{}, ""
			}
		case "priority":
			if err := json.Unmarshal(op.Value, &ref); err != nil {
				writeErr(w, http.StatusBadRequest, "InvalidObject", fmt.Sprintf("operation %d: priority needs an object value", i))
				return
			}
			pr := s.priorityRef(&ref)
			if pr == nil {
				invalid(w, "ticket", apiError{Code: "NotFound", Field: "priority/id", Message: "Priority " + ref.describe() + " not found"})
				return
			}
			nt.PriorityID = pr.ID
		case "summary", "externalXRef":
			var v string
			if err := json.Unmarshal(op.Value, &v); err != nil {
				writeErr(w, http.StatusBadRequest, "InvalidObject", fmt.Sprintf("operation %d: %s needs a string value", i, p))
				return
			}
			if strLen(v) > 100 || (p == "summary" && strings.TrimSpace(v) == "") {
				invalid(w, "ticket", apiError{Code: "MaxLengthField", Field: p,
					Message: fmt.Sprintf("The field %s must be a string with a maximum length of 100.", p)})
				return
			}
			if p == "summary" {
				nt.Summary = v
			} else {
				nt.ExternalXRef = v
			}
		default:
			writeErr(w, http.StatusBadRequest, "InvalidObject",
				fmt.Sprintf("operation %d: unknown path %q (paths are case-sensitive)", i, *op.Path))
			return
		}
	}
	*t = nt
	writeJSON(w, http.StatusOK, s.ticketJSON(t))
}

// --- notes ---

type noteIn struct {
	Text                  *string `json:"text"`
	DetailDescriptionFlag *bool   `json:"detailDescriptionFlag"`
	InternalAnalysisFlag  *bool   `json:"internalAnalysisFlag"`
	ResolutionFlag        *bool   `json:"resolutionFlag"`
	ProcessNotifications  *bool   `json:"processNotifications"`
}

func (s *Server) createNote(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	exists := s.findTicket(r.PathValue("id")) != nil
	s.mu.Unlock()
	if !exists {
		ticketNotFound(w, r.PathValue("id"))
		return
	}
	var in noteIn
	if !jsonBody(w, r, &in) {
		return
	}
	var errs []apiError
	if in.Text == nil || strings.TrimSpace(*in.Text) == "" {
		errs = append(errs, apiError{Code: "MissingRequiredField", Message: "text is required.", Field: "text"})
	}
	flag := func(b *bool) bool { return b != nil && *b }
	if !flag(in.DetailDescriptionFlag) && !flag(in.InternalAnalysisFlag) && !flag(in.ResolutionFlag) {
		errs = append(errs, apiError{Code: "MissingRequiredField", Field: "detailDescriptionFlag",
			Message: "Please choose where to display the notes in order to save this record."})
	}
	if len(errs) > 0 {
		invalid(w, "serviceNote", errs...)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.findTicket(r.PathValue("id"))
	if t == nil {
		ticketNotFound(w, r.PathValue("id"))
		return
	}
	n := Note{ID: s.newID("note"), TicketID: t.ID, Text: *in.Text,
		DetailDescriptionFlag: flag(in.DetailDescriptionFlag), InternalAnalysisFlag: flag(in.InternalAnalysisFlag),
		ResolutionFlag: flag(in.ResolutionFlag), ProcessNotifications: in.ProcessNotifications,
		DateCreated: s.now(), CreatedBy: s.cfg.Member}
	t.Notes = append(t.Notes, n)
	writeJSON(w, http.StatusCreated, s.noteJSON(&n))
}

// --- documents ---

func (s *Server) createDocument(w http.ResponseWriter, r *http.Request) {
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" || params["boundary"] == "" {
		writeErr(w, http.StatusUnsupportedMediaType, "UnsupportedMediaType",
			fmt.Sprintf("The request entity's media type '%s' is not supported for this resource.", r.Header.Get("Content-Type")))
		return
	}
	mr := multipart.NewReader(r.Body, params["boundary"])
	fields := map[string]string{}
	var file []byte
	var fileName, fileType string
	hasFile := false
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			writeErr(w, http.StatusBadRequest, "InvalidObject", "The multipart body is malformed: "+err.Error())
			return
		}
		data, err := io.ReadAll(p)
		if err != nil {
			writeErr(w, http.StatusBadRequest, "InvalidObject", "The multipart body is malformed: "+err.Error())
			return
		}
		// Form binding on the server ignores the case of part names.
		name := strings.ToLower(p.FormName())
		if name == "file" {
			hasFile, file, fileName, fileType = true, data, p.FileName(), p.Header.Get("Content-Type")
			continue
		}
		fields[name] = string(data)
	}
	var errs []apiError
	if !hasFile && fields["url"] == "" {
		errs = append(errs, apiError{Code: "MissingRequiredField", Field: "file", Message: "A file or url is required."})
	}
	if hasFile && fileName == "" {
		errs = append(errs, apiError{Code: "MissingRequiredField", Field: "file", Message: "The file part needs a filename."})
	}
	if !strings.EqualFold(fields["recordtype"], "Ticket") {
		errs = append(errs, apiError{Code: "InvalidEnum", Field: "recordType",
			Message: fmt.Sprintf("recordType %q is not supported here; use Ticket.", fields["recordtype"])})
	}
	recordID, err := strconv.Atoi(fields["recordid"])
	if err != nil {
		errs = append(errs, apiError{Code: "InvalidField", Field: "recordId", Message: "recordId must be an integer."})
	}
	private := false
	if v, ok := fields["privateflag"]; ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, apiError{Code: "InvalidField", Field: "privateFlag", Message: "privateFlag must be true or false."})
		}
		private = b
	}
	if len(errs) > 0 {
		invalid(w, "document", errs...)
		return
	}
	if s.cfg.MaxDocumentBytes > 0 && len(file) > s.cfg.MaxDocumentBytes {
		writeErr(w, http.StatusRequestEntityTooLarge, "RequestEntityTooLarge",
			fmt.Sprintf("The file is larger than the %d bytes this server accepts.", s.cfg.MaxDocumentBytes))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.findTicket(strconv.Itoa(recordID)) == nil {
		invalid(w, "document", apiError{Code: "NotFound", Field: "recordId", Message: fmt.Sprintf("Ticket %d not found", recordID)})
		return
	}
	title := fields["title"]
	if title == "" {
		title = fileName
	}
	d := &Document{ID: s.newID("document"), RecordType: "Ticket", RecordID: recordID, Title: title,
		FileName: fileName, ContentType: fileType, Data: file, URL: fields["url"], PrivateFlag: private,
		GUID: newGUID(), Created: s.now()}
	s.documents = append(s.documents, d)
	writeJSON(w, http.StatusCreated, s.documentJSON(d))
}

func newGUID() string {
	var b [16]byte
	rand.Read(b[:])
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// --- JSON shapes ---

func ts(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC().Format(timeLayout)
}

func (s *Server) ticketJSON(t *Ticket) map[string]any {
	href := func(p string) string { return "/service/" + p }
	ref := func(id int, name string) any {
		if id == 0 {
			return nil
		}
		return map[string]any{"id": id, "name": name, "_info": map[string]any{}}
	}
	m := map[string]any{
		"id": t.ID, "summary": t.Summary, "recordType": t.RecordType,
		"externalXRef": nilIfEmpty(t.ExternalXRef),
		"closedFlag":   t.ClosedFlag, "closedDate": ts(t.ClosedDate), "closedBy": nilIfEmpty(t.ClosedBy),
		"dateResolved": ts(t.ClosedDate), "customFields": []any{},
		"board": nil, "status": nil, "type": nil, "subType": nil, "item": nil, "priority": nil, "contact": nil, "company": nil,
	}
	if co := s.company(t.CompanyID, ""); co != nil {
		m["company"] = map[string]any{"id": co.ID, "identifier": co.Identifier, "name": co.Name, "_info": map[string]any{}}
	}
	if b := s.board(t.BoardID); b != nil {
		m["board"] = ref(b.ID, b.Name)
		for _, st := range b.Statuses {
			if st.ID == t.StatusID {
				m["status"] = map[string]any{"id": st.ID, "name": st.Name, "sort": st.SortOrder, "_info": map[string]any{}}
			}
		}
		for _, x := range []struct {
			key  string
			id   int
			list []Named
		}{{"type", t.TypeID, b.Types}, {"subType", t.SubTypeID, b.SubTypes}, {"item", t.ItemID, b.Items}} {
			for _, n := range x.list {
				if n.ID == x.id {
					m[x.key] = ref(n.ID, n.Name)
				}
			}
		}
	}
	for _, p := range s.cfg.Priorities {
		if p.ID == t.PriorityID {
			m["priority"] = map[string]any{"id": p.ID, "name": p.Name, "sort": p.SortOrder, "_info": map[string]any{}}
		}
	}
	if c := s.contact(t.ContactID); c != nil {
		m["contact"] = ref(c.ID, strings.TrimSpace(c.FirstName+" "+c.LastName))
	}
	m["addressLine1"], m["addressLine2"], m["city"] = nilIfEmpty(t.AddressLine1), nilIfEmpty(t.AddressLine2), nilIfEmpty(t.City)
	m["stateIdentifier"], m["zip"] = nilIfEmpty(t.StateIdentifier), nilIfEmpty(t.Zip)
	m["country"], m["location"] = nil, nil
	for _, n := range s.cfg.Countries {
		if n.ID == t.CountryID {
			m["country"] = ref(n.ID, n.Name)
		}
	}
	for _, n := range s.cfg.Locations {
		if n.ID == t.LocationID {
			m["location"] = ref(n.ID, n.Name)
		}
	}
	last := t.DateEntered
	if t.ClosedDate.After(last) {
		last = t.ClosedDate
	}
	m["_info"] = map[string]any{
		"dateEntered": ts(t.DateEntered), "enteredBy": s.cfg.Member, "lastUpdated": ts(last), "updatedBy": s.cfg.Member,
		"notes_href":     href(fmt.Sprintf("tickets/%d/notes", t.ID)),
		"documents_href": fmt.Sprintf("/system/documents?recordType=Ticket&recordId=%d", t.ID),
	}
	return m
}

func (s *Server) noteJSON(n *Note) map[string]any {
	return map[string]any{
		"id": n.ID, "ticketId": n.TicketID, "text": n.Text,
		"detailDescriptionFlag": n.DetailDescriptionFlag, "internalAnalysisFlag": n.InternalAnalysisFlag,
		"resolutionFlag": n.ResolutionFlag, "issueFlag": false,
		"member":  map[string]any{"id": 176, "identifier": s.cfg.Member, "name": "psagate API", "_info": map[string]any{}},
		"contact": nil, "customerUpdatedFlag": false,
		"dateCreated": ts(n.DateCreated), "createdBy": n.CreatedBy,
		"internalFlag": n.InternalAnalysisFlag, "externalFlag": n.DetailDescriptionFlag || n.ResolutionFlag,
		"_info": map[string]any{"lastUpdated": ts(n.DateCreated), "updatedBy": n.CreatedBy},
	}
}

func (s *Server) documentJSON(d *Document) map[string]any {
	return map[string]any{
		"id": d.ID, "title": d.Title, "fileName": d.FileName, "serverFileName": d.GUID + "_" + d.FileName,
		"owner": s.cfg.Member, "linkFlag": d.URL != "", "imageFlag": strings.HasPrefix(d.ContentType, "image/"),
		"publicFlag": !d.PrivateFlag, "htmlTemplateFlag": false, "readOnlyFlag": false, "size": len(d.Data),
		"urlFlag": d.URL != "", "createdOnDate": ts(d.Created), "documentType": map[string]any{"id": 7, "name": "Attachment"},
		"guid": d.GUID, "_info": map[string]any{"lastUpdated": ts(d.Created), "updatedBy": s.cfg.Member},
	}
}

func boardJSON(b Board) map[string]any {
	return map[string]any{"id": b.ID, "name": b.Name, "inactiveFlag": b.Inactive, "projectFlag": false,
		"location": map[string]any{"id": 2, "name": "Main"}, "department": map[string]any{"id": 10, "name": "Services"},
		"_info": map[string]any{}}
}

func companyJSON(c Company) map[string]any {
	status := "Active"
	if c.Inactive {
		status = "Inactive"
	}
	return map[string]any{"id": c.ID, "identifier": c.Identifier, "name": c.Name, "deletedFlag": false,
		"status": map[string]any{"id": 1, "name": status}, "website": c.Website, "_info": map[string]any{}}
}

// --- lookups in the configuration ---

func (s *Server) findTicket(id string) *Ticket {
	for _, t := range s.tickets {
		if strconv.Itoa(t.ID) == id {
			return t
		}
	}
	return nil
}

func (s *Server) board(id int) *Board {
	for i := range s.cfg.Boards {
		if s.cfg.Boards[i].ID == id {
			return &s.cfg.Boards[i]
		}
	}
	return nil
}

func (s *Server) boardRef(r *refIn) *Board {
	for i := range s.cfg.Boards {
		b := &s.cfg.Boards[i]
		if r.ID != nil && *r.ID == b.ID || r.ID == nil && r.Name != nil && strings.EqualFold(*r.Name, b.Name) {
			return b
		}
	}
	return nil
}

func findStatus(b *Board, r *refIn) *Status {
	if b == nil {
		return nil
	}
	for i := range b.Statuses {
		st := &b.Statuses[i]
		if r.ID != nil && *r.ID == st.ID || r.ID == nil && r.Name != nil && strings.EqualFold(*r.Name, st.Name) {
			return st
		}
	}
	return nil
}

func findNamed(list []Named, r *refIn) *Named {
	for i := range list {
		n := &list[i]
		if r.ID != nil && *r.ID == n.ID || r.ID == nil && r.Name != nil && strings.EqualFold(*r.Name, n.Name) {
			return n
		}
	}
	return nil
}

func (s *Server) priorityRef(r *refIn) *Priority {
	for i := range s.cfg.Priorities {
		p := &s.cfg.Priorities[i]
		if r.ID != nil && *r.ID == p.ID || r.ID == nil && r.Name != nil && strings.EqualFold(*r.Name, p.Name) {
			return p
		}
	}
	return nil
}

// company finds a company by id (when non-zero) or identifier.
func (s *Server) company(id int, identifier string) *Company {
	for i := range s.cfg.Companies {
		c := &s.cfg.Companies[i]
		if id != 0 && c.ID == id || id == 0 && identifier != "" && strings.EqualFold(identifier, c.Identifier) {
			return c
		}
	}
	return nil
}

func (s *Server) contact(id int) *Contact {
	for i := range s.cfg.Contacts {
		if id != 0 && s.cfg.Contacts[i].ID == id {
			return &s.cfg.Contacts[i]
		}
	}
	return nil
}

func ptrInt(p *int) int {
	if p == nil {
		return 0
	}
	return *p
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}
