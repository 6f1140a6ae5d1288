package connectwise

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"psagate/internal/psa"
	"psagate/internal/sanitize"
)

const (
	maxSummary = 100 // Ticket.summary
	maxXRef    = 100 // Ticket.externalXRef
	// maxTitle keeps document titles short; the API declares no limit, the
	// UI shows about this much.
	maxTitle = 100
)

// utf16Len counts UTF-16 code units: ConnectWise stores text as SQL Server
// nvarchar, whose lengths count a character outside the BMP (an emoji) twice.
func utf16Len(s string) int {
	n := 0
	for _, r := range s {
		if r >= 0x10000 {
			n += 2
		} else {
			n++
		}
	}
	return n
}

// cutUTF16 cuts s at a rune boundary so that it fits max UTF-16 code units,
// ending it with marker (counted in max) when it cuts.
func cutUTF16(s string, max int, marker string) string {
	if utf16Len(s) <= max {
		return s
	}
	budget := max - utf16Len(marker)
	n := 0
	for i, r := range s {
		w := 1
		if r >= 0x10000 {
			w = 2
		}
		if n+w > budget {
			return strings.TrimRight(s[:i], " ") + marker
		}
		n += w
	}
	return s
}

// ticketBody is the JSON of POST /service/tickets.
type ticketBody struct {
	Summary              string `json:"summary"`
	RecordType           string `json:"recordType"`
	Company              *idRef `json:"company"`
	Board                *idRef `json:"board,omitempty"`
	Status               *idRef `json:"status,omitempty"`
	Type                 *idRef `json:"type,omitempty"`
	SubType              *idRef `json:"subType,omitempty"`
	Item                 *idRef `json:"item,omitempty"`
	Priority             *idRef `json:"priority,omitempty"`
	Contact              *idRef `json:"contact,omitempty"`
	AddressLine1         string `json:"addressLine1,omitempty"`
	AddressLine2         string `json:"addressLine2,omitempty"`
	City                 string `json:"city,omitempty"`
	StateIdentifier      string `json:"stateIdentifier,omitempty"`
	Zip                  string `json:"zip,omitempty"`
	Country              *idRef `json:"country,omitempty"`
	Location             *idRef `json:"location,omitempty"`
	InitialDescription   string `json:"initialDescription,omitempty"`
	ExternalXRef         string `json:"externalXRef,omitempty"`
	ProcessNotifications bool   `json:"processNotifications"`
}

// ticketInfo is what psagate reads back of a ticket.
type ticketInfo struct {
	ID    int `json:"id"`
	Board *struct {
		ID   int    `json:"id"`
		Name string `json:"name"`
	} `json:"board"`
	Status *struct {
		ID   int    `json:"id"`
		Name string `json:"name"`
	} `json:"status"`
	ClosedFlag bool `json:"closedFlag"`
}

// summaryOf is the one-line summary of t within ConnectWise's limit.
func summaryOf(t psa.Ticket) string {
	s := sanitize.Line(t.Summary)
	if s == "" {
		s = sanitize.Line(t.Key)
	}
	if s == "" {
		s = "psagate alert"
	}
	return cutUTF16(s, maxSummary, "…")
}

// xrefOf is the externalXRef stored for t. The caller guarantees that the
// first 40 characters of ExternalRef are unique, so the cut keeps it unique
// and, being deterministic, stable across retries.
func xrefOf(t psa.Ticket) string {
	return cutUTF16(sanitize.Line(t.ExternalRef), maxXRef, "")
}

