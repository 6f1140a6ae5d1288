package connectwise

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"

	"psagate/internal/psa"
	"psagate/internal/psa/connectwise/fake"
)

// A strict board requires the address and the location (issue 13): the
// configured values reach the ticket; one missing is a validation error
// naming the field and the setting.
func TestAddressAndLocationReachTheTicketOnAStrictBoard(t *testing.T) {
	e := newEnv(t, nil)
	e.srv.SetBoardRequired(12, "addressLine1", "city", "zip", "country", "location")
	for k, v := range map[string]string{
		"connectwise.address_line1": "1 Harbor Way", "connectwise.address_line2": "Suite 4",
		"connectwise.city": "Tampa", "connectwise.state": "FL", "connectwise.zip": "33602",
		"connectwise.country": "United States", "connectwise.location": "Tampa Office",
	} {
		e.st[k] = v
	}
	var out bytes.Buffer
	if err := e.p.Test(context.Background(), e.st, &out); err != nil {
		t.Fatalf("Test: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "Tampa Office = #2") || !strings.Contains(out.String(), `addressLine1="1 Harbor Way"`) {
		t.Errorf("Test output lacks the address and location:\n%s", out.String())
	}
	ref := e.create(t)
	id, _ := strconv.Atoi(ref.ID)
	tk, ok := e.srv.Ticket(id)
	if !ok {
		t.Fatal("no ticket")
	}
	if tk.AddressLine1 != "1 Harbor Way" || tk.AddressLine2 != "Suite 4" || tk.City != "Tampa" || tk.StateIdentifier != "FL" ||
		tk.Zip != "33602" || tk.CountryID != 1 || tk.LocationID != 2 {
		t.Errorf("ticket address = %+v", tk)
	}

	delete(e.st, "connectwise.city")
	_, err := e.p.Create(context.Background(), e.call(false), psa.Ticket{Summary: "x", ExternalRef: "psagate:x2"})
	pe := asPSAError(t, err)
	if pe.Kind != psa.Permanent || pe.Reason != psa.ReasonValidation || pe.Field != "city" || !strings.Contains(pe.Message, "connectwise.city") {
		t.Errorf("missing city: %+v", pe)
	}

	e.st["connectwise.city"] = "Tampa"
	e.st["connectwise.location"] = "Closed Branch"
	if err := e.p.Test(context.Background(), e.st, &out); err == nil {
		t.Error("Test passed an inactive location")
	}
	e.st["connectwise.location"] = "Tampa Office"
	e.st["connectwise.zip"] = "3360233602-1234"
	_, err = e.p.Create(context.Background(), e.call(false), psa.Ticket{Summary: "x", ExternalRef: "psagate:x3"})
	if pe := asPSAError(t, err); pe.Kind != psa.Permanent || !strings.Contains(pe.Message, "connectwise.zip") {
		t.Errorf("long zip: %+v", pe)
	}
}

// A permissive board takes the ticket without an address.
func TestPermissiveBoardNeedsNoAddress(t *testing.T) {
	e := newEnv(t, nil)
	ref := e.create(t)
	id, _ := strconv.Atoi(ref.ID)
	if tk, _ := e.srv.Ticket(id); tk.AddressLine1 != "" || tk.LocationID != 0 {
		t.Errorf("ticket = %+v", tk)
	}
}

func TestReadOnlyMemberCannotCreate(t *testing.T) {
	e := newEnv(t, func(c *fake.Config) { c.ReadOnlyMember = true })
	var out bytes.Buffer
	if err := e.p.Test(context.Background(), e.st, &out); err != nil {
		t.Fatalf("the read-only Test passes (it only reads): %v\n%s", err, out.String())
	}
	_, err := e.p.Create(context.Background(), e.call(false), psa.Ticket{Summary: "x", ExternalRef: "psagate:ro"})
	pe := asPSAError(t, err)
	if pe.Kind != psa.Auth || pe.Reason != psa.ReasonPermission || !strings.Contains(pe.Message, "security role") {
		t.Errorf("read-only create: %+v", pe)
	}
}

func TestServerErrorIsTransientAndBadRequestValidation(t *testing.T) {
	e := newEnv(t, nil)
	e.srv.Inject(fake.Fault{Method: "POST", Path: "/service/tickets", Status: 500})
	_, err := e.p.Create(context.Background(), e.call(false), psa.Ticket{Summary: "x", ExternalRef: "psagate:t500"})
	if pe := asPSAError(t, err); pe.Kind != psa.Transient || pe.Reason != psa.ReasonServer {
		t.Errorf("500: %+v", pe)
	}
}

// A board that allows only some type/subtype combinations: psa test and
// the create both refuse another one, naming the valid subtypes.
func TestBoardTypeSubtypeCombination(t *testing.T) {
	e := newEnv(t, func(c *fake.Config) {
		for i := range c.Boards {
			if c.Boards[i].ID == 12 {
				c.Boards[i].Associations = []fake.Association{{Type: 201, SubType: 301}, {Type: 202, SubType: 302}}
			}
		}
	})
	var out bytes.Buffer
	if err := e.p.Test(context.Background(), e.st, &out); err != nil || !strings.Contains(out.String(), "a combination the board allows") {
		t.Fatalf("Backup/Failure: %v\n%s", err, out.String())
	}
	e.create(t)
	e.st["connectwise.subtype"] = "Warning"
	out.Reset()
	if err := e.p.Test(context.Background(), e.st, &out); err == nil || !strings.Contains(out.String(), `subtypes of type "Backup" there: "Failure"`) {
		t.Errorf("Backup/Warning passed the test:\n%s", out.String())
	}
	_, err := e.p.Create(context.Background(), e.call(false), psa.Ticket{Summary: "x", ExternalRef: "psagate:combo"})
	if pe := asPSAError(t, err); pe.Kind != psa.Permanent || pe.Field != "connectwise.subtype" {
		t.Errorf("create: %+v", pe)
	}
}
