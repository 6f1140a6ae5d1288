package connectwise

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"psagate/internal/psa"
	"psagate/internal/psa/connectwise/fake"
)

func TestHeadersOnEveryCall(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	ref := e.create(t)
	if err := e.p.AddNote(ctx, e.call(true), ref, psa.Note{Text: "n", Marker: "m1"}); err != nil {
		t.Fatal(err)
	}
	if err := e.p.Attach(ctx, e.call(true), ref, psa.Attachment{Name: "a.txt", Data: []byte("x"), Marker: "m2"}); err != nil {
		t.Fatal(err)
	}
	if err := e.p.Close(ctx, e.call(false), ref, psa.Note{Text: "fixed"}); err != nil {
		t.Fatal(err)
	}
	if err := e.p.Probe(ctx, e.st); err != nil {
		t.Fatal(err)
	}
	reqs := e.srv.Requests()
	if len(reqs) < 10 {
		t.Fatalf("only %d requests", len(reqs))
	}
	for _, r := range reqs {
		where := r.Method + " " + r.APIPath
		if r.Status < 200 || r.Status > 299 {
			t.Errorf("%s answered %d", where, r.Status)
		}
		if got := r.Header.Get("Authorization"); got != authHeader {
			t.Errorf("%s: Authorization %q", where, got)
		}
		if got := r.Header.Values("clientId"); len(got) != 1 || got[0] != fake.DefaultClientID {
			t.Errorf("%s: clientId %q", where, got)
		}
		if got := r.Header.Get("Accept"); got != "application/vnd.connectwise.com+json; version=2025.8" {
			t.Errorf("%s: Accept %q", where, got)
		}
		ct := r.Header.Get("Content-Type")
		switch {
		case r.Method == "GET" && ct != "":
			t.Errorf("%s: Content-Type %q on a GET", where, ct)
		case r.APIPath == "/system/documents" && r.Method == "POST":
			if !strings.HasPrefix(ct, "multipart/form-data; boundary=") {
				t.Errorf("%s: Content-Type %q", where, ct)
			}
		case r.Method != "GET" && ct != "application/json":
			t.Errorf("%s: Content-Type %q", where, ct)
		}
	}

	e.st["connectwise.api_version"] = "2024.1"
	if err := e.p.Probe(ctx, e.st); err != nil {
		t.Fatal(err)
	}
	reqs = e.srv.Requests()
	if got := reqs[len(reqs)-1].Header.Get("Accept"); got != "application/vnd.connectwise.com+json; version=2024.1" {
		t.Errorf("api_version override: Accept %q", got)
	}
}

func TestCreateBody(t *testing.T) {
	e := newEnv(t, nil)
	e.st["connectwise.contact"] = "jane.doe@pinecrest.example"
	e.st["connectwise.item"] = "server"
	ref, err := e.p.Create(context.Background(), e.call(false), psa.Ticket{
		Summary:     "Backup failed:\r\n PVC-SRV-DB2\x1b[31m",
		Description: "Job: nightly\r\nResult: Failed\x00\n",
		ExternalRef: "psagate:pinecrest:PVC-SRV-DB2:backup",
		Key:         "pinecrest/PVC-SRV-DB2/backup",
	})
	if err != nil {
		t.Fatal(err)
	}
	if ref.Provider != "connectwise" || ref.ID != "5001" {
		t.Fatalf("ref %+v", ref)
	}
	posts := e.requests("POST", "/service/tickets")
	if len(posts) != 1 {
		t.Fatalf("%d POSTs", len(posts))
	}
	want := `{"summary":"Backup failed: PVC-SRV-DB2[31m","recordType":"ServiceTicket","company":{"id":250},"board":{"id":12},` +
		`"status":{"id":101},"type":{"id":201},"subType":{"id":301},"item":{"id":401},"priority":{"id":4},"contact":{"id":700},` +
		`"initialDescription":"Job: nightly\nResult: Failed","externalXRef":"psagate:pinecrest:PVC-SRV-DB2:backup","processNotifications":true}`
	if string(posts[0].Body) != want {
		t.Fatalf("body\n got %s\nwant %s", posts[0].Body, want)
	}
	tk, _ := e.srv.Ticket(5001)
	if tk.CompanyID != 250 || tk.BoardID != 12 || tk.StatusID != 101 || tk.ContactID != 700 || tk.ItemID != 401 ||
		len(tk.Notes) != 1 || tk.Notes[0].Text != "Job: nightly\nResult: Failed" {
		t.Fatalf("stored %+v", tk)
	}

	// Optional names left out are left out of the body, for ConnectWise to default.
	for _, k := range []string{"status", "type", "subtype", "priority", "contact", "item"} {
		delete(e.st, "connectwise."+k)
	}
	if _, err := e.p.Create(context.Background(), e.call(false), psa.Ticket{Summary: "s", ExternalRef: "x2"}); err != nil {
		t.Fatal(err)
	}
	posts = e.requests("POST", "/service/tickets")
	want = `{"summary":"s","recordType":"ServiceTicket","company":{"id":250},"board":{"id":12},"externalXRef":"x2","processNotifications":true}`
	if string(posts[1].Body) != want {
		t.Fatalf("minimal body\n got %s\nwant %s", posts[1].Body, want)
	}
}

