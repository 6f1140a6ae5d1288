package psa

import "testing"

func TestWebDomain(t *testing.T) {
	for in, want := range map[string]string{
		"https://www.Acme.example/contact": "acme.example",
		"www.pinecrest-vet.example":        "pinecrest-vet.example",
		"acme.example":                     "acme.example",
		"http://intranet":                  "",
		"":                                 "",
		"not a site":                       "",
	} {
		if got := WebDomain(in); got != want {
			t.Errorf("WebDomain(%q) = %q, want %q", in, got, want)
		}
	}
}
