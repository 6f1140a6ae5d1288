package psa

import (
	"context"
	"net/url"
	"strings"
)

// Company is a customer company in a PSA, as `psagate clients import`
// needs it.
type Company struct {
	// ID is what a client's PSA settings name the company by: the
	// ConnectWise identifier ("ACME01"), the Autotask company id ("501").
	ID string
	// Key is the settings key ID goes in ("connectwise.company",
	// "autotask.company_id").
	Key     string
	Name    string
	Website string // as the PSA has it, "" when unknown
	// Numeric says ID is a record number: written as a TOML number, and
	// no name for a client (the company name is used instead).
	Numeric bool
}

// CompanyLister is implemented by providers that can list the active
// customer companies.
type CompanyLister interface {
	Companies(ctx context.Context, s Settings) ([]Company, error)
}

// WebDomain turns a web site as a PSA stores it ("https://www.acme.example/",
// "acme.example", "www.acme.example/contact") into its mail domain
// ("acme.example"), or "".
func WebDomain(site string) string {
	site = strings.TrimSpace(strings.ToLower(site))
	if site == "" {
		return ""
	}
	if !strings.Contains(site, "://") {
		site = "http://" + site
	}
	u, err := url.Parse(site)
	if err != nil || u.Hostname() == "" {
		return ""
	}
	h := strings.TrimPrefix(u.Hostname(), "www.")
	if !strings.Contains(h, ".") || strings.ContainsAny(h, " @") {
		return ""
	}
	return h
}
