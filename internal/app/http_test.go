package app

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestAdminRefusesForeignOrigin: a state-changing admin request that a
// browser could have been tricked into sending (any Origin, or a Host that
// is not this gateway: DNS rebinding) is refused; the CLI's is not.
func TestAdminRefusesForeignOrigin(t *testing.T) {
	tests := []struct {
		method, host, origin string
		want                 bool
	}{
		{"POST", AdminHost, "", true},
		{"POST", "localhost:9725", "", true},
		{"POST", "127.0.0.1:9725", "", true},
		{"POST", "[::1]:9725", "", true},
		{"POST", AdminHost, "http://attacker.example", false},
		{"POST", "localhost", "http://localhost:9725", false}, // the CLI never sends Origin
		{"POST", "attacker.example", "", false},
		{"POST", "10.0.0.5:9725", "", false},
		{"GET", "attacker.example", "http://attacker.example", true}, // reads change nothing; the socket guards them
	}
	for _, tt := range tests {
		r := httptest.NewRequest(tt.method, "/admin/reload", nil)
		r.Host = tt.host
		if tt.origin != "" {
			r.Header.Set("Origin", tt.origin)
		}
		w := httptest.NewRecorder()
		called := false
		sameOrigin(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { called = true })).ServeHTTP(w, r)
		if called != tt.want || (!tt.want && w.Code != http.StatusForbidden) {
			t.Errorf("%s Host %q Origin %q: allowed=%v (status %d), want %v", tt.method, tt.host, tt.origin, called, w.Code, tt.want)
		}
	}
}
