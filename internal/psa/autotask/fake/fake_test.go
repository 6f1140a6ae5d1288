package fake_test

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"psagate/internal/psa/autotask/fake"
)

type client struct {
	t  *testing.T
	fk *fake.Server
	// headers sent with every request; tests change them to break auth.
	user, secret, code, ctype string
}

func start(t *testing.T, mut func(*fake.Config)) *client {
	t.Helper()
	cfg := fake.DefaultConfig()
	if mut != nil {
		mut(&cfg)
	}
	fk := fake.Start(cfg)
	t.Cleanup(fk.Close)
	return &client{t: t, fk: fk, user: cfg.Username, secret: cfg.Secret, code: cfg.IntegrationCode, ctype: "application/json"}
}

// do calls the zone: path is relative to ".../V1.0/" unless it starts with
// "http" or "/".
func (c *client) do(method, path, body string) (int, string) {
	c.t.Helper()
	u := c.fk.APIURL() + "V1.0/" + path
	switch {
	case strings.HasPrefix(path, "http"):
		u = path
	case strings.HasPrefix(path, "/"):
		u = "http://" + c.fk.ZoneHost() + path
	}
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if c.user != "" {
		req.Header.Set("UserName", c.user)
	}
	if c.secret != "" {
		req.Header.Set("Secret", c.secret)
	}
	if c.code != "" {
		req.Header.Set("ApiIntegrationCode", c.code)
	}
	if c.ctype != "" {
		req.Header.Set("Content-Type", c.ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (c *client) expect(method, path, body string, status int, contains string) string {
	c.t.Helper()
	st, b := c.do(method, path, body)
	if st != status || !strings.Contains(b, contains) {
		c.t.Errorf("%s %s %s: %d %s; want %d containing %q", method, path, body, st, b, status, contains)
	}
	return b
}

const minimal = `{"companyID":500,"title":"Test","status":1,"priority":2,"queueID":29683482,"dueDateTime":"2026-03-01T00:00:00Z"}`

func TestZoneDiscovery(t *testing.T) {
	c := start(t, nil)
	resp, err := http.Get(c.fk.ZoneURL() + "zoneInformation?user=" + url.QueryEscape(strings.ToUpper(fake.DefaultUsername)))
	if err != nil {
		t.Fatal(err)
	}
	var zi map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&zi)
	resp.Body.Close()
	if zi["url"] != c.fk.APIURL() || !strings.HasSuffix(zi["url"].(string), "/ATServicesRest/") || zi["ci"] != 30595.0 {
		t.Errorf("zone information = %v", zi)
	}
	resp, _ = http.Get(c.fk.ZoneURL() + "zoneInformation?user=nobody")
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 500 || !strings.Contains(string(b), "Zone information could not be determined") {
		t.Errorf("unknown user: %d %s", resp.StatusCode, b)
	}
	// The discovery host serves nothing else, and reports credentials.
	c.expect("GET", strings.Replace(c.fk.ZoneURL(), "/atservicesrest/v1.0/", "/ATServicesRest/V1.0/Version", 1), "", 404, "zone")
	if len(c.fk.CredentialLeaks()) != 1 {
		t.Errorf("credential leaks = %d, want 1", len(c.fk.CredentialLeaks()))
	}
}

func TestRoutesAndTransport(t *testing.T) {
	c := start(t, nil)
	c.expect("POST", "Tickets", minimal, 200, `"itemId":128926`)
	tests := []struct {
		method, path, body string
		status             int
		contains           string
	}{
		{"GET", "version", "", 200, "majorVersion"},
		{"GET", "TICKETS/128926", "", 200, `"ticketNumber":"T`},
		{"GET", "Tickets/999", "", 404, "errors"},
		{"PATCH", "Tickets/128926", `{"status":5}`, 405, "does not support http method 'PATCH'"},
		{"PUT", "Tickets/128926", `{"status":5}`, 405, "PUT"},
		{"DELETE", "Tickets/128926", "", 405, "DELETE"},
		{"POST", "TicketNotes", `{"ticketID":128926,"title":"t","description":"d","noteType":1,"publish":1}`, 404, "errors"},
		{"GET", "Widgets/1", "", 404, "errors"},
		{"GET", "/ATServicesRest/Tickets/128926", "", 404, "V1.0"},
		{"GET", "/ATServicesRest/V1.0//Tickets/128926", "", 404, "empty path segment"},
		{"GET", "/ATServicesRest/versioninformation", "", 200, "apiVersions"},
		{"GET", "Tickets/entityInformation", "", 200, `"canCreate":true`},
		{"GET", "Tickets/entityInformation/userDefinedFields", "", 200, `"fields":[]`},
		{"POST", "Tickets", "{not json", 500, "Invalid JSON"},
	}
	for _, tt := range tests {
		c.expect(tt.method, tt.path, tt.body, tt.status, tt.contains)
	}
	c.ctype = "text/plain"
	c.expect("POST", "Tickets", minimal, 415, "media type")
}

func TestAuth(t *testing.T) {
	c := start(t, nil)
	for _, mut := range []func(){
		func() { c.secret = "nope" },
		func() { c.secret = "" },
		func() { c.user = "" },
		func() { c.user = "someone@else.example" },
	} {
		c.user, c.secret = fake.DefaultUsername, fake.DefaultSecret
		mut()
		if st, b := c.do("GET", "Version", ""); st != 401 || b != "" {
			t.Errorf("bad credentials: %d %q, want 401 with an empty body", st, b)
		}
	}
	c.user, c.secret = fake.DefaultUsername, fake.DefaultSecret
	for _, code := range []string{"", "WRONG"} {
		c.code = code
		c.expect("GET", "Version", "", 500, `{"errors":["IntegrationCode is invalid."]}`)
	}
	for _, r := range c.fk.Requests() {
		if r.Status == 0 {
			t.Errorf("unanswered request %v", r)
		}
	}
}

func TestTicketValidation(t *testing.T) {
	c := start(t, func(cfg *fake.Config) { cfg.RequireQueue = true })
	tests := []struct{ body, want string }{
		{`{"title":"x","status":1,"priority":2,"queueID":29683482}`, "Missing required field: companyID."},
		{`{"companyID":500,"status":1,"priority":2,"queueID":29683482}`, "Missing required field: title."},
		{`{"companyID":500,"title":"x","status":1,"priority":2}`, "Missing required field: queueID."},
		{`{"companyID":500,"title":null,"status":1,"priority":2,"queueID":29683482}`, "Missing required field: title."},
		{`{"companyID":999,"title":"x","status":1,"priority":2,"queueID":29683482}`, "companyID of type: Company does not exist"},
		{`{"companyID":500,"title":"x","status":1,"priority":99,"queueID":29683482}`, "Picklist value [99] does not exist for priority."},
		{`{"companyID":500,"title":"x","status":1,"priority":6,"queueID":29683482}`, "inactive for priority"},
		{`{"companyID":500,"title":"x","status":1,"priority":2,"queueID":29683482,"issueType":10,"subIssueType":111}`, "not valid for issueType [10]"},
		{`{"companyID":500,"title":"x","status":1,"priority":2,"queueID":29683482,"subIssueType":101}`, "requires a value for issueType"},
		{`{"companyID":500,"title":"x","status":1,"priority":2,"queueID":29683482,"assignedResourceID":29682885}`, "you must assign both"},
		{`{"companyID":500,"title":"x","status":1,"priority":2,"queueID":29683482,"ticketNumber":"T1"}`, "read-only"},
		{`{"companyID":500,"title":"x","status":1,"priority":2,"queueID":29683482,"bogus":1}`, "'bogus' does not exist"},
		{`{"companyID":"500","title":"x","status":1,"priority":2,"queueID":29683482}`, "Unable to convert value for field companyID"},
		{`{"id":5,"companyID":500,"title":"x","status":1,"priority":2,"queueID":29683482}`, "must be 0"},
		// 254 BMP characters and one emoji are 256 UTF-16 units.
		{`{"companyID":500,"title":"` + strings.Repeat("ö", 254) + `😀","status":1,"priority":2,"queueID":29683482}`, "maximum length of 255"},
		{`{"companyID":500,"title":"x","description":"` + strings.Repeat("d", 8001) + `","status":1,"priority":2,"queueID":29683482}`, "maximum length of 8000"},
	}
	for _, tt := range tests {
		c.expect("POST", "Tickets", tt.body, 500, tt.want)
	}
	// Property names are case-insensitive, like the official samples.
	c.expect("POST", "Tickets", `{"CompanyID":500,"Title":"`+strings.Repeat("ö", 255)+`","Status":1,"Priority":2,"QueueID":29683482,"DueDateTime":"2026-03-01T00:00:00"}`, 200, "itemId")
	if n := len(c.fk.Tickets()); n != 1 {
		t.Errorf("%d tickets stored, want 1", n)
	}
}

func TestPatchAndPut(t *testing.T) {
	c := start(t, nil)
	c.expect("POST", "Tickets", minimal, 200, "itemId")
	c.expect("PATCH", "Tickets", `{"status":5}`, 500, "id of the Ticket to update is missing")
	c.expect("PATCH", "Tickets", `{"id":4242,"status":5}`, 500, "Unable to find")
	if b := c.expect("PATCH", "Tickets", `{"id":128926,"status":5}`, 200, ""); b != `{"itemId":128926}` {
		t.Errorf("PATCH answered %s", b)
	}
	tk := c.fk.Tickets()[0]
	if tk.Status != 5 || tk.CompletedDate.IsZero() || tk.Title != "Test" || tk.QueueID != 29683482 {
		t.Errorf("after PATCH: %+v", tk)
	}
	c.expect("PATCH", "Tickets", `{"id":128926,"status":1}`, 200, "itemId")
	if tk := c.fk.Tickets()[0]; !tk.CompletedDate.IsZero() {
		t.Error("reopened ticket keeps its completedDate")
	}
	// PUT replaces: an omitted required field is now missing.
	c.expect("PUT", "Tickets", `{"id":128926,"status":1,"priority":2,"companyID":500}`, 500, "Missing required field: title.")
	c.expect("PUT", "Tickets", `{"id":128926,"status":1,"priority":2,"companyID":500,"title":"replaced"}`, 200, "itemId")
	if tk := c.fk.Tickets()[0]; tk.QueueID != 0 || tk.Title != "replaced" || tk.TicketNumber == "" {
		t.Errorf("after PUT: %+v", tk)
	}
	b := c.expect("GET", "Tickets/128926", "", 200, `"queueID":null`)
	if strings.Contains(b, "Z\"") || !strings.Contains(b, `"createDate":"20`) {
		t.Errorf("datetimes must have no zone suffix: %s", b)
	}
}

func TestNotesAndAttachments(t *testing.T) {
	c := start(t, func(cfg *fake.Config) { cfg.MaxAttachmentBytes = 100; cfg.AttachmentWindowBytes = 250 })
	c.expect("POST", "Tickets", minimal, 200, "itemId")
	c.expect("POST", "Tickets/1/Notes", `{"title":"t","description":"d","noteType":1,"publish":1}`, 500, "ticketID of type: Ticket")
	c.expect("POST", "Tickets/128926/Notes", `{"description":"d","noteType":1,"publish":1}`, 500, "Missing required field: title.")
	c.expect("POST", "Tickets/128926/Notes", `{"title":"t","description":"d","noteType":9,"publish":1}`, 500, "for noteType")
	c.expect("POST", "Tickets/128926/Notes", `{"title":"`+strings.Repeat("t", 251)+`","description":"d","noteType":1,"publish":1}`, 500, "maximum length of 250")
	c.expect("POST", "Tickets/128926/Notes", `{"ticketID":5,"title":"t","description":"d","noteType":1,"publish":1}`, 500, "does not match")
	c.expect("POST", "Tickets/128926/Notes", `{"title":"t","description":"d","noteType":1,"publish":2}`, 200, `{"itemId":30500001}`)
	c.expect("GET", "Tickets/128926/Notes", "", 200, `"description":"d"`)

	att := func(data string) string {
		return `{"attachmentType":"FILE_ATTACHMENT","title":"a.txt","fullPath":"a.txt","publish":1,"data":"` + data + `"}`
	}
	c.expect("POST", "Tickets/128926/Attachments", `{"attachmentType":"URL","title":"a","fullPath":"a","publish":1}`, 500, "not supported")
	c.expect("POST", "Tickets/128926/Attachments", att("%%%"), 500, "not valid base64")
	c.expect("POST", "Tickets/128926/Attachments", att(base64.StdEncoding.EncodeToString(make([]byte, 101))), 500, "maximum attachment size is 100")
	hundred := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("x", 100)))
	c.expect("POST", "Tickets/128926/Attachments", att(hundred), 200, "itemId")
	c.expect("POST", "Tickets/128926/Attachments", att(hundred), 200, "itemId")
	c.expect("POST", "Tickets/128926/Attachments", att(hundred), 500, "upload limit exceeded")
	// Blocked for the window, even for a tiny file.
	c.expect("POST", "Tickets/128926/Attachments", att("eA=="), 500, "blocked")
	list := c.expect("GET", "Tickets/128926/Attachments", "", 200, `"contentType":"text/plain`)
	if strings.Contains(list, hundred) {
		t.Error("the attachment list carries the data")
	}
	c.expect("GET", "Tickets/128926/Attachments/29800001", "", 200, hundred)
	tk := c.fk.Tickets()[0]
	if len(tk.Notes) != 1 || tk.Notes[0].Publish != 2 || len(tk.Attachments) != 2 || string(tk.Attachments[0].Data) != strings.Repeat("x", 100) {
		t.Errorf("ticket = %+v", tk)
	}
}

