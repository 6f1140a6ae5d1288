package fake

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
)

// kind is the data type of a field.
type kind int

const (
	kInt kind = iota
	kString
	kDate
	kBool
)

func (k kind) dataType() string {
	switch k {
	case kInt:
		return "integer"
	case kString:
		return "string"
	case kDate:
		return "datetime"
	case kBool:
		return "boolean"
	}
	return "string"
}

type fieldSpec struct {
	Name      string
	Kind      kind
	Length    int
	Required  bool
	ReadOnly  bool
	Queryable bool
	PickList  bool
	Parent    string // picklistParentValueField
	Ref       string // referenceEntityType
	Hidden    bool   // never emitted in lists (attachment data)
}

// entity describes one Autotask entity: its fields in wire order.
type entity struct {
	Name    string // singular, for messages: "Ticket"
	Fields  []fieldSpec
	byLower map[string]int
}

func newEntity(name string, fields []fieldSpec) *entity {
	e := &entity{Name: name, Fields: fields, byLower: map[string]int{}}
	for i, f := range fields {
		e.byLower[strings.ToLower(f.Name)] = i
	}
	return e
}

// field finds a field by a case-insensitive name.
func (e *entity) field(name string) (*fieldSpec, bool) {
	i, ok := e.byLower[strings.ToLower(name)]
	if !ok {
		return nil, false
	}
	return &e.Fields[i], true
}

// record is one stored row: canonical field name → int64, string,
// time.Time or bool. A missing key is null.
type record map[string]any

func (r record) int(name string) int64 {
	v, _ := r[name].(int64)
	return v
}

func (r record) str(name string) string {
	v, _ := r[name].(string)
	return v
}

func (r record) time(name string) time.Time {
	v, _ := r[name].(time.Time)
	return v
}

func (r record) clone() record {
	out := make(record, len(r))
	for k, v := range r {
		out[k] = v
	}
	return out
}

// wireTime is how Autotask writes datetimes: UTC without a zone suffix.
const wireTime = "2006-01-02T15:04:05.000"

// marshal writes r in field order, nulls for unset fields. include, when
// non-empty, limits the columns (case-insensitive); hidden fields are only
// written when withHidden is set.
func (e *entity) marshal(r record, include []string, withHidden bool) json.RawMessage {
	var want map[string]bool
	if len(include) > 0 {
		want = map[string]bool{}
		for _, n := range include {
			want[strings.ToLower(n)] = true
		}
	}
	var b bytes.Buffer
	b.WriteByte('{')
	first := true
	for _, f := range e.Fields {
		if f.Hidden && !withHidden {
			continue
		}
		if want != nil && !want[strings.ToLower(f.Name)] {
			continue
		}
		if !first {
			b.WriteByte(',')
		}
		first = false
		k, _ := json.Marshal(f.Name)
		b.Write(k)
		b.WriteByte(':')
		v, ok := r[f.Name]
		if !ok || v == nil {
			b.WriteString("null")
			continue
		}
		switch x := v.(type) {
		case time.Time:
			j, _ := json.Marshal(x.UTC().Format(wireTime))
			b.Write(j)
		default:
			j, _ := json.Marshal(x)
			b.Write(j)
		}
	}
	b.WriteByte('}')
	return b.Bytes()
}

// utf16Len counts UTF-16 code units: Autotask is a .NET service and its
// string lengths are .NET string lengths, so a character outside the BMP
// (an emoji) counts twice.
func utf16Len(s string) int {
	n := 0
	for _, r := range s {
		n += utf16.RuneLen(r) // ranging a string never yields a rune RuneLen rejects
	}
	return n
}

// parseValue converts one JSON property into the field's Go value. A JSON
// null returns (nil, nil).
func parseValue(f *fieldSpec, raw json.RawMessage) (any, error) {
	raw = bytes.TrimSpace(raw)
	if string(raw) == "null" {
		return nil, nil
	}
	switch f.Kind {
	case kInt:
		if len(raw) == 0 || raw[0] == '"' {
			// json.Number would take a quoted number; Autotask wants numbers.
			return nil, fmt.Errorf("Unable to convert value for field %s to integer.", f.Name)
		}
		var n json.Number
		d := json.NewDecoder(bytes.NewReader(raw))
		d.UseNumber()
		if err := d.Decode(&n); err != nil {
			return nil, fmt.Errorf("Unable to convert value for field %s to integer.", f.Name)
		}
		i, err := strconv.ParseInt(n.String(), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("Unable to convert value for field %s to integer.", f.Name)
		}
		return i, nil
	case kString:
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, fmt.Errorf("Unable to convert value for field %s to string.", f.Name)
		}
		return s, nil
	case kBool:
		var v bool
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("Unable to convert value for field %s to boolean.", f.Name)
		}
		return v, nil
	case kDate:
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, fmt.Errorf("Unable to convert value for field %s to datetime.", f.Name)
		}
		t, err := parseWireTime(s)
		if err != nil {
			return nil, fmt.Errorf("Unable to convert value for field %s to datetime.", f.Name)
		}
		return t, nil
	}
	return nil, fmt.Errorf("field %s has no type", f.Name)
}

func parseWireTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("bad datetime %q", s)
}

var ticketEntity = newEntity("Ticket", []fieldSpec{
	{Name: "id", Kind: kInt, ReadOnly: true, Queryable: true},
	{Name: "ticketNumber", Kind: kString, Length: 50, ReadOnly: true, Queryable: true},
	{Name: "companyID", Kind: kInt, Required: true, Queryable: true, Ref: "Company"},
	{Name: "title", Kind: kString, Length: 255, Required: true, Queryable: true},
	{Name: "description", Kind: kString, Length: 8000, Queryable: true},
	{Name: "status", Kind: kInt, Required: true, Queryable: true, PickList: true},
	{Name: "priority", Kind: kInt, Required: true, Queryable: true, PickList: true},
	{Name: "queueID", Kind: kInt, Queryable: true, PickList: true},
	{Name: "issueType", Kind: kInt, Queryable: true, PickList: true},
	{Name: "subIssueType", Kind: kInt, Queryable: true, PickList: true, Parent: "issueType"},
	{Name: "ticketType", Kind: kInt, Queryable: true, PickList: true},
	{Name: "source", Kind: kInt, Queryable: true, PickList: true},
	{Name: "ticketCategory", Kind: kInt, Queryable: true, PickList: true},
	{Name: "externalID", Kind: kString, Length: 50, Queryable: true},
	{Name: "contactID", Kind: kInt, Queryable: true, Ref: "Contact"},
	{Name: "assignedResourceID", Kind: kInt, Queryable: true, Ref: "Resource"},
	{Name: "assignedResourceRoleID", Kind: kInt, Queryable: true, Ref: "Role"},
	{Name: "configurationItemID", Kind: kInt, Queryable: true, Ref: "ConfigurationItem"},
	// billingCodeID (the work type) is a reference Autotask also lists
	// with its values; the fake serves it as a picklist (modelled).
	{Name: "billingCodeID", Kind: kInt, Queryable: true, PickList: true, Ref: "BillingCode"},
	{Name: "dueDateTime", Kind: kDate, Queryable: true},
	{Name: "resolution", Kind: kString, Length: 32000, Queryable: true},
	{Name: "createDate", Kind: kDate, ReadOnly: true, Queryable: true},
	{Name: "completedDate", Kind: kDate, ReadOnly: true, Queryable: true},
	{Name: "lastActivityDate", Kind: kDate, ReadOnly: true, Queryable: true},
	{Name: "creatorType", Kind: kInt, ReadOnly: true},
	{Name: "lastActivityPersonType", Kind: kInt, ReadOnly: true},
})

var noteEntity = newEntity("TicketNote", []fieldSpec{
	{Name: "id", Kind: kInt, ReadOnly: true, Queryable: true},
	{Name: "ticketID", Kind: kInt, Required: true, Queryable: true, Ref: "Ticket"},
	{Name: "title", Kind: kString, Length: 250, Required: true, Queryable: true},
	{Name: "description", Kind: kString, Length: 32000, Required: true, Queryable: true},
	{Name: "noteType", Kind: kInt, Required: true, Queryable: true, PickList: true},
	{Name: "publish", Kind: kInt, Required: true, Queryable: true, PickList: true},
	{Name: "createDateTime", Kind: kDate, ReadOnly: true, Queryable: true},
	{Name: "lastActivityDate", Kind: kDate, ReadOnly: true, Queryable: true},
})

