package config

import (
	"errors"
	"fmt"
	"strings"

	"github.com/BurntSushi/toml"

	"psagate/internal/tomlpos"
)

// Error is one problem in a config file.
type Error struct {
	File string
	Line int
	Key  string
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found while loading, in line order.
type Errors []*Error

func (es Errors) Error() string {
	var parts []string
	for _, e := range es {
		parts = append(parts, e.Error())
	}
	return strings.Join(parts, "\n")
}

// syntaxError turns a decoder error into an Error. ix, when set, gives the
// line instead of the error's own position (the decoder read re-encoded
// text, not the file).
func syntaxError(path string, err error, ix *tomlpos.Index) *Error {
	var pe toml.ParseError
	if !errors.As(err, &pe) {
		return &Error{File: path, Msg: err.Error()}
	}
	msg := pe.Message
	if isSecretName(pe.LastKey) {
		// The parser quotes what it found, which here is the secret.
		msg = "this secret's value is not valid TOML: write it as a quoted string (the value is not shown)"
	}
	line := pe.Position.Line
	if ix != nil {
		line = ix.Line(pe.LastKey)
	}
	return &Error{File: path, Line: line, Key: pe.LastKey, Msg: msg}
}
