package autotask

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"psagate/internal/psa"
	"psagate/internal/sanitize"
)

const (
	fieldsTTL        = time.Hour
	fieldsMinRefresh = 30 * time.Second // a miss re-reads the fields at most this often
)

// pickValue is one picklist value of entityInformation/fields.
type pickValue struct {
	Value   string
	Label   string
	Parent  string
	Default bool
	Active  bool
}

func (v pickValue) String() string { return v.Value + " (" + v.Label + ")" }

// fieldSet holds the picklists of one entity, keyed by lower-case field
// name, and every field in the order Autotask lists them.
type fieldSet struct {
	at     time.Time
	picks  map[string][]pickValue
	fields []fieldMeta
}

// length is the length the tenant gives field name, when it is shorter
// than def (a tenant may shorten a field; psagate then cuts to fit rather
// than have the create refused).
func (fs *fieldSet) length(name string, def int) int {
	for _, f := range fs.fields {
		if strings.EqualFold(f.Name, name) && f.Length > 0 && f.Length < def {
			return f.Length
		}
	}
	return def
}

// fieldMeta is what psa test needs to know of a field.
type fieldMeta struct {
	Name     string
	Required bool
	ReadOnly bool
	Length   int
}

type fieldsAnswer struct {
	Fields []struct {
		Name           string `json:"name"`
		IsRequired     bool   `json:"isRequired"`
		IsReadOnly     bool   `json:"isReadOnly"`
		Length         int    `json:"length"`
		IsPickList     bool   `json:"isPickList"`
		PicklistValues []struct {
			Value          string `json:"value"`
			Label          string `json:"label"`
			IsDefaultValue bool   `json:"isDefaultValue"`
			IsActive       bool   `json:"isActive"`
			ParentValue    string `json:"parentValue"`
		} `json:"picklistValues"`
	} `json:"fields"`
}

// fields returns the cached picklists of entity ("Tickets", "TicketNotes"),
// reading them when absent, older than fieldsTTL, or when force is set.
func (j *job) fields(ctx context.Context, entity string, force bool) (*fieldSet, error) {
	in := j.in
	in.mu.Lock()
	seen := in.fields[entity]
	in.mu.Unlock()
	if seen != nil && !force && j.p.now().Sub(seen.at) < fieldsTTL {
		return seen, nil
	}
	in.fieldsMu.Lock()
	defer in.fieldsMu.Unlock()
	in.mu.Lock()
	cur := in.fields[entity]
	in.mu.Unlock()
	if cur != nil && cur != seen && j.p.now().Sub(cur.at) < fieldsTTL {
		return cur, nil // another call read them meanwhile
	}
	var ans fieldsAnswer
	if err := j.call(ctx, http.MethodGet, entity+"/entityInformation/fields", nil, &ans); err != nil {
		return nil, err
	}
	fs := &fieldSet{at: j.p.now(), picks: map[string][]pickValue{}}
	for _, f := range ans.Fields {
		fs.fields = append(fs.fields, fieldMeta{Name: sanitize.Line(f.Name), Required: f.IsRequired, ReadOnly: f.IsReadOnly, Length: f.Length})
		if !f.IsPickList {
			continue
		}
		vals := make([]pickValue, 0, len(f.PicklistValues))
		for _, v := range f.PicklistValues {
			vals = append(vals, pickValue{Value: v.Value, Label: sanitize.Line(v.Label), Parent: v.ParentValue,
				Default: v.IsDefaultValue, Active: v.IsActive})
		}
		fs.picks[strings.ToLower(f.Name)] = vals
	}
	in.mu.Lock()
	in.fields[entity] = fs
	in.mu.Unlock()
	return fs, nil
}

// match finds raw (a value or a label) among vals. Labels compare
// case-insensitively; with parent set, labels only match values under it.
func match(vals []pickValue, raw, parent string) (pickValue, bool) {
	if _, err := strconv.ParseInt(raw, 10, 64); err == nil {
		for _, v := range vals {
			if v.Value == raw {
				return v, true
			}
		}
	}
	var inactive *pickValue
	for i, v := range vals {
		if parent != "" && v.Parent != parent {
			continue
		}
		if strings.EqualFold(strings.TrimSpace(v.Label), raw) {
			if v.Active {
				return v, true
			}
			if inactive == nil {
				inactive = &vals[i]
			}
		}
	}
	if inactive != nil {
		return *inactive, true
	}
	return pickValue{}, false
}

// validList lists the active values (under parent, if set) for a message.
func validList(vals []pickValue, parent string) string {
	var parts []string
	for _, v := range vals {
		if !v.Active || (parent != "" && v.Parent != parent) {
			continue
		}
		parts = append(parts, v.String())
	}
	if len(parts) == 0 {
		return "none"
	}
	const show = 30
	if len(parts) > show {
		return strings.Join(parts[:show], ", ") + fmt.Sprintf(" and %d more", len(parts)-show)
	}
	return strings.Join(parts, ", ")
}

// pick resolves the picklist setting key to the value to send. ok is false
// when the setting is unset and has no default. parent is the resolved
// issue type for sub_issue_type.
func (j *job) pick(ctx context.Context, key, parent string) (pickValue, bool, error) {
	base, _, _ := strings.Cut(key, ".") // "note_publish.close" is a note_publish
	ps := pickSettingFor(base)
	raw := j.c.get(key)
	fs, err := j.fields(ctx, ps.entity, false)
	if err != nil {
		return pickValue{}, false, err
	}
	vals := fs.picks[strings.ToLower(ps.field)]
	if isUnset(raw) {
		switch {
		case ps.deflt != "":
			raw = ps.deflt
		case ps.useTkDf:
			for _, v := range vals {
				if v.Default && v.Active {
					return v, true, nil
				}
			}
			return pickValue{}, false, j.settingErr(key, fmt.Sprintf("autotask.%s is not set and Autotask marks no %s as the default; set it to one of: %s (see `psagate psa lookup %s`)",
				key, ps.what, validList(vals, ""), ps.lookup))
		default:
			return pickValue{}, false, nil
		}
	}
	v, found := match(vals, raw, parent)
	if !found && j.p.now().Sub(fs.at) >= fieldsMinRefresh {
		// An admin may have added the value since the list was read.
		if fs, err = j.fields(ctx, ps.entity, true); err != nil {
			return pickValue{}, false, err
		}
		vals = fs.picks[strings.ToLower(ps.field)]
		v, found = match(vals, raw, parent)
	}
	if !found {
		return pickValue{}, false, j.settingErr(key, fmt.Sprintf("autotask.%s %q is not a %s in Autotask; valid %s: %s (see `psagate psa lookup %s`)",
			key, raw, ps.what, ps.plural, validList(vals, parent), ps.lookup))
	}
	if !v.Active {
		return pickValue{}, false, j.settingErr(key, fmt.Sprintf("autotask.%s %q is %s, which is inactive in Autotask; active %s: %s",
			key, raw, v, ps.plural, validList(vals, parent)))
	}
	if parent != "" && v.Parent != parent {
		return pickValue{}, false, j.settingErr(key, fmt.Sprintf("autotask.%s %q is %s, which belongs to issue type %s, not to the configured issue type %s; valid %s: %s",
			key, raw, v, v.Parent, parent, ps.plural, validList(vals, parent)))
	}
	return v, true, nil
}

func (j *job) settingErr(key, msg string) *psa.Error {
	e := j.fail(psa.Permanent, msg)
	e.Field = "autotask." + key
	return e
}

// num converts a picklist value to the JSON number Autotask expects.
func num(v string) any {
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		return n
	}
	return v
}
