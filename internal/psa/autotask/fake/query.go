package fake

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// cond is one parsed filter condition.
type cond struct {
	op     string
	field  *fieldSpec
	value  any   // converted to the field's kind
	values []any // in / notIn
	items  []cond
}

type query struct {
	filter     []cond
	maxRecords int
	include    []string
}

type pageState struct {
	ent     string
	method  string
	body    []byte
	search  string
	afterID int64
	q       *query
}

var validOps = map[string]bool{
	"eq": true, "noteq": true, "gt": true, "gte": true, "lt": true, "lte": true,
	"beginsWith": true, "endsWith": true, "contains": true, "exist": true, "notExist": true,
	"in": true, "notIn": true, "and": true, "or": true,
}

// lowerKeys decodes a JSON object with case-insensitive keys.
func lowerKeys(raw json.RawMessage) (map[string]json.RawMessage, bool) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return nil, false
	}
	out := make(map[string]json.RawMessage, len(m))
	for k, v := range m {
		out[strings.ToLower(k)] = v
	}
	return out, true
}

func parseQuery(e *entity, raw []byte) (*query, string) {
	top, ok := lowerKeys(raw)
	if !ok {
		return nil, "Invalid JSON in the query: an object is required."
	}
	q := &query{maxRecords: 500}
	if v, ok := top["maxrecords"]; ok && string(bytes.TrimSpace(v)) != "null" {
		var n int
		if err := json.Unmarshal(v, &n); err != nil || n < 1 || n > 500 {
			return nil, "MaxRecords must be between 1 and 500."
		}
		q.maxRecords = n
	}
	if v, ok := top["includefields"]; ok && string(bytes.TrimSpace(v)) != "null" {
		if err := json.Unmarshal(v, &q.include); err != nil {
			return nil, "IncludeFields must be an array of field names."
		}
		for _, f := range q.include {
			if _, ok := e.field(f); !ok {
				return nil, fmt.Sprintf("IncludeFields: %s is not a field of %s.", f, e.Name)
			}
		}
	}
	fr, ok := top["filter"]
	if !ok {
		return nil, "The query must contain a filter."
	}
	var items []json.RawMessage
	if err := json.Unmarshal(fr, &items); err != nil || len(items) == 0 {
		return nil, "The filter must be a non-empty array of conditions."
	}
	orLeaves := 0
	for _, it := range items {
		c, msg := parseCond(e, it, false, &orLeaves)
		if msg != "" {
			return nil, msg
		}
		q.filter = append(q.filter, c)
	}
	if orLeaves > 500 {
		return nil, "A query may contain at most 500 conditions in OR groups."
	}
	return q, ""
}

func parseCond(e *entity, raw json.RawMessage, inOr bool, orLeaves *int) (cond, string) {
	m, ok := lowerKeys(raw)
	if !ok {
		return cond{}, "Each filter condition must be an object."
	}
	var op string
	if err := json.Unmarshal(m["op"], &op); err != nil || op == "" {
		return cond{}, "Each filter condition needs an op."
	}
	if !validOps[op] {
		return cond{}, fmt.Sprintf("Invalid filter operator '%s'.", op)
	}
	c := cond{op: op}
	if op == "and" || op == "or" {
		var items []json.RawMessage
		if err := json.Unmarshal(m["items"], &items); err != nil || len(items) == 0 {
			return cond{}, fmt.Sprintf("The %s condition needs a non-empty items array.", op)
		}
		for _, it := range items {
			sub, msg := parseCond(e, it, inOr || op == "or", orLeaves)
			if msg != "" {
				return cond{}, msg
			}
			c.items = append(c.items, sub)
		}
		return c, ""
	}
	if inOr {
		*orLeaves++
	}
	var name string
	if err := json.Unmarshal(m["field"], &name); err != nil || name == "" {
		return cond{}, fmt.Sprintf("The %s condition needs a field.", op)
	}
	var udf bool
	if v, ok := m["udf"]; ok {
		_ = json.Unmarshal(v, &udf)
	}
	if udf {
		return cond{}, fmt.Sprintf("User-defined field %s does not exist.", name)
	}
	f, ok := e.field(name)
	if !ok || f.Hidden {
		return cond{}, fmt.Sprintf("%s is not a field of %s.", name, e.Name)
	}
	if !f.Queryable {
		return cond{}, fmt.Sprintf("Field %s of %s is not queryable.", f.Name, e.Name)
	}
	c.field = f
	rv, has := m["value"]
	has = has && string(bytes.TrimSpace(rv)) != "null"
	switch op {
	case "exist", "notExist":
		if has {
			return cond{}, fmt.Sprintf("The %s condition takes no value.", op)
		}
	case "in", "notIn":
		var arr []json.RawMessage
		if !has || json.Unmarshal(rv, &arr) != nil || len(arr) == 0 {
			return cond{}, fmt.Sprintf("The %s condition needs a non-empty array value.", op)
		}
		for _, a := range arr {
			v, err := filterValue(f, a)
			if err != "" {
				return cond{}, err
			}
			c.values = append(c.values, v)
		}
	default:
		if !has {
			return cond{}, fmt.Sprintf("The %s condition needs a value.", op)
		}
		v, err := filterValue(f, rv)
		if err != "" {
			return cond{}, err
		}
		c.value = v
	}
	return c, ""
}