func TestQueries(t *testing.T) {
	c := start(t, func(cfg *fake.Config) { cfg.PageSize = 2 })
	for i := range 5 {
		body := strings.Replace(minimal, `"title":"Test"`, `"title":"Backup failed `+string(rune('A'+i))+`","externalID":"ext-`+string(rune('a'+i))+`"`, 1)
		c.expect("POST", "Tickets", body, 200, "itemId")
	}
	c.expect("PATCH", "Tickets", `{"id":128928,"status":5}`, 200, "itemId")
	bad := []struct{ body, want string }{
		{`{}`, "must contain a filter"},
		{`{"filter":[]}`, "non-empty array"},
		{`{"filter":[{"op":"ne","field":"status","value":5}]}`, "Invalid filter operator 'ne'"},
		{`{"filter":[{"op":"startsWith","field":"title","value":"B"}]}`, "Invalid filter operator"},
		{`{"filter":[{"op":"EQ","field":"status","value":5}]}`, "Invalid filter operator 'EQ'"},
		{`{"filter":[{"op":"eq","field":"nosuch","value":5}]}`, "nosuch is not a field"},
		{`{"filter":[{"op":"eq","field":"creatorType","value":1}]}`, "not queryable"},
		{`{"filter":[{"op":"exist","field":"title","value":"x"}]}`, "takes no value"},
		{`{"filter":[{"op":"in","field":"status","value":5}]}`, "array value"},
		{`{"filter":[{"op":"or","items":[]}]}`, "non-empty items"},
		{`{"filter":[{"op":"eq","field":"status"}]}`, "needs a value"},
		{`{"MaxRecords":0,"filter":[{"op":"exist","field":"id"}]}`, "between 1 and 500"},
		{`{"MaxRecords":501,"filter":[{"op":"exist","field":"id"}]}`, "between 1 and 500"},
	}
	for _, tt := range bad {
		c.expect("POST", "Tickets/query", tt.body, 500, tt.want)
	}
	count := func(filter string) int {
		t.Helper()
		_, b := c.do("POST", "Tickets/query/count", `{"filter":`+filter+`}`)
		var r struct {
			QueryCount int `json:"queryCount"`
		}
		if err := json.Unmarshal([]byte(b), &r); err != nil {
			t.Fatalf("count %s: %s", filter, b)
		}
		return r.QueryCount
	}
	counts := map[string]int{
		`[{"op":"eq","field":"EXTERNALID","value":"EXT-C"}]`:                                                              1,
		`[{"op":"noteq","field":"status","value":5}]`:                                                                     4,
		`[{"op":"contains","field":"title","value":"FAILED b"}]`:                                                          1,
		`[{"op":"beginsWith","field":"title","value":"backup"}]`:                                                          5,
		`[{"op":"endsWith","field":"externalID","value":"-e"}]`:                                                           1,
		`[{"op":"in","field":"id","value":[128926,128930,1]}]`:                                                            2,
		`[{"op":"notIn","field":"id","value":[128926]}]`:                                                                  4,
		`[{"op":"exist","field":"completedDate"}]`:                                                                        1,
		`[{"op":"notExist","field":"description"}]`:                                                                       5,
		`[{"op":"gt","field":"id","value":128928}]`:                                                                       2,
		`[{"op":"lte","field":"id","value":"128927"}]`:                                                                    2,
		`[{"op":"or","items":[{"op":"eq","field":"status","value":5},{"op":"eq","field":"externalID","value":"ext-a"}]}]`: 2,
		`[{"op":"and","items":[{"op":"gte","field":"id","value":0},{"op":"eq","field":"queueID","value":29683482}]}]`:     5,
	}
	for f, want := range counts {
		if got := count(f); got != want {
			t.Errorf("count %s = %d, want %d", f, got, want)
		}
	}

	// Pages: POST the same body to nextPageUrl; GET there is refused.
	body := `{"filter":[{"op":"gte","field":"id","value":0}],"IncludeFields":["id","title"]}`
	var ids []float64
	st, b := c.do("POST", "Tickets/query", body)
	for page := 0; ; page++ {
		var r struct {
			Items       []map[string]any `json:"items"`
			PageDetails struct {
				NextPageURL *string `json:"nextPageUrl"`
			} `json:"pageDetails"`
		}
		if st != 200 || json.Unmarshal([]byte(b), &r) != nil {
			t.Fatalf("page %d: %d %s", page, st, b)
		}
		for _, it := range r.Items {
			ids = append(ids, it["id"].(float64))
			if _, ok := it["status"]; ok {
				t.Error("IncludeFields ignored")
			}
		}
		if r.PageDetails.NextPageURL == nil {
			break
		}
		next := *r.PageDetails.NextPageURL
		if !strings.Contains(next, "/query/next?paging=") {
			t.Fatalf("next = %s", next)
		}
		c.expect("GET", next, "", 405, "does not support http method 'GET'")
		c.expect("POST", next, `{"filter":[{"op":"gte","field":"id","value":1}]}`, 500, "same body")
		st, b = c.do("POST", next, body)
	}
	if len(ids) != 5 || ids[0] != 128926 || ids[4] != 128930 {
		t.Errorf("ids over pages = %v", ids)
	}
	// More than a page with IncludeFields lacking id.
	c.expect("POST", "Tickets/query", `{"filter":[{"op":"gte","field":"id","value":0}],"IncludeFields":["title"]}`, 500, "must contain id")

	// GET queries keep search on the next page.
	search := url.QueryEscape(`{"filter":[{"op":"gte","field":"id","value":0}]}`)
	b = c.expect("GET", "Tickets/query?search="+search, "", 200, "nextPageUrl")
	var r struct {
		PageDetails struct {
			NextPageURL string `json:"nextPageUrl"`
		} `json:"pageDetails"`
	}
	_ = json.Unmarshal([]byte(b), &r)
	if !strings.Contains(r.PageDetails.NextPageURL, "&search=") {
		t.Errorf("GET next page URL lacks search: %s", r.PageDetails.NextPageURL)
	}
	c.expect("GET", r.PageDetails.NextPageURL, "", 200, `"id":128928`)
	c.expect("POST", "Companies/query", `{"filter":[{"op":"eq","field":"companyName","value":"acme"}]}`, 200, `"id":501`)
	c.expect("GET", "Companies/500", "", 200, "Pinecrest Veterinary Clinic")
	c.expect("GET", "Companies/9", "", 404, "not found")
	c.expect("POST", "Resources/query", `{"filter":[{"op":"eq","field":"userName","value":"jdoe"}]}`, 200, "Jane")
	c.expect("GET", "TicketNotes/entityInformation/fields", "", 200, `"name":"noteType"`)
}

