package autotask

import (
	"context"
	"net/http"
	"strconv"

	"psagate/internal/psa"
	"psagate/internal/sanitize"
)

type companyWebRow struct {
	ID          int64  `json:"id"`
	CompanyName string `json:"companyName"`
	WebAddress  string `json:"webAddress"`
}

// Companies lists the active companies with their web address.
func (p *Provider) Companies(ctx context.Context, s psa.Settings) ([]psa.Company, error) {
	j, err := p.job(s, "lookup", false, false)
	if err != nil {
		return nil, err
	}
	j.noBudget = true
	body := []byte(`{"filter":[{"op":"eq","field":"isActive","value":true}],"IncludeFields":["id","companyName","webAddress"],"MaxRecords":500}`)
	var out []psa.Company
	var ans queryAnswer[companyWebRow]
	if err := j.call(ctx, http.MethodPost, "Companies/query", body, &ans); err != nil {
		return nil, err
	}
	for page := 1; ; page++ {
		for _, c := range ans.Items {
			if c.ID == 0 {
				continue // the MSP's own (owner) company
			}
			out = append(out, psa.Company{ID: strconv.FormatInt(c.ID, 10), Key: "autotask.company_id", Numeric: true,
				Name: sanitize.Line(c.CompanyName), Website: sanitize.Line(c.WebAddress)})
		}
		next := ans.PageDetails.NextPageURL
		if next == nil || *next == "" {
			return out, nil
		}
		if page >= 1000 {
			return out, j.fail(psa.Permanent, "more than 1000 pages of companies; stopped")
		}
		ans = queryAnswer[companyWebRow]{}
		if err := j.callAbs(ctx, http.MethodPost, *next, body, &ans); err != nil {
			return nil, err
		}
	}
}
