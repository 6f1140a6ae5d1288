package connectwise

import (
	"context"
	"net/url"
	"strings"

	"psagate/internal/psa"
	"psagate/internal/sanitize"
)

type companyEntry struct {
	ID         int    `json:"id"`
	Identifier string `json:"identifier"`
	Name       string `json:"name"`
	Website    string `json:"website"`
	Status     *struct {
		Name string `json:"name"`
	} `json:"status"`
}

// Companies lists the companies that are not deleted and whose status is
// not an inactive one, without the MSP's own (login) company.
func (p *Provider) Companies(ctx context.Context, s psa.Settings) ([]psa.Company, error) {
	cl, err := p.newCall(s, "lookup")
	if err != nil {
		return nil, err
	}
	rows, err := getAll[companyEntry](ctx, cl, "/company/companies", url.Values{"conditions": {"deletedFlag=false"}, "orderBy": {"identifier"}})
	if err != nil {
		return nil, err
	}
	var out []psa.Company
	for _, r := range rows {
		if r.Identifier == "" || strings.EqualFold(r.Identifier, s["connectwise.company_id"]) {
			continue
		}
		// Status names are the admin's own; "Inactive" (and kin such as
		// "Inactive - Gone") is how ConnectWise ships the inactive one.
		if r.Status != nil && strings.Contains(strings.ToLower(r.Status.Name), "inactive") {
			continue
		}
		out = append(out, psa.Company{ID: sanitize.Line(r.Identifier), Key: "connectwise.company", Name: sanitize.Line(r.Name), Website: sanitize.Line(r.Website)})
	}
	return out, nil
}