func TestFieldsAnswerPicklistsAsStrings(t *testing.T) {
	c := start(t, nil)
	b := c.expect("GET", "tickets/entityinformation/fields", "", 200, `"picklistValues":null`)
	var r struct {
		Fields []struct {
			Name           string            `json:"name"`
			PicklistValues []json.RawMessage `json:"picklistValues"`
			Parent         string            `json:"picklistParentValueField"`
		} `json:"fields"`
	}
	if err := json.Unmarshal([]byte(b), &r); err != nil {
		t.Fatal(err)
	}
	for _, f := range r.Fields {
		if f.Name == "status" && !strings.Contains(string(f.PicklistValues[1]), `"value":"5","label":"Complete"`) {
			t.Errorf("status value: %s", f.PicklistValues[1])
		}
		if f.Name == "subIssueType" && f.Parent != "issueType" {
			t.Errorf("subIssueType parent = %q", f.Parent)
		}
	}
}

func TestLimits(t *testing.T) {
	c := start(t, func(cfg *fake.Config) { cfg.Latency = 150 * time.Millisecond; cfg.RequestThreshold = 6 })
	var wg sync.WaitGroup
	statuses := make(chan string, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, b := c.do("GET", "Version", "")
			statuses <- http.StatusText(st) + " " + b
		}()
	}
	wg.Wait()
	close(statuses)
	rejected := 0
	for s := range statuses {
		if strings.Contains(s, "Thread Threshold Exceeded") {
			rejected++
		}
	}
	if rejected != 1 || c.fk.MaxInFlightSeen() != 4 {
		t.Errorf("4 concurrent calls: %d thread-limit rejections (want 1), max in flight %d", rejected, c.fk.MaxInFlightSeen())
	}
	c.expect("GET", "ThresholdInformation", "", 200, `"currentTimeframeRequestCount":5`)
	c.expect("GET", "Version", "", 200, "majorVersion")
	c.expect("GET", "Version", "", 429, "Request Threshold Exceeded")
	if c.fk.RequestCount() != 6 {
		t.Errorf("request count = %d", c.fk.RequestCount())
	}
}

