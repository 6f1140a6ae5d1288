package fake

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
)

// props are the properties of a write body, matched to fields.
type props map[string]any // canonical name → value; nil value = explicit null

// parseProps decodes a write body against e. It refuses unknown and
// read-only properties (other than id, which the caller checks).
func parseProps(e *entity, body []byte) (props, int64, string) {
	var raw map[string]json.RawMessage
	d := json.NewDecoder(bytes.NewReader(body))
	if err := d.Decode(&raw); err != nil || raw == nil {
		return nil, 0, "Invalid JSON in the request body: an object is required."
	}
	if d.More() {
		return nil, 0, "Invalid JSON in the request body: trailing data."
	}
	out := props{}
	var id int64
	for k, v := range raw {
		if e == ticketEntity && strings.EqualFold(k, "userDefinedFields") {
			var udfs []struct {
				Name  *string `json:"name"`
				Value *string `json:"value"`
			}
			if err := json.Unmarshal(v, &udfs); err != nil {
				return nil, 0, "Unable to convert value for field userDefinedFields: an array of {name, value} is required."
			}
			m := map[string]string{}
			for _, u := range udfs {
				if u.Name == nil {
					return nil, 0, "Missing required field: name (userDefinedFields)."
				}
				if u.Value != nil {
					m[*u.Name] = *u.Value
				}
			}
			out["userDefinedFields"] = m
			continue
		}
		f, ok := e.field(k)
		if !ok {
			return nil, 0, fmt.Sprintf("The property '%s' does not exist on the %s entity.", k, e.Name)
		}
		val, err := parseValue(f, v)
		if err != nil {
			return nil, 0, err.Error()
		}
		if f.Name == "id" {
			if val != nil {
				id = val.(int64)
			}
			continue
		}
		if f.Kind == kBool && val == nil {
			return nil, 0, fmt.Sprintf("Null value is not allowed for field %s.", f.Name)
		}
		if f.ReadOnly {
			if val != nil {
				return nil, 0, fmt.Sprintf("Field %s is read-only.", f.Name)
			}
			continue
		}
		out[f.Name] = val
	}
	return out, id, ""
}

func (s *Server) picklistsFor(e *entity) map[string][]PicklistValue {
	switch e {
	case ticketEntity:
		return s.cfg.TicketPicklists
	case noteEntity:
		return s.cfg.NotePicklists
	case attachmentEntity:
		return map[string][]PicklistValue{"publish": s.cfg.AttachmentPublish}
	}
	return nil
}

// validateLocked checks rec after a write; changed are the fields the
// write set. It returns the Autotask message, or "".
func (s *Server) validateLocked(e *entity, rec record, changed props, required map[string]bool) string {
	for _, f := range e.Fields {
		if f.ReadOnly || f.Hidden {
			continue
		}
		v, present := rec[f.Name]
		if f.Required || required[f.Name] {
			if !present || v == nil || v == "" {
				return fmt.Sprintf("Missing required field: %s.", f.Name)
			}
		}
		if _, ch := changed[f.Name]; !ch || !present {
			continue
		}
		length := f.Length
		if l, ok := s.cfg.FieldLengths[f.Name]; ok && e == ticketEntity {
			length = l
		}
		if str, ok := v.(string); ok && length > 0 && utf16Len(str) > length {
			return fmt.Sprintf("Value for field %s exceeds the maximum length of %d characters.", f.Name, length)
		}
	}
	lists := s.picklistsFor(e)
	for _, f := range e.Fields {
		if !f.PickList {
			continue
		}
		v, present := rec[f.Name]
		_, ch := changed[f.Name]
		_, parentCh := changed[f.Parent]
		if !present || (!ch && !(f.Parent != "" && parentCh)) {
			continue
		}
		val := strconv.FormatInt(v.(int64), 10)
		var found *PicklistValue
		for i := range lists[f.Name] {
			if lists[f.Name][i].Value == val {
				found = &lists[f.Name][i]
				break
			}
		}
		if found == nil {
			return fmt.Sprintf("Picklist value [%s] does not exist for %s.", val, f.Name)
		}
		if found.Inactive && ch {
			return fmt.Sprintf("Picklist value [%s] is inactive for %s.", val, f.Name)
		}
		if f.Parent != "" {
			pv, ok := rec[f.Parent].(int64)
			if !ok {
				return fmt.Sprintf("Field %s requires a value for %s.", f.Name, f.Parent)
			}
			if found.Parent != strconv.FormatInt(pv, 10) {
				return fmt.Sprintf("Picklist value [%s] for %s is not valid for %s [%d].", val, f.Name, f.Parent, pv)
			}
		}
	}
	return ""
}

