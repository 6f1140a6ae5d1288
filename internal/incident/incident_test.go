package incident

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"psagate/internal/config"
	"psagate/internal/message"
	"psagate/internal/route"
	"psagate/internal/rules"
	"psagate/internal/store"
)

const testConfig = `
[smtp]
accept_domains = ["alerts.example.net"]
[psa]
provider = "log"
[psa.connectwise]
board = "Backup Alerts"
priority = "Priority 3 - Normal Response"
company = "MSP"
[[client]]
name = "acme"
[client.psa]
provider = "connectwise"
connectwise.company = "ACME01"
connectwise.priority = "Priority 1 - Emergency Response"
[[client.device]]
name = "ACME-VAULT-01"
[client.device.psa]
connectwise.board = "Vault Alerts"
[[client]]
name = "paused"
enabled = false
[[client]]
name = "manual"
[client.psa]
auto_close = false
`

// harness is an engine over a real bbolt file that can be closed and
// reopened, as a process restart would.
type harness struct {
	t    *testing.T
	path string
	db   *store.DB
	eng  *Engine
	cfg  *config.Config
	now  time.Time
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	cfg, err := config.Parse("test.toml", []byte(testConfig))
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, path: filepath.Join(t.TempDir(), "state.db"), cfg: cfg,
		now: time.Date(2025, 2, 11, 20, 0, 0, 0, time.UTC)}
	h.open()
	t.Cleanup(func() { h.db.Close() })
	return h
}

func (h *harness) open() {
	db, err := store.Open(h.path, store.Options{})
	if err != nil {
		h.t.Fatal(err)
	}
	h.db = db
	h.eng = &Engine{Router: route.New(h.cfg), Instance: db.Instance()}
}

// restart closes and reopens the database: all state must survive.
func (h *harness) restart() {
	h.db.Close()
	h.open()
}

func (h *harness) advance(d time.Duration) { h.now = h.now.Add(d) }

func (h *harness) apply(ev Event) *Outcome {
	h.t.Helper()
	ev.At = h.now
	if ev.Key == "" {
		ev.Key = route.ClientName(ev.Client) + "/" + ev.Device + "/" + ev.Check
	}
	if ev.Repeat == "" {
		ev.Repeat = rules.RepeatNote
	}
	var out *Outcome
	err := h.db.Update(func(tx *store.Tx) error {
		var err error
		out, err = h.eng.Apply(tx, &ev)
		return err
	})
	if err != nil {
		h.t.Fatalf("apply %+v: %v", ev, err)
	}
	return out
}