var attachmentEntity = newEntity("TicketAttachment", []fieldSpec{
	{Name: "id", Kind: kInt, ReadOnly: true},
	{Name: "parentID", Kind: kInt, ReadOnly: true},
	{Name: "parentType", Kind: kInt, ReadOnly: true},
	{Name: "title", Kind: kString, Length: 255, Required: true},
	{Name: "fullPath", Kind: kString, Length: 255, Required: true},
	{Name: "attachmentType", Kind: kString, Length: 30, Required: true},
	{Name: "publish", Kind: kInt, Required: true, PickList: true},
	{Name: "contentType", Kind: kString, Length: 100, ReadOnly: true},
	{Name: "fileSize", Kind: kInt, ReadOnly: true},
	{Name: "attachDate", Kind: kDate, ReadOnly: true},
	{Name: "attachedByContactID", Kind: kInt},
	{Name: "attachedByResourceID", Kind: kInt, ReadOnly: true},
	{Name: "data", Kind: kString, Hidden: true},
})

var contactEntity = newEntity("Contact", []fieldSpec{
	{Name: "id", Kind: kInt, ReadOnly: true, Queryable: true},
	{Name: "companyID", Kind: kInt, Required: true, Queryable: true, Ref: "Company"},
	{Name: "firstName", Kind: kString, Length: 50, Required: true, Queryable: true},
	{Name: "lastName", Kind: kString, Length: 50, Required: true, Queryable: true},
	{Name: "emailAddress", Kind: kString, Length: 254, Queryable: true},
	{Name: "isActive", Kind: kInt, Queryable: true},
})

var companyEntity = newEntity("Company", []fieldSpec{
	{Name: "id", Kind: kInt, ReadOnly: true, Queryable: true},
	{Name: "companyName", Kind: kString, Length: 100, Required: true, Queryable: true},
	{Name: "companyType", Kind: kInt, Required: true, Queryable: true},
	{Name: "isActive", Kind: kBool, Queryable: true},
	{Name: "webAddress", Kind: kString, Length: 255, Queryable: true},
})

var resourceEntity = newEntity("Resource", []fieldSpec{
	{Name: "id", Kind: kInt, ReadOnly: true, Queryable: true},
	{Name: "userName", Kind: kString, Length: 32, Queryable: true},
	{Name: "email", Kind: kString, Length: 254, Queryable: true},
	{Name: "firstName", Kind: kString, Length: 50, Queryable: true},
	{Name: "lastName", Kind: kString, Length: 50, Queryable: true},
	{Name: "isActive", Kind: kBool, Queryable: true},
})

// fieldInfo is one element of entityInformation/fields.
type fieldInfo struct {
	Name                     string         `json:"name"`
	DataType                 string         `json:"dataType"`
	Length                   int            `json:"length"`
	IsRequired               bool           `json:"isRequired"`
	IsReadOnly               bool           `json:"isReadOnly"`
	IsQueryable              bool           `json:"isQueryable"`
	IsReference              bool           `json:"isReference"`
	ReferenceEntityType      string         `json:"referenceEntityType"`
	IsPickList               bool           `json:"isPickList"`
	PicklistValues           []picklistWire `json:"picklistValues"`
	PicklistParentValueField string         `json:"picklistParentValueField"`
	IsSupportedWebhookField  bool           `json:"isSupportedWebhookField"`
}

type picklistWire struct {
	Value          string `json:"value"`
	Label          string `json:"label"`
	IsDefaultValue bool   `json:"isDefaultValue"`
	SortOrder      int    `json:"sortOrder"`
	ParentValue    string `json:"parentValue"`
	IsActive       bool   `json:"isActive"`
	IsSystem       bool   `json:"isSystem"`
}

func fieldInfos(e *entity, picklists map[string][]PicklistValue, required map[string]bool, lengths map[string]int) []fieldInfo {
	out := make([]fieldInfo, 0, len(e.Fields))
	for _, f := range e.Fields {
		if f.Hidden {
			continue
		}
		length := f.Length
		if l, ok := lengths[f.Name]; ok {
			length = l
		}
		fi := fieldInfo{
			Name: f.Name, DataType: f.Kind.dataType(), Length: length,
			IsRequired: f.Required || required[f.Name], IsReadOnly: f.ReadOnly, IsQueryable: f.Queryable,
			IsReference: f.Ref != "", ReferenceEntityType: f.Ref, IsPickList: f.PickList,
			PicklistParentValueField: f.Parent,
		}
		if f.PickList {
			fi.PicklistValues = []picklistWire{}
			for i, v := range picklists[f.Name] {
				fi.PicklistValues = append(fi.PicklistValues, picklistWire{
					Value: v.Value, Label: v.Label, IsDefaultValue: v.Default, SortOrder: i,
					ParentValue: v.Parent, IsActive: !v.Inactive, IsSystem: v.System,
				})
			}
		}
		out = append(out, fi)
	}
	return out
}
