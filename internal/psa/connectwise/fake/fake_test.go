package fake

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(a.body, v); err != nil {
		t.Fatalf("answer %d is not JSON: %v: %s", a.status, err, a.body)
	}
}

func (a answer) envelope(t *testing.T) envelope {
	t.Helper()
	var e envelope
	a.json(t, &e)
	return e
}

// call sends an authenticated API request unless hdr overrides headers.
func call(t *testing.T, s *Server, method, apiPath string, body []byte, ctype string, hdr map[string]string) answer {
	t.Helper()
	a, err := tryCall(context.Background(), s, method, apiPath, body, ctype, hdr)
	if err != nil {
		t.Fatalf("%s %s: %v", method, apiPath, err)
	}
	return a
}

func tryCall(ctx context.Context, s *Server, method, apiPath string, body []byte, ctype string, hdr map[string]string) (answer, error) {
	u := s.Endpoint() + apiPath
	if strings.HasPrefix(apiPath, "/login/") {
		u = s.URL() + apiPath
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return answer{}, err
	}
	req.Header.Set("Authorization", s.AuthHeader())
	req.Header.Set("clientId", s.Config().ClientID)
	req.Header.Set("Accept", "application/vnd.connectwise.com+json; version=2025.8")
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for k, v := range hdr {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := s.Client().Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, b}, err
}

func postJSON(t *testing.T, s *Server, path string, v any) answer {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return call(t, s, "POST", path, b, "application/json", nil)
}

func newTicket(t *testing.T, s *Server) int {
	t.Helper()
	a := postJSON(t, s, "/service/tickets", map[string]any{"summary": "x", "company": map[string]any{"identifier": "PVC01"},
		"board": map[string]any{"name": "Backup Alerts"}})
	if a.status != 201 {
		t.Fatalf("create: %d %s", a.status, a.body)
	}
	var tk struct{ ID int }
	a.json(t, &tk)
	return tk.ID
}

func TestCompanyInfo(t *testing.T) {
	s := Start(DefaultConfig())
	defer s.Close()
	a := call(t, s, "GET", "/login/companyinfo/MYMSP", nil, "", map[string]string{"Authorization": "", "clientId": ""})
	var info map[string]any
	a.json(t, &info)
	if a.status != 200 || info["Codebase"] != "v4_6_release/" || info["CompanyID"] != "mymsp" || info["IsCloud"] != "True" {
		t.Fatalf("company info = %d %v", a.status, info)
	}
	a = call(t, s, "GET", "/login/companyinfo/nobody", nil, "", nil)
	if a.status != 200 || string(a.body) != "null" {
		t.Fatalf("unknown company: %d %q", a.status, a.body)
	}

	cfg := DefaultConfig()
	cfg.NullCodebase = true
	s2 := Start(cfg)
	defer s2.Close()
	a = call(t, s2, "GET", "/login/companyinfo/mymsp", nil, "", nil)
	if !strings.Contains(string(a.body), `"Codebase":null`) {
		t.Fatalf("null codebase: %s", a.body)
	}
}

func TestAuthClientIDAccept(t *testing.T) {
	s := Start(DefaultConfig())
	defer s.Close()
	wrongKey := "Basic " + basic("mymsp+"+DefaultPublicKey+":wrong")
	tests := []struct {
		name   string
		hdr    map[string]string
		status int
		code   string
	}{
		{"ok", nil, 200, ""},
		{"no auth", map[string]string{"Authorization": ""}, 401, "Unauthorized"},
		{"wrong private key", map[string]string{"Authorization": wrongKey}, 401, "Unauthorized"},
		{"lower-case basic", map[string]string{"Authorization": strings.Replace(s.AuthHeader(), "Basic", "basic", 1)}, 401, "Unauthorized"},
		{"no clientId", map[string]string{"clientId": ""}, 400, "BadRequest"},
		{"wrong clientId", map[string]string{"clientId": "00000000-0000-0000-0000-000000000000"}, 400, "BadRequest"},
		{"CLIENTID spelling", map[string]string{"CLIENTID": DefaultClientID}, 200, ""},
		{"plain json accept", map[string]string{"Accept": "application/json"}, 200, ""},
		{"no accept", map[string]string{"Accept": ""}, 200, ""},
		{"bad accept", map[string]string{"Accept": "text/html"}, 406, "NotAcceptable"},
		{"bad version", map[string]string{"Accept": "application/vnd.connectwise.com+json; version=latest"}, 406, "NotAcceptable"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := call(t, s, "GET", "/system/info", nil, "", tc.hdr)
			if a.status != tc.status {
				t.Fatalf("status %d, want %d: %s", a.status, tc.status, a.body)
			}
			if tc.code != "" && a.envelope(t).Code != tc.code {
				t.Fatalf("code = %s, want %s", a.body, tc.code)
			}
			if a.header.Get("Content-Type") != "application/json; charset=utf-8" {
				t.Fatalf("content type %q", a.header.Get("Content-Type"))
			}
		})
	}
}