// filterValue converts a filter value to the field's kind.
func filterValue(f *fieldSpec, raw json.RawMessage) (any, string) {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, "Invalid filter value."
	}
	bad := fmt.Sprintf("Invalid value for field %s in the filter.", f.Name)
	switch f.Kind {
	case kInt:
		var s string
		switch x := v.(type) {
		case json.Number:
			s = x.String()
		case string:
			s = x
		default:
			return nil, bad
		}
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil {
			return nil, bad
		}
		return n, ""
	case kString:
		switch x := v.(type) {
		case string:
			return x, ""
		case json.Number:
			return x.String(), ""
		case bool:
			return strconv.FormatBool(x), ""
		}
		return nil, bad
	case kBool:
		switch x := v.(type) {
		case bool:
			return x, ""
		case string:
			b, err := strconv.ParseBool(x)
			if err != nil {
				return nil, bad
			}
			return b, ""
		}
		return nil, bad
	case kDate:
		s, ok := v.(string)
		if !ok {
			return nil, bad
		}
		t, err := parseWireTime(s)
		if err != nil {
			return nil, bad
		}
		return t, ""
	}
	return nil, bad
}

func compare(a, b any) int {
	switch x := a.(type) {
	case int64:
		y := b.(int64)
		switch {
		case x < y:
			return -1
		case x > y:
			return 1
		}
		return 0
	case string:
		return strings.Compare(strings.ToLower(x), strings.ToLower(b.(string)))
	case time.Time:
		return x.Compare(b.(time.Time))
	case bool:
		y := b.(bool)
		if x == y {
			return 0
		}
		if !x {
			return -1
		}
		return 1
	}
	return 0
}

func textOf(v any) string {
	switch x := v.(type) {
	case string:
		return strings.ToLower(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case bool:
		return strconv.FormatBool(x)
	case time.Time:
		return x.UTC().Format(wireTime)
	}
	return ""
}

func (c cond) match(r record) bool {
	switch c.op {
	case "and":
		for _, it := range c.items {
			if !it.match(r) {
				return false
			}
		}
		return true
	case "or":
		for _, it := range c.items {
			if it.match(r) {
				return true
			}
		}
		return false
	}
	v, present := r[c.field.Name]
	if s, ok := v.(string); ok && s == "" {
		present = false
	}
	switch c.op {
	case "exist":
		return present
	case "notExist":
		return !present
	case "noteq":
		return !present || compare(v, c.value) != 0
	case "notIn":
		if !present {
			return true
		}
		for _, x := range c.values {
			if compare(v, x) == 0 {
				return false
			}
		}
		return true
	}
	if !present {
		return false
	}
	switch c.op {
	case "eq":
		return compare(v, c.value) == 0
	case "gt":
		return compare(v, c.value) > 0
	case "gte":
		return compare(v, c.value) >= 0
	case "lt":
		return compare(v, c.value) < 0
	case "lte":
		return compare(v, c.value) <= 0
	case "contains":
		return strings.Contains(textOf(v), textOf(c.value))
	case "beginsWith":
		return strings.HasPrefix(textOf(v), textOf(c.value))
	case "endsWith":
		return strings.HasSuffix(textOf(v), textOf(c.value))
	case "in":
		for _, x := range c.values {
			if compare(v, x) == 0 {
				return true
			}
		}
		return false
	}
	return false
}

func (q *query) match(r record) bool {
	for _, c := range q.filter {
		if !c.match(r) {
			return false
		}
	}
	return true
}

// queryRoute serves <Entity>/query, /query/count and /query/next.
func (s *Server) queryRoute(w http.ResponseWriter, r *http.Request, body []byte, ent string, rest []string) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		notAllowed(w, r.Method)
		return
	}
	switch {
	case len(rest) == 0:
		s.runQuery(w, r, body, ent, false)
	case len(rest) == 1 && rest[0] == "count":
		s.runQuery(w, r, body, ent, true)
	case len(rest) == 1 && rest[0] == "next":
		s.nextPage(w, r, body, ent)
	default:
		notFound(w)
	}
}