// validateTicketRefsLocked checks references and the resource pairing.
func (s *Server) validateTicketRefsLocked(rec record, changed props) string {
	if _, ch := changed["companyID"]; ch {
		found := false
		for _, c := range s.cfg.Companies {
			if c.ID == rec.int("companyID") {
				found = true
			}
		}
		if !found {
			return "Reference value on field: companyID of type: Company does not exist or is invalid."
		}
	}
	_, hasRes := rec["assignedResourceID"]
	_, hasRole := rec["assignedResourceRoleID"]
	if hasRes != hasRole {
		return "When assigning a Resource, you must assign both a assignedResourceID and assignedResourceRoleID."
	}
	if _, ch := changed["assignedResourceID"]; ch && hasRes {
		found := false
		for _, r := range s.cfg.Resources {
			if r.ID == rec.int("assignedResourceID") {
				found = true
			}
		}
		if !found {
			return "Reference value on field: assignedResourceID of type: Resource does not exist or is invalid."
		}
	}
	if _, ch := changed["contactID"]; ch && rec["contactID"] != nil {
		found := false
		for _, c := range s.cfg.Contacts {
			if c.ID == rec.int("contactID") && c.CompanyID == rec.int("companyID") {
				found = true
			}
		}
		if !found {
			return "Reference value on field: contactID of type: Contact does not exist or is invalid."
		}
	}
	// The fake models no configuration items.
	for _, f := range []string{"configurationItemID"} {
		if _, ch := changed[f]; ch && rec[f] != nil {
			spec, _ := ticketEntity.field(f)
			return fmt.Sprintf("Reference value on field: %s of type: %s does not exist or is invalid.", f, spec.Ref)
		}
	}
	return ""
}

// validateUDFsLocked checks the user-defined fields of a ticket: names
// must exist, lengths hold, and required ones be set on create.
func (s *Server) validateUDFsLocked(rec record, create bool) string {
	got, _ := rec["userDefinedFields"].(map[string]string)
	for name, v := range got {
		var def *UDF
		for i := range s.cfg.UDFs {
			if strings.EqualFold(s.cfg.UDFs[i].Name, name) {
				def = &s.cfg.UDFs[i]
			}
		}
		if def == nil {
			return fmt.Sprintf("User defined field %s does not exist.", name)
		}
		if def.Length > 0 && utf16Len(v) > def.Length {
			return fmt.Sprintf("Value for user defined field %s exceeds the maximum length of %d characters.", def.Name, def.Length)
		}
	}
	if !create {
		return ""
	}
	for _, u := range s.cfg.UDFs {
		if !u.Required {
			continue
		}
		set := false
		for name, v := range got {
			if strings.EqualFold(name, u.Name) && v != "" {
				set = true
			}
		}
		if !set {
			return fmt.Sprintf("User defined field %s is required.", u.Name)
		}
	}
	return ""
}

func applyProps(rec record, p props) {
	for k, v := range p {
		if v == nil {
			delete(rec, k)
		} else {
			rec[k] = v
		}
	}
}