func basic(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestCreateTicketValidation(t *testing.T) {
	s := Start(DefaultConfig())
	defer s.Close()
	ok := func() map[string]any {
		return map[string]any{"summary": "Backup failed", "company": map[string]any{"identifier": "pvc01"},
			"board": map[string]any{"name": "Backup Alerts"}}
	}
	tests := []struct {
		name   string
		mod    func(m map[string]any)
		status int
		code   string // inner code
		field  string
		msg    string
	}{
		{"minimal", func(map[string]any) {}, 201, "", "", ""},
		{"summary 100 BMP runes", func(m map[string]any) { m["summary"] = strings.Repeat("日", 100) }, 201, "", "", ""},
		{"summary 101", func(m map[string]any) { m["summary"] = strings.Repeat("a", 101) }, 400, "MaxLengthField", "summary",
			"The field summary must be a string with a maximum length of 100."},
		{"summary 51 emoji = 102 UTF-16 units", func(m map[string]any) { m["summary"] = strings.Repeat("💾", 51) }, 400, "MaxLengthField", "summary", ""},
		{"no summary", func(m map[string]any) { delete(m, "summary") }, 400, "MissingRequiredField", "summary", ""},
		{"blank summary", func(m map[string]any) { m["summary"] = "  " }, 400, "MissingRequiredField", "summary", ""},
		{"no company", func(m map[string]any) { delete(m, "company") }, 400, "MissingRequiredField", "company", ""},
		{"unknown company", func(m map[string]any) { m["company"] = map[string]any{"identifier": "NOPE"} }, 400, "NotFound", "company/id", ""},
		{"company by id", func(m map[string]any) { m["company"] = map[string]any{"id": 251} }, 201, "", "", ""},
		{"status of another board", func(m map[string]any) { m["status"] = map[string]any{"id": 1} }, 400, "NotFound", "status/id",
			"Service Status 1 not found for Service Board 12"},
		{"type by name", func(m map[string]any) { m["type"] = map[string]any{"name": "backup"} }, 201, "", "", ""},
		{"unknown subtype", func(m map[string]any) { m["subType"] = map[string]any{"name": "Oops"} }, 400, "NotFound", "subType/id", ""},
		{"unknown priority", func(m map[string]any) { m["priority"] = map[string]any{"id": 99} }, 400, "NotFound", "priority/id", ""},
		{"contact of another company", func(m map[string]any) { m["contact"] = map[string]any{"id": 702} }, 400, "NotFound", "contact/id", ""},
		{"externalXRef 101", func(m map[string]any) { m["externalXRef"] = strings.Repeat("x", 101) }, 400, "MaxLengthField", "externalXRef", ""},
		{"zip 13", func(m map[string]any) { m["zip"] = "1234567890123" }, 400, "MaxLengthField", "zip", ""},
		{"bad recordType", func(m map[string]any) { m["recordType"] = "Ticket" }, 400, "InvalidEnum", "recordType", ""},
		{"unknown fields ignored", func(m map[string]any) { m["whatever"] = 1 }, 201, "", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := ok()
			tc.mod(m)
			a := postJSON(t, s, "/service/tickets", m)
			if a.status != tc.status {
				t.Fatalf("status %d, want %d: %s", a.status, tc.status, a.body)
			}
			if tc.status != 400 {
				return
			}
			e := a.envelope(t)
			if e.Code != "InvalidObject" || e.Message != "ticket object is invalid" || len(e.Errors) != 1 {
				t.Fatalf("envelope %s", a.body)
			}
			ie := e.Errors[0]
			if ie.Code != tc.code || ie.Field != tc.field || ie.Resource != "ticket" || (tc.msg != "" && ie.Message != tc.msg) {
				t.Fatalf("inner error %+v, want %s %s %q", ie, tc.code, tc.field, tc.msg)
			}
		})
	}

	a := call(t, s, "POST", "/service/tickets", []byte(`{"summary":"x"}`), "text/plain", nil)
	if a.status != 415 {
		t.Fatalf("text/plain body: %d", a.status)
	}
	a = call(t, s, "POST", "/service/tickets", []byte(`{"summary":`), "application/json", nil)
	if a.status != 400 {
		t.Fatalf("malformed JSON: %d", a.status)
	}
}

