package config

import (
	"strings"
	"testing"
)

// Table settings (issue 13): per-note-kind publish and tenant UDFs are
// TOML tables that flatten to one key per entry, at org, client and device
// level; a wrong entry is an error at its line.
func TestPSATableSettings(t *testing.T) {
	doc := `[smtp]
accept_domains = ["a.example"]
[psa]
provider = "autotask"
[psa.autotask]
due_in = "4h"
note_publish = { repeat = "Internal Only", close = "All Autotask Users" }
fields = { "Backup Vault" = "VAULT-01" }
[[client]]
name = "acme"
[client.psa]
autotask.note_publish.repeat = "All Autotask Users"
connectwise.address_line1 = "1 Main St"
`
	cfg, err := Parse("t.toml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	org := cfg.PSA
	for k, want := range map[string]string{
		"autotask.due_in": "4h", "autotask.note_publish.repeat": "Internal Only",
		"autotask.note_publish.close": "All Autotask Users", "autotask.fields.Backup Vault": "VAULT-01",
	} {
		if org[k] != want {
			t.Errorf("org %s = %q, want %q", k, org[k], want)
		}
	}
	cl := cfg.Client("acme").PSA
	if cl["autotask.note_publish.repeat"] != "All Autotask Users" || cl["connectwise.address_line1"] != "1 Main St" {
		t.Errorf("client settings = %v", cl)
	}

	bad := `[smtp]
accept_domains = ["a.example"]
[psa.autotask]
note_publish = { heartbeat = "Internal Only" }
fields = "x"
`
	_, err = Parse("bad.toml", []byte(bad))
	if err == nil || !strings.Contains(err.Error(), `bad.toml:4: psa.autotask.note_publish.heartbeat: autotask.note_publish has no entry "heartbeat"`) ||
		!strings.Contains(err.Error(), "bad.toml:5: psa.autotask.fields: must be a table of names") {
		t.Errorf("err = %v", err)
	}
}
