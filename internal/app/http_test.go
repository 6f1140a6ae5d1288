package app

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestAdminAPIOnlyFromThisHost(t *testing.T) {
	tests := []struct {
		remote, local string
		want          bool
	}{
		{"127.0.0.1:5000", "127.0.0.1:9725", true},
		{"[::1]:5000", "[::1]:9725", true},
		{"10.0.0.5:5000", "10.0.0.5:9725", true},  // the CLI on the gateway host, listen on one interface
		{"10.0.0.9:5000", "10.0.0.5:9725", false}, // another machine
		{"203.0.113.7:5000", "127.0.0.1:9725", false},
	}
	for _, tt := range tests {
		r := httptest.NewRequest("GET", "/admin/queue", nil)
		r.RemoteAddr = tt.remote
		local, _ := net.ResolveTCPAddr("tcp", tt.local)
		r = r.WithContext(context.WithValue(r.Context(), http.LocalAddrContextKey, net.Addr(local)))
		w := httptest.NewRecorder()
		called := false
		loopbackOnly(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { called = true })).ServeHTTP(w, r)
		if called != tt.want {
			t.Errorf("remote %s to %s: allowed=%v, want %v (status %d)", tt.remote, tt.local, called, tt.want, w.Code)
		}
	}
}
