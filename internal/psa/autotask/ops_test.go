package autotask_test

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"

	"psagate/internal/psa"
	"psagate/internal/psa/autotask"
	"psagate/internal/psa/autotask/fake"
)

func TestAddNoteBodyAndRetryWithoutDuplicate(t *testing.T) {
	e := newEnv(t, nil, nil)
	ref := e.mustCreate(e.s, sample)
	ctx := context.Background()
	note := psa.Note{Title: "Repeated failure", Text: "Failed again at 10:30.\nSame VSS error.", Marker: "job-77"}

	e.fk.Inject(fake.Fault{Kind: fake.FaultLostResponse, Method: http.MethodPost, Path: "Tickets/*/Notes"})
	if err := e.p.AddNote(ctx, psa.Call{Settings: e.s}, ref, note); psa.KindOf(err) != psa.Transient {
		t.Fatalf("lost response: %v", err)
	}
	if err := e.p.AddNote(ctx, psa.Call{Settings: e.s, Retry: true}, ref, note); err != nil {
		t.Fatalf("retry: %v", err)
	}
	tk := e.ticket(ref)
	if len(tk.Notes) != 1 {
		t.Fatalf("%d notes, want 1", len(tk.Notes))
	}
	n := tk.Notes[0]
	lines := strings.Split(n.Description, "\n")
	if n.Title != "Repeated failure" || n.NoteType != 1 || n.Publish != 1 ||
		lines[len(lines)-1] != psa.MarkerLine("job-77") || !strings.HasPrefix(n.Description, "Failed again at 10:30.\nSame VSS error.") {
		t.Errorf("note = %+v", n)
	}
	posts := e.reqs(http.MethodPost, "/Notes")
	if len(posts) != 1 {
		t.Fatalf("%d note POSTs, want 1", len(posts))
	}
	body := bodyMap(t, posts[0])
	if body["ticketID"] != float64(tk.ID) || body["noteType"] != 1.0 || body["publish"] != 1.0 || len(body) != 5 {
		t.Errorf("note body: %s", posts[0].Body)
	}

	// Labels for the note settings; a retry with nothing to find writes.
	s := e.with("autotask.note_type", "Internal Notes", "autotask.note_publish", "Internal Only")
	if err := e.p.AddNote(ctx, psa.Call{Settings: s, Retry: true}, ref, psa.Note{Text: "first line is the title\nmore", Marker: "job-78"}); err != nil {
		t.Fatal(err)
	}
	tk = e.ticket(ref)
	if len(tk.Notes) != 2 || tk.Notes[1].NoteType != 2 || tk.Notes[1].Publish != 2 || tk.Notes[1].Title != "first line is the title" {
		t.Errorf("second note = %+v", tk.Notes[len(tk.Notes)-1])
	}
}

func TestAddNoteCutsLongTextKeepingTheMarker(t *testing.T) {
	e := newEnv(t, nil, nil)
	ref := e.mustCreate(e.s, sample)
	text := strings.Repeat("Größe 😀 ", 5000)
	if err := e.p.AddNote(context.Background(), psa.Call{Settings: e.s}, ref, psa.Note{Title: strings.Repeat("T", 300), Text: text, Marker: "m-1"}); err != nil {
		t.Fatal(err)
	}
	n := e.ticket(ref).Notes[0]
	if utf16Len(n.Description) > 32000 || !strings.HasSuffix(n.Description, psa.MarkerLine("m-1")) || !strings.Contains(n.Description, "cut by psagate") {
		t.Errorf("description: %d units, ends %q", utf16Len(n.Description), n.Description[len(n.Description)-40:])
	}
	if utf16Len(n.Title) > 250 {
		t.Errorf("title %d units", utf16Len(n.Title))
	}
}

