package smtpd

import "testing"

func TestCheckLineEndings(t *testing.T) {
	tests := []struct {
		name, in  string
		mode      string
		want      string // "" = refused
		wantError bool
	}{
		{"crlf untouched", "a\r\nb\r\n", "normalize", "a\r\nb\r\n", false},
		{"crlf untouched (reject)", "a\r\nb\r\n", "reject", "a\r\nb\r\n", false},
		{"bare lf normalised", "a\nb\n", "normalize", "a\r\nb\r\n", false},
		{"bare cr normalised", "a\rb\r\n", "normalize", "a\r\nb\r\n", false},
		{"bare lf refused", "a\nb\r\n", "reject", "", true},
		{"lf dot lf", "a\n.\nMAIL FROM:<x@y>\r\n", "normalize", "", true},
		{"lf dot crlf", "a\n.\r\nMAIL FROM:<x@y>\r\n", "normalize", "", true},
		{"crlf dot lf (dot unstuffed)", "a\r\n\nMAIL FROM:<x@y>\r\n", "normalize", "", true},
		{"cr dot cr", "a\r.\rMAIL\r\n", "normalize", "", true},
		{"crlf then bare cr", "a\r\n\rMAIL\r\n", "normalize", "", true},
		{"dot line with crlf is fine", "a\r\n.x\r\n", "normalize", "a\r\n.x\r\n", false},
		{"blank lines crlf", "a\r\n\r\nb\r\n", "normalize", "a\r\n\r\nb\r\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := checkLineEndings([]byte(tt.in), tt.mode)
			if tt.wantError {
				if err == nil || err.Code != 550 {
					t.Fatalf("want 550, got %q, %v", got, err)
				}
				return
			}
			if err != nil || string(got) != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}
