package tomlpos

import (
	"testing"

	"github.com/BurntSushi/toml"
)

const doc = `# comment
[smtp]
listen = "127.0.0.1:2525"
allowed_networks = [
  "127.0.0.0/8",   # a = b in a comment
  "10.0.0.0/8",
]

[[rule]]
name = "one"
[rule.if]
subject_contains = ["a=b", 'c]d']
[rule.extract]
device = '''Agent (?P<device>\S+)
= not a key'''

[[rule]]
name = "two"
[rule.then]
"quoted.key" = 1
summary = """
multi = line
"""
action = "drop"

[[client]]
name = "acme"
[client.psa]
connectwise.company = "ACME01"
[[client.device]]
name = "d0"
[[client.device]]
name = "d1"
[client.device.psa]
connectwise.board = "Vault"

[[client]]
name = "beta"
[[client.device]]
name = "b0"
inline = { a = 1, b = [1,
  2] }
after = true
`

func TestIndex(t *testing.T) {
	var v map[string]any
	if _, err := toml.Decode(doc, &v); err != nil {
		t.Fatalf("test document is not valid TOML: %v", err)
	}
	ix := New([]byte(doc))
	tests := []struct {
		path string
		want int
	}{
		{"smtp.listen", 3},
		{"smtp.allowed_networks", 4},
		{"rule[0].name", 10},
		{"rule[0].if.subject_contains", 12},
		{"rule[0].extract.device", 14},
		{"rule[1].name", 18},
		{"rule[1].then.quoted.key", 20},
		{"rule[1].then.summary", 21},
		{"rule[1].then.action", 24},
		{"client[0].psa.connectwise.company", 29},
		{"client[0].device[0].name", 31},
		{"client[0].device[1].name", 33},
		{"client[0].device[1].psa.connectwise.board", 35},
		{"client[1].name", 38},
		{"client[1].device[0].name", 40},
		{"client[1].device[0].inline", 41},
		{"client[1].device[0].after", 43},
		{"rule[1].then.nosuch", 19}, // falls back to the table header
	}
	for _, tt := range tests {
		if got := ix.Line(tt.path); got != tt.want {
			t.Errorf("Line(%s) = %d, want %d", tt.path, got, tt.want)
		}
	}
	if got := ix.LinesOf("client.device.name"); len(got) != 3 || got[0] != 31 || got[2] != 40 {
		t.Errorf("LinesOf(client.device.name) = %v", got)
	}
}

func FuzzNew(f *testing.F) {
	f.Add(doc)
	f.Add("[[a]]\n[[a.b]]\nx=1\n[a.b]\n")
	f.Fuzz(func(t *testing.T, s string) {
		ix := New([]byte(s))
		for _, e := range ix.Entries() {
			if e.Line < 1 {
				t.Fatalf("bad line %d", e.Line)
			}
		}
	})
}