func TestAttachUploadsAndRetryDoesNotDuplicate(t *testing.T) {
	e := newEnv(t, nil, nil)
	ref := e.mustCreate(e.s, sample)
	ctx := context.Background()
	png := append([]byte("\x89PNG\r\n\x1a\n"), bytes.Repeat([]byte{0, 1, 2, 250}, 1000)...)
	a := psa.Attachment{Name: `C:\shots\boot screen.png`, ContentType: "image/png", Data: png, Marker: "att-1"}

	e.fk.Inject(fake.Fault{Kind: fake.FaultLostResponse, Method: http.MethodPost, Path: "Tickets/*/Attachments"})
	if err := e.p.Attach(ctx, psa.Call{Settings: e.s}, ref, a); psa.KindOf(err) != psa.Transient {
		t.Fatalf("lost response: %v", err)
	}
	if err := e.p.Attach(ctx, psa.Call{Settings: e.s, Retry: true}, ref, a); err != nil {
		t.Fatalf("retry: %v", err)
	}
	tk := e.ticket(ref)
	if len(tk.Attachments) != 1 {
		t.Fatalf("%d attachments, want 1", len(tk.Attachments))
	}
	at := tk.Attachments[0]
	if !bytes.Equal(at.Data, png) || at.FullPath != "boot screen.png" || at.AttachmentType != "FILE_ATTACHMENT" ||
		!strings.Contains(at.Title, psa.MarkerLine("att-1")) || !strings.HasPrefix(at.Title, "boot screen.png") || at.ContentType != "image/png" {
		t.Errorf("attachment = %+v", at)
	}
	if n := len(e.reqs(http.MethodPost, "/Attachments")); n != 1 {
		t.Errorf("%d uploads, want 1", n)
	}
}

func TestOversizedAttachmentBecomesANote(t *testing.T) {
	e := newEnv(t, nil, nil)
	ref := e.mustCreate(e.s, sample)
	big := make([]byte, autotask.MaxAttachmentBytes+1)
	a := psa.Attachment{Name: "full-dump.vhdx", ContentType: "application/octet-stream", Data: big, Marker: "att-big"}
	for _, retry := range []bool{false, true} {
		if err := e.p.Attach(context.Background(), psa.Call{Settings: e.s, Retry: retry}, ref, a); err != nil {
			t.Fatalf("retry=%v: %v", retry, err)
		}
	}
	if n := len(e.reqs(http.MethodPost, "/Attachments")); n != 0 {
		t.Errorf("%d uploads of an oversized file", n)
	}
	tk := e.ticket(ref)
	if len(tk.Notes) != 1 {
		t.Fatalf("%d notes, want 1 (the retry must not add a second)", len(tk.Notes))
	}
	d := tk.Notes[0].Description
	for _, w := range []string{"full-dump.vhdx", "6000001 bytes", "6000000", psa.MarkerLine("att-big")} {
		if !strings.Contains(d, w) {
			t.Errorf("note lacks %q: %s", w, d)
		}
	}
}

func TestRefusedAttachmentBecomesANote(t *testing.T) {
	e := newEnv(t, nil, nil)
	ref := e.mustCreate(e.s, sample)
	e.fk.Inject(fake.Fault{Kind: fake.Fault500Envelope, Method: http.MethodPost, Path: "Tickets/*/Attachments", Message: "Files of type .exe are not allowed."})
	err := e.p.Attach(context.Background(), psa.Call{Settings: e.s}, ref, psa.Attachment{Name: "tool.exe", Data: []byte("MZ"), Marker: "att-2"})
	if err != nil {
		t.Fatal(err)
	}
	tk := e.ticket(ref)
	if len(tk.Attachments) != 0 || len(tk.Notes) != 1 || !strings.Contains(tk.Notes[0].Description, "Files of type .exe are not allowed.") {
		t.Errorf("ticket = %+v", tk)
	}
}