func TestCreateSummaryCut(t *testing.T) {
	e := newEnv(t, nil)
	cut := func(s string, keep int) string {
		return strings.TrimRight(string([]rune(s)[:keep]), " ") + "…"
	}
	german := strings.Repeat("Sicherung fehlgeschlagen für Wöchentliche-Dateiserver (Größe überschritten) ", 3)
	japanese := strings.Repeat("バックアップジョブが失敗しました：サーバー", 8)
	tests := []struct {
		name, summary, want string
	}{
		{"ascii 100 kept", strings.Repeat("a", 100), strings.Repeat("a", 100)},
		{"german", german, cut(german, 99)},
		{"japanese", japanese, cut(japanese, 99)},
		{"emoji count twice", strings.Repeat("💾", 60), strings.Repeat("💾", 49) + "…"},
		{"empty uses key", " \r\n ", "the-key"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ref, err := e.p.Create(context.Background(), e.call(false),
				psa.Ticket{Summary: tc.summary, ExternalRef: fmt.Sprintf("ref-%d", i), Key: "the-key"})
			if err != nil {
				t.Fatal(err)
			}
			id, _ := strconv.Atoi(ref.ID)
			tk, _ := e.srv.Ticket(id)
			if tk.Summary != tc.want || !utf8.ValidString(tk.Summary) || utf8.RuneCountInString(tk.Summary) > 100 {
				t.Fatalf("summary %q (%d runes), want %q", tk.Summary, utf8.RuneCountInString(tk.Summary), tc.want)
			}
		})
	}
}

func TestCreateRetryAfterLostResponse(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	// Longer than the field: stored cut to 100, and found again by the cut value.
	xref := "psagate:pinecrest:" + strings.Repeat("Wöchentliche-Dateiserver/", 5) + "job"
	tk := psa.Ticket{Summary: "Backup failed", Description: "d", ExternalRef: xref, Key: "k"}

	e.srv.Inject(fake.Fault{Method: "POST", Path: "/service/tickets", LoseResponse: true})
	_, err := e.p.Create(ctx, e.call(false), tk)
	if pe := asPSAError(t, err); pe.Kind != psa.Transient {
		t.Fatalf("lost response: %v is %v, want transient", err, pe.Kind)
	}
	if n := len(e.srv.Tickets()); n != 1 {
		t.Fatalf("the lost POST should have created the ticket, have %d", n)
	}

	ref, err := e.p.Create(ctx, e.call(true), tk)
	if err != nil {
		t.Fatal(err)
	}
	all := e.srv.Tickets()
	if len(all) != 1 || ref.ID != strconv.Itoa(all[0].ID) {
		t.Fatalf("retry made a duplicate or returned another ticket: ref %v, tickets %d", ref, len(all))
	}
	wantXRef := string([]rune(xref)[:100])
	if all[0].ExternalXRef != wantXRef {
		t.Fatalf("externalXRef %q, want %q", all[0].ExternalXRef, wantXRef)
	}
	gets := e.requests("GET", "/service/tickets")
	if len(gets) != 1 || gets[0].Query.Get("conditions") != `externalXRef="`+wantXRef+`"` {
		t.Fatalf("search %v", gets)
	}
	if n := len(e.requests("POST", "/service/tickets")); n != 1 {
		t.Fatalf("%d POSTs, want only the lost one", n)
	}

	// A retry whose first attempt never arrived creates the ticket.
	e.srv.Inject(fake.Fault{Method: "POST", Path: "/service/tickets", Drop: true})
	tk2 := psa.Ticket{Summary: "other", ExternalRef: "psagate:other\"quoted\"", Key: "k2"}
	if _, err := e.p.Create(ctx, e.call(false), tk2); psa.KindOf(err) != psa.Transient {
		t.Fatalf("dropped: %v", err)
	}
	ref2, err := e.p.Create(ctx, e.call(true), tk2)
	if err != nil || ref2.ID == ref.ID || len(e.srv.Tickets()) != 2 {
		t.Fatalf("retry after a drop: %v %v, %d tickets", ref2, err, len(e.srv.Tickets()))
	}
	// And a second retry finds it, quotes and all.
	ref3, err := e.p.Create(ctx, e.call(true), tk2)
	if err != nil || ref3 != ref2 || len(e.srv.Tickets()) != 2 {
		t.Fatalf("second retry: %v %v, %d tickets", ref3, err, len(e.srv.Tickets()))
	}
}

