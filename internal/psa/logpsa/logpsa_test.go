package logpsa

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"psagate/internal/psa"
)

func TestWritesTicketLinesWithoutSecrets(t *testing.T) {
	var buf bytes.Buffer
	p := New(&buf)
	call := psa.Call{Settings: psa.Settings{"provider": "log", "connectwise.private_key": "hunter2-secret"}}
	ref, err := p.Create(context.Background(), call, psa.Ticket{Summary: "S", Description: "D", ExternalRef: "psagate:x-1:k", Key: "k", Client: "c"})
	if err != nil {
		t.Fatal(err)
	}
	again, _ := p.Create(context.Background(), psa.Call{Retry: true}, psa.Ticket{ExternalRef: "psagate:x-1:k"})
	if again.ID != ref.ID {
		t.Fatalf("retried create got another id: %s vs %s", again.ID, ref.ID)
	}
	if err := p.AddNote(context.Background(), call, ref, psa.Note{Text: "N"}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines", len(lines))
	}
	var l Line
	if err := json.Unmarshal([]byte(lines[0]), &l); err != nil {
		t.Fatal(err)
	}
	if l.Op != "create" || l.Summary != "S" || l.Description != "D" || l.Client != "c" || l.Key != "k" || l.Ticket != ref.ID {
		t.Fatalf("line = %+v", l)
	}
	if strings.Contains(buf.String(), "hunter2-secret") {
		t.Fatal("secret written")
	}
}