func TestCloseAndReopen(t *testing.T) {
	e := newEnv(t, nil, nil)
	s := e.with("autotask.complete_status", "Complete", "autotask.status", "New")
	ref := e.mustCreate(s, sample)
	ctx := context.Background()
	res := psa.Note{Title: "Recovered", Text: "Backup succeeded.", Kind: psa.NoteResolution, Marker: "close-1"}
	if err := e.p.Close(ctx, psa.Call{Settings: s}, ref, res); err != nil {
		t.Fatal(err)
	}
	tk := e.ticket(ref)
	if tk.Status != 5 || tk.CompletedDate.IsZero() || len(tk.Notes) != 1 || tk.Notes[0].Title != "Recovered" {
		t.Fatalf("after close: status %d completed %v notes %d", tk.Status, tk.CompletedDate, len(tk.Notes))
	}
	patches := e.reqs(http.MethodPatch, "/V1.0/Tickets")
	if len(patches) != 1 || string(patches[0].Body) != `{"id":`+ref.ID+`,"status":5}` {
		t.Fatalf("PATCH bodies: %v", patches)
	}
	// Note first, then the status: a ticket is never complete without its
	// resolution.
	var order []string
	for _, r := range e.fk.Requests() {
		if r.Method == http.MethodPatch || strings.HasSuffix(r.Path, "/Notes") {
			order = append(order, r.Method)
		}
	}
	if strings.Join(order, ",") != "POST,PATCH" {
		t.Errorf("order = %v", order)
	}

	// Closing a complete ticket succeeds, even when the tenant refuses the
	// update of a completed ticket.
	e.fk.Inject(fake.Fault{Kind: fake.Fault500Envelope, Method: http.MethodPatch, Path: "Tickets", Message: "Completed tickets cannot be edited."})
	if err := e.p.Close(ctx, psa.Call{Settings: s}, ref, psa.Note{Text: "again", Marker: "close-2"}); err != nil {
		t.Fatalf("second close: %v", err)
	}

	if err := e.p.Reopen(ctx, psa.Call{Settings: s}, ref, psa.Note{Text: "Failed again.", Marker: "reopen-1"}); err != nil {
		t.Fatal(err)
	}
	tk = e.ticket(ref)
	if tk.Status != 1 || !tk.CompletedDate.IsZero() || len(tk.Notes) != 3 {
		t.Errorf("after reopen: status %d completed %v notes %d", tk.Status, tk.CompletedDate, len(tk.Notes))
	}
	patches = e.reqs(http.MethodPatch, "/V1.0/Tickets")
	if last := patches[len(patches)-1]; string(last.Body) != `{"id":`+ref.ID+`,"status":1}` {
		t.Errorf("reopen PATCH = %s", last.Body)
	}

	// A close the tenant refuses on an open ticket is an error.
	e.fk.Inject(fake.Fault{Kind: fake.Fault500Envelope, Method: http.MethodPatch, Path: "Tickets", Message: "Field dueDateTime is required by the category."})
	err := e.p.Close(ctx, psa.Call{Settings: s}, ref, psa.Note{Text: "x", Marker: "close-3"})
	if pe := asPSA(t, err); pe.Kind != psa.Permanent || !strings.Contains(pe.Message, "dueDateTime") {
		t.Errorf("refused close: %+v", pe)
	}
}

func TestCloseRetryDoesNotDuplicateTheResolution(t *testing.T) {
	e := newEnv(t, nil, nil)
	ref := e.mustCreate(e.s, sample)
	ctx := context.Background()
	res := psa.Note{Text: "Recovered.", Marker: "close-9"}
	e.fk.Inject(fake.Fault{Kind: fake.FaultReset, Method: http.MethodPatch, Path: "Tickets"})
	if err := e.p.Close(ctx, psa.Call{Settings: e.s}, ref, res); psa.KindOf(err) != psa.Transient {
		t.Fatalf("reset PATCH: %v", err)
	}
	if err := e.p.Close(ctx, psa.Call{Settings: e.s, Retry: true}, ref, res); err != nil {
		t.Fatal(err)
	}
	if tk := e.ticket(ref); len(tk.Notes) != 1 || tk.Status != 5 {
		t.Errorf("notes %d status %d", len(tk.Notes), tk.Status)
	}
}

func TestBadTicketReference(t *testing.T) {
	e := newEnv(t, nil, nil)
	for _, ref := range []psa.TicketRef{{Provider: "autotask", ID: "abc"}, {Provider: "connectwise", ID: "12"}} {
		err := e.p.AddNote(context.Background(), psa.Call{Settings: e.s}, ref, psa.Note{Text: "x"})
		if pe := asPSA(t, err); pe.Kind != psa.Permanent {
			t.Errorf("%v: %+v", ref, pe)
		}
	}
	// A ticket that does not exist: Autotask's own refusal, permanent.
	err := e.p.AddNote(context.Background(), psa.Call{Settings: e.s}, psa.TicketRef{Provider: "autotask", ID: "999"}, psa.Note{Text: "x"})
	if pe := asPSA(t, err); pe.Kind != psa.Permanent || pe.Status != 500 {
		t.Errorf("missing ticket: %+v", pe)
	}
}