func TestAddNoteFlags(t *testing.T) {
	e := newEnv(t, nil)
	ref := e.create(t)
	tests := []struct {
		kind psa.NoteKind
		want string
	}{
		{"", `{"text":"Repeat alert\n\npsagate-ref: j1","detailDescriptionFlag":true,"internalAnalysisFlag":false,"resolutionFlag":false,"processNotifications":false}`},
		{psa.NoteDiscussion, `{"text":"Repeat alert\n\npsagate-ref: j1","detailDescriptionFlag":true,"internalAnalysisFlag":false,"resolutionFlag":false,"processNotifications":false}`},
		{psa.NoteInternal, `{"text":"Repeat alert\n\npsagate-ref: j1","detailDescriptionFlag":false,"internalAnalysisFlag":true,"resolutionFlag":false,"processNotifications":false}`},
		{psa.NoteResolution, `{"text":"Repeat alert\n\npsagate-ref: j1","detailDescriptionFlag":false,"internalAnalysisFlag":false,"resolutionFlag":true,"processNotifications":false}`},
	}
	path := "/service/tickets/" + ref.ID + "/notes"
	for i, tc := range tests {
		if err := e.p.AddNote(context.Background(), e.call(false), ref, psa.Note{Text: "Repeat alert\r\n", Kind: tc.kind, Marker: "j1"}); err != nil {
			t.Fatal(err)
		}
		posts := e.requests("POST", path)
		if string(posts[i].Body) != tc.want {
			t.Errorf("kind %q:\n got %s\nwant %s", tc.kind, posts[i].Body, tc.want)
		}
	}
	// No marker: no marker line; no text at all still makes a valid note.
	if err := e.p.AddNote(context.Background(), e.call(false), ref, psa.Note{}); err != nil {
		t.Fatal(err)
	}
	posts := e.requests("POST", path)
	if !strings.HasPrefix(string(posts[len(posts)-1].Body), `{"text":"(no text)",`) {
		t.Errorf("empty note body %s", posts[len(posts)-1].Body)
	}
}