// Create opens a service ticket. With c.Retry it first looks for a ticket
// carrying the same externalXRef, which an earlier attempt whose answer was
// lost may have created.
func (p *Provider) Create(ctx context.Context, c psa.Call, t psa.Ticket) (psa.TicketRef, error) {
	cl, err := p.newCall(c.Settings, "create")
	if err != nil {
		return psa.TicketRef{}, err
	}
	xref := xrefOf(t)
	if c.Retry && xref != "" {
		id, found, err := cl.findByXRef(ctx, xref)
		if err != nil {
			return psa.TicketRef{}, err
		}
		if found {
			p.log.Info("connectwise ticket of an earlier attempt found, not creating another", "ticket", id, "key", t.Key)
			return psa.TicketRef{Provider: Name, ID: strconv.Itoa(id)}, nil
		}
	}
	if errs := cl.cfg.checkAddress(); len(errs) > 0 {
		e := cl.errorf(psa.Permanent, errs[0].Error())
		e.Reason = psa.ReasonValidation
		return psa.TicketRef{}, e
	}
	refs, err := cl.resolveTicket(ctx)
	if err != nil {
		return psa.TicketRef{}, err
	}
	body := ticketBody{
		Summary:            summaryOf(t),
		RecordType:         "ServiceTicket",
		Company:            refs.Company,
		Board:              refs.Board,
		Status:             refs.Status,
		Type:               refs.Type,
		SubType:            refs.SubType,
		Item:               refs.Item,
		Priority:           refs.Priority,
		Contact:            refs.Contact,
		AddressLine1:       sanitize.Line(cl.cfg.addressLine1),
		AddressLine2:       sanitize.Line(cl.cfg.addressLine2),
		City:               sanitize.Line(cl.cfg.city),
		StateIdentifier:    sanitize.Line(cl.cfg.state),
		Zip:                sanitize.Line(cl.cfg.zip),
		Country:            refs.Country,
		Location:           refs.Location,
		InitialDescription: sanitize.Text(t.Description),
		ExternalXRef:       xref,
		// A new alert ticket should reach the team like any other new
		// ticket: the board's notification and workflow rules decide who is told.
		ProcessNotifications: true,
	}
	var out ticketInfo
	if err := cl.sendJSON(ctx, http.MethodPost, "/service/tickets", body, &out); err != nil {
		return psa.TicketRef{}, err
	}
	if out.ID <= 0 {
		return psa.TicketRef{}, cl.errorf(psa.Permanent, "POST /service/tickets answered without a ticket id")
	}
	p.log.Info("connectwise ticket created", "ticket", out.ID, "key", t.Key, "client", t.Client)
	return psa.TicketRef{Provider: Name, ID: strconv.Itoa(out.ID)}, nil
}

// findByXRef looks for the oldest ticket with the given externalXRef.
func (c *call) findByXRef(ctx context.Context, xref string) (int, bool, error) {
	var rows []ticketInfo
	err := c.getJSON(ctx, "/service/tickets", url.Values{
		"conditions": {"externalXRef=" + quote(xref)},
		"orderBy":    {"id asc"},
		"pageSize":   {"1"},
	}, &rows)
	if err != nil || len(rows) == 0 {
		return 0, false, err
	}
	return rows[0].ID, true, nil
}

// ticketID checks that ref names a ConnectWise ticket.
func (c *call) ticketID(ref psa.TicketRef) (int, error) {
	id, err := strconv.Atoi(ref.ID)
	if err != nil || id <= 0 || (ref.Provider != "" && ref.Provider != Name) {
		return 0, c.errorf(psa.Permanent, fmt.Sprintf("ticket reference %q is not a ConnectWise ticket", ref.String()))
	}
	return id, nil
}

// noteBody is the JSON of POST /service/tickets/{id}/notes.
type noteBody struct {
	Text                  string `json:"text"`
	DetailDescriptionFlag bool   `json:"detailDescriptionFlag"`
	InternalAnalysisFlag  bool   `json:"internalAnalysisFlag"`
	ResolutionFlag        bool   `json:"resolutionFlag"`
	ProcessNotifications  bool   `json:"processNotifications"`
}

// noteText is the note's text with the marker as its last line.
func noteText(n psa.Note) string {
	text := sanitize.Text(n.Text)
	if n.Marker != "" {
		if text != "" {
			text += "\n\n"
		}
		text += psa.MarkerLine(sanitize.Line(n.Marker))
	}
	if text == "" {
		text = "(no text)"
	}
	return text
}

// hasMarker reports whether text carries the marker line of marker as a
// whole word (so "job1" is not found in a note marked "job10").
func hasMarker(text, marker string) bool {
	line := psa.MarkerLine(sanitize.Line(marker))
	for {
		i := strings.Index(text, line)
		if i < 0 {
			return false
		}
		rest := text[i+len(line):]
		if rest == "" {
			return true
		}
		if r, _ := utf8.DecodeRuneInString(rest); r == ' ' || r == '\n' || r == '\r' || r == '\t' || r == ']' || r == ')' {
			return true
		}
		text = rest
	}
}