func TestCreateAndRead(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Now = func() time.Time { return time.Date(2025, 6, 1, 10, 0, 0, 123, time.UTC) }
	s := Start(cfg)
	defer s.Close()
	a := postJSON(t, s, "/service/tickets", map[string]any{"summary": "Backup failed", "company": map[string]any{"identifier": "ACME01"},
		"board": map[string]any{"id": 12}, "initialDescription": "full text\nline 2", "externalXRef": "psagate:1",
		"processNotifications": false})
	if a.status != 201 {
		t.Fatalf("%d %s", a.status, a.body)
	}
	if strings.Contains(string(a.body), "initialDescription") || strings.Contains(string(a.body), "full text") {
		t.Fatalf("initialDescription echoed: %s", a.body)
	}
	var got map[string]any
	a.json(t, &got)
	status := got["status"].(map[string]any)
	info := got["_info"].(map[string]any)
	if got["id"] != 5001.0 || status["name"] != "New" || got["closedFlag"] != false || info["dateEntered"] != "2025-06-01T10:00:00Z" {
		t.Fatalf("ticket %s", a.body)
	}
	tk, ok := s.Ticket(5001)
	if !ok || len(tk.Notes) != 1 || tk.Notes[0].Text != "full text\nline 2" || !tk.Notes[0].DetailDescriptionFlag ||
		tk.ProcessNotifications == nil || *tk.ProcessNotifications || tk.PriorityID != 4 || tk.CompanyID != 251 {
		t.Fatalf("stored %+v", tk)
	}
	g := call(t, s, "GET", "/service/tickets/5001", nil, "", nil)
	if g.status != 200 || !strings.Contains(string(g.body), `"externalXRef":"psagate:1"`) {
		t.Fatalf("get: %d %s", g.status, g.body)
	}
	if g := call(t, s, "GET", "/service/tickets/999", nil, "", nil); g.status != 404 {
		t.Fatalf("unknown ticket: %d", g.status)
	}
}