func TestAddNoteRetryPagesThroughNotes(t *testing.T) {
	e := newEnv(t, func(c *fake.Config) { c.PageSizeLimit = 2 })
	ctx := context.Background()
	var notes []fake.Note
	for i := range 5 {
		notes = append(notes, fake.Note{Text: fmt.Sprintf("old %d\n\npsagate-ref: job%d0", i, i), DetailDescriptionFlag: true})
	}
	tk := e.srv.AddTicket(fake.Ticket{Summary: "s", CompanyID: 250, BoardID: 12, StatusID: 101, Notes: notes})
	ref := psa.TicketRef{Provider: "connectwise", ID: strconv.Itoa(tk.ID)}
	note := psa.Note{Text: "Repeat at 10:00", Marker: "job4"} // "job40" is on page 3, and is not "job4"

	e.srv.Inject(fake.Fault{Method: "POST", Path: "/service/tickets/*/notes", LoseResponse: true})
	if err := e.p.AddNote(ctx, e.call(false), ref, note); psa.KindOf(err) != psa.Transient {
		t.Fatalf("lost note: %v", err)
	}
	if err := e.p.AddNote(ctx, e.call(true), ref, note); err != nil {
		t.Fatal(err)
	}
	got, _ := e.srv.Ticket(tk.ID)
	n := 0
	for _, nt := range got.Notes {
		if strings.HasSuffix(nt.Text, "psagate-ref: job4") {
			n++
		}
	}
	if n != 1 || len(got.Notes) != 6 {
		t.Fatalf("%d notes with the marker, %d notes in all; want 1 and 6", n, len(got.Notes))
	}
	gets := e.requests("GET", "/service/tickets/"+ref.ID+"/notes")
	if len(gets) != 3 || gets[2].Query.Get("page") != "3" {
		t.Fatalf("note pages read: %d", len(gets))
	}

	// A retry of a note whose first attempt never arrived writes it.
	if err := e.p.AddNote(ctx, e.call(true), ref, psa.Note{Text: "x", Marker: "job1"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := e.srv.Ticket(tk.ID); len(got.Notes) != 7 {
		t.Fatalf("note with a new marker not written: %d notes", len(got.Notes))
	}
}

func TestAttach(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	ref := e.create(t)
	png := []byte("\x89PNG\r\n\x1a\n\x00binary")
	a := psa.Attachment{Name: `C:\shots\Boot "VM" Prüfung.png`, ContentType: "image/png", Data: png, Marker: "att-1"}

	e.srv.Inject(fake.Fault{Method: "POST", Path: "/system/documents", LoseResponse: true})
	if err := e.p.Attach(ctx, e.call(false), ref, a); psa.KindOf(err) != psa.Transient {
		t.Fatalf("lost upload: %v", err)
	}
	if err := e.p.Attach(ctx, e.call(true), ref, a); err != nil {
		t.Fatal(err)
	}
	id, _ := strconv.Atoi(ref.ID)
	tk, _ := e.srv.Ticket(id)
	if len(tk.Documents) != 1 {
		t.Fatalf("%d documents, want 1", len(tk.Documents))
	}
	d := tk.Documents[0]
	if !bytes.Equal(d.Data, png) || d.FileName != "Boot 'VM' Prüfung.png" || d.ContentType != "image/png" || !d.PrivateFlag ||
		d.Title != "Boot 'VM' Prüfung.png (psagate-ref: att-1)" {
		t.Fatalf("document %+v", d)
	}

	// The exact multipart parts, in order.
	post := e.requests("POST", "/system/documents")[0]
	_, params, err := mime.ParseMediaType(post.Header.Get("Content-Type"))
	if err != nil {
		t.Fatal(err)
	}
	mr := multipart.NewReader(bytes.NewReader(post.Body), params["boundary"])
	type part struct{ disp, ctype, body string }
	var parts []part
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(p)
		parts = append(parts, part{p.Header.Get("Content-Disposition"), p.Header.Get("Content-Type"), string(b)})
	}
	want := []part{
		{`form-data; name="file"; filename="Boot 'VM' Prüfung.png"`, "image/png", string(png)},
		{`form-data; name="recordType"`, "", "Ticket"},
		{`form-data; name="recordId"`, "", ref.ID},
		{`form-data; name="title"`, "", "Boot 'VM' Prüfung.png (psagate-ref: att-1)"},
		{`form-data; name="privateFlag"`, "", "true"},
	}
	if fmt.Sprint(parts) != fmt.Sprint(want) {
		t.Fatalf("parts\n got %q\nwant %q", parts, want)
	}
	lists := e.requests("GET", "/system/documents")
	if len(lists) != 1 || lists[0].Query.Get("recordType") != "Ticket" || lists[0].Query.Get("recordId") != ref.ID {
		t.Fatalf("document listing %+v", lists)
	}
}

func TestAttachTooLargeBecomesNote(t *testing.T) {
	e := newEnv(t, func(c *fake.Config) { c.MaxDocumentBytes = 4 })
	ref := e.create(t)
	err := e.p.Attach(context.Background(), e.call(false), ref,
		psa.Attachment{Name: "big.bin", Data: []byte("0123456789"), Marker: "att-2"})
	if err != nil {
		t.Fatal(err)
	}
	id, _ := strconv.Atoi(ref.ID)
	tk, _ := e.srv.Ticket(id)
	last := tk.Notes[len(tk.Notes)-1]
	if len(tk.Documents) != 0 || !last.InternalAnalysisFlag || !strings.Contains(last.Text, `could not attach "big.bin" (10 bytes, application/octet-stream)`) ||
		!strings.Contains(last.Text, "HTTP 413") || !strings.HasSuffix(last.Text, "psagate-ref: att-2") {
		t.Fatalf("documents %d, note %+v", len(tk.Documents), last)
	}
}

func TestCloseAndReopen(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	ref := e.create(t)
	id, _ := strconv.Atoi(ref.ID)
	patchPath := "/service/tickets/" + ref.ID

	if err := e.p.Close(ctx, e.call(false), ref, psa.Note{Text: "Backup succeeded", Marker: "close-1"}); err != nil {
		t.Fatal(err)
	}
	tk, _ := e.srv.Ticket(id)
	// "Closed (old)" sorts first but is inactive; "Closed" (103) is the first active closed status.
	if !tk.ClosedFlag || tk.StatusID != 103 || tk.ClosedBy != "psagate-api" || tk.ClosedDate.IsZero() {
		t.Fatalf("not closed: %+v", tk)
	}
	res := tk.Notes[len(tk.Notes)-1]
	if !res.ResolutionFlag || res.DetailDescriptionFlag || res.Text != "Backup succeeded\n\npsagate-ref: close-1" {
		t.Fatalf("resolution note %+v", res)
	}
	patches := e.requests("PATCH", patchPath)
	if len(patches) != 1 || string(patches[0].Body) != `[{"op":"replace","path":"status","value":{"id":103}}]` {
		t.Fatalf("patches %+v", patches)
	}
	// The note comes before the PATCH.
	var order []string
	for _, r := range e.srv.Requests() {
		if r.Method != "GET" {
			order = append(order, r.Method+" "+r.APIPath)
		}
	}
	if got := strings.Join(order[len(order)-2:], ", "); got != "POST "+patchPath+"/notes, PATCH "+patchPath {
		t.Fatalf("order: %s", got)
	}

	// Closing again (a retry whose note arrived): no second note, no second PATCH.
	if err := e.p.Close(ctx, e.call(true), ref, psa.Note{Text: "Backup succeeded", Marker: "close-1"}); err != nil {
		t.Fatal(err)
	}
	tk2, _ := e.srv.Ticket(id)
	if len(e.requests("PATCH", patchPath)) != 1 || len(tk2.Notes) != len(tk.Notes) {
		t.Fatalf("second close wrote: %d patches, %d notes", len(e.requests("PATCH", patchPath)), len(tk2.Notes))
	}

	// Reopen moves to the configured status and adds the note.
	e.st["connectwise.status"] = "In Progress"
	if err := e.p.Reopen(ctx, e.call(false), ref, psa.Note{Text: "Failed again", Marker: "re-1"}); err != nil {
		t.Fatal(err)
	}
	tk3, _ := e.srv.Ticket(id)
	patches = e.requests("PATCH", patchPath)
	if tk3.ClosedFlag || tk3.StatusID != 102 || string(patches[len(patches)-1].Body) != `[{"op":"replace","path":"status","value":{"id":102}}]` ||
		!tk3.Notes[len(tk3.Notes)-1].DetailDescriptionFlag {
		t.Fatalf("reopen: %+v", tk3)
	}

	// closed_status by name.
	e.st["connectwise.closed_status"] = "closed - auto"
	if err := e.p.Close(ctx, e.call(false), ref, psa.Note{Text: "ok"}); err != nil {
		t.Fatal(err)
	}
	if tk4, _ := e.srv.Ticket(id); tk4.StatusID != 104 || !tk4.ClosedFlag {
		t.Fatalf("closed_status: %+v", tk4)
	}

	// Reopen without a configured status goes to the board's default status.
	delete(e.st, "connectwise.status")
	if err := e.p.Reopen(ctx, e.call(false), ref, psa.Note{Text: "again"}); err != nil {
		t.Fatal(err)
	}
	if tk5, _ := e.srv.Ticket(id); tk5.StatusID != 101 || tk5.ClosedFlag {
		t.Fatalf("reopen to default: %+v", tk5)
	}

	// A closed_status that is not closed is refused before anything is written.
	e.st["connectwise.closed_status"] = "In Progress"
	before, _ := e.srv.Ticket(id)
	err := e.p.Close(ctx, e.call(false), ref, psa.Note{Text: "x"})
	if pe := asPSAError(t, err); pe.Kind != psa.Permanent ||
		!strings.Contains(pe.Message, `connectwise.closed_status "In Progress" is not a closed status of board "Backup Alerts"; closed statuses: "Closed", "Closed - Auto"`) {
		t.Fatalf("not-closed closed_status: %v", err)
	}
	if after, _ := e.srv.Ticket(id); len(after.Notes) != len(before.Notes) {
		t.Fatal("a note was written although closing could not work")
	}

	// Unknown ticket: permanent.
	err = e.p.Close(ctx, e.call(false), psa.TicketRef{Provider: "connectwise", ID: "424242"}, psa.Note{Text: "x"})
	if pe := asPSAError(t, err); pe.Kind != psa.Permanent || pe.Status != 404 {
		t.Fatalf("unknown ticket: %v", err)
	}
	err = e.p.AddNote(ctx, e.call(false), psa.TicketRef{Provider: "autotask", ID: "1"}, psa.Note{Text: "x"})
	if pe := asPSAError(t, err); pe.Kind != psa.Permanent {
		t.Fatalf("foreign ref: %v", err)
	}
}

func TestNameResolution(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	tests := []struct {
		key, value string
		want       string // "" = resolves
	}{
		{"board", "backup alerts", ""},
		{"board", "12", ""},
		{"status", "102", ""},
		{"contact", "Tom Weber", ""},
		{"contact", "701", ""},
		{"board", "Backup Alertz", `connectwise.board "Backup Alertz" does not exist in ConnectWise; valid boards: "Help Desk", "Backup Alerts", "Vault Alerts"`},
		{"status", "Open", `connectwise.status "Open" does not exist in ConnectWise; valid statuses of board "Backup Alerts": "New", "In Progress", "Closed", "Closed - Auto"`},
		{"status", "Closed (old)", `connectwise.status "Closed (old)" is inactive in ConnectWise`},
		{"type", "Backups", `connectwise.type "Backups" does not exist in ConnectWise; valid types of board "Backup Alerts": "Backup", "Monitoring"`},
		{"subtype", "Fail", `valid subtypes of board "Backup Alerts": "Failure", "Warning"`},
		{"item", "Laptop", `valid items of board "Backup Alerts": "Server", "Workstation"`},
		{"priority", "Priority 9", `connectwise.priority "Priority 9" does not exist in ConnectWise; valid priorities: "Priority 1 - Emergency Response", "Priority 2 - Quick Response", "Priority 3 - Normal Response", "Priority 4 - Schedule Maintenance"`},
		{"company", "NOPE01", `connectwise.company "NOPE01" is not a company identifier in ConnectWise; some identifiers: "ACME01", "MyMSP", "OLD01", "PVC01"`},
		{"company", "", `connectwise.company is not set`},
		{"contact", "Nobody", `connectwise.contact "Nobody" is not a contact of company "PVC01"; valid contacts: "Jane Doe", "Tom Weber"`},
		{"contact", "John Smith", `is not a contact of company "PVC01"`},
	}
	for _, tc := range tests {
		t.Run(tc.key+"="+tc.value, func(t *testing.T) {
			st := psa.Settings{}
			for k, v := range e.st {
				st[k] = v
			}
			st["connectwise."+tc.key] = tc.value
			before := len(e.srv.Tickets())
			_, err := e.p.Create(ctx, psa.Call{Settings: st}, psa.Ticket{Summary: "s", ExternalRef: "r-" + tc.key + tc.value})
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			pe := asPSAError(t, err)
			if pe.Kind != psa.Permanent || !strings.Contains(pe.Message, tc.want) {
				t.Fatalf("error %v (%v), want %q", err, pe.Kind, tc.want)
			}
			if len(e.srv.Tickets()) != before {
				t.Fatal("a ticket was created")
			}
		})
	}

	// Names are read once and cached; a miss reads the list once more.
	e2 := newEnv(t, nil)
	for range 2 {
		e2.create(t)
	}
	if n := len(e2.requests("GET", "/service/boards")); n != 1 {
		t.Fatalf("boards read %d times for two creates", n)
	}
	e2.st["connectwise.board"] = "Nope"
	if _, err := e2.p.Create(ctx, e2.call(false), psa.Ticket{Summary: "s"}); err == nil {
		t.Fatal("unknown board accepted")
	}
	if n := len(e2.requests("GET", "/service/boards")); n != 2 {
		t.Fatalf("boards read %d times after a miss, want 2", n)
	}
}

func TestErrorClasses(t *testing.T) {
	validation := `{"code":"InvalidObject","message":"ticket object is invalid","errors":[{"code":"NotFound",` +
		`"message":"Service Status 17 not found for Service Board 21","resource":"ticket","field":"status/id"}]}`
	echo := `{"code":"Weird","message":"bad key ` + fake.DefaultPrivateKey + ` for ` + fake.DefaultPublicKey +
		` header ` + authHeader + ` client ` + fake.DefaultClientID + `"}`
	tests := []struct {
		name       string
		fault      fake.Fault
		timeout    string
		kind       psa.Kind
		status     int
		retryAfter time.Duration
		field      string
		msg        []string
	}{
		{"401", fake.Fault{Status: 401}, "", psa.Auth, 401, 0, "",
			[]string{"The supplied authentication is incorrect", "connectwise.public_key and connectwise.private_key", `connectwise.company_id "mymsp"`}},
		{"403", fake.Fault{Method: "POST", Path: "/service/tickets", Status: 403}, "", psa.Auth, 403, 0, "",
			[]string{"You do not have security permission", "Service Desk > Service Tickets: Add"}},
		{"429", fake.Fault{Status: 429, RetryAfter: "12"}, "", psa.Transient, 429, 12 * time.Second, "",
			[]string{"rate limited by ConnectWise: Too many requests"}},
		{"500", fake.Fault{Status: 500}, "", psa.Transient, 500, 0, "", []string{"An error has occurred"}},
		{"503 html", fake.Fault{Status: 503, Body: "<html>down</html>"}, "", psa.Transient, 503, 0, "", []string{"Service Unavailable"}},
		{"timeout", fake.Fault{Delay: time.Minute}, "150ms", psa.Transient, 0, 0, "", []string{"no answer from", "within 150ms (connectwise.timeout)"}},
		{"reset", fake.Fault{Method: "POST", Drop: true}, "", psa.Transient, 0, 0, "", []string{"POST /service/tickets: http://127.0.0.1", "closed the connection without an answer"}},
		{"400 validation", fake.Fault{Method: "POST", Status: 400, Body: validation}, "", psa.Permanent, 400, 0, "status/id",
			[]string{"ticket object is invalid: Service Status 17 not found for Service Board 21 (check connectwise.status)"}},
		{"409", fake.Fault{Method: "POST", Status: 409, Body: `{"code":"Conflict","message":"record in use"}`}, "", psa.Permanent, 409, 0, "", []string{"record in use"}},
		{"415", fake.Fault{Method: "POST", Status: 415}, "", psa.Permanent, 415, 0, "", nil},
		{"secrets echoed", fake.Fault{Method: "POST", Status: 400, Body: echo}, "", psa.Permanent, 400, 0, "", []string{"bad key [redacted]"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			if tc.timeout != "" {
				e.st["connectwise.timeout"] = tc.timeout
			}
			e.srv.Inject(tc.fault)
			start := time.Now()
			_, err := e.p.Create(context.Background(), e.call(false), psa.Ticket{Summary: "s", ExternalRef: "x"})
			pe := asPSAError(t, err)
			if pe.Kind != tc.kind || pe.Status != tc.status || pe.RetryAfter != tc.retryAfter || pe.Field != tc.field || pe.Provider != "connectwise" || pe.Op != "create" {
				t.Fatalf("%v: kind %v status %d retry %v field %q", err, pe.Kind, pe.Status, pe.RetryAfter, pe.Field)
			}
			for _, m := range tc.msg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("%q does not contain %q", err, m)
				}
			}
			if psa.KindOf(err) != tc.kind {
				t.Errorf("psa.KindOf = %v", psa.KindOf(err))
			}
			if tc.name == "timeout" {
				if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 10*time.Second {
					t.Errorf("timeout: %v after %v", err, time.Since(start))
				}
			}
		})
	}

	t.Run("403 on close names the permission", func(t *testing.T) {
		e := newEnv(t, nil)
		ref := e.create(t)
		e.srv.Inject(fake.Fault{Method: "PATCH", Status: 403})
		err := e.p.Close(context.Background(), e.call(false), ref, psa.Note{Text: "x"})
		if pe := asPSAError(t, err); pe.Kind != psa.Auth || !strings.Contains(pe.Message, "Close Service Tickets") {
			t.Fatalf("%v", err)
		}
	})
	t.Run("wrong clientId", func(t *testing.T) {
		e := newEnv(t, nil)
		e.st["connectwise.client_id"] = "11111111-2222-3333-4444-555555555555"
		err := e.p.Probe(context.Background(), e.st)
		pe := asPSAError(t, err)
		if pe.Kind != psa.Auth || pe.Status != 400 || !strings.Contains(pe.Message, "Check connectwise.client_id") ||
			strings.Contains(err.Error(), "11111111-2222") {
			t.Fatalf("%v", err)
		}
		if n := len(e.srv.Requests()); n != 1 {
			t.Fatalf("%d requests: a refused clientId must not be retried", n)
		}
	})
	t.Run("wrong private key", func(t *testing.T) {
		e := newEnv(t, nil)
		e.st["connectwise.private_key"] = "WrongPrivateKey99"
		_, err := e.p.Create(context.Background(), e.call(false), psa.Ticket{Summary: "s"})
		pe := asPSAError(t, err)
		if pe.Kind != psa.Auth || pe.Status != 401 || strings.Contains(err.Error(), "WrongPrivateKey99") {
			t.Fatalf("%v", err)
		}
	})
	t.Run("missing settings pause the provider", func(t *testing.T) {
		e := newEnv(t, nil)
		delete(e.st, "connectwise.private_key")
		_, err := e.p.Create(context.Background(), e.call(false), psa.Ticket{Summary: "s"})
		if pe := asPSAError(t, err); pe.Kind != psa.Auth || !strings.Contains(pe.Message, "connectwise.private_key is not set") {
			t.Fatalf("%v", err)
		}
		if len(e.srv.Requests()) != 0 {
			t.Fatal("requests sent with incomplete settings")
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		e := newEnv(t, nil)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := e.p.Create(ctx, e.call(false), psa.Ticket{Summary: "s"})
		if pe := asPSAError(t, err); pe.Kind != psa.Transient || !errors.Is(err, context.Canceled) {
			t.Fatalf("%v", err)
		}
	})
}

