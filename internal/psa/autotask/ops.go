package autotask

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"

	"psagate/internal/psa"
	"psagate/internal/sanitize"
)

// Field limits of the Autotask entities, in .NET string lengths (UTF-16
// code units).
const (
	maxTitle       = 255
	maxDescription = 8000
	maxExternalID  = 50
	maxNoteTitle   = 250
	maxNoteText    = 32000
	maxAttachTitle = 255
	maxFullPath    = 255
	// MaxAttachmentBytes is the largest file psagate uploads; a larger one
	// becomes a note. Autotask documents 6-7 MB per file through the API.
	MaxAttachmentBytes = 6_000_000
	attachWindowBytes  = 10_000_000
	attachWindow       = 5 * time.Minute
	companyTTL         = time.Hour
)

// units counts UTF-16 code units: Autotask is a .NET service, and its field
// lengths are .NET string lengths, in which a character outside the Basic
// Multilingual Plane (an emoji) counts twice.
func units(s string) int {
	n := 0
	for _, r := range s {
		n += utf16.RuneLen(r)
	}
	return n
}

// cut shortens s to at most max UTF-16 units at a rune boundary, ending it
// with marker (counted in max) when it cuts.
func cut(s string, max int, marker string) string {
	if units(s) <= max {
		return s
	}
	room := max - units(marker)
	if room < 0 {
		room, marker = max, ""
	}
	n := 0
	for i, r := range s {
		if n+utf16.RuneLen(r) > room {
			return s[:i] + marker
		}
		n += utf16.RuneLen(r)
	}
	return s + marker
}

func ticketID(op string, ref psa.TicketRef) (int64, error) {
	if ref.Provider != "" && ref.Provider != Name {
		return 0, &psa.Error{Provider: Name, Op: op, Kind: psa.Permanent, Message: "ticket " + ref.String() + " is not an Autotask ticket"}
	}
	id, err := strconv.ParseInt(strings.TrimSpace(ref.ID), 10, 64)
	if err != nil || id <= 0 {
		return 0, &psa.Error{Provider: Name, Op: op, Kind: psa.Permanent, Message: fmt.Sprintf("ticket id %q is not an Autotask ticket id", sanitize.Line(ref.ID))}
	}
	return id, nil
}

// queryAnswer is the answer of <Entity>/query.
type queryAnswer[T any] struct {
	Items       []T `json:"items"`
	PageDetails struct {
		Count       int     `json:"count"`
		NextPageURL *string `json:"nextPageUrl"`
	} `json:"pageDetails"`
}

type filter = map[string]any

func cond(op, field string, value any) filter {
	return filter{"op": op, "field": field, "value": value}
}

type ticketRow struct {
	ID           int64  `json:"id"`
	TicketNumber string `json:"ticketNumber"`
	ExternalID   string `json:"externalID"`
	Status       *int64 `json:"status"`
}

// Create opens a ticket. On a retried job it first looks for a ticket with
// the job's externalID and returns that one instead of opening a second.
func (p *Provider) Create(ctx context.Context, c psa.Call, t psa.Ticket) (psa.TicketRef, error) {
	j, err := p.job(c.Settings, "create", true, true)
	if err != nil {
		return psa.TicketRef{}, err
	}
	ext := cut(sanitize.Line(t.ExternalRef), maxExternalID, "")
	if c.Retry && ext != "" {
		if ref, ok, err := j.findTicket(ctx, ext); err != nil || ok {
			return ref, err
		}
	}
	body, err := j.ticketBody(ctx, t, ext)
	if err != nil {
		return psa.TicketRef{}, err
	}
	var res struct {
		ItemID int64 `json:"itemId"`
	}
	if err := j.call(ctx, http.MethodPost, "Tickets", body, &res); err != nil {
		return psa.TicketRef{}, err
	}
	if res.ItemID <= 0 {
		// Something was written, maybe: let the retry look for it.
		return psa.TicketRef{}, j.fail(psa.Transient, "Autotask answered the ticket create without an itemId")
	}
	ref := psa.TicketRef{Provider: Name, ID: strconv.FormatInt(res.ItemID, 10)}
	// The ticket number (T20250211.0001) is what technicians search for;
	// one GET per new ticket is cheap next to the hourly budget. Failing to
	// read it must not fail a create that worked.
	var got struct {
		Item *ticketRow `json:"item"`
	}
	if err := j.call(ctx, http.MethodGet, "Tickets/"+ref.ID, nil, &got); err != nil {
		p.log.Warn("autotask: ticket created, but its number could not be read", "ticket", ref.ID, "err", err)
	} else if got.Item != nil {
		ref.Number = got.Item.TicketNumber
	}
	p.log.Info("autotask ticket created", "ticket", ref.String(), "external_id", ext)
	return ref, nil
}