// AddNote adds a note. With c.Retry and a marker it first reads the
// ticket's notes and skips the write when one already carries the marker.
func (p *Provider) AddNote(ctx context.Context, c psa.Call, ref psa.TicketRef, n psa.Note) error {
	cl, err := p.newCall(c.Settings, "note")
	if err != nil {
		return err
	}
	id, err := cl.ticketID(ref)
	if err != nil {
		return err
	}
	return cl.addNote(ctx, id, n, c.Retry, psa.NoteDiscussion)
}

func (c *call) addNote(ctx context.Context, id int, n psa.Note, retry bool, defKind psa.NoteKind) error {
	if retry && n.Marker != "" {
		done, err := c.noteExists(ctx, id, n.Marker)
		if err != nil {
			return err
		}
		if done {
			c.p.log.Info("connectwise note of an earlier attempt found, not adding another", "ticket", id)
			return nil
		}
	}
	kind := n.Kind
	if kind == "" {
		kind = defKind
	}
	body := noteBody{Text: noteText(n)}
	switch kind {
	case psa.NoteInternal:
		body.InternalAnalysisFlag = true
	case psa.NoteResolution:
		body.ResolutionFlag = true
	default:
		body.DetailDescriptionFlag = true
	}
	// Repeats and closing notes of an alert are for the record; mailing
	// the contact or the team about each one would be noise.
	body.ProcessNotifications = false
	return c.sendJSON(ctx, http.MethodPost, fmt.Sprintf("/service/tickets/%d/notes", id), body, nil)
}

func (c *call) noteExists(ctx context.Context, id int, marker string) (bool, error) {
	notes, err := getAll[struct {
		Text string `json:"text"`
	}](ctx, c, fmt.Sprintf("/service/tickets/%d/notes", id), nil)
	if err != nil {
		return false, err
	}
	for _, nt := range notes {
		if hasMarker(nt.Text, marker) {
			return true, nil
		}
	}
	return false, nil
}

// safeFileName keeps a file name printable and free of path separators and quotes.
func safeFileName(name string) string {
	name = sanitize.Line(name)
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	name = strings.NewReplacer(`"`, "'", ";", "_").Replace(name)
	name = sanitize.TruncateBytes(name, 200, "")
	if strings.Trim(name, ". ") == "" {
		name = "attachment"
	}
	return name
}

// docTitle is the document title: the file name with the marker, cut so
// the marker always survives.
func docTitle(name, marker string) string {
	if marker == "" {
		return cutUTF16(name, maxTitle, "…")
	}
	suffix := " (" + psa.MarkerLine(sanitize.Line(marker)) + ")"
	room := maxTitle - utf16Len(suffix)
	if room < 8 {
		return strings.TrimSpace(suffix)
	}
	return cutUTF16(name, room, "…") + suffix
}

// Attach uploads a file to the ticket (private: not shown on the customer
// portal). With c.Retry and a marker it first lists the ticket's documents
// and skips the upload when a title carries the marker. A file ConnectWise
// refuses (too large, type not allowed) becomes an internal note saying so.
func (p *Provider) Attach(ctx context.Context, c psa.Call, ref psa.TicketRef, a psa.Attachment) error {
	cl, err := p.newCall(c.Settings, "attach")
	if err != nil {
		return err
	}
	id, err := cl.ticketID(ref)
	if err != nil {
		return err
	}
	name := safeFileName(a.Name)
	if c.Retry && a.Marker != "" {
		docs, err := getAll[struct {
			Title string `json:"title"`
		}](ctx, cl, "/system/documents", url.Values{"recordType": {"Ticket"}, "recordId": {strconv.Itoa(id)}})
		if err != nil {
			return err
		}
		for _, d := range docs {
			if hasMarker(d.Title, a.Marker) {
				p.log.Info("connectwise document of an earlier attempt found, not uploading again", "ticket", id)
				return nil
			}
		}
	}
	ctype := strings.TrimSpace(a.ContentType)
	if ctype == "" || strings.ContainsAny(ctype, "\r\n") {
		ctype = "application/octet-stream"
	}

	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	h := textproto.MIMEHeader{}
	// Quoted raw UTF-8 file name, as browsers send it.
	h.Set("Content-Disposition", `form-data; name="file"; filename="`+name+`"`)
	h.Set("Content-Type", ctype)
	fw, err := mw.CreatePart(h)
	if err == nil {
		_, err = fw.Write(a.Data)
	}
	for _, f := range [][2]string{
		{"recordType", "Ticket"},
		{"recordId", strconv.Itoa(id)},
		{"title", docTitle(name, a.Marker)},
		{"privateFlag", "true"},
	} {
		if err == nil {
			err = mw.WriteField(f[0], f[1])
		}
	}
	if err == nil {
		err = mw.Close()
	}
	if err != nil {
		return cl.errorf(psa.Permanent, "cannot build the upload: "+err.Error())
	}
	_, err = cl.do(ctx, http.MethodPost, "/system/documents", nil, buf.Bytes(), mw.FormDataContentType())
	var pe *psa.Error
	if err != nil && errors.As(err, &pe) && pe.Kind == psa.Permanent && (pe.Status == http.StatusRequestEntityTooLarge || pe.Status == http.StatusBadRequest) {
		p.log.Warn("connectwise refused an attachment, adding a note instead", "ticket", id, "status", pe.Status)
		note := psa.Note{
			Kind:   psa.NoteInternal,
			Text:   fmt.Sprintf("psagate could not attach %q (%d bytes, %s): ConnectWise answered HTTP %d: %s", name, len(a.Data), ctype, pe.Status, pe.Message),
			Marker: a.Marker,
		}
		return cl.addNote(ctx, id, note, c.Retry, psa.NoteInternal)
	}
	return err
}

