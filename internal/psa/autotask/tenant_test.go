package autotask_test

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"psagate/internal/psa"
	"psagate/internal/psa/autotask/fake"
)

// strictTenant is a tenant whose ticket categories make the work type and
// the category required, with a required user-defined field.
func strictTenant(cfg *fake.Config) {
	cfg.RequiredTicketFields = []string{"billingCodeID", "ticketCategory"}
	cfg.UDFs = []fake.UDF{{Name: "Backup Vault", Required: true, Length: 20}, {Name: "Notes"}}
}

// tenantSettings are the settings that satisfy strictTenant.
var tenantSettings = []string{
	"autotask.billing_code_id", "Monitoring", "autotask.ticket_category", "Alert",
	"autotask.fields.Backup Vault", "PVC-VAULT-01", "autotask.due_in", "4h",
	"autotask.contact", "dana.reyes@pinecrest-vet.example",
}

func TestStrictTenantCreatesWithConfiguredValues(t *testing.T) {
	e := newEnv(t, strictTenant, nil)
	s := e.with(tenantSettings...)
	var out bytes.Buffer
	if err := e.p.Test(context.Background(), s, &out); err != nil {
		t.Fatalf("Test: %v\n%s", err, out.String())
	}
	ref := e.mustCreate(s, sample)
	tk := e.ticket(ref)
	if tk.BillingCodeID != 29682802 || tk.TicketCategory != 4 || tk.ContactID != 30682001 {
		t.Errorf("billing code %d, category %d, contact %d; want 29682802, 4, 30682001", tk.BillingCodeID, tk.TicketCategory, tk.ContactID)
	}
	if want := e.clock.Now().Add(4 * time.Hour).UTC(); !tk.DueDateTime.Equal(want) {
		t.Errorf("dueDateTime = %v, want %v (now + due_in, UTC)", tk.DueDateTime, want)
	}
	if tk.UDFs["Backup Vault"] != "PVC-VAULT-01" {
		t.Errorf("UDFs = %v", tk.UDFs)
	}
}

func TestStrictTenantMissingSettingIsPredictedAndNamed(t *testing.T) {
	for _, tt := range []struct{ unset, field, key string }{
		{"autotask.billing_code_id", "billingCodeID", "autotask.billing_code_id"},
		{"autotask.ticket_category", "ticketCategory", "autotask.ticket_category"},
		{"autotask.fields.Backup Vault", "Backup Vault", "autotask.fields"},
	} {
		t.Run(tt.field, func(t *testing.T) {
			e := newEnv(t, strictTenant, nil)
			kv := append(append([]string(nil), tenantSettings...), tt.unset, "")
			s := e.with(kv...)
			var out bytes.Buffer
			err := e.p.Test(context.Background(), s, &out)
			if err == nil || !strings.Contains(out.String(), tt.field) || !strings.Contains(out.String(), tt.key) {
				t.Errorf("Test did not name %s and %s (err %v):\n%s", tt.field, tt.key, err, out.String())
			}
			_, err = e.create(s, false, sample)
			pe := asPSA(t, err)
			if pe.Kind != psa.Permanent || pe.Reason != psa.ReasonValidation || !strings.Contains(pe.Error(), tt.field) {
				t.Errorf("create: kind %v reason %q: %v", pe.Kind, pe.Reason, pe)
			}
			want := tt.key
			if want == "autotask.fields" {
				want = "autotask.fields." + tt.field
			}
			if pe.Field != want {
				t.Errorf("field = %q, want %q", pe.Field, want)
			}
		})
	}
}

func TestInactivePicklistValueIsReported(t *testing.T) {
	e := newEnv(t, nil, nil)
	s := e.with("autotask.billing_code_id", "Onsite (retired)")
	var out bytes.Buffer
	if err := e.p.Test(context.Background(), s, &out); err == nil || !strings.Contains(out.String(), "inactive") {
		t.Errorf("Test passed an inactive billing code:\n%s", out.String())
	}
	// An admin retires the queue after psagate cached the list: the create
	// is refused by the tenant, permanently, naming the field.
	e.mustCreate(e.s, sample)
	e.fk.SetPicklistActive("queueID", "29683482", false)
	_, err := e.create(e.s, false, psa.Ticket{Summary: "second", ExternalRef: "x2"})
	if pe := asPSA(t, err); pe.Kind != psa.Permanent || pe.Field != "autotask.queue_id" {
		t.Errorf("retired queue: %+v", pe)
	}
}

