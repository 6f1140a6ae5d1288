package store

import "encoding/binary"

// IMAPMark is how far an [[imap]] source has been read: every message with
// a UID up to Last under this UIDVALIDITY is spooled and moved (or
// flagged). A new UIDVALIDITY means the server renumbered the folder and
// the mark no longer applies.
type IMAPMark struct {
	UIDValidity uint32
	Last        uint32
}

// IMAPMark returns the mark of source; zero when none is kept.
func (t *Tx) IMAPMark(source string) IMAPMark {
	b := t.b(bIMAP)
	if b == nil {
		return IMAPMark{} // a database opened read-only from before the bucket
	}
	v := b.Get([]byte(source))
	if len(v) != 8 {
		return IMAPMark{}
	}
	return IMAPMark{UIDValidity: binary.BigEndian.Uint32(v[:4]), Last: binary.BigEndian.Uint32(v[4:])}
}

// SetIMAPMark records the mark of source.
func (t *Tx) SetIMAPMark(source string, m IMAPMark) error {
	var v [8]byte
	binary.BigEndian.PutUint32(v[:4], m.UIDValidity)
	binary.BigEndian.PutUint32(v[4:], m.Last)
	return t.b(bIMAP).Put([]byte(source), v[:])
}
