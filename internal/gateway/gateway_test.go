package gateway

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"psagate/internal/config"
	"psagate/internal/message"
	"psagate/internal/rules"
	"psagate/internal/store"
)

func testSnapshot(t *testing.T) *Snapshot {
	t.Helper()
	cfg, err := config.Parse("t.toml", []byte("[smtp]\naccept_domains = [\"alerts.example.net\"]\n[[client]]\nname = \"acme\"\nrecipients = [\"acme@alerts.example.net\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	rs, err := rules.Compile([]rules.File{{Name: "t.toml", Data: []byte(`
[[rule]]
name = "noise"
[rule.if]
subject_contains = ["heartbeat"]
[rule.then]
action = "drop"

[[rule]]
name = "spam"
[rule.if]
subject_contains = ["buy now"]
[rule.then]
action = "reject"
text = "Not an alert"

[[rule]]
name = "fail"
[rule.if]
subject_contains = ["Failed:"]
[rule.extract]
device = 'Failed: (?P<device>\S+)'
[rule.then]
action = "ticket"
check = "backup"
summary = "{device} failed"
`)}}, rules.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return NewSnapshot(cfg, rs)
}

func openDB(t *testing.T) *store.DB {
	t.Helper()
	db, err := store.Open(filepath.Join(t.TempDir(), "s.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

var env = message.Envelope{MailFrom: "bdr@x.example", RcptTo: []string{"acme@alerts.example.net"}}

func mail(subject string) []byte {
	return []byte("From: bdr@x.example\r\nTo: acme@alerts.example.net\r\nSubject: " + subject + "\r\nMessage-ID: <" + subject + "@x>\r\n\r\nbody\r\n")
}

func TestAcceptRepliesAfterSpoolCommit(t *testing.T) {
	db := openDB(t)
	defer db.Close()
	g := New(testSnapshot(t), Options{DB: db})
	r := g.Accept(context.Background(), mail("Failed: SRV1"), env)
	if r.Code != 250 || !strings.HasPrefix(r.Text, "Queued as ") {
		t.Fatalf("reply %+v", r)
	}
	id := strings.TrimPrefix(r.Text, "Queued as ")
	// The reply came after the commit: the message is in the spool now.
	var spooled []*store.SpoolEntry
	_ = db.View(func(tx *store.Tx) error { spooled, _ = tx.SpoolHead(10); return nil })
	if len(spooled) != 1 || spooled[0].ID != id || !bytes.Equal(spooled[0].Raw, mail("Failed: SRV1")) {
		t.Fatalf("spool = %+v", spooled)
	}
	// An SMTP retry of the same message is recognised.
	r2 := g.Accept(context.Background(), mail("Failed: SRV1"), env)
	if r2.Code != 250 || !strings.Contains(r2.Text, "Already queued as "+id) {
		t.Fatalf("retry reply %+v", r2)
	}
	// Drops and rejects are answered without touching the spool.
	if r := g.Accept(context.Background(), mail("heartbeat"), env); r.Code != 250 || !strings.Contains(r.Text, `discarded by rule "noise"`) {
		t.Fatalf("drop reply %+v", r)
	}
	if r := g.Accept(context.Background(), mail("buy now"), env); r.Code != 550 || !strings.HasPrefix(r.Text, "Not an alert") {
		t.Fatalf("reject reply %+v", r)
	}
	_ = db.View(func(tx *store.Tx) error { spooled, _ = tx.SpoolHead(10); return nil })
	if len(spooled) != 1 {
		t.Fatalf("spool holds %d, want 1", len(spooled))
	}
	// Processing moves it out of the spool in the transaction that records it.
	n, err := g.ProcessSpool(context.Background(), 10)
	if err != nil || n != 1 {
		t.Fatalf("processed %d, %v", n, err)
	}
	var incs []*store.Incident
	_ = db.View(func(tx *store.Tx) error { spooled, _ = tx.SpoolHead(10); incs, _ = tx.OpenIncidents(); return nil })
	if len(spooled) != 0 || len(incs) != 1 || incs[0].Key != "acme/SRV1/backup" || incs[0].Summary != "SRV1 failed" {
		t.Fatalf("after processing: spool %d, incidents %+v", len(spooled), incs)
	}
	g.CloseAudit()
}

func TestAcceptWithoutDurableStorageIs451(t *testing.T) {
	db := openDB(t)
	g := New(testSnapshot(t), Options{DB: db})
	db.Close() // the disk went away
	r := g.Accept(context.Background(), mail("Failed: SRV2"), env)
	if r.Code != 451 {
		t.Fatalf("reply %+v, want 451 so the sender keeps the message and retries", r)
	}
}

func TestDedupeKey(t *testing.T) {
	a := []byte("Received: by relay1\r\nMessage-ID: <x@y>\r\n\r\nbody\r\n")
	b := []byte("Received: by relay2\r\nMessage-ID: <x@y>\r\n\r\nbody\r\n")
	c := []byte("Received: by relay1\r\nMessage-ID: <x@y>\r\n\r\nother body\r\n")
	d := []byte("Received: by relay1\r\nMessage-ID: <x@y>\r\nSubject: other\r\n\r\nbody\r\n")
	rc := []string{"a@alerts.example.net"}
	if !bytes.Equal(DedupeKey("x@y", a, rc, "acme"), DedupeKey("x@y", b, rc, "acme")) {
		t.Error("same Message-ID and body through another relay is not recognised")
	}
	if bytes.Equal(DedupeKey("x@y", a, rc, "acme"), DedupeKey("x@y", c, rc, "acme")) {
		t.Error("a different body with a reused Message-ID counted as a duplicate")
	}
	if bytes.Equal(DedupeKey("x@y", a, rc, "acme"), DedupeKey("x@y", d, rc, "acme")) {
		t.Error("another Subject with a reused Message-ID and body counted as a duplicate")
	}
	if bytes.Equal(DedupeKey("x@y", a, rc, "acme"), DedupeKey("x@y", a, []string{"b@alerts.example.net"}, "beta")) {
		t.Error("the same mail to another client counted as a duplicate")
	}
	if bytes.Equal(DedupeKey("", a, rc, ""), DedupeKey("", b, rc, "")) {
		t.Error("without Message-ID the whole message must identify it")
	}
}

func TestNewIDSortsByTime(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a, b := NewID(t0), NewID(t0.Add(time.Second))
	if len(a) != 16 || a >= b || NewID(t0) == a {
		t.Fatalf("ids %q %q", a, b)
	}
}

func TestFilterAttachments(t *testing.T) {
	png := []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
	pdf := []byte("%PDF-1.7\n1 0 obj\n")
	pe := append([]byte("MZ\x90\x00\x03\x00\x00\x00"), make([]byte, 64)...)
	ole := []byte("\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1")
	for _, tc := range []struct {
		a        message.Attachment
		upload   bool
		name, ct string // of the uploaded copy
		why      string // in the withheld line
	}{
		{a: message.Attachment{Name: "boot.png", ContentType: "image/png", Data: png}, upload: true, name: "boot.png", ct: "image/png"},
		{a: message.Attachment{Name: "report.pdf", ContentType: "application/octet-stream", Data: pdf}, upload: true, name: "report.pdf", ct: "application/pdf"},
		{a: message.Attachment{Name: "job.log", ContentType: "text/plain", Data: []byte("12:00 job failed\r\n")}, upload: true, name: "job.log", ct: "text/plain"},
		{a: message.Attachment{Name: "shot.png. .", ContentType: "image/png", Data: png}, upload: true, name: "shot.png", ct: "image/png"},
		{a: message.Attachment{Name: "invoice.exe", ContentType: "image/png", Data: png}, why: "never uploaded"},
		{a: message.Attachment{Name: "invoice.exe.", ContentType: "application/pdf", Data: pdf}, why: "never uploaded"},
		{a: message.Attachment{Name: "invoice.EXE .", ContentType: "image/png", Data: pe}, why: "never uploaded"},
		{a: message.Attachment{Name: "screenshot.png", ContentType: "image/png", Data: pe}, why: "a Windows program"},
		{a: message.Attachment{Name: "setup.pif", ContentType: "image/png", Data: pe}, why: "never uploaded"},
		{a: message.Attachment{Name: "panel.cpl", ContentType: "image/png", Data: pe}, why: "never uploaded"},
		{a: message.Attachment{Name: "addin.xll", ContentType: "application/vnd.ms-excel", Data: pe}, why: "never uploaded"},
		{a: message.Attachment{Name: "help.chm", ContentType: "application/octet-stream", Data: []byte("ITSF\x03\x00\x00\x00")}, why: "never uploaded"},
		{a: message.Attachment{Name: "notes.one", ContentType: "application/onenote", Data: []byte("\xe4\x52\x5c\x7b\x8c\xd8")}, why: "never uploaded"},
		{a: message.Attachment{Name: "portal.url", ContentType: "text/plain", Data: []byte("[InternetShortcut]\r\nURL=http://x\r\n")}, why: "never uploaded"},
		{a: message.Attachment{Name: "page.mht", ContentType: "message/rfc822", Data: []byte("MIME-Version: 1.0\r\n")}, why: "never uploaded"},
		{a: message.Attachment{Name: "page.html", ContentType: "text/html", Data: []byte("<html>")}, why: "never uploaded"},
		{a: message.Attachment{Name: "old.doc", ContentType: "image/png", Data: ole}, why: "OLE compound"},
		{a: message.Attachment{Name: "logs.zip", ContentType: "application/zip", Data: []byte("PK\x03\x04")}, why: "ZIP archive"},
		{a: message.Attachment{Name: "readme.txt", ContentType: "text/plain", Data: png}, why: `ends in ".txt" but the content is image/png`},
		{a: message.Attachment{Name: "shot.png", ContentType: "image/png", Data: pdf}, why: `ends in ".png" but the content is application/pdf`},
		{a: message.Attachment{Name: "data.csv", ContentType: "text/csv", Data: []byte("a,b\n")}, why: "text/csv not in [deliver] attach_types"},
		{a: message.Attachment{Name: "huge.png", ContentType: "image/png", Data: png, Size: 50 << 20}, why: "over the"},
	} {
		if tc.a.Size == 0 {
			tc.a.Size = len(tc.a.Data)
		}
		ok, withheld := FilterAttachments([]message.Attachment{tc.a}, []string{"image/*", "application/pdf", "text/plain"}, 10<<20)
		switch {
		case tc.upload && (len(ok) != 1 || ok[0].Name != tc.name || ok[0].ContentType != tc.ct):
			t.Errorf("%q: uploaded %+v, withheld %q; want it uploaded as %q (%s)", tc.a.Name, ok, withheld, tc.name, tc.ct)
		case !tc.upload && (len(ok) != 0 || len(withheld) != 1 || !strings.Contains(withheld[0], tc.why)):
			t.Errorf("%q: uploaded %d, withheld %q; want it withheld for %q", tc.a.Name, len(ok), withheld, tc.why)
		}
	}
}

func TestPoisonMessageIsSetAsideNotBlocking(t *testing.T) {
	db := openDB(t)
	defer db.Close()
	g := New(testSnapshot(t), Options{DB: db})
	defer g.CloseAudit()
	now := time.Now()
	bad := &store.SpoolEntry{ID: "bad", Received: now, Decision: []byte(`{"id":"bad","action":"bogus"}`), Raw: []byte("x")}
	if _, _, err := db.Accept(bad, nil); err != nil {
		t.Fatal(err)
	}
	if r := g.Accept(context.Background(), mail("Failed: SRV9"), env); r.Code != 250 {
		t.Fatal(r)
	}
	n, err := g.ProcessSpool(context.Background(), 10)
	if err != nil || n != 1 {
		t.Fatalf("processed %d, %v; want the good message processed", n, err)
	}
	var q []*store.SpoolEntry
	var left []*store.SpoolEntry
	var open []*store.Incident
	_ = db.View(func(tx *store.Tx) error {
		q, _ = tx.Quarantined(10)
		left, _ = tx.SpoolHead(10)
		open, _ = tx.OpenIncidents()
		return nil
	})
	if len(left) != 0 || len(q) != 1 || q[0].ID != "bad" || !strings.Contains(q[0].Reason, "unexpected action") || len(open) != 1 {
		t.Fatalf("spool %d, quarantine %+v, open %d", len(left), q, len(open))
	}
}

// A spool record that cannot even be decoded (a damaged file) is moved to
// the quarantine with its bytes; the messages after it are processed.
func TestCorruptSpoolRecordIsSetAside(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	db, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	g := New(testSnapshot(t), Options{DB: db})
	if r := g.Accept(context.Background(), mail("Failed: SRV9"), env); r.Code != 250 {
		t.Fatal(r)
	}
	g.CloseAudit()
	db.Close()

	// Damage: a record under key 0, ahead of the good one.
	bdb, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	garbage := []byte("\xff\xff\xff\xffnot a spool record")
	if err := bdb.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("spool")).Put(make([]byte, 8), garbage)
	}); err != nil {
		t.Fatal(err)
	}
	bdb.Close()

	db, err = store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	g = New(testSnapshot(t), Options{DB: db})
	defer g.CloseAudit()
	n, err := g.ProcessSpool(context.Background(), 10)
	if err != nil || n != 1 {
		t.Fatalf("processed %d, %v; want the good message processed past the damaged record", n, err)
	}
	var q, left []*store.SpoolEntry
	var open []*store.Incident
	_ = db.View(func(tx *store.Tx) error {
		q, _ = tx.Quarantined(10)
		left, _ = tx.SpoolHead(10)
		open, _ = tx.OpenIncidents()
		return nil
	})
	if len(left) != 0 || len(open) != 1 || len(q) != 1 {
		t.Fatalf("spool %d, quarantine %d, open %d", len(left), len(q), len(open))
	}
	if q[0].ID != "corrupt-0" || !bytes.Equal(q[0].Raw, garbage) || !strings.Contains(q[0].Reason, "could not be decoded") {
		t.Fatalf("quarantined %q %q %q", q[0].ID, q[0].Raw, q[0].Reason)
	}
}

// Each PSA can have its own attachment policy: the same screenshot goes to
// a ConnectWise ticket and is withheld (with a note) from an Autotask one
// whose [deliver.autotask] allows only PDF.
func TestAttachmentPolicyPerProvider(t *testing.T) {
	cfg, err := config.Parse("t.toml", []byte(`
[smtp]
accept_domains = ["alerts.example.net"]
[psa]
provider = "connectwise"
[deliver.autotask]
attach_types = ["application/pdf"]
[[client]]
name = "cw"
recipients = ["cw@alerts.example.net"]
[[client]]
name = "at"
recipients = ["at@alerts.example.net"]
[client.psa]
provider = "autotask"
`))
	if err != nil {
		t.Fatal(err)
	}
	rs, err := rules.Compile([]rules.File{{Name: "t.toml", Data: []byte(`
[[rule]]
name = "fail"
[rule.if]
subject_contains = ["Failed:"]
[rule.extract]
device = 'Failed: (?P<device>\S+)'
[rule.then]
action = "ticket"
check = "backup"
summary = "{device} failed"
attach = true
`)}}, rules.Options{})
	if err != nil {
		t.Fatal(err)
	}
	db := openDB(t)
	defer db.Close()
	g := New(NewSnapshot(cfg, rs), Options{DB: db})
	defer g.CloseAudit()
	withPNG := func(to, dev string) []byte {
		return []byte("From: bdr@x.example\r\nTo: " + to + "\r\nSubject: Failed: " + dev + "\r\nMessage-ID: <" + dev + "@x>\r\n" +
			"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" +
			"--b\r\nContent-Type: text/plain\r\n\r\nthe backup failed\r\n" +
			"--b\r\nContent-Type: image/png\r\nContent-Disposition: attachment; filename=boot.png\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n--b--\r\n")
	}
	for _, m := range []struct{ to, dev string }{{"cw@alerts.example.net", "CW-SRV"}, {"at@alerts.example.net", "AT-SRV"}} {
		e := message.Envelope{MailFrom: "bdr@x.example", RcptTo: []string{m.to}}
		if r := g.Accept(context.Background(), withPNG(m.to, m.dev), e); r.Code != 250 {
			t.Fatal(r)
		}
	}
	if n, err := g.ProcessSpool(context.Background(), 10); err != nil || n != 2 {
		t.Fatalf("processed %d, %v", n, err)
	}
	got := map[string][]string{} // client -> ops
	_ = db.View(func(tx *store.Tx) error {
		return tx.Jobs(func(j *store.Job) bool {
			op := j.Op
			if j.AttachName != "" {
				op += ":" + j.AttachName
			}
			if j.NoteTitle != "" {
				op += ":" + j.NoteTitle
			}
			got[j.Client] = append(got[j.Client], op)
			return true
		})
	})
	if want := []string{"create", "attach:boot.png"}; !slices.Equal(got["cw"], want) {
		t.Errorf("connectwise client jobs %q, want %q", got["cw"], want)
	}
	if want := []string{"create", "note:Attachments not uploaded"}; !slices.Equal(got["at"], want) {
		t.Errorf("autotask client jobs %q, want %q", got["at"], want)
	}
}

// A store that fails to commit is not the message's fault: the message
// stays spooled and is processed once the store works again, rather than
// being set aside in the quarantine.
func TestStoreFailureKeepsMessageSpooled(t *testing.T) {
	db := openDB(t)
	defer db.Close()
	g := New(testSnapshot(t), Options{DB: db})
	defer g.CloseAudit()
	if r := g.Accept(context.Background(), mail("Failed: SRV9"), env); r.Code != 250 {
		t.Fatal(r)
	}
	g.storeFault = func() error { return errors.New("write /var/lib/psagate/psagate.db: no space left on device") }
	n, err := g.ProcessSpool(context.Background(), 10)
	if err == nil || !strings.Contains(err.Error(), "no space left") || n != 0 {
		t.Fatalf("processed %d, err %v; want the store's error and nothing processed", n, err)
	}
	count := func() (spooled, quarantined int) {
		_ = db.View(func(tx *store.Tx) error {
			s, _ := tx.SpoolHead(10)
			q, _ := tx.Quarantined(10)
			spooled, quarantined = len(s), len(q)
			return nil
		})
		return
	}
	if s, q := count(); s != 1 || q != 0 {
		t.Fatalf("after the store failure: spooled %d, quarantined %d; want 1, 0", s, q)
	}

	g.storeFault = nil
	if n, err := g.ProcessSpool(context.Background(), 10); err != nil || n != 1 {
		t.Fatalf("after recovery: processed %d, %v", n, err)
	}
	if s, q := count(); s != 0 || q != 0 {
		t.Fatalf("after recovery: spooled %d, quarantined %d; want 0, 0", s, q)
	}
}

// TestUnprocessableMessageKeepsItsAudit spools a message whose verdict the
// engine refuses: it is quarantined, and its audit entry still names its
// subject, client and rule.
func TestUnprocessableMessageKeepsItsAudit(t *testing.T) {
	db := openDB(t)
	defer db.Close()
	g := New(testSnapshot(t), Options{DB: db})
	e := &store.SpoolEntry{ID: "m1", Received: time.Now(), MailFrom: "bdr@x.example", RcptTo: env.RcptTo,
		Decision: []byte(`{"id":"m1","action":"bogus","rule":"fail","client":"acme","subject":"Failed: SRV9"}`), Raw: mail("Failed: SRV9")}
	if _, _, err := db.Accept(e, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := g.ProcessSpool(context.Background(), 10); err != nil {
		t.Fatal(err)
	}
	g.CloseAudit()
	var got *store.AuditEntry
	_ = db.View(func(tx *store.Tx) error {
		return tx.Audit(func(a *store.AuditEntry) bool { got = a; return false })
	})
	if got == nil || got.Decision != string(rules.ActionQuarantine) || got.Effect != "processing failed" || got.Subject != "Failed: SRV9" ||
		got.Client != "acme" || got.Rule != "fail" || got.Message != "m1" {
		t.Fatalf("audit entry %+v", got)
	}
}

// An unknown alert repeated with another time stamp in its subject is the
// same problem; one that names another device is not.
func TestSubjectKeyDropsDatesAndTimes(t *testing.T) {
	same := [][2]string{
		{"Backup job failed at 2026-12-07 03:00", "Backup job failed at 2026-12-08 03:15"},
		{"Sicherung fehlgeschlagen 07.12.2026 03:00:12", "Sicherung fehlgeschlagen 08.12.2026 04:01:00"},
		{"Job Nightly failed (12/7/26 3:00 PM)", "Job  Nightly FAILED (12/8/26 11:45 am)"},
		{"Alert 2026-12-07T03:00:00Z: disk", "Alert 2026-12-09T13:10:05+01:00: disk"},
	}
	for _, p := range same {
		if a, b := subjectKey(p[0]), subjectKey(p[1]); a != b {
			t.Errorf("%q -> %q and %q -> %q: want one key", p[0], a, p[1], b)
		}
	}
	differ := [][2]string{
		{"SRV1 backup failed", "SRV2 backup failed"},
		{"Job 12 failed", "Job 13 failed"},
		{"Backup failed on 10.0.0.5", "Backup failed on 10.0.0.6"},
	}
	for _, p := range differ {
		if subjectKey(p[0]) == subjectKey(p[1]) {
			t.Errorf("%q and %q share the key %q", p[0], p[1], subjectKey(p[0]))
		}
	}
}