func TestLengthLimitOfTheTenant(t *testing.T) {
	e := newEnv(t, func(c *fake.Config) { c.UDFs = []fake.UDF{{Name: "Backup Vault", Length: 5}} }, nil)
	s := e.with("autotask.fields.Backup Vault", "far-too-long")
	var out bytes.Buffer
	if err := e.p.Test(context.Background(), s, &out); err == nil || !strings.Contains(out.String(), "takes 5") {
		t.Errorf("Test missed the length limit:\n%s", out.String())
	}
	_, err := e.create(s, false, sample)
	if pe := asPSA(t, err); pe.Kind != psa.Permanent || !strings.Contains(pe.Message, "maximum length of 5") {
		t.Errorf("create: %+v", pe)
	}
}

func TestNotePublishPerKind(t *testing.T) {
	e := newEnv(t, nil, nil)
	s := e.with("autotask.note_publish.repeat", "Internal Only", "autotask.note_publish.close", "All Autotask Users",
		"autotask.note_publish", "Internal Only", "autotask.attachment_publish", "Internal Only")
	ref := e.mustCreate(s, sample)
	ctx := context.Background()
	if err := e.p.AddNote(ctx, psa.Call{Settings: s}, ref, psa.Note{Text: "again", Kind: psa.NoteRepeat, Marker: "n1"}); err != nil {
		t.Fatal(err)
	}
	if err := e.p.AddNote(ctx, psa.Call{Settings: s}, ref, psa.Note{Text: "update", Kind: psa.NoteDiscussion, Marker: "n2"}); err != nil {
		t.Fatal(err)
	}
	if err := e.p.Attach(ctx, psa.Call{Settings: s}, ref, psa.Attachment{Name: "shot.png", Data: []byte("png"), Marker: "a1"}); err != nil {
		t.Fatal(err)
	}
	if err := e.p.Close(ctx, psa.Call{Settings: s}, ref, psa.Note{Text: "recovered", Marker: "c1"}); err != nil {
		t.Fatal(err)
	}
	tk := e.ticket(ref)
	var got []int
	for _, n := range tk.Notes {
		got = append(got, n.Publish)
	}
	// repeat: Internal Only (2); note: the default setting (2); close: All (1).
	if len(got) != 3 || got[0] != 2 || got[1] != 2 || got[2] != 1 {
		t.Errorf("note publish values = %v, want [2 2 1]", got)
	}
	if len(tk.Attachments) != 1 || tk.Attachments[0].Publish != 2 {
		t.Errorf("attachments = %+v, want one with publish 2", tk.Attachments)
	}
}

func TestReadOnlyUserCannotCreate(t *testing.T) {
	e := newEnv(t, func(c *fake.Config) { c.ReadOnly = true }, nil)
	var out bytes.Buffer
	if err := e.p.Test(context.Background(), e.s, &out); err != nil {
		t.Fatalf("the read-only test should pass (it only reads): %v\n%s", err, out.String())
	}
	_, err := e.create(e.s, false, sample)
	pe := asPSA(t, err)
	if pe.Kind != psa.Auth || pe.Reason != psa.ReasonPermission || !strings.Contains(pe.Message, "security level") {
		t.Errorf("read-only create: %+v", pe)
	}
}

func TestVersionFallsBackToARead(t *testing.T) {
	e := newEnv(t, func(c *fake.Config) { c.NoVersion = true }, nil)
	if err := e.p.Probe(context.Background(), e.s); err != nil {
		t.Fatalf("Probe: %v", err)
	}
	var out bytes.Buffer
	if err := e.p.Test(context.Background(), e.s, &out); err != nil || !strings.Contains(out.String(), "no Version route") {
		t.Errorf("Test without Version: %v\n%s", err, out.String())
	}
	if len(e.reqs(http.MethodGet, "ThresholdInformation")) == 0 {
		t.Error("no fallback read")
	}
	// With wrong credentials the fallback fails as it should.
	if err := e.p.Probe(context.Background(), e.with("autotask.secret", "wrong-secret-value")); psa.KindOf(err) != psa.Auth {
		t.Errorf("Probe with a wrong secret: %v", err)
	}
}

// A tenant that shortens the title gets titles cut to its length (read
// from the fields metadata), not a refused create.
func TestTenantFieldLengthIsRespected(t *testing.T) {
	e := newEnv(t, func(c *fake.Config) { c.FieldLengths = map[string]int{"title": 40, "description": 100} }, nil)
	long := psa.Ticket{Summary: strings.Repeat("Backup failed on PVC-SRV-DB2 ", 5), Description: strings.Repeat("x", 500), ExternalRef: "len-1"}
	tk := e.ticket(e.mustCreate(e.s, long))
	if n := len([]rune(tk.Title)); n != 40 || !strings.HasSuffix(tk.Title, "…") {
		t.Errorf("title %q (%d characters), want 40 ending in …", tk.Title, n)
	}
	if n := len([]rune(tk.Description)); n != 100 || !strings.Contains(tk.Description, "Autotask keeps 100") {
		t.Errorf("description (%d characters) %q", n, tk.Description)
	}
}