func TestFaults(t *testing.T) {
	c := start(t, nil)
	c.fk.Inject(fake.Fault{Kind: fake.Fault503, Path: "Version", Count: 2, RetryAfter: "3"})
	c.expect("GET", "Tickets/entityInformation", "", 200, "info") // does not match
	c.expect("GET", "Version", "", 503, "Service Unavailable")
	c.expect("GET", "version", "", 503, "")
	c.expect("GET", "Version", "", 200, "majorVersion")

	c.fk.Inject(fake.Fault{Kind: fake.FaultLostResponse, Method: "POST", Path: "Tickets"})
	req, _ := http.NewRequest("POST", c.fk.APIURL()+"V1.0/Tickets", strings.NewReader(minimal))
	req.Header.Set("UserName", c.user)
	req.Header.Set("Secret", c.secret)
	req.Header.Set("ApiIntegrationCode", c.code)
	req.Header.Set("Content-Type", "application/json")
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatal("lost response answered")
	}
	if n := len(c.fk.Tickets()); n != 1 {
		t.Errorf("lost response: %d tickets stored, want 1", n)
	}

	c.fk.Inject(fake.Fault{Kind: fake.Fault500Envelope, Path: "Tickets/*/Notes", Message: "custom"})
	c.expect("POST", "Tickets/128926/Notes", `{}`, 500, `{"errors":["custom"]}`)

	old := c.fk.ZoneHost()
	c.fk.Inject(fake.Fault{Kind: fake.FaultZoneMoved})
	if st, _ := c.do("GET", "http://"+old+"/ATServicesRest/V1.0/Version", ""); st != 401 {
		t.Errorf("old zone answered %d, want 401", st)
	}
	c.expect("GET", "Version", "", 200, "majorVersion")
	if c.fk.PendingFaults() != 0 {
		t.Errorf("%d faults left", c.fk.PendingFaults())
	}
}
