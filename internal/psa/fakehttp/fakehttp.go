// Package fakehttp holds what the PSA fakes (internal/psa/*/fake) share on
// the HTTP side.
package fakehttp

import "net/http"

// StatusWriter is a ResponseWriter that remembers the status it wrote, for
// a fake's request log.
type StatusWriter struct {
	http.ResponseWriter
	Status int
}

// WriteHeader records the first status and writes it.
func (w *StatusWriter) WriteHeader(code int) {
	if w.Status == 0 {
		w.Status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

// Write records 200 when no status was written before.
func (w *StatusWriter) Write(b []byte) (int, error) {
	if w.Status == 0 {
		w.Status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}