// findTicket looks for a ticket with externalID ext.
func (j *job) findTicket(ctx context.Context, ext string) (psa.TicketRef, bool, error) {
	q := map[string]any{
		"filter":        []filter{cond("eq", "externalID", ext)},
		"IncludeFields": []string{"id", "ticketNumber", "externalID"},
		"MaxRecords":    10,
	}
	var ans queryAnswer[ticketRow]
	if err := j.call(ctx, http.MethodPost, "Tickets/query", q, &ans); err != nil {
		return psa.TicketRef{}, false, err
	}
	var best *ticketRow
	for i, r := range ans.Items {
		if r.ExternalID != ext {
			continue // eq compares case-insensitively; ours are exact
		}
		if best == nil || r.ID < best.ID {
			best = &ans.Items[i]
		}
	}
	if best == nil {
		return psa.TicketRef{}, false, nil
	}
	ref := psa.TicketRef{Provider: Name, ID: strconv.FormatInt(best.ID, 10), Number: best.TicketNumber}
	j.p.log.Info("autotask: retried create found the ticket of the earlier attempt", "ticket", ref.String(), "external_id", ext)
	return ref, true, nil
}

// ticketBody builds the create body from the ticket and the settings. Unset
// settings are left out: Autotask answers nulls with HTTP 500.
func (j *job) ticketBody(ctx context.Context, t psa.Ticket, ext string) (map[string]any, error) {
	company, err := j.companyID(ctx)
	if err != nil {
		return nil, err
	}
	title := sanitize.Line(t.Summary)
	if title == "" {
		title = "psagate alert"
	}
	maxT, maxD := maxTitle, maxDescription
	if fs, err := j.fields(ctx, "Tickets", false); err == nil {
		maxT, maxD = fs.length("title", maxTitle), fs.length("description", maxDescription)
	}
	body := map[string]any{
		"companyID": company,
		"title":     cut(title, maxT, "…"),
	}
	if d := sanitize.Text(t.Description); d != "" {
		if n := units(d); n > maxD {
			d = cut(d, maxD, fmt.Sprintf("\n\n[… cut by psagate: the alert text has %d characters, Autotask keeps %d]", n, maxD))
		}
		body["description"] = d
	}
	if ext != "" {
		body["externalID"] = ext
	}
	// Always in UTC: Autotask reads datetimes without a zone as UTC.
	body["dueDateTime"] = j.p.now().Add(j.c.dueIn).UTC().Format("2006-01-02T15:04:05Z")
	fields := []struct{ key, field string }{
		{"status", "status"}, {"priority", "priority"}, {"queue_id", "queueID"}, {"issue_type", "issueType"},
		{"ticket_type", "ticketType"}, {"source", "source"}, {"ticket_category", "ticketCategory"},
		{"billing_code_id", "billingCodeID"},
	}
	for _, f := range fields {
		v, ok, err := j.pick(ctx, f.key, "")
		if err != nil {
			return nil, err
		}
		if ok {
			body[f.field] = num(v.Value)
		}
	}
	if !isUnset(j.c.get("sub_issue_type")) {
		issue, ok := body["issueType"]
		if !ok {
			return nil, j.settingErr("sub_issue_type", "autotask.sub_issue_type is set without autotask.issue_type: a sub-issue type belongs to an issue type")
		}
		v, _, err := j.pick(ctx, "sub_issue_type", fmt.Sprint(issue))
		if err != nil {
			return nil, err
		}
		body["subIssueType"] = num(v.Value)
	}
	if j.c.contact != "" && !isUnset(j.c.contact) {
		id, err := j.contactID(ctx, company)
		if err != nil {
			return nil, err
		}
		body["contactID"] = id
	}
	if len(j.c.udfs) > 0 {
		names := make([]string, 0, len(j.c.udfs))
		for n := range j.c.udfs {
			names = append(names, n)
		}
		slices.Sort(names)
		udfs := make([]map[string]string, 0, len(names))
		for _, n := range names {
			udfs = append(udfs, map[string]string{"name": n, "value": j.c.udfs[n]})
		}
		body["userDefinedFields"] = udfs
	}
	return body, nil
}

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