// writeTicket handles POST (create), PATCH (sparse update) and PUT
// (replace) on /Tickets.
func (s *Server) writeTicket(w http.ResponseWriter, method string, body []byte) {
	p, id, msg := parseProps(ticketEntity, body)
	if msg != "" {
		writeErrors(w, http.StatusInternalServerError, msg)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now().UTC()
	var rec record
	switch method {
	case http.MethodPost:
		if id != 0 {
			writeErrors(w, http.StatusInternalServerError, "Field id must be 0 or absent on create.")
			return
		}
		rec = record{}
	default:
		if id <= 0 {
			writeErrors(w, http.StatusInternalServerError, "The id of the Ticket to update is missing from the request body.")
			return
		}
		old, ok := s.tickets[id]
		if !ok {
			if s.cfg.MissingPatchStatus == http.StatusNotFound {
				writeErrors(w, http.StatusNotFound, fmt.Sprintf("Ticket %d not found.", id))
			} else {
				writeErrors(w, http.StatusInternalServerError, fmt.Sprintf("Unable to find the Ticket with id %d.", id))
			}
			return
		}
		if method == http.MethodPatch {
			rec = old.clone()
		} else {
			rec = record{}
			for _, f := range ticketEntity.Fields {
				if f.ReadOnly {
					if v, ok := old[f.Name]; ok {
						rec[f.Name] = v
					}
				}
			}
		}
	}
	applyProps(rec, p)
	changed := p
	if method != http.MethodPatch {
		// A create or replace validates every field it ends up with.
		changed = props{}
		for k, v := range rec {
			changed[k] = v
		}
	}
	if m := s.validateLocked(ticketEntity, rec, changed, s.requiredTicketLocked()); m != "" {
		writeErrors(w, http.StatusInternalServerError, m)
		return
	}
	if m := s.validateUDFsLocked(rec, method == http.MethodPost); m != "" {
		writeErrors(w, http.StatusInternalServerError, m)
		return
	}
	if m := s.validateTicketRefsLocked(rec, changed); m != "" {
		writeErrors(w, http.StatusInternalServerError, m)
		return
	}
	if method == http.MethodPost && rec["dueDateTime"] == nil {
		// The real API refuses a ticket without a due date unless the
		// category defaults one, although the metadata does not mark the
		// field required (WYRE-AI/autotask-mcp pull request #288). The
		// fake models a tenant whose categories default none: always.
		writeErrors(w, http.StatusInternalServerError, "dueDateTime is required.; on record number [0].")
		return
	}
	if method == http.MethodPost {
		id = s.nextTicket
		s.nextTicket++
		day := now.Format("20060102")
		s.numberSeq[day]++
		rec["id"] = id
		rec["ticketNumber"] = fmt.Sprintf("T%s.%04d", day, s.numberSeq[day])
		rec["createDate"] = now
		rec["creatorType"] = int64(1)
	}
	rec["lastActivityDate"] = now
	rec["lastActivityPersonType"] = int64(1)
	if rec.int("status") == 5 {
		if _, done := rec["completedDate"]; !done {
			rec["completedDate"] = now
		}
	} else {
		delete(rec, "completedDate")
	}
	s.tickets[id] = rec
	writeRaw(w, http.StatusOK, []byte(`{"itemId":`+strconv.FormatInt(id, 10)+`}`))
}

func (s *Server) getTicket(w http.ResponseWriter, id int64) {
	s.mu.Lock()
	rec, ok := s.tickets[id]
	var b json.RawMessage
	if ok {
		b = ticketEntity.marshal(rec, nil, false)
	}
	s.mu.Unlock()
	if !ok {
		writeErrors(w, http.StatusNotFound, fmt.Sprintf("Ticket %d not found.", id))
		return
	}
	writeJSON(w, http.StatusOK, map[string]json.RawMessage{"item": b})
}

func listAnswer(items []json.RawMessage) map[string]any {
	if items == nil {
		items = []json.RawMessage{}
	}
	return map[string]any{
		"items": items,
		"pageDetails": map[string]any{
			"count": len(items), "requestCount": 500, "prevPageUrl": nil, "nextPageUrl": nil,
		},
	}
}

func (s *Server) createNote(w http.ResponseWriter, tid int64, body []byte) {
	p, id, msg := parseProps(noteEntity, body)
	if msg != "" {
		writeErrors(w, http.StatusInternalServerError, msg)
		return
	}
	if id != 0 {
		writeErrors(w, http.StatusInternalServerError, "Field id must be 0 or absent on create.")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tickets[tid]
	if !ok {
		writeErrors(w, http.StatusInternalServerError, "Reference value on field: ticketID of type: Ticket does not exist or is invalid.")
		return
	}
	if v, ok := p["ticketID"]; ok && v != nil && v.(int64) != tid {
		writeErrors(w, http.StatusInternalServerError, "The ticketID in the body does not match the parent ticket of the URL.")
		return
	}
	rec := record{}
	applyProps(rec, p)
	rec["ticketID"] = tid
	changed := props{}
	for k, v := range rec {
		changed[k] = v
	}
	if m := s.validateNoteLocked(rec, changed, nil); m != "" {
		writeErrors(w, http.StatusInternalServerError, m)
		return
	}
	now := s.now().UTC()
	nid := s.nextNote
	s.nextNote++
	rec["id"] = nid
	rec["createDateTime"] = now
	rec["lastActivityDate"] = now
	s.notes[nid] = rec
	t["lastActivityDate"] = now
	writeRaw(w, http.StatusOK, []byte(`{"itemId":`+strconv.FormatInt(nid, 10)+`}`))
}

func (s *Server) validateNoteLocked(rec record, changed props, req map[string]bool) string {
	if !s.cfg.RequireNoteTitle && rec.str("title") == "" {
		// Check everything else with a placeholder title; an empty title is
		// allowed by the tenant.
		tmp := rec.clone()
		tmp["title"] = "-"
		return s.validateLocked(noteEntity, tmp, changed, req)
	}
	return s.validateLocked(noteEntity, rec, changed, req)
}

func (s *Server) listNotes(w http.ResponseWriter, tid int64) {
	s.mu.Lock()
	_, ok := s.tickets[tid]
	var items []json.RawMessage
	for _, id := range sortedIDs(s.notes) {
		if s.notes[id].int("ticketID") == tid {
			items = append(items, noteEntity.marshal(s.notes[id], nil, false))
		}
	}
	s.mu.Unlock()
	if !ok {
		writeErrors(w, http.StatusNotFound, fmt.Sprintf("Ticket %d not found.", tid))
		return
	}
	writeJSON(w, http.StatusOK, listAnswer(items))
}

func (s *Server) createAttachment(w http.ResponseWriter, tid int64, body []byte) {
	p, id, msg := parseProps(attachmentEntity, body)
	if msg != "" {
		writeErrors(w, http.StatusInternalServerError, msg)
		return
	}
	if id != 0 {
		writeErrors(w, http.StatusInternalServerError, "Field id must be 0 or absent on create.")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.tickets[tid]; !ok {
		writeErrors(w, http.StatusInternalServerError, "Reference value on field: parentID of type: Ticket does not exist or is invalid.")
		return
	}
	rec := record{}
	applyProps(rec, p)
	changed := props{}
	for k, v := range rec {
		changed[k] = v
	}
	if m := s.validateLocked(attachmentEntity, rec, changed, nil); m != "" {
		writeErrors(w, http.StatusInternalServerError, m)
		return
	}
	typ := rec.str("attachmentType")
	allowed := false
	for _, t := range s.cfg.AttachmentTypes {
		if t == typ {
			allowed = true
		}
	}
	if !allowed {
		writeErrors(w, http.StatusInternalServerError, fmt.Sprintf("Attachment type %s is not supported; use one of %s.", typ, strings.Join(s.cfg.AttachmentTypes, ", ")))
		return
	}
	var data []byte
	if typ == "FILE_ATTACHMENT" {
		enc := rec.str("data")
		if enc == "" {
			writeErrors(w, http.StatusInternalServerError, "Missing required field: data (required when attachmentType is FILE_ATTACHMENT).")
			return
		}
		var err error
		data, err = base64.StdEncoding.DecodeString(enc)
		if err != nil {
			writeErrors(w, http.StatusInternalServerError, "The value of field data is not valid base64.")
			return
		}
	}
	if len(data) > s.cfg.MaxAttachmentBytes {
		writeErrors(w, http.StatusInternalServerError, fmt.Sprintf("The attachment is %d bytes; the maximum attachment size is %d bytes.", len(data), s.cfg.MaxAttachmentBytes))
		return
	}
	now := s.now()
	if now.Before(s.attachBlock) {
		writeErrors(w, http.StatusInternalServerError, "Attachment creation is blocked: the upload limit per time window was exceeded.")
		return
	}
	cut := now.Add(-s.cfg.AttachmentWindow)
	sum := 0
	kept := s.uploads[:0]
	for _, u := range s.uploads {
		if u.at.After(cut) {
			kept = append(kept, u)
			sum += u.bytes
		}
	}
	s.uploads = kept
	if sum+len(data) > s.cfg.AttachmentWindowBytes {
		s.attachBlock = now.Add(s.cfg.AttachmentWindow)
		writeErrors(w, http.StatusInternalServerError, fmt.Sprintf("Attachment upload limit exceeded: at most %d bytes per %s; attachment creation is blocked for %s.", s.cfg.AttachmentWindowBytes, s.cfg.AttachmentWindow, s.cfg.AttachmentWindow))
		return
	}
	s.uploads = append(s.uploads, upload{at: now, bytes: len(data)})
	ct := mime.TypeByExtension(strings.ToLower(filepath.Ext(rec.str("fullPath"))))
	if ct == "" {
		ct = "application/octet-stream"
	}
	aid := s.nextAttach
	s.nextAttach++
	delete(rec, "data")
	rec["id"] = aid
	rec["parentID"] = tid
	rec["parentType"] = int64(4)
	rec["contentType"] = ct
	rec["fileSize"] = int64(len(data))
	rec["attachDate"] = now.UTC()
	s.attachments[aid] = rec
	s.attachData[aid] = data
	s.tickets[tid]["lastActivityDate"] = now.UTC()
	writeRaw(w, http.StatusOK, []byte(`{"itemId":`+strconv.FormatInt(aid, 10)+`}`))
}

func (s *Server) listAttachments(w http.ResponseWriter, tid int64) {
	s.mu.Lock()
	_, ok := s.tickets[tid]
	var items []json.RawMessage
	for _, id := range sortedIDs(s.attachments) {
		if s.attachments[id].int("parentID") == tid {
			items = append(items, attachmentEntity.marshal(s.attachments[id], nil, false))
		}
	}
	s.mu.Unlock()
	if !ok {
		writeErrors(w, http.StatusNotFound, fmt.Sprintf("Ticket %d not found.", tid))
		return
	}
	writeJSON(w, http.StatusOK, listAnswer(items))
}

func (s *Server) getAttachment(w http.ResponseWriter, tid, aid int64) {
	s.mu.Lock()
	rec, ok := s.attachments[aid]
	var b json.RawMessage
	if ok && rec.int("parentID") == tid {
		withData := rec.clone()
		withData["data"] = base64.StdEncoding.EncodeToString(s.attachData[aid])
		b = attachmentEntity.marshal(withData, nil, true)
	}
	s.mu.Unlock()
	if b == nil {
		writeErrors(w, http.StatusNotFound, fmt.Sprintf("Attachment %d not found on ticket %d.", aid, tid))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": []json.RawMessage{b}})
}

func companyRecord(c Company) record {
	t := c.Type
	if t == 0 {
		t = 1
	}
	return record{"id": c.ID, "companyName": c.Name, "companyType": int64(t), "isActive": !c.Inactive, "webAddress": c.WebAddress}
}

func resourceRecord(r Resource) record {
	return record{"id": r.ID, "userName": r.UserName, "email": r.Email, "firstName": r.FirstName, "lastName": r.LastName, "isActive": !r.Inactive}
}

func (s *Server) getCompany(w http.ResponseWriter, id int64) {
	s.mu.Lock()
	var b json.RawMessage
	for _, c := range s.cfg.Companies {
		if c.ID == id {
			b = companyEntity.marshal(companyRecord(c), nil, false)
		}
	}
	s.mu.Unlock()
	if b == nil {
		writeErrors(w, http.StatusNotFound, fmt.Sprintf("Company %d not found.", id))
		return
	}
	writeJSON(w, http.StatusOK, map[string]json.RawMessage{"item": b})
}

// rowsLocked returns the rows of a queryable entity ordered by id.
func (s *Server) rowsLocked(ent string) (*entity, []record) {
	var out []record
	switch ent {
	case "tickets":
		for _, id := range sortedIDs(s.tickets) {
			out = append(out, s.tickets[id].clone())
		}
		return ticketEntity, out
	case "ticketnotes":
		for _, id := range sortedIDs(s.notes) {
			out = append(out, s.notes[id].clone())
		}
		return noteEntity, out
	case "companies":
		for _, c := range s.cfg.Companies {
			out = append(out, companyRecord(c))
		}
		sortRecords(out)
		return companyEntity, out
	case "contacts":
		for _, c := range s.cfg.Contacts {
			out = append(out, record{"id": c.ID, "companyID": c.CompanyID, "firstName": c.FirstName,
				"lastName": c.LastName, "emailAddress": c.Email, "isActive": int64(1)})
		}
		sortRecords(out)
		return contactEntity, out
	case "resources":
		for _, r := range s.cfg.Resources {
			out = append(out, resourceRecord(r))
		}
		sortRecords(out)
		return resourceEntity, out
	}
	return nil, nil
}

func sortRecords(rs []record) {
	for i := 1; i < len(rs); i++ {
		for j := i; j > 0 && rs[j].int("id") < rs[j-1].int("id"); j-- {
			rs[j], rs[j-1] = rs[j-1], rs[j]
		}
	}
}