// getTicket reads the board, status and closed flag of a ticket.
func (c *call) getTicket(ctx context.Context, id int) (ticketInfo, error) {
	var t ticketInfo
	err := c.getJSON(ctx, fmt.Sprintf("/service/tickets/%d", id), nil, &t)
	if err == nil && t.Board == nil {
		err = c.errorf(psa.Permanent, fmt.Sprintf("ticket %d has no board", id))
	}
	return t, err
}

// patchStatus moves a ticket to a status, replacing the whole reference
// object as the Developer Guide asks (a nested "status/id" path may be
// accepted without effect).
func (c *call) patchStatus(ctx context.Context, id, status int) error {
	ops := []map[string]any{{"op": "replace", "path": "status", "value": idRef{status}}}
	return c.sendJSON(ctx, http.MethodPatch, fmt.Sprintf("/service/tickets/%d", id), ops, nil)
}

// Close adds the resolution note and moves the ticket to its board's closed
// status. A ticket that is already closed gets the note but no second PATCH.
func (p *Provider) Close(ctx context.Context, c psa.Call, ref psa.TicketRef, resolution psa.Note) error {
	cl, err := p.newCall(c.Settings, "close")
	if err != nil {
		return err
	}
	id, err := cl.ticketID(ref)
	if err != nil {
		return err
	}
	t, err := cl.getTicket(ctx, id)
	if err != nil {
		return err
	}
	board := entity{ID: t.Board.ID, Name: t.Board.Name}
	var closed entity
	if !t.ClosedFlag {
		// Resolve before writing anything, so a misconfigured closed status
		// fails without leaving a resolution note on an open ticket.
		if closed, err = cl.closedStatus(ctx, board); err != nil {
			return err
		}
	}
	if err := cl.addNote(ctx, id, resolution, c.Retry, psa.NoteResolution); err != nil {
		return err
	}
	if t.ClosedFlag {
		p.log.Info("connectwise ticket already closed", "ticket", id)
		return nil
	}
	if err := cl.patchStatus(ctx, id, closed.ID); err != nil {
		return err
	}
	p.log.Info("connectwise ticket closed", "ticket", id, "status", closed.Name)
	return nil
}

// Reopen moves the ticket back to the configured status (or its board's
// default status) and adds the note.
func (p *Provider) Reopen(ctx context.Context, c psa.Call, ref psa.TicketRef, n psa.Note) error {
	cl, err := p.newCall(c.Settings, "reopen")
	if err != nil {
		return err
	}
	id, err := cl.ticketID(ref)
	if err != nil {
		return err
	}
	t, err := cl.getTicket(ctx, id)
	if err != nil {
		return err
	}
	open, err := cl.openStatus(ctx, entity{ID: t.Board.ID, Name: t.Board.Name})
	if err != nil {
		return err
	}
	if t.ClosedFlag || t.Status == nil || t.Status.ID != open.ID {
		if err := cl.patchStatus(ctx, id, open.ID); err != nil {
			return err
		}
		p.log.Info("connectwise ticket reopened", "ticket", id, "status", open.Name)
	}
	return cl.addNote(ctx, id, n, c.Retry, psa.NoteDiscussion)
}
