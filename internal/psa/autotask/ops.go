package autotask

import (
	"context"
	"fmt"
	"net/http"
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