func (h *harness) fire() []*Outcome {
	h.t.Helper()
	var outs []*Outcome
	err := h.db.Update(func(tx *store.Tx) error {
		for _, tm := range tx.DueTimers(h.now) {
			o, err := h.eng.Fire(tx, tm, h.now)
			if err != nil {
				return err
			}
			if o != nil {
				outs = append(outs, o)
			}
		}
		return nil
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return outs
}

// outbox returns the queued jobs as "op:incident" strings.
func (h *harness) outbox() []string {
	var out []string
	_ = h.db.View(func(tx *store.Tx) error {
		return tx.Jobs(func(j *store.Job) bool {
			out = append(out, fmt.Sprintf("%s:%d", j.Op, j.Incident))
			return true
		})
	})
	return out
}

func (h *harness) jobs() []*store.Job {
	var out []*store.Job
	_ = h.db.View(func(tx *store.Tx) error {
		return tx.Jobs(func(j *store.Job) bool { out = append(out, j); return true })
	})
	return out
}

func failure(client, device string) Event {
	return Event{Action: rules.ActionTicket, Client: client, Device: device, Check: "backup", Rule: "backup failed",
		Summary: device + ": backup failed", Description: "Backup of " + device + " failed.", NoteText: "Failed again."}
}

func success(client, device string) Event {
	return Event{Action: rules.ActionClose, Client: client, Device: device, Check: "backup", Rule: "backup ok", NoteText: "Backup succeeded."}
}

func want(t *testing.T, o *Outcome, decision rules.Action, effect Effect) {
	t.Helper()
	if o.Decision != decision || o.Effect != effect {
		t.Fatalf("outcome = %s (%s), want %s (%s); detail %q", o.Decision, o.Effect, decision, effect, o.Detail)
	}
}

func wantJobs(t *testing.T, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("outbox = %v, want %v", got, want)
	}
}

func TestOpenNoteClose(t *testing.T) {
	h := newHarness(t)
	o := h.apply(failure("acme", "SRV1"))
	want(t, o, rules.ActionTicket, EffectOpened)
	id := o.Incident.ID
	wantJobs(t, h.outbox(), fmt.Sprintf("create:%d", id))
	j := h.jobs()[0]
	if j.Summary != "SRV1: backup failed" || !strings.HasPrefix(j.ExternalRef, "psagate:"+h.db.Instance()+"-") {
		t.Fatalf("create job = %+v", j)
	}

	h.advance(time.Hour)
	o = h.apply(failure("acme", "SRV1"))
	want(t, o, rules.ActionNote, EffectNoted)
	if o.Incident.ID != id || o.Incident.Count != 2 {
		t.Fatalf("repeat went to incident %d count %d", o.Incident.ID, o.Incident.Count)
	}
	wantJobs(t, h.outbox(), fmt.Sprintf("create:%d", id), fmt.Sprintf("note:%d", id))
	if n := h.jobs()[1]; n.NoteText != "Failed again." || n.Marker == "" {
		t.Fatalf("note job = %+v", n)
	}

	h.advance(time.Hour)
	o = h.apply(success("acme", "SRV1"))
	want(t, o, rules.ActionClose, EffectClosed)
	wantJobs(t, h.outbox(), fmt.Sprintf("create:%d", id), fmt.Sprintf("note:%d", id), fmt.Sprintf("close:%d", id))

	// A second recovery finds nothing open: counted, no job.
	o = h.apply(success("acme", "SRV1"))
	want(t, o, rules.ActionClose, EffectNoop)
	if len(h.outbox()) != 3 {
		t.Fatalf("no-op close queued a job: %v", h.outbox())
	}
}

func TestRepeatIgnoreAndNew(t *testing.T) {
	h := newHarness(t)
	ev := failure("acme", "SRV2")
	ev.Repeat = rules.RepeatIgnore
	first := h.apply(ev)
	o := h.apply(ev)
	want(t, o, rules.ActionNote, EffectIgnored)
	if o.Incident.Count != 2 || o.Incident.Ignored != 1 {
		t.Fatalf("ignore did not count: %+v", o.Incident)
	}
	wantJobs(t, h.outbox(), fmt.Sprintf("create:%d", first.Incident.ID))

	ev.Repeat = rules.RepeatNew
	o = h.apply(ev)
	want(t, o, rules.ActionTicket, EffectNew)
	if o.Incident.ID == first.Incident.ID {
		t.Fatal("repeat=new reused the incident")
	}
	wantJobs(t, h.outbox(), fmt.Sprintf("create:%d", first.Incident.ID), fmt.Sprintf("create:%d", o.Incident.ID))
	// The recovery closes the newest one.
	c := h.apply(success("acme", "SRV2"))
	want(t, c, rules.ActionClose, EffectClosed)
	if c.Incident.ID != o.Incident.ID {
		t.Fatalf("closed incident %d, want the newest %d", c.Incident.ID, o.Incident.ID)
	}
}

func TestReopenWindow(t *testing.T) {
	for _, tc := range []struct {
		name   string
		after  time.Duration
		effect Effect
	}{
		{"inside", 3 * time.Hour, EffectReopened},
		{"outside", 30 * time.Hour, EffectOpened},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			ev := failure("acme", "SRV3")
			ev.Reopen = 24 * time.Hour
			first := h.apply(ev)
			h.advance(time.Hour)
			h.apply(success("acme", "SRV3"))
			h.advance(tc.after)
			o := h.apply(ev)
			want(t, o, rules.ActionTicket, tc.effect)
			id1 := first.Incident.ID
			if tc.effect == EffectReopened {
				if o.Incident.ID != id1 || o.Incident.Reopened != 1 {
					t.Fatalf("reopen made incident %d (reopened %d)", o.Incident.ID, o.Incident.Reopened)
				}
				wantJobs(t, h.outbox(), fmt.Sprintf("create:%d", id1), fmt.Sprintf("close:%d", id1), fmt.Sprintf("reopen:%d", id1))
			} else {
				if o.Incident.ID == id1 {
					t.Fatal("recurrence outside the window reused the closed incident")
				}
				wantJobs(t, h.outbox(), fmt.Sprintf("create:%d", id1), fmt.Sprintf("close:%d", id1), fmt.Sprintf("create:%d", o.Incident.ID))
			}
		})
	}
}

func TestDisabledClientRecordsWithoutPSA(t *testing.T) {
	h := newHarness(t)
	o := h.apply(failure("paused", "SRV4"))
	want(t, o, rules.ActionTicket, EffectOpened)
	if !o.Incident.NoPSA {
		t.Fatal("incident of a disabled client is not marked NoPSA")
	}
	h.apply(failure("paused", "SRV4"))
	c := h.apply(success("paused", "SRV4"))
	want(t, c, rules.ActionClose, EffectClosed)
	wantJobs(t, h.outbox())
}

