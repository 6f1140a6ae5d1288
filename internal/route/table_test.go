package route

import (
	"testing"

	"psagate/internal/config"
)

// A client's single note_publish replaces the organisation's per-kind
// entries; a client's entry overrides only that entry (issue 13).
func TestTableSettingLayers(t *testing.T) {
	cfg, err := config.Parse("t.toml", []byte(`[smtp]
accept_domains = ["a.example"]
[psa.autotask]
note_publish = { default = "All Autotask Users", close = "All Autotask Users" }
[[client]]
name = "quiet"
[client.psa]
autotask.note_publish = "Internal Only"
[[client]]
name = "closer"
[client.psa]
autotask.note_publish.close = "Internal Only"
`))
	if err != nil {
		t.Fatal(err)
	}
	r := New(cfg)
	q := r.Effective("quiet", "", nil)
	if q["autotask.note_publish"] != "Internal Only" || q["autotask.note_publish.close"] != "" || q["autotask.note_publish.default"] != "" {
		t.Errorf("quiet: %v", q)
	}
	c := r.Effective("closer", "", nil)
	if c["autotask.note_publish.close"] != "Internal Only" || c["autotask.note_publish.default"] != "All Autotask Users" {
		t.Errorf("closer: %v", c)
	}
}
