package route

import (
	"testing"

	"psagate/internal/config"
)

func TestClientResolution(t *testing.T) {
	cfg, err := config.Parse("t.toml", []byte(`[smtp]
accept_domains = ["alerts.example.net"]
[[client]]
name = "acme"
recipients = ["acme@alerts.example.net"]
senders = ["@acme-bdr.example.com"]
devices = ["ACME-*"]
[[client]]
name = "beta"
senders = ["vault@beta.example"]
[[client.device]]
name = "BETA-VAULT-*"
`))
	if err != nil {
		t.Fatal(err)
	}
	r := New(cfg)
	tests := []struct {
		name    string
		rcpts   []string
		senders []string
		want    string
	}{
		{"recipient", []string{"other@alerts.example.net", "ACME@alerts.example.net"}, nil, "acme"},
		{"recipient beats sender", []string{"acme@alerts.example.net"}, []string{"vault@beta.example"}, "acme"},
		{"sender domain", []string{"x@alerts.example.net"}, []string{"", "bdr@acme-bdr.example.com"}, "acme"},
		{"sender domain is exact", nil, []string{"bdr@evil-acme-bdr.example.com"}, ""},
		{"sender address", nil, []string{"Vault@Beta.example"}, "beta"},
		{"nobody", []string{"x@alerts.example.net"}, []string{"a@b.example"}, ""},
	}
	for _, tt := range tests {
		if got := r.ByEnvelope(tt.rcpts, tt.senders...); got != tt.want {
			t.Errorf("%s: ByEnvelope = %q, want %q", tt.name, got, tt.want)
		}
	}
	for dev, want := range map[string]string{"ACME-SRV1": "acme", "acme-srv1": "acme", "BETA-VAULT-02": "beta", "OTHER": "", "": ""} {
		if got := r.ByDevice(dev); got != want {
			t.Errorf("ByDevice(%q) = %q, want %q", dev, got, want)
		}
	}
	if ClientName("") != DefaultClient || !r.Enabled("nobody") {
		t.Error("unknown clients follow the organisation")
	}
}

func TestLookAlike(t *testing.T) {
	cfg, err := config.Parse("t.toml", []byte(`[smtp]
accept_domains = ["alerts.example.net"]
[[client]]
name = "acme"
recipients = ["acme@alerts.example.net"]
senders = ["@datto.com", "bdr@acme-bdr.example.com"]
[[client]]
name = "other"
recipients = ["other@alerts.example.net"]
senders = ["@dattoo.com"]
`))
	if err != nil {
		t.Fatal(err)
	}
	r := New(cfg)
	for addr, want := range map[string]string{
		"alerts@datt0.com":              "@datto.com",
		"alerts@datto.com.evil":         "@datto.com",
		"alerts@datto-backup.com.evil":  "@datto.com",
		"alerts@datto-backup.com":       "@datto.com",
		"alerts@dattto.com":             "@datto.com",
		"bdr@acme-bdr.example.com.evil": "bdr@acme-bdr.example.com",
		"bdr@acrne-bdr.example.com":     "bdr@acme-bdr.example.com",
		"alerts@datto.com":              "", // the pinned domain
		"alerts@mail.datto.com":         "", // its subdomain
		"alerts@dattoo.com":             "", // another client's sender
		"alerts@example.com":            "",
		"alerts@kaseya.com":             "",
		"not-an-address":                "",
	} {
		_, got := r.LookAlike(addr)
		if got != want {
			t.Errorf("LookAlike(%q) = %q, want %q", addr, got, want)
		}
	}
}
