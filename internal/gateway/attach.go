package gateway

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"unicode/utf8"

	"psagate/internal/message"
)

// blockedExt are file name endings never uploaded whatever the bytes look
// like: a mail can lie about Content-Type, not about what a technician's
// double-click will run. The list follows the extensions mail filters
// commonly block as executable or script-carrying (Microsoft's "blocked
// attachments in Outlook" list, and OneNote, XLL, CHM and shortcut files
// used in phishing since macros were disabled by default).
var blockedExt = []string{".exe", ".com", ".scr", ".bat", ".cmd", ".ps1", ".psm1", ".vbs", ".vbe", ".js", ".jse",
	".wsf", ".wsh", ".hta", ".msi", ".msp", ".dll", ".jar", ".lnk", ".reg", ".iso", ".img", ".vhd", ".vhdx",
	".docm", ".xlsm", ".pptm", ".html", ".htm", ".svg", ".pif", ".cpl", ".xll", ".xla", ".xlam", ".chm", ".one",
	".onepkg", ".url", ".website", ".mht", ".mhtml", ".scf", ".inf", ".msc", ".gadget", ".application", ".appref-ms",
	".settingcontent-ms", ".library-ms", ".search-ms", ".hlp", ".ins", ".isp", ".sct", ".shb", ".shs", ".ws",
	".xbap", ".vb", ".ade", ".adp", ".mde", ".mdb", ".accde", ".appx", ".appxbundle", ".msix", ".diagcab", ".py", ".sh"}

// sniffed is a content type recognised from a file's first bytes, with
// the name endings that may carry it.
type sniffed struct {
	mediaType string
	exts      []string // "" allows a name without extension
}

var (
	sniffPNG  = sniffed{"image/png", []string{".png"}}
	sniffJPEG = sniffed{"image/jpeg", []string{".jpg", ".jpeg", ".jpe", ".jfif"}}
	sniffGIF  = sniffed{"image/gif", []string{".gif"}}
	sniffBMP  = sniffed{"image/bmp", []string{".bmp"}}
	sniffWEBP = sniffed{"image/webp", []string{".webp"}}
	sniffTIFF = sniffed{"image/tiff", []string{".tif", ".tiff"}}
	sniffPDF  = sniffed{"application/pdf", []string{".pdf"}}
	sniffText = sniffed{"text/plain", []string{".txt", ".log", ".text", ""}}
	sniffCSV  = sniffed{"text/csv", []string{".csv"}}
)

// sniff recognises data by its magic number (the signatures of the PNG,
// JPEG/JFIF, GIF87a/89a, BMP, RIFF WEBP, TIFF and PDF specifications), or as
// plain text: valid UTF-8 without NUL or control characters other than
// tab, CR, LF and form feed. ext picks CSV among texts. ok is false for
// anything else, which is never uploaded.
func sniff(data []byte, ext string) (s sniffed, ok bool) {
	switch {
	case bytes.HasPrefix(data, []byte("\x89PNG\r\n\x1a\n")):
		return sniffPNG, true
	case bytes.HasPrefix(data, []byte("\xff\xd8\xff")):
		return sniffJPEG, true
	case bytes.HasPrefix(data, []byte("GIF87a")), bytes.HasPrefix(data, []byte("GIF89a")):
		return sniffGIF, true
	case bytes.HasPrefix(data, []byte("BM")) && len(data) >= 18 && slices.Contains([]uint32{12, 40, 52, 56, 108, 124}, binary.LittleEndian.Uint32(data[14:])):
		// "BM" and a known DIB header size, so a text that starts "BM" is text.
		return sniffBMP, true
	case len(data) >= 12 && bytes.HasPrefix(data, []byte("RIFF")) && string(data[8:12]) == "WEBP":
		return sniffWEBP, true
	case bytes.HasPrefix(data, []byte("II*\x00")), bytes.HasPrefix(data, []byte("MM\x00*")):
		return sniffTIFF, true
	case bytes.HasPrefix(data, []byte("%PDF-")):
		return sniffPDF, true
	}
	if len(data) == 0 || !utf8.Valid(data) {
		return sniffed{}, false
	}
	for _, c := range data {
		if c < 0x20 && c != '\t' && c != '\r' && c != '\n' && c != '\f' || c == 0x7f {
			return sniffed{}, false
		}
	}
	if ext == ".csv" {
		return sniffCSV, true
	}
	return sniffText, true
}

// describeBytes names what unrecognised content looks like, for the note.
func describeBytes(data []byte) string {
	switch {
	case bytes.HasPrefix(data, []byte("MZ")):
		return "a Windows program (MZ/PE)"
	case bytes.HasPrefix(data, []byte("\x7fELF")):
		return "a Linux program (ELF)"
	case bytes.HasPrefix(data, []byte("PK\x03\x04")):
		return "a ZIP archive (or Office/JAR file)"
	case bytes.HasPrefix(data, []byte("\xd0\xcf\x11\xe0")):
		return "an OLE compound file (old Office, MSI)"
	case len(data) == 0:
		return "empty"
	}
	return "not PNG, JPEG, GIF, BMP, WEBP, TIFF, PDF or plain text"
}

// normaliseName is the name Windows would use: trailing dots and spaces
// are dropped by the file system, so "invoice.exe." and "invoice.exe "
// are invoice.exe when saved.
func normaliseName(name string) string {
	return strings.TrimRight(strings.TrimSpace(name), ". ")
}

// FilterAttachments splits attachments into those that may be uploaded to a
// ticket and the others, described for a note. An attachment is uploaded
// only when its bytes are a recognised safe type (sniff) that the policy
// allows, its normalised name has no executable ending and ends as that
// type's files do, and it is within the size cap. The uploaded copy
// carries the normalised name and the sniffed type, never the mail's claim.
func FilterAttachments(in []message.Attachment, types []string, maxBytes int) (ok []message.Attachment, withheld []string) {
	for _, a := range in {
		name := normaliseName(a.Name)
		lower := strings.ToLower(name)
		ext := filepath.Ext(lower)
		st, known := sniff(a.Data, ext)
		reason := ""
		switch {
		case slices.ContainsFunc(blockedExt, func(e string) bool { return strings.HasSuffix(lower, e) }):
			reason = "file type never uploaded"
		case strings.ContainsAny(name, ":/\\"):
			reason = "file name with a path or stream separator"
		case !known:
			reason = "content is " + describeBytes(a.Data)
		case !slices.Contains(st.exts, ext):
			reason = fmt.Sprintf("the name ends in %q but the content is %s", ext, st.mediaType)
		case !typeAllowed(st.mediaType, types):
			reason = "type " + st.mediaType + " not in [deliver] attach_types"
		case maxBytes > 0 && a.Size > maxBytes:
			reason = fmt.Sprintf("%d bytes, over the %d-byte limit", a.Size, maxBytes)
		}
		if reason == "" {
			a.Name, a.ContentType = name, st.mediaType
			ok = append(ok, a)
			continue
		}
		withheld = append(withheld, fmt.Sprintf("%q (%s, %d bytes): %s", a.Name, a.ContentType, a.Size, reason))
	}
	return ok, withheld
}

func typeAllowed(ct string, allowed []string) bool {
	ct = strings.ToLower(strings.TrimSpace(ct))
	for _, t := range allowed {
		t = strings.ToLower(t)
		if t == ct || (strings.HasSuffix(t, "/*") && strings.HasPrefix(ct, strings.TrimSuffix(t, "*"))) {
			return true
		}
	}
	return false
}