func TestPatch(t *testing.T) {
	cfg := DefaultConfig()
	cfg.StrictPatch = true
	s := Start(cfg)
	defer s.Close()
	id := newTicket(t, s)
	path := "/service/tickets/" + itoa(id)
	patch := func(body string) answer {
		return call(t, s, "PATCH", path, []byte(body), "application/json", nil)
	}
	for _, tc := range []struct{ name, body, want string }{
		{"object body", `{"op":"replace","path":"status","value":{"id":103}}`, "JSON array"},
		{"bad op", `[{"op":"set","path":"status","value":{"id":103}}]`, "op must be"},
		{"no path", `[{"op":"replace","value":{"id":103}}]`, "path is required"},
		{"path case", `[{"op":"replace","path":"Status","value":{"id":103}}]`, "case-sensitive"},
		{"nested strict", `[{"op":"replace","path":"status/id","value":103}]`, "replace the whole object"},
		{"other board status", `[{"op":"replace","path":"status","value":{"id":5}}]`, "Service Status 5 not found for Service Board 12"},
	} {
		a := patch(tc.body)
		if a.status != 400 || !strings.Contains(string(a.body), tc.want) {
			t.Errorf("%s: %d %s", tc.name, a.status, a.body)
		}
	}
	if tk, _ := s.Ticket(id); tk.StatusID != 101 || tk.ClosedFlag {
		t.Fatalf("refused patches changed the ticket: %+v", tk)
	}
	a := patch(`[{"op":"replace","path":"status","value":{"id":103}}]`)
	var got map[string]any
	a.json(t, &got)
	if a.status != 200 || got["closedFlag"] != true || got["closedDate"] == nil || got["closedBy"] != "psagate-api" {
		t.Fatalf("close: %d %s", a.status, a.body)
	}
	a = patch(`[{"op":"replace","path":"status","value":{"name":"In Progress"}}]`)
	if tk, _ := s.Ticket(id); a.status != 200 || tk.ClosedFlag || tk.StatusID != 102 || !tk.ClosedDate.IsZero() {
		t.Fatalf("reopen: %d %+v", a.status, tk)
	}

	lax := Start(DefaultConfig())
	defer lax.Close()
	id = newTicket(t, lax)
	a = call(t, lax, "PATCH", "/service/tickets/"+itoa(id), []byte(`[{"op":"replace","path":"status/id","value":104}]`), "application/json", nil)
	if tk, _ := lax.Ticket(id); a.status != 200 || tk.StatusID != 104 || !tk.ClosedFlag {
		t.Fatalf("nested path without strict mode: %d %+v", a.status, tk)
	}
	if a := call(t, lax, "PATCH", "/service/tickets/77", []byte(`[]`), "application/json", nil); a.status != 404 {
		t.Fatalf("unknown ticket: %d", a.status)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestNotes(t *testing.T) {
	s := Start(DefaultConfig())
	defer s.Close()
	id := newTicket(t, s)
	path := "/service/tickets/" + itoa(id) + "/notes"
	a := postJSON(t, s, path, map[string]any{"text": "hello", "detailDescriptionFlag": false, "internalAnalysisFlag": false, "resolutionFlag": false})
	if a.status != 400 || !strings.Contains(string(a.body), "Please choose where to display the notes") ||
		a.envelope(t).Message != "serviceNote object is invalid" {
		t.Fatalf("no flag: %d %s", a.status, a.body)
	}
	if a := postJSON(t, s, path, map[string]any{"text": " ", "internalAnalysisFlag": true}); a.status != 400 {
		t.Fatalf("empty text: %d", a.status)
	}
	if a := postJSON(t, s, "/service/tickets/1/notes", map[string]any{"text": "x", "internalAnalysisFlag": true}); a.status != 404 {
		t.Fatalf("unknown ticket: %d", a.status)
	}
	a = postJSON(t, s, path, map[string]any{"text": "resolved", "resolutionFlag": true})
	var n map[string]any
	a.json(t, &n)
	if a.status != 201 || n["ticketId"] != float64(id) || n["resolutionFlag"] != true || n["createdBy"] != "psagate-api" || n["dateCreated"] == nil {
		t.Fatalf("note: %d %s", a.status, a.body)
	}
	if tk, _ := s.Ticket(id); len(tk.Notes) != 1 || !tk.Notes[0].ResolutionFlag {
		t.Fatalf("stored notes %+v", tk.Notes)
	}
}

func multipartBody(t *testing.T, fields map[string]string, fileName string, data []byte) ([]byte, string) {
	t.Helper()
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	if fileName != "" {
		fw, err := mw.CreateFormFile("file", fileName)
		if err != nil {
			t.Fatal(err)
		}
		fw.Write(data)
	}
	for k, v := range fields {
		mw.WriteField(k, v)
	}
	mw.Close()
	return b.Bytes(), mw.FormDataContentType()
}

func TestDocuments(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxDocumentBytes = 10
	s := Start(cfg)
	defer s.Close()
	id := newTicket(t, s)
	fields := map[string]string{"recordType": "Ticket", "recordId": itoa(id), "title": "shot", "privateFlag": "true"}

	if a := call(t, s, "POST", "/system/documents", []byte(`{"file":"x"}`), "application/json", nil); a.status != 415 {
		t.Fatalf("JSON upload: %d", a.status)
	}
	body, ct := multipartBody(t, fields, "screen.png", []byte("PNG\x00data"))
	a := call(t, s, "POST", "/system/documents", body, ct, nil)
	var d map[string]any
	a.json(t, &d)
	if a.status != 201 || d["fileName"] != "screen.png" || d["title"] != "shot" || d["size"] != 8.0 || d["publicFlag"] != false || d["guid"] == "" {
		t.Fatalf("upload: %d %s", a.status, a.body)
	}
	tk, _ := s.Ticket(id)
	if len(tk.Documents) != 1 || string(tk.Documents[0].Data) != "PNG\x00data" || tk.Documents[0].ContentType != "application/octet-stream" {
		t.Fatalf("stored %+v", tk.Documents)
	}
	dl := call(t, s, "GET", "/system/documents/"+itoa(int(d["id"].(float64)))+"/download", nil, "", nil)
	if dl.status != 200 || string(dl.body) != "PNG\x00data" {
		t.Fatalf("download %d %q", dl.status, dl.body)
	}

	for _, tc := range []struct {
		name   string
		mod    func(map[string]string)
		file   string
		data   string
		status int
		field  string
	}{
		{"no file", func(map[string]string) {}, "", "", 400, "file"},
		{"record type", func(m map[string]string) { m["recordType"] = "Company" }, "a.txt", "x", 400, "recordType"},
		{"record id text", func(m map[string]string) { m["recordId"] = "abc" }, "a.txt", "x", 400, "recordId"},
		{"unknown ticket", func(m map[string]string) { m["recordId"] = "1" }, "a.txt", "x", 400, "recordId"},
		{"private flag", func(m map[string]string) { m["privateFlag"] = "yes" }, "a.txt", "x", 400, "privateFlag"},
		{"too large", func(map[string]string) {}, "a.txt", "0123456789A", 413, ""},
	} {
		f := map[string]string{}
		for k, v := range fields {
			f[k] = v
		}
		tc.mod(f)
		body, ct := multipartBody(t, f, tc.file, []byte(tc.data))
		a := call(t, s, "POST", "/system/documents", body, ct, nil)
		if a.status != tc.status || (tc.field != "" && a.envelope(t).Errors[0].Field != tc.field) {
			t.Errorf("%s: %d %s", tc.name, a.status, a.body)
		}
	}

	l := call(t, s, "GET", "/system/documents?recordType=Ticket&recordId="+itoa(id), nil, "", nil)
	var docs []map[string]any
	l.json(t, &docs)
	if len(docs) != 1 {
		t.Fatalf("list: %s", l.body)
	}
	c := call(t, s, "GET", "/system/documents/count?recordType=Ticket&recordId=999", nil, "", nil)
	if string(c.body) != `{"count":0}` {
		t.Fatalf("count: %s", c.body)
	}
}

func TestConditions(t *testing.T) {
	item := map[string]any{
		"id": 7, "name": "Backup Alerts", "inactiveFlag": false, "externalXRef": `say "hi"`,
		"company": map[string]any{"identifier": "ACME01", "id": 251}, "type": nil,
		"_info": map[string]any{"dateEntered": "2025-06-01T10:00:00Z"},
	}
	tests := []struct {
		cond string
		want bool
		err  string
	}{
		{`name="backup alerts"`, true, ""},
		{`name = "Help Desk"`, false, ""},
		{`name != "Help Desk"`, true, ""},
		{`id=7 and inactiveFlag=false`, true, ""},
		{`id=8 or NAME contains "alert"`, true, ""},
		{`id=8 OR (id=7 AND name like "Back*")`, true, ""},
		{`company/identifier="ACME01" and company/id=251`, true, ""},
		{`type/name="Backup"`, false, ""},
		{`type = null`, true, ""},
		{`id in (1,7,9)`, true, ""},
		{`id not in (1,9)`, true, ""},
		{`name not contains "desk"`, true, ""},
		{`externalXRef="say \"hi\""`, true, ""},
		{`_info/dateEntered > [2025-01-01T00:00:00Z]`, true, ""},
		{`id >= 7 and id < 8`, true, ""},
		{`inactiveFlag=0`, false, "Expected a boolean value, not a numeric value"},
		{`id="7"`, false, "Expected a numeric value, not a string value"},
		{`nosuch=1`, false, "cannot find field"},
		{`name=Backup`, false, "strings need double quotes"},
		{`name="x`, false, "unterminated"},
		{`(id=7`, false, "missing ')'"},
	}
	for _, tc := range tests {
		c, err := parseConditions(tc.cond)
		var got bool
		if err == nil {
			got, err = c.eval(item)
		}
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: err %v, want %q", tc.cond, err, tc.err)
			}
		case err != nil:
			t.Errorf("%s: %v", tc.cond, err)
		case got != tc.want:
			t.Errorf("%s = %v, want %v", tc.cond, got, tc.want)
		}
	}
}

