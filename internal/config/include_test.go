package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestClientsDir: [[client]] tables of the [clients] dir join the config's
// own; problems in an included file name that file and line; a client
// defined in both is an error naming the first place; dot files are
// skipped.
func TestClientsDir(t *testing.T) {
	dir := t.TempDir()
	inc := filepath.Join(dir, "clients.d")
	os.Mkdir(inc, 0o755)
	os.WriteFile(filepath.Join(inc, "a.toml"), []byte("[[client]]\nname = \"acme\"\nrecipients = [\"acme@a.example\"]\n[client.psa]\nconnectwise.company = \"ACME01\"\n"), 0o644)
	os.WriteFile(filepath.Join(inc, ".a.toml.tmp"), []byte("not toml at all ["), 0o644)
	main := "[smtp]\naccept_domains = [\"a.example\"]\n[clients]\ndir = \"" + inc + "\"\n[[client]]\nname = \"beta\"\nrecipients = [\"beta@a.example\"]\n"
	cfg, err := Parse(filepath.Join(dir, "p.toml"), []byte(main))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Clients) != 2 || cfg.Clients[1].Name != "acme" || cfg.Clients[1].PSA["connectwise.company"] != "ACME01" ||
		cfg.Clients[1].File != filepath.Join(inc, "a.toml") {
		t.Fatalf("clients: %+v", cfg.Clients)
	}

	os.WriteFile(filepath.Join(inc, "b.toml"), []byte("[[client]]\nname = \"BETA\"\nrecipients = [\"x\"]\nbogus = 1\n[smtp]\nlisten = \"x\"\n"), 0o644)
	_, err = Parse(filepath.Join(dir, "p.toml"), []byte(main))
	b := filepath.Join(inc, "b.toml")
	for _, want := range []string{
		b + ":2: client[0].name: client \"BETA\" is defined twice (first at " + filepath.Join(dir, "p.toml") + ":5)",
		b + ":3: client[0].recipients: recipient 1 \"x\" is not an address",
		b + ":4: client.bogus: unknown key",
		b + ":5: smtp: unknown key: a file of the clients directory holds only [[client]] tables",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("errors lack %q:\n%v", want, err)
		}
	}
}