func TestZoneMovedIsRediscoveredOnce(t *testing.T) {
	e := newEnv(t, nil, nil)
	e.mustCreate(e.s, sample)
	oldHost := e.fk.ZoneHost()
	e.fk.Inject(fake.Fault{Kind: fake.FaultZoneMoved})
	newHost := e.fk.ZoneHost()
	if newHost == oldHost {
		t.Fatal("zone did not move")
	}
	ref := e.mustCreate(e.s, psa.Ticket{Summary: "after the move", ExternalRef: "moved"})
	if n := len(e.reqs(http.MethodGet, "zoneInformation")); n != 2 {
		t.Errorf("%d discoveries, want 2", n)
	}
	var refused, onNew int
	for _, r := range e.fk.Requests() {
		if r.Listener != "zone" {
			continue
		}
		if r.Host == oldHost && r.Status == http.StatusUnauthorized {
			refused++
		}
		if r.Host == newHost && r.Method == http.MethodPost && strings.HasSuffix(r.Path, "/Tickets") {
			onNew++
		}
	}
	if refused == 0 || onNew != 1 {
		t.Errorf("old zone refusals %d, creates on the new zone %d", refused, onNew)
	}
	e.ticket(ref)

	// Real bad credentials: one re-discovery, same zone, then an auth error.
	bad := e.with("autotask.secret", "wrong-secret-value")
	e.fk.ResetRequests()
	_, err := e.create(bad, false, sample)
	pe := asPSA(t, err)
	if pe.Kind != psa.Auth || !strings.Contains(pe.Message, "autotask.secret") {
		t.Errorf("bad secret: %+v", pe)
	}
	if n := len(e.reqs(http.MethodGet, "zoneInformation")); n > 2 {
		t.Errorf("%d discoveries for one failing call", n)
	}
}

func TestInFlightLimit(t *testing.T) {
	for _, limit := range []int{3, 2} {
		t.Run(itoa(int64(limit)), func(t *testing.T) {
			e := newEnv(t, func(c *fake.Config) { c.Latency = 15e6 }, func(o *autotask.Options) { o.MaxInFlight = limit })
			var wg sync.WaitGroup
			errs := make(chan error, 12)
			for i := range 12 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, err := e.create(e.s, false, psa.Ticket{Summary: "parallel", ExternalRef: "p" + itoa(int64(i))})
					errs <- err
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Error(err)
				}
			}
			if got := e.fk.MaxInFlightSeen(); got > limit || got < 2 {
				t.Errorf("max in flight = %d, want 2..%d", got, limit)
			}
			for _, r := range e.fk.Requests() {
				if r.Status != http.StatusOK {
					t.Errorf("%s %s answered %d (thread limit?)", r.Method, r.Path, r.Status)
				}
			}
			if n := len(e.fk.Tickets()); n != 12 {
				t.Errorf("%d tickets, want 12", n)
			}
		})
	}
}

func TestSettingsArePerIntegration(t *testing.T) {
	e := newEnv(t, nil, nil)
	cfg := fake.DefaultConfig()
	cfg.Username, cfg.Secret = "other-api@acme.example", "Another-Secret-Value-99"
	cfg.TicketPicklists["queueID"] = []fake.PicklistValue{{Value: "777", Label: "Backup Alerts"}}
	other := fake.Start(cfg)
	defer other.Close()

	s2 := other.Settings()
	s2["autotask.queue_id"] = "Backup Alerts"
	s1 := e.with("autotask.queue_id", "Backup Alerts")
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			_, _ = e.create(s1, false, psa.Ticket{Summary: "one", ExternalRef: "a" + itoa(int64(i))})
		}()
		go func() {
			defer wg.Done()
			_, _ = e.create(s2, false, psa.Ticket{Summary: "two", ExternalRef: "b" + itoa(int64(i))})
		}()
	}
	wg.Wait()
	if a, b := e.fk.Tickets(), other.Tickets(); len(a) != 4 || len(b) != 4 || a[0].QueueID != 29683482 || b[0].QueueID != 777 {
		t.Errorf("tenant one %d tickets, tenant two %d", len(a), len(b))
	}
}