// AddNote adds a note to a ticket. On a retried job it first looks for a
// note carrying the job's marker.
func (p *Provider) AddNote(ctx context.Context, c psa.Call, ref psa.TicketRef, n psa.Note) error {
	j, err := p.job(c.Settings, "note", true, true)
	if err != nil {
		return err
	}
	id, err := ticketID(j.op, ref)
	if err != nil {
		return err
	}
	purpose := "note"
	switch n.Kind {
	case psa.NoteRepeat:
		purpose = "repeat"
	case psa.NoteInternal:
		purpose = "internal"
	}
	return j.addNote(ctx, id, n, purpose, c.Retry)
}

// addNote writes a note; purpose (psa.NotePurposes) selects its publish
// setting.
func (j *job) addNote(ctx context.Context, tid int64, n psa.Note, purpose string, retry bool) error {
	marker := sanitize.Line(n.Marker)
	if retry && marker != "" {
		found, err := j.noteWithMarker(ctx, tid, marker)
		if err != nil || found {
			return err
		}
	}
	noteType, _, err := j.pick(ctx, "note_type", "")
	if err != nil {
		return err
	}
	publish, _, err := j.pick(ctx, j.c.notePublishKey(purpose), "")
	if err != nil {
		return err
	}
	text := sanitize.Text(n.Text)
	title := sanitize.Line(n.Title)
	if title == "" {
		first, _, _ := strings.Cut(text, "\n")
		title = sanitize.Line(first)
	}
	if title == "" {
		title = map[psa.NoteKind]string{psa.NoteResolution: "Resolved"}[n.Kind]
		if title == "" {
			title = "Update from psagate"
		}
	}
	desc := text
	if marker != "" {
		ml := psa.MarkerLine(marker)
		room := maxNoteText - units(ml) - 2
		desc = cut(desc, room, "\n[… cut by psagate]")
		if desc != "" {
			desc += "\n\n"
		}
		desc += ml
	} else {
		desc = cut(desc, maxNoteText, "\n[… cut by psagate]")
	}
	if desc == "" {
		desc = title
	}
	body := map[string]any{
		"ticketID":    tid,
		"title":       cut(title, maxNoteTitle, "…"),
		"description": desc,
		"noteType":    num(noteType.Value),
		"publish":     num(publish.Value),
	}
	return j.call(ctx, http.MethodPost, "Tickets/"+strconv.FormatInt(tid, 10)+"/Notes", body, nil)
}

// noteWithMarker reports whether ticket tid has a note carrying marker.
func (j *job) noteWithMarker(ctx context.Context, tid int64, marker string) (bool, error) {
	q := map[string]any{
		"filter": []filter{
			cond("eq", "ticketID", tid),
			cond("contains", "description", psa.MarkerLine(marker)),
		},
		"IncludeFields": []string{"id"},
		"MaxRecords":    1,
	}
	var ans queryAnswer[struct {
		ID int64 `json:"id"`
	}]
	if err := j.call(ctx, http.MethodPost, "TicketNotes/query", q, &ans); err != nil {
		return false, err
	}
	if len(ans.Items) > 0 {
		j.p.log.Info("autotask: retried note found the note of the earlier attempt", "ticket", tid, "note", ans.Items[0].ID)
		return true, nil
	}
	return false, nil
}

// attachTag is the end of an attachment title that identifies the job.
func attachTag(marker string) string { return " [" + psa.MarkerLine(marker) + "]" }

// fileName keeps the last path element of name, printable, never empty.
func fileName(name string) string {
	name = sanitize.Line(strings.ReplaceAll(name, "\\", "/"))
	name = path.Base(name)
	if name == "." || name == "/" || name == "" {
		name = "attachment.bin"
	}
	if units(name) > maxFullPath {
		// Keep the extension: it decides how Autotask serves the file.
		ext := path.Ext(name)
		if units(ext) > 20 {
			ext = ""
		}
		name = cut(strings.TrimSuffix(name, ext), maxFullPath-units(ext), "") + ext
	}
	return name
}