func TestAutoCloseOffTurnsCloseIntoNote(t *testing.T) {
	h := newHarness(t)
	o := h.apply(failure("manual", "SRV5"))
	c := h.apply(success("manual", "SRV5"))
	want(t, c, rules.ActionClose, EffectKeptOpen)
	if c.Incident.State != store.StateOpen {
		t.Fatalf("state = %s, want open", c.Incident.State)
	}
	wantJobs(t, h.outbox(), fmt.Sprintf("create:%d", o.Incident.ID), fmt.Sprintf("note:%d", o.Incident.ID))
}

func TestDeviceOverrideWinsOverClientAndOrg(t *testing.T) {
	h := newHarness(t)
	r := route.New(h.cfg)
	s := r.Effective("acme", "ACME-VAULT-01", nil)
	if s.Get("connectwise.board") != "Vault Alerts" || s.Get("connectwise.priority") != "Priority 1 - Emergency Response" ||
		s.Get("connectwise.company") != "ACME01" || s.Provider() != "connectwise" {
		t.Fatalf("device settings = %v", s)
	}
	// Another device of the client keeps the org board.
	if b := r.Effective("acme", "ACME-SRV", nil).Get("connectwise.board"); b != "Backup Alerts" {
		t.Fatalf("other device board = %q", b)
	}
	// A rule override beats all three.
	if p := r.Effective("acme", "ACME-VAULT-01", map[string]string{"connectwise.priority": "P2"}).Get("connectwise.priority"); p != "P2" {
		t.Fatalf("rule override = %q", p)
	}
	for _, o := range r.Trace("acme", "ACME-VAULT-01", nil, "") {
		if o.Key == "connectwise.board" && o.From != "device ACME-VAULT-01" {
			t.Fatalf("board origin = %q", o.From)
		}
		if o.Key == "connectwise.company" && o.From != "client acme" {
			t.Fatalf("company origin = %q", o.From)
		}
	}
	// The job records the client and device, and delivery resolves them again.
	o := h.apply(failure("acme", "ACME-VAULT-01"))
	j := h.jobs()[0]
	if j.Client != "acme" || j.Device != "ACME-VAULT-01" || o.Incident.Provider != "connectwise" {
		t.Fatalf("job %+v incident provider %q", j, o.Incident.Provider)
	}
}

func TestHoldDown(t *testing.T) {
	lost := Event{Action: rules.ActionTicket, Client: "acme", Device: "PC1", Check: "connection", Rule: "lost",
		Summary: "PC1 offline", Description: "Agent connection lost.", Delay: 15 * time.Minute, Repeat: rules.RepeatIgnore}
	restored := Event{Action: rules.ActionClose, Client: "acme", Device: "PC1", Check: "connection", Rule: "restored"}

	t.Run("recovery inside the delay makes no job", func(t *testing.T) {
		h := newHarness(t)
		o := h.apply(lost)
		want(t, o, rules.ActionTicket, EffectHeld)
		h.advance(4*time.Minute + 37*time.Second)
		c := h.apply(restored)
		want(t, c, rules.ActionClose, EffectCancelled)
		h.advance(time.Hour)
		if outs := h.fire(); len(outs) != 0 {
			t.Fatalf("cancelled hold-down fired: %+v", outs[0])
		}
		wantJobs(t, h.outbox())
	})

	t.Run("no recovery: ticket when the delay ends, then close", func(t *testing.T) {
		h := newHarness(t)
		o := h.apply(lost)
		h.advance(14 * time.Minute)
		if outs := h.fire(); len(outs) != 0 {
			t.Fatal("fired early")
		}
		h.advance(2 * time.Minute)
		outs := h.fire()
		if len(outs) != 1 {
			t.Fatalf("fired %d, want 1", len(outs))
		}
		want(t, outs[0], rules.ActionTicket, EffectOpened)
		h.advance(time.Hour)
		c := h.apply(restored)
		want(t, c, rules.ActionClose, EffectClosed)
		id := o.Incident.ID
		wantJobs(t, h.outbox(), fmt.Sprintf("create:%d", id), fmt.Sprintf("close:%d", id))
	})

	t.Run("restart between loss and deadline", func(t *testing.T) {
		h := newHarness(t)
		o := h.apply(lost)
		h.restart()
		h.advance(20 * time.Minute)
		outs := h.fire()
		if len(outs) != 1 || outs[0].Incident.ID != o.Incident.ID {
			t.Fatalf("after restart the timer fired %d outcomes", len(outs))
		}
		wantJobs(t, h.outbox(), fmt.Sprintf("create:%d", o.Incident.ID))
	})

	t.Run("restart between loss and recovery", func(t *testing.T) {
		h := newHarness(t)
		h.apply(lost)
		h.restart()
		h.advance(5 * time.Minute)
		want(t, h.apply(restored), rules.ActionClose, EffectCancelled)
		h.restart()
		h.advance(time.Hour)
		if outs := h.fire(); len(outs) != 0 {
			t.Fatal("cancelled hold-down fired after restart")
		}
		wantJobs(t, h.outbox())
	})
}

