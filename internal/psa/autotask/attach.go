package autotask

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"path"
	"strconv"
	"strings"

	"psagate/internal/psa"
	"psagate/internal/sanitize"
)

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