// Attach uploads a file to a ticket. A file over MaxAttachmentBytes, or one
// Autotask refuses (type, validation), becomes a note saying so.
func (p *Provider) Attach(ctx context.Context, c psa.Call, ref psa.TicketRef, a psa.Attachment) error {
	j, err := p.job(c.Settings, "attach", true, true)
	if err != nil {
		return err
	}
	tid, err := ticketID(j.op, ref)
	if err != nil {
		return err
	}
	name := fileName(a.Name)
	marker := sanitize.Line(a.Marker)
	if len(a.Data) > MaxAttachmentBytes {
		return j.addNote(ctx, tid, psa.Note{
			Title:  cut("Attachment not uploaded: "+name, maxNoteTitle, "…"),
			Text:   fmt.Sprintf("The alert carried the attachment %q (%d bytes, %s). Autotask accepts at most %d bytes per attachment through its API, so psagate did not upload it.", name, len(a.Data), sanitize.Line(a.ContentType), MaxAttachmentBytes),
			Kind:   psa.NoteInternal,
			Marker: marker,
		}, "internal", c.Retry)
	}
	if c.Retry && marker != "" {
		found, err := j.attachmentWithMarker(ctx, tid, marker)
		if err != nil || found {
			return err
		}
	}
	if err := j.reserveUpload(len(a.Data)); err != nil {
		return err
	}
	title := name
	if marker != "" {
		tag := attachTag(marker)
		title = cut(name, maxAttachTitle-units(tag), "…") + tag
	}
	publish, _, err := j.pick(ctx, "attachment_publish", "")
	if err != nil {
		return err
	}
	body, err := attachmentBody(cut(title, maxAttachTitle, ""), name, num(publish.Value), a.Data)
	if err != nil {
		return j.fail(psa.Permanent, "cannot encode the attachment")
	}
	err = j.call(ctx, http.MethodPost, "Tickets/"+strconv.FormatInt(tid, 10)+"/Attachments", body, nil)
	if err == nil || psa.KindOf(err) != psa.Permanent {
		// A transient failure keeps the reservation: the bytes may have
		// reached Autotask (a lost answer) and count against its window.
		return err
	}
	j.releaseUpload(len(a.Data))
	reason := err.Error()
	if pe, ok := err.(*psa.Error); ok && pe.Message != "" {
		reason = pe.Message
	}
	p.log.Warn("autotask refused an attachment; adding a note instead", "ticket", tid, "file", name, "err", err)
	return j.addNote(ctx, tid, psa.Note{
		Title:  cut("Attachment not uploaded: "+name, maxNoteTitle, "…"),
		Text:   fmt.Sprintf("Autotask refused the attachment %q (%d bytes, %s): %s", name, len(a.Data), sanitize.Line(a.ContentType), reason),
		Kind:   psa.NoteInternal,
		Marker: marker,
	}, "internal", c.Retry)
}

// attachmentBody encodes the upload. The base64 text is written straight
// into the JSON (it needs no escaping): running megabytes through
// json.Marshal would only copy and scan them again.
func attachmentBody(title, name string, publish any, data []byte) ([]byte, error) {
	head, err := json.Marshal(map[string]any{
		"attachmentType": "FILE_ATTACHMENT",
		"title":          title,
		"fullPath":       name,
		"publish":        publish,
	})
	if err != nil {
		return nil, err
	}
	b := make([]byte, 0, len(head)+base64.StdEncoding.EncodedLen(len(data))+10)
	b = append(b, head[:len(head)-1]...)
	b = append(b, `,"data":"`...)
	b = base64.StdEncoding.AppendEncode(b, data)
	return append(b, `"}`...), nil
}

