package connectwise

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"psagate/internal/psa"
)

func TestNormalizeSite(t *testing.T) {
	tests := []struct {
		in     string
		want   string
		mapped bool
		err    string // substring of the error; "" = no error
	}{
		{"api-na.myconnectwise.net", "api-na.myconnectwise.net", false, ""},
		{" API-EU.myconnectwise.net ", "api-eu.myconnectwise.net", false, ""},
		{"na.myconnectwise.net", "api-na.myconnectwise.net", true, ""},
		{"eu.myconnectwise.net", "api-eu.myconnectwise.net", true, ""},
		{"au.myconnectwise.net", "api-au.myconnectwise.net", true, ""},
		{"aus.myconnectwise.net", "api-aus.myconnectwise.net", true, ""},
		{"za.myconnectwise.net", "api-za.myconnectwise.net", true, ""},
		{"staging.connectwisedev.com", "api-staging.connectwisedev.com", true, ""},
		{"cw.example.com", "cw.example.com", false, ""},
		{"cw.example.com:8443", "cw.example.com:8443", false, ""},
		{"127.0.0.1:4443", "127.0.0.1:4443", false, ""},
		{"[::1]:4443", "[::1]:4443", false, ""},
		{"https://api-na.myconnectwise.net", "", false, `must not include a scheme such as "https://": write only the host, e.g. site = "api-na.myconnectwise.net"`},
		{"https://na.myconnectwise.net/v4_6_release/apis/3.0", "", false, `e.g. site = "api-na.myconnectwise.net"`},
		{"http://cw.example.com:8080/", "", false, `e.g. site = "cw.example.com:8080"`},
		{"www.myconnectwise.net", "", false, `must not start with "www."`},
		{"www.eu.myconnectwise.net", "", false, `e.g. site = "api-eu.myconnectwise.net"`},
		{"api-na.myconnectwise.net/v4_6_release", "", false, "must not include a path"},
		{"user@cw.example.com", "", false, "is not a host name"},
		{"cw.example.com:99999", "", false, "invalid port"},
		{"cw_example.com", "", false, "not a valid host name"},
		{"", "", false, "connectwise.site is not set"},
	}
	for _, tc := range tests {
		got, mapped, err := normalizeSite(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want || mapped != tc.mapped {
			t.Errorf("%q = %q, %v, %v; want %q, %v", tc.in, got, mapped, err, tc.want, tc.mapped)
		}
	}
}

func TestValidate(t *testing.T) {
	good := func() psa.Settings {
		return psa.Settings{
			"connectwise.site": "api-na.myconnectwise.net", "connectwise.company_id": "mymsp",
			"connectwise.public_key": "pubpubpub", "connectwise.private_key": "privprivpriv", "connectwise.client_id": "clientclient",
		}
	}
	tests := []struct {
		name string
		mod  func(psa.Settings)
		want []string // substrings, one per expected problem
	}{
		{"good", func(psa.Settings) {}, nil},
		{"login host is fine", func(s psa.Settings) { s["connectwise.site"] = "eu.myconnectwise.net" }, nil},
		{"scheme", func(s psa.Settings) { s["connectwise.site"] = "https://api-na.myconnectwise.net" }, []string{`site = "api-na.myconnectwise.net"`}},
		{"no site", func(s psa.Settings) { delete(s, "connectwise.site") }, []string{"connectwise.site is not set"}},
		{"endpoint instead of site", func(s psa.Settings) {
			delete(s, "connectwise.site")
			s["connectwise.endpoint"] = "http://127.0.0.1:8080/v4_6_release/apis/3.0/"
		}, nil},
		{"bad endpoint", func(s psa.Settings) { s["connectwise.endpoint"] = "ftp://x/y" }, []string{"connectwise.endpoint"}},
		{"endpoint with user", func(s psa.Settings) { s["connectwise.endpoint"] = "https://a:b@x/y" }, []string{"user name or password"}},
		{"no credentials", func(s psa.Settings) {
			delete(s, "connectwise.company_id")
			delete(s, "connectwise.public_key")
			delete(s, "connectwise.private_key")
			delete(s, "connectwise.client_id")
		}, []string{"connectwise.company_id is not set", "connectwise.public_key is not set", "connectwise.private_key is not set",
			"connectwise.client_id is not set: register a clientId at developer.connectwise.com"}},
		{"company id with plus", func(s psa.Settings) { s["connectwise.company_id"] = "mymsp+pub" }, []string{"connectwise.company_id"}},
		{"api version", func(s psa.Settings) { s["connectwise.api_version"] = "latest" }, []string{"connectwise.api_version"}},
		{"api version ok", func(s psa.Settings) { s["connectwise.api_version"] = "2024.1" }, nil},
		{"timeout", func(s psa.Settings) { s["connectwise.timeout"] = "soon" }, []string{"connectwise.timeout"}},
		{"timeout seconds", func(s psa.Settings) { s["connectwise.timeout"] = "45" }, nil},
	}
	p := New(Options{})
	for _, tc := range tests {
		s := good()
		tc.mod(s)
		errs := p.Validate(s)
		if len(errs) != len(tc.want) {
			t.Errorf("%s: %d problems %v, want %d", tc.name, len(errs), errs, len(tc.want))
			continue
		}
		for i, w := range tc.want {
			if !strings.Contains(errs[i].Error(), w) {
				t.Errorf("%s: problem %q does not mention %q", tc.name, errs[i], w)
			}
			assertNoSecrets(t, "a Validate error", errs[i].Error())
		}
	}
	c, _ := parseConfig(psa.Settings{"connectwise.timeout": "45"})
	if c.timeout != 45*time.Second || c.apiVersion != defaultAPIVersion {
		t.Errorf("timeout %v, api version %q", c.timeout, c.apiVersion)
	}
}

func TestCutUTF16(t *testing.T) {
	tests := []struct {
		in, want string
		max      int
	}{
		{"short", "short", 10},
		{"abcdefghij", "abcdefghij", 10},
		{"abcdefghijk", "abcdefghi…", 10},
		{"abcdefgh jk", "abcdefgh…", 10},
		{"ääääääääääää", "ääääääääää", 10}, // marker-less cut below
		{"日本語のテキストです。長い", "日本語のテキストで…", 10},
		{"💾💾💾💾💾💾", "💾💾💾💾…", 10}, // 12 units; 4 emoji (8) + … (1) fit
	}
	for _, tc := range tests {
		marker := "…"
		if strings.HasPrefix(tc.in, "ä") {
			marker = ""
		}
		got := cutUTF16(tc.in, tc.max, marker)
		if got != tc.want || utf16Len(got) > tc.max {
			t.Errorf("cutUTF16(%q, %d) = %q (%d units), want %q", tc.in, tc.max, got, utf16Len(got), tc.want)
		}
	}
}

func TestHasMarker(t *testing.T) {
	tests := []struct {
		text, marker string
		want         bool
	}{
		{"x\n\npsagate-ref: job1", "job1", true},
		{"x\n\npsagate-ref: job10", "job1", false},
		{"x psagate-ref: job10 psagate-ref: job1", "job1", true},
		{"x psagate-ref: job1 y", "job1", true},        // CR/LF turned into spaces by the server
		{"shot.png (psagate-ref: job1)", "job1", true}, // document title
		{"nothing", "job1", false},
	}
	for _, tc := range tests {
		if got := hasMarker(tc.text, tc.marker); got != tc.want {
			t.Errorf("hasMarker(%q, %q) = %v", tc.text, tc.marker, got)
		}
	}
}

func TestNextLink(t *testing.T) {
	tests := []struct {
		in   []string
		want string
	}{
		{[]string{`<https://h/a?page=2&pageSize=50>; rel="next", <https://h/a?page=4&pageSize=50>; rel="last"`}, "https://h/a?page=2&pageSize=50"},
		{[]string{`<https://h/a?page=1>; rel="first", <https://h/a?page=3>; rel="prev"`}, ""},
		{[]string{`<https://h/a?conditions=id%20in%20(1,2)&page=2>; rel=next`}, "https://h/a?conditions=id%20in%20(1,2)&page=2"},
		{[]string{`<https://h/a?page=1>; rel="prev"`, `<https://h/a?page=3>; rel="last next"`}, "https://h/a?page=3"},
		{nil, ""},
	}
	for _, tc := range tests {
		if got := nextLink(tc.in); got != tc.want {
			t.Errorf("nextLink(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestEncodeQuery(t *testing.T) {
	got := encodeQuery(url.Values{"conditions": {`externalXRef="a+b c&d"`}, "pageSize": {"1"}})
	want := `conditions=externalXRef%3D%22a%2Bb%20c%26d%22&pageSize=1`
	if got != want {
		t.Errorf("encodeQuery = %s, want %s", got, want)
	}
	if quote(`a"b\c`) != `"a\"b\\c"` {
		t.Errorf("quote = %s", quote(`a"b\c`))
	}
}
