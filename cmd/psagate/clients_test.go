package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"psagate/internal/config"
	"psagate/internal/psa"
	atfake "psagate/internal/psa/autotask/fake"
	cwfake "psagate/internal/psa/connectwise/fake"
	"psagate/internal/store"
)

// TestClientsImport runs `clients import -match-domain` against both PSA
// fakes: it writes a [[client]] per active customer company into the
// [clients] dir, the result passes `psagate check`, and a second run adds
// nothing and leaves the file byte for byte as it was.
func TestClientsImport(t *testing.T) {
	cw := cwfake.Start(cwfake.DefaultConfig())
	defer cw.Close()
	at := atfake.Start(atfake.DefaultConfig())
	defer at.Close()
	for _, tc := range []struct {
		name     string
		settings psa.Settings
		want     []string // in the written file
		wantNot  []string
	}{
		{"connectwise", cw.Settings(),
			[]string{"[[client]]\nname = \"pvc01\"\nrecipients = [\"pvc01@alerts.example.net\"]\nsenders = [\"@pinecrest-vet.example\"]\n[client.psa]\nconnectwise.company = \"PVC01\"\n",
				"name = \"acme01\"", "connectwise.company = \"ACME01\"", `# connectwise company ACME01 "Acme Inc"`},
			[]string{"OLD01", "MyMSP"}},
		{"autotask", at.Settings(),
			[]string{"name = \"pinecrest-veterinary-clinic\"\nrecipients = [\"pinecrest-veterinary-clinic@alerts.example.net\"]\nsenders = [\"@pinecrest-vet.example\"]\n[client.psa]\nautotask.company_id = 500\n",
				"name = \"acme\"\nrecipients = [\"acme@alerts.example.net\"]\n[client.psa]\nautotask.company_id = 501\n"},
			nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			clientsDir := filepath.Join(dir, "clients.d")
			os.Mkdir(clientsDir, 0o755)
			cfg := writeConfig(t, psaSection(tc.settings), "[clients]\ndir = \""+clientsDir+"\"\n")
			code, out, stderr := runCLI("clients", "import", "-config", cfg, "-match-domain")
			if code != 0 {
				t.Fatalf("import: exit %d\n%s%s", code, out, stderr)
			}
			file := filepath.Join(clientsDir, "psa-"+tc.name+".toml")
			first, err := os.ReadFile(file)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(first), w) {
					t.Errorf("written file lacks %q:\n%s", w, first)
				}
			}
			for _, w := range tc.wantNot {
				if strings.Contains(string(first), w) {
					t.Errorf("written file has %q (inactive or the MSP's own company):\n%s", w, first)
				}
			}
			code, out, stderr = runCLI("check", "-config", cfg)
			if code != 0 || !strings.Contains(out, "OK: ") || !strings.Contains(out, "3 clients") {
				t.Fatalf("check after import: exit %d\n%s%s", code, out, stderr)
			}
			for _, secret := range tc.settings.SecretValues() {
				if strings.Contains(out, secret) || strings.Contains(string(first), secret) {
					t.Fatal("a secret in the output or the file")
				}
			}

			code, out, stderr = runCLI("clients", "import", "-config", cfg, "-match-domain")
			if code != 0 || !strings.Contains(out, "nothing to add") {
				t.Fatalf("second import: exit %d\n%s%s", code, out, stderr)
			}
			if again, _ := os.ReadFile(file); string(again) != string(first) {
				t.Errorf("second import changed the file:\n%s", again)
			}
			// A client the admin renamed and edited stays as it is and is not
			// imported twice: the PSA company is what identifies it.
			edited := strings.Replace(string(first), "name = \"acme", "name = \"acme-corp", 1)
			os.WriteFile(file, []byte(edited), 0o644)
			if code, out, _ = runCLI("clients", "import", "-config", cfg); code != 0 || !strings.Contains(out, "nothing to add") {
				t.Fatalf("import after an edit: exit %d\n%s", code, out)
			}
			if again, _ := os.ReadFile(file); string(again) != edited {
				t.Error("import rewrote an edited client")
			}
		})
	}
}

// TestClientsImportNeedsDir: without [clients] dir, import says what to add
// and writes nothing into the config.
func TestClientsImportNeedsDir(t *testing.T) {
	cw := cwfake.Start(cwfake.DefaultConfig())
	defer cw.Close()
	cfg := writeConfig(t, psaSection(cw.Settings()), "")
	before, _ := os.ReadFile(cfg)
	code, _, stderr := runCLI("clients", "import", "-config", cfg)
	if code == 0 || !strings.Contains(stderr, "[clients]\ndir = \"clients.d\"") {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if after, _ := os.ReadFile(cfg); string(after) != string(before) {
		t.Error("the config file was changed")
	}
}

// TestClientsShowsDefaultMail: `clients` lists the recent mail that went
// to the default client, by recipient.
func TestClientsShowsDefaultMail(t *testing.T) {
	cfgPath := writeConfig(t, "", "")
	cfg, err := config.LoadWithoutSecrets(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(cfg.State.Path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	db.Update(func(tx *store.Tx) error {
		for i, e := range []*store.AuditEntry{
			{Message: "m1", Client: "default", Rcpt: "newco@alerts.example.net", From: "a@newco.example", Subject: "Backup failed", Decision: "ticket"},
			{Message: "m2", Client: "default", Rcpt: "newco@alerts.example.net", From: "a@newco.example", Subject: "Backup failed again", Decision: "note"},
			{Message: "m3", Client: "pinecrest", Rcpt: "pinecrest@alerts.example.net", Decision: "ticket"},
		} {
			e.Time = now.Add(time.Duration(i) * time.Second)
			if err := tx.AddAudit(e); err != nil {
				return err
			}
		}
		return nil
	})
	db.Close()
	code, out, stderr := runCLI("clients", "-config", cfgPath)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	flat := strings.Join(strings.Fields(out), " ")
	if !strings.Contains(flat, `mail routed to the "default" client`) || !strings.Contains(flat, "newco@alerts.example.net 2") ||
		!strings.Contains(flat, "Backup failed again") || strings.Contains(flat, "pinecrest@alerts.example.net 1") {
		t.Errorf("output:\n%s", out)
	}
}