// TestConcurrentConnections runs creates for two clients with different
// servers, companies and boards through one Provider at once.
func TestConcurrentConnections(t *testing.T) {
	a := newEnv(t, nil)
	cfgB := fake.DefaultConfig()
	cfgB.CompanyID, cfgB.PublicKey, cfgB.PrivateKey = "othermsp", "OtherPublicKey01", "OtherPrivateKey2"
	srvB := fake.Start(cfgB)
	t.Cleanup(srvB.Close)
	stB := srvB.Settings()
	stB["connectwise.company"] = "ACME01"
	stB["connectwise.board"] = "Help Desk"
	stB["connectwise.type"] = "Incident"

	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 10 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			_, err := a.p.Create(context.Background(), a.call(false), psa.Ticket{Summary: "a", ExternalRef: fmt.Sprint("a", i)})
			errs <- err
		}()
		go func() {
			defer wg.Done()
			_, err := a.p.Create(context.Background(), psa.Call{Settings: stB}, psa.Ticket{Summary: "b", ExternalRef: fmt.Sprint("b", i)})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, tk := range a.srv.Tickets() {
		if tk.CompanyID != 250 || tk.BoardID != 12 || tk.TypeID != 201 {
			t.Fatalf("server A ticket %+v", tk)
		}
	}
	for _, tk := range srvB.Tickets() {
		if tk.CompanyID != 251 || tk.BoardID != 1 || tk.TypeID != 11 {
			t.Fatalf("server B ticket %+v", tk)
		}
	}
	if len(a.srv.Tickets()) != 10 || len(srvB.Tickets()) != 10 {
		t.Fatalf("%d and %d tickets", len(a.srv.Tickets()), len(srvB.Tickets()))
	}
	if n := len(a.p.conns); n != 2 {
		t.Fatalf("%d connection states, want 2", n)
	}
}