func (s *Server) runQuery(w http.ResponseWriter, r *http.Request, body []byte, ent string, count bool) {
	raw := body
	search := ""
	if r.Method == http.MethodGet {
		search = r.URL.Query().Get("search")
		if search == "" {
			writeErrors(w, http.StatusInternalServerError, "The search parameter with the query is missing.")
			return
		}
		raw = []byte(search)
	}
	s.mu.Lock()
	e, rows := s.rowsLocked(ent)
	s.mu.Unlock()
	q, msg := parseQuery(e, raw)
	if msg != "" {
		writeErrors(w, http.StatusInternalServerError, msg)
		return
	}
	if count {
		n := 0
		for _, row := range rows {
			if q.match(row) {
				n++
			}
		}
		writeJSON(w, http.StatusOK, map[string]int{"queryCount": n})
		return
	}
	st := &pageState{ent: ent, method: r.Method, body: bytes.TrimSpace(body), search: search, q: q}
	s.page(w, r, e, rows, st)
}

func (s *Server) nextPage(w http.ResponseWriter, r *http.Request, body []byte, ent string) {
	var paging struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal([]byte(r.URL.Query().Get("paging")), &paging); err != nil || paging.Token == "" {
		writeErrors(w, http.StatusInternalServerError, "The paging parameter is missing or invalid.")
		return
	}
	s.mu.Lock()
	st, ok := s.pages[paging.Token]
	s.mu.Unlock()
	if !ok || st.ent != ent {
		writeErrors(w, http.StatusInternalServerError, "The paging parameter is missing or invalid.")
		return
	}
	if r.Method != st.method {
		notAllowed(w, r.Method)
		return
	}
	if st.method == http.MethodPost && !bytes.Equal(bytes.TrimSpace(body), st.body) {
		writeErrors(w, http.StatusInternalServerError, "The next page of a POST query must be requested with the same body as the first page.")
		return
	}
	if st.method == http.MethodGet && r.URL.Query().Get("search") != st.search {
		writeErrors(w, http.StatusInternalServerError, "The next page of a GET query must repeat the search parameter.")
		return
	}
	s.mu.Lock()
	e, rows := s.rowsLocked(ent)
	s.mu.Unlock()
	s.page(w, r, e, rows, st)
}

// page writes the rows after st.afterID and mints the next page URL.
func (s *Server) page(w http.ResponseWriter, r *http.Request, e *entity, rows []record, st *pageState) {
	size := min(st.q.maxRecords, s.cfg.PageSize)
	var hits []record
	for _, row := range rows {
		if row.int("id") > st.afterID && st.q.match(row) {
			hits = append(hits, row)
		}
	}
	if len(hits) > size && len(st.q.include) > 0 {
		hasID := false
		for _, f := range st.q.include {
			hasID = hasID || strings.EqualFold(f, "id")
		}
		if !hasID {
			writeErrors(w, http.StatusInternalServerError, "IncludeFields must contain id when the result has more than one page.")
			return
		}
	}
	more := len(hits) > size
	if more {
		hits = hits[:size]
	}
	items := make([]json.RawMessage, 0, len(hits))
	for _, h := range hits {
		items = append(items, e.marshal(h, st.q.include, false))
	}
	var next any
	if more {
		ns := *st
		ns.afterID = hits[len(hits)-1].int("id")
		s.mu.Lock()
		s.pageSeq++
		tok := "p" + strconv.Itoa(s.pageSeq)
		s.pages[tok] = &ns
		s.mu.Unlock()
		paging, _ := json.Marshal(map[string]any{"pageSize": size, "token": tok})
		u := "http://" + r.Host + "/ATServicesRest/V1.0/" + entityPath(st.ent) + "/query/next?paging=" + url.QueryEscape(string(paging))
		if st.method == http.MethodGet {
			u += "&search=" + url.QueryEscape(st.search)
		}
		next = u
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"items": items,
		"pageDetails": map[string]any{
			"count": len(items), "requestCount": st.q.maxRecords, "prevPageUrl": nil, "nextPageUrl": next,
		},
	})
}

func entityPath(ent string) string {
	switch ent {
	case "tickets":
		return "Tickets"
	case "ticketnotes":
		return "TicketNotes"
	case "companies":
		return "Companies"
	case "resources":
		return "Resources"
	case "contacts":
		return "Contacts"
	}
	return ent
}
