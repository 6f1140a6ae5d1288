package autotask

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

type contactRow struct {
	ID           int64  `json:"id"`
	FirstName    string `json:"firstName"`
	LastName     string `json:"lastName"`
	EmailAddress string `json:"emailAddress"`
}

// contactID resolves autotask.contact (an id, an e-mail address or
// "First Last") to a contact of the ticket's company: Autotask refuses a
// contact of another company.
func (j *job) contactID(ctx context.Context, company int64) (int64, error) {
	raw := j.c.contact
	if id, err := strconv.ParseInt(raw, 10, 64); err == nil {
		return id, nil
	}
	k := "contact\x00" + strconv.FormatInt(company, 10) + "\x00" + strings.ToLower(raw)
	j.in.mu.Lock()
	hit, ok := j.in.companies[k]
	j.in.mu.Unlock()
	if ok && j.p.now().Sub(hit.at) < companyTTL {
		return hit.id, nil
	}
	filters := []filter{cond("eq", "companyID", company)}
	if strings.Contains(raw, "@") {
		filters = append(filters, cond("eq", "emailAddress", raw))
	}
	q := map[string]any{
		"filter":        filters,
		"IncludeFields": []string{"id", "firstName", "lastName", "emailAddress"},
		"MaxRecords":    500,
	}
	var ans queryAnswer[contactRow]
	if err := j.call(ctx, http.MethodPost, "Contacts/query", q, &ans); err != nil {
		return 0, err
	}
	var ids []int64
	for _, r := range ans.Items {
		full := strings.TrimSpace(strings.TrimSpace(r.FirstName) + " " + strings.TrimSpace(r.LastName))
		if strings.EqualFold(r.EmailAddress, raw) || strings.EqualFold(full, raw) {
			ids = append(ids, r.ID)
		}
	}
	switch {
	case len(ids) == 0:
		return 0, j.settingErr("contact", fmt.Sprintf("autotask.contact %q is not a contact of company %d (by e-mail address or \"First Last\"); set the contact id or fix the name", raw, company))
	case len(ids) > 1:
		return 0, j.settingErr("contact", fmt.Sprintf("autotask.contact %q matches %d contacts of company %d: set autotask.contact to the contact id", raw, len(ids), company))
	}
	j.in.mu.Lock()
	j.in.companies[k] = companyHit{id: ids[0], at: j.p.now()}
	j.in.mu.Unlock()
	return ids[0], nil
}

type companyRow struct {
	ID          int64  `json:"id"`
	CompanyName string `json:"companyName"`
	IsActive    *bool  `json:"isActive"`
}

// companyID returns autotask.company_id as a number. A name is looked up
// (exact name, case-insensitive, active companies) and cached for an hour.
func (j *job) companyID(ctx context.Context) (int64, error) {
	raw := j.c.company
	if id, err := strconv.ParseInt(raw, 10, 64); err == nil {
		return id, nil
	}
	k := strings.ToLower(raw)
	j.in.mu.Lock()
	hit, ok := j.in.companies[k]
	j.in.mu.Unlock()
	if ok && j.p.now().Sub(hit.at) < companyTTL {
		return hit.id, nil
	}
	rows, err := j.companiesNamed(ctx, raw)
	if err != nil {
		return 0, err
	}
	id, err := j.pickCompany(raw, rows)
	if err != nil {
		return 0, err
	}
	j.in.mu.Lock()
	j.in.companies[k] = companyHit{id: id, at: j.p.now()}
	j.in.mu.Unlock()
	return id, nil
}

func (j *job) companiesNamed(ctx context.Context, name string) ([]companyRow, error) {
	q := map[string]any{
		"filter":        []filter{cond("eq", "companyName", name)},
		"IncludeFields": []string{"id", "companyName", "isActive"},
		"MaxRecords":    20,
	}
	var ans queryAnswer[companyRow]
	if err := j.call(ctx, http.MethodPost, "Companies/query", q, &ans); err != nil {
		return nil, err
	}
	return ans.Items, nil
}

func (j *job) pickCompany(name string, rows []companyRow) (int64, error) {
	var active, inactive []companyRow
	for _, r := range rows {
		if !strings.EqualFold(strings.TrimSpace(r.CompanyName), strings.TrimSpace(name)) {
			continue
		}
		if r.IsActive != nil && !*r.IsActive {
			inactive = append(inactive, r)
		} else {
			active = append(active, r)
		}
	}
	switch {
	case len(active) == 1:
		return active[0].ID, nil
	case len(active) > 1:
		ids := make([]string, len(active))
		for i, r := range active {
			ids[i] = strconv.FormatInt(r.ID, 10)
		}
		return 0, j.settingErr("company_id", fmt.Sprintf("%d Autotask companies are named %q (ids %s): set autotask.company_id to the id", len(active), name, strings.Join(ids, ", ")))
	case len(inactive) > 0:
		return 0, j.settingErr("company_id", fmt.Sprintf("the Autotask company %q (id %d) is inactive", name, inactive[0].ID))
	}
	return 0, j.settingErr("company_id", fmt.Sprintf("no Autotask company is named %q (autotask.company_id); see `psagate psa lookup companies`", name))
}