func TestPagination(t *testing.T) {
	cfg := DefaultConfig()
	cfg.PageSizeLimit = 2
	for i := range 3 {
		cfg.Companies = append(cfg.Companies, Company{ID: 300 + i, Identifier: "X" + itoa(i), Name: "Extra"})
	}
	s := Start(cfg)
	defer s.Close()
	// 7 companies, pages of 2: 4 pages.
	a := call(t, s, "GET", "/company/companies?pageSize=1000&orderBy=id%20desc", nil, "", nil)
	var rows []map[string]any
	a.json(t, &rows)
	if len(rows) != 2 || rows[0]["id"] != 302.0 {
		t.Fatalf("page 1: %s", a.body)
	}
	link := a.header.Get("Link")
	next := s.Endpoint() + "/company/companies?orderBy=id+desc&page=2&pageSize=2"
	if !strings.Contains(link, "<"+next+`>; rel="next"`) || !strings.Contains(link, `page=4&pageSize=2>; rel="last"`) || strings.Contains(link, "prev") {
		t.Fatalf("page 1 Link: %s", link)
	}
	a = call(t, s, "GET", "/company/companies?pageSize=2&page=4&orderBy=id%20desc", nil, "", nil)
	a.json(t, &rows)
	link = a.header.Get("Link")
	if len(rows) != 1 || strings.Contains(link, `rel="next"`) || !strings.Contains(link, `page=3&pageSize=2>; rel="prev"`) {
		t.Fatalf("last page: %s / %s", a.body, link)
	}
	a = call(t, s, "GET", "/company/companies/count?conditions="+url.QueryEscape(`name="Extra"`), nil, "", nil)
	if string(a.body) != `{"count":3}` {
		t.Fatalf("count: %s", a.body)
	}
	if a := call(t, s, "GET", "/company/companies?page=0", nil, "", nil); a.status != 400 {
		t.Fatalf("page 0: %d", a.status)
	}
	if a := call(t, s, "GET", "/company/companies?conditions="+url.QueryEscape("inactiveFlag=1"), nil, "", nil); a.status != 400 {
		t.Fatalf("bad condition: %d", a.status)
	}

	big := DefaultConfig()
	for i := range 30 {
		big.Priorities = append(big.Priorities, Priority{ID: 100 + i, Name: "P" + itoa(i)})
	}
	s2 := Start(big)
	defer s2.Close()
	a = call(t, s2, "GET", "/service/priorities", nil, "", nil)
	a.json(t, &rows)
	if len(rows) != 25 || !strings.Contains(a.header.Get("Link"), `rel="next"`) {
		t.Fatalf("default page size: %d rows", len(rows))
	}
}