func TestAbsence(t *testing.T) {
	h := newHarness(t)
	ok := Event{Action: rules.ActionClose, Client: "acme", Device: "SRV6", Check: "backup", Rule: "backup ok",
		Summary: "[BDR] Successful Backup: SRV6", Expect: 26 * time.Hour}
	o := h.apply(ok)
	want(t, o, rules.ActionClose, EffectNoop)

	h.advance(25 * time.Hour)
	if outs := h.fire(); len(outs) != 0 {
		t.Fatal("absence fired before the deadline")
	}
	// The next success moves the deadline.
	h.apply(ok)
	h.advance(25 * time.Hour)
	if outs := h.fire(); len(outs) != 0 {
		t.Fatal("absence fired although a success arrived")
	}
	// Now nothing arrives.
	h.restart()
	h.advance(2 * time.Hour)
	outs := h.fire()
	if len(outs) != 1 {
		t.Fatalf("overdue mail opened %d incidents, want 1", len(outs))
	}
	abs := outs[0].Incident
	if !abs.Absence || !strings.Contains(abs.Summary, "SRV6: no \"backup\" mail since") || !strings.Contains(abs.Summary, "expected every 26h0m0s") {
		t.Fatalf("absence incident = %+v", abs)
	}
	wantJobs(t, h.outbox(), fmt.Sprintf("create:%d", abs.ID))
	// It does not open twice.
	h.advance(30 * time.Hour)
	if outs := h.fire(); len(outs) != 0 {
		t.Fatal("absence opened twice")
	}
	// The expected mail closes it.
	h.apply(ok)
	wantJobs(t, h.outbox(), fmt.Sprintf("create:%d", abs.ID), fmt.Sprintf("close:%d", abs.ID))
	var inc *store.Incident
	_ = h.db.View(func(tx *store.Tx) error { inc, _ = tx.Incident(abs.ID); return nil })
	if inc.State != store.StateClosed {
		t.Fatalf("absence incident state = %s", inc.State)
	}
}

func TestAttachmentsBecomeJobs(t *testing.T) {
	h := newHarness(t)
	ev := failure("acme", "XRAY")
	ev.Attach = true
	ev.Attachments = []message.Attachment{{Name: "boot.png", ContentType: "image/png", Data: []byte("\x89PNG...")}}
	o := h.apply(ev)
	jobs := h.jobs()
	if len(jobs) != 2 || jobs[1].Op != store.OpAttach || jobs[1].AttachName != "boot.png" || string(jobs[1].AttachData) != "\x89PNG..." {
		t.Fatalf("jobs = %v", h.outbox())
	}
	if jobs[1].Incident != o.Incident.ID {
		t.Fatal("attach job for the wrong incident")
	}
}

func TestNoteAction(t *testing.T) {
	h := newHarness(t)
	n := Event{Action: rules.ActionNote, Client: "acme", Device: "SRV7", Check: "backup", NoteText: "FYI"}
	want(t, h.apply(n), rules.ActionNote, EffectNoop)
	o := h.apply(failure("acme", "SRV7"))
	want(t, h.apply(n), rules.ActionNote, EffectNoted)
	wantJobs(t, h.outbox(), fmt.Sprintf("create:%d", o.Incident.ID), fmt.Sprintf("note:%d", o.Incident.ID))
}

func TestAttachmentsOnClose(t *testing.T) {
	h := newHarness(t)
	o := h.apply(failure("acme", "XRAY2"))
	ok := success("acme", "XRAY2")
	ok.Attach = true
	ok.Attachments = []message.Attachment{{Name: "pass.png", ContentType: "image/png", Data: []byte("png")}}
	h.apply(ok)
	id := o.Incident.ID
	wantJobs(t, h.outbox(), fmt.Sprintf("create:%d", id), fmt.Sprintf("attach:%d", id), fmt.Sprintf("close:%d", id))
}

func TestWithheldAttachmentsBecomeANote(t *testing.T) {
	h := newHarness(t)
	ev := failure("acme", "XRAY3")
	ev.Attach = true
	ev.Withheld = []string{"evil.exe (application/octet-stream, 10 bytes): file type never uploaded"}
	o := h.apply(ev)
	id := o.Incident.ID
	wantJobs(t, h.outbox(), fmt.Sprintf("create:%d", id), fmt.Sprintf("note:%d", id))
	if n := h.jobs()[1]; !strings.Contains(n.NoteText, "evil.exe") {
		t.Fatalf("note = %q", n.NoteText)
	}
}