// reserveUpload keeps psagate under Autotask's 10,000,000 bytes per 5
// minutes: going over blocks every attachment upload of the tenant for 5
// minutes, so psagate waits its turn instead (a transient error with the
// time until the window has room).
func (j *job) reserveUpload(n int) error {
	now := j.p.now()
	in := j.in
	in.mu.Lock()
	defer in.mu.Unlock()
	kept := in.uploads[:0]
	sum := 0
	for _, u := range in.uploads {
		if now.Sub(u.at) < attachWindow {
			kept = append(kept, u)
			sum += u.bytes
		}
	}
	in.uploads = kept
	limit := j.p.windowBytes
	if sum+n > limit && len(kept) > 0 {
		// The window frees when enough of the oldest uploads age out.
		free, wait := sum+n-limit, attachWindow
		for _, u := range kept {
			free -= u.bytes
			if free <= 0 {
				wait = attachWindow - now.Sub(u.at)
				break
			}
		}
		return &psa.Error{Provider: Name, Op: j.op, Kind: psa.Transient, RetryAfter: wait,
			Message: fmt.Sprintf("psagate uploaded %d bytes to Autotask in the last 5 minutes; this %d-byte file would pass Autotask's limit of %d bytes per 5 minutes", sum, n, limit)}
	}
	in.uploads = append(in.uploads, uploadRec{at: now, bytes: n})
	return nil
}

func (j *job) releaseUpload(n int) {
	in := j.in
	in.mu.Lock()
	defer in.mu.Unlock()
	for i := len(in.uploads) - 1; i >= 0; i-- {
		if in.uploads[i].bytes == n {
			in.uploads = append(in.uploads[:i], in.uploads[i+1:]...)
			return
		}
	}
}

func (j *job) attachmentWithMarker(ctx context.Context, tid int64, marker string) (bool, error) {
	var ans queryAnswer[struct {
		ID    int64  `json:"id"`
		Title string `json:"title"`
	}]
	if err := j.call(ctx, http.MethodGet, "Tickets/"+strconv.FormatInt(tid, 10)+"/Attachments", nil, &ans); err != nil {
		return false, err
	}
	tag := psa.MarkerLine(marker)
	for _, a := range ans.Items {
		if strings.Contains(a.Title, tag) {
			j.p.log.Info("autotask: retried upload found the attachment of the earlier attempt", "ticket", tid, "attachment", a.ID)
			return true, nil
		}
	}
	// An earlier attempt may have turned the file into a note.
	return j.noteWithMarker(ctx, tid, marker)
}

// Close adds the resolution note and sets the ticket to complete_status.
// A ticket that is already complete stays complete: the call succeeds.
func (p *Provider) Close(ctx context.Context, c psa.Call, ref psa.TicketRef, resolution psa.Note) error {
	j, err := p.job(c.Settings, "close", true, true)
	if err != nil {
		return err
	}
	tid, err := ticketID(j.op, ref)
	if err != nil {
		return err
	}
	complete, _, err := j.pick(ctx, "complete_status", "")
	if err != nil {
		return err
	}
	if resolution.Kind == "" {
		resolution.Kind = psa.NoteResolution
	}
	if err := j.addNote(ctx, tid, resolution, "close", c.Retry); err != nil {
		return err
	}
	err = j.setStatus(ctx, tid, complete.Value)
	if err == nil || psa.KindOf(err) != psa.Permanent {
		return err
	}
	// Tenant rules may refuse to touch a completed ticket; if it is
	// complete already, the close has nothing left to do.
	var got struct {
		Item *ticketRow `json:"item"`
	}
	if gerr := j.call(ctx, http.MethodGet, "Tickets/"+strconv.FormatInt(tid, 10), nil, &got); gerr == nil &&
		got.Item != nil && got.Item.Status != nil && strconv.FormatInt(*got.Item.Status, 10) == complete.Value {
		return nil
	}
	return err
}

// Reopen sets the ticket back to the configured status and adds the note.
func (p *Provider) Reopen(ctx context.Context, c psa.Call, ref psa.TicketRef, n psa.Note) error {
	j, err := p.job(c.Settings, "reopen", true, true)
	if err != nil {
		return err
	}
	tid, err := ticketID(j.op, ref)
	if err != nil {
		return err
	}
	status, _, err := j.pick(ctx, "status", "")
	if err != nil {
		return err
	}
	if err := j.setStatus(ctx, tid, status.Value); err != nil {
		return err
	}
	return j.addNote(ctx, tid, n, "reopen", c.Retry)
}

// setStatus is a sparse update: only id and status are sent, so nothing else
// on the ticket changes (PUT would null every omitted field).
func (j *job) setStatus(ctx context.Context, tid int64, status string) error {
	return j.call(ctx, http.MethodPatch, "Tickets", map[string]any{"id": tid, "status": num(status)}, nil)
}

func itoa(n int) string { return strconv.Itoa(n) }