func TestFaults(t *testing.T) {
	s := Start(DefaultConfig())
	defer s.Close()

	s.Inject(Fault{Method: "GET", Path: "/system/info", Status: 429, RetryAfter: "7", Times: 2})
	for range 2 {
		a := call(t, s, "GET", "/system/info", nil, "", nil)
		if a.status != 429 || a.header.Get("Retry-After") != "7" || !strings.Contains(string(a.body), `"error":"ConnectWiseAPI"`) {
			t.Fatalf("429: %d %v %s", a.status, a.header, a.body)
		}
	}
	if a := call(t, s, "GET", "/system/info", nil, "", nil); a.status != 200 || s.PendingFaults() != 0 {
		t.Fatalf("fault outlived Times: %d", a.status)
	}

	s.Inject(Fault{Path: "/service/tickets/*/notes", Status: 403})
	id := newTicket(t, s) // does not match the pattern
	if a := postJSON(t, s, "/service/tickets/"+itoa(id)+"/notes", map[string]any{"text": "x", "internalAnalysisFlag": true}); a.status != 403 ||
		a.envelope(t).Code != "Security" {
		t.Fatalf("403: %d %s", a.status, a.body)
	}

	s.Inject(Fault{Method: "POST", Path: "/service/tickets", Drop: true})
	before := len(s.Tickets())
	b, _ := json.Marshal(map[string]any{"summary": "x", "company": map[string]any{"id": 250}})
	if _, err := tryCall(context.Background(), s, "POST", "/service/tickets", b, "application/json", nil); err == nil {
		t.Fatal("dropped connection answered")
	}
	if len(s.Tickets()) != before {
		t.Fatal("dropped request was applied")
	}

	s.Inject(Fault{Method: "POST", Path: "/service/tickets", LoseResponse: true})
	if _, err := tryCall(context.Background(), s, "POST", "/service/tickets", b, "application/json", nil); err == nil {
		t.Fatal("lost response answered")
	}
	if len(s.Tickets()) != before+1 {
		t.Fatal("lost-response request was not applied")
	}

	s.Inject(Fault{Path: "/system/info", Delay: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := tryCall(ctx, s, "GET", "/system/info", nil, "", nil)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 10*time.Second {
		t.Fatalf("slow answer: %v after %v", err, time.Since(start))
	}

	reqs := s.Requests()
	last := reqs[len(reqs)-1]
	if last.APIPath != "/system/info" || last.Path != "/v4_6_release/apis/3.0/system/info" || last.Header.Get("clientId") != DefaultClientID {
		t.Fatalf("recorded %+v", last)
	}
	var lost Request
	for _, r := range reqs {
		if r.Method == "POST" && r.APIPath == "/service/tickets" {
			lost = r
		}
	}
	if lost.Status != 0 || !bytes.Equal(lost.Body, b) {
		t.Fatalf("lost request recorded as %d %s", lost.Status, lost.Body)
	}
}

func TestCodebaseMove(t *testing.T) {
	s := Start(DefaultConfig())
	defer s.Close()
	old := s.Endpoint()
	s.SetCodebase("v2025_1")
	if !strings.HasSuffix(s.Endpoint(), "/v2025_1/apis/3.0") {
		t.Fatalf("endpoint %s", s.Endpoint())
	}
	resp, err := s.Client().Get(old + "/system/info")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Fatalf("old codebase: %d", resp.StatusCode)
	}
	if a := call(t, s, "GET", "/login/companyinfo/mymsp", nil, "", nil); !strings.Contains(string(a.body), `"Codebase":"v2025_1/"`) {
		t.Fatalf("company info after move: %s", a.body)
	}
}

func TestTLS(t *testing.T) {
	s := StartTLS(DefaultConfig())
	defer s.Close()
	if !strings.HasPrefix(s.Endpoint(), "https://"+s.Host()+"/") {
		t.Fatalf("endpoint %s host %s", s.Endpoint(), s.Host())
	}
	if a := call(t, s, "GET", "/system/info", nil, "", nil); a.status != 200 {
		t.Fatalf("TLS call: %d", a.status)
	}
	if st := s.Settings(); st["connectwise.endpoint"] != s.Endpoint() || st["connectwise.company"] != "PVC01" || st["connectwise.board"] != "Backup Alerts" {
		t.Fatalf("settings %v", st)
	}
}

func TestListen(t *testing.T) {
	s, err := Listen("127.0.0.1:0", DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if a := call(t, s, "GET", "/system/info", nil, "", nil); a.status != 200 {
		t.Fatalf("status %d", a.status)
	}
	if _, err := Listen(s.Host(), DefaultConfig()); err == nil {
		t.Fatal("second listener on the same port")
	}
}
