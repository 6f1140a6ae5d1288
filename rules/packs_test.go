// Package packs_test checks the rule packs shipped in rules/ against the
// project's own sample mail (testdata/samples) and the shared sample set
// (../shared/samples, when present): every pack compiles, the samples get
// the decisions their EXPECTED.tsv names when they are replayed through the
// dry-run engine of `psagate try` on the example configuration, every rule
// decides at least one sample, and the generic rules (bounces, auto-replies,
// PSA notifications) never touch a real alert.
package packs_test

import (
	"bytes"
	"fmt"
	"image/png"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"psagate/internal/app"
	"psagate/internal/gateway"
	"psagate/internal/message"
	"psagate/internal/rules"
	"psagate/internal/store"
	"psagate/internal/testutil"
)

// unexercised lists rules that no sample decides, with the reason. A rule
// that is neither exercised nor listed here fails TestEveryRuleDecidesASample,
// so a new rule comes with a sample or with a reason.
var unexercised = map[string]string{}

// sharedPacks are the packs whose basic samples live in ../shared/samples
// only. Without that folder (a fresh clone) their coverage cannot be checked.
var sharedPacks = []string{"x360recover.toml", "veeam.toml"}

// shippedPacks are the packs this project ships. The tests cover these by
// name: a pack an admin drops into rules/ is checked by `psagate check`,
// not by `make test`, so it cannot break the build.
var shippedPacks = []string{"acronis.toml", "datto.toml", "fallback.toml", "generic.toml", "storagecraft.toml",
	"synology.toml", "veeam.toml", "windows-server-backup.toml", "x360recover.toml"}

// rulesDir returns a directory holding copies of the shipped packs only.
func rulesDir(t testing.TB) string {
	t.Helper()
	src := filepath.Join(testutil.RepoRoot(t), "rules")
	dir := t.TempDir()
	for _, name := range shippedPacks {
		data, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			t.Fatalf("shipped pack: %v", err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// fallbackWithoutDevice reports whether r is one of the fallback rules for
// mail that names no device: they key by sender and subject instead.
func fallbackWithoutDevice(r *rules.Rule) bool {
	return filepath.Base(r.File) == "fallback.toml" && strings.HasSuffix(r.Name, "without device")
}

// snapshot loads configs/example.toml, as `make run` and the docs use it,
// with the rule directory and the state path made absolute, through the
// same loader as `psagate try`.
func snapshot(t testing.TB) *gateway.Snapshot {
	t.Helper()
	root := testutil.RepoRoot(t)
	var cfg map[string]any
	if _, err := toml.DecodeFile(filepath.Join(root, "configs", "example.toml"), &cfg); err != nil {
		t.Fatalf("configs/example.toml: %v", err)
	}
	section := func(name string) map[string]any {
		m, ok := cfg[name].(map[string]any)
		if !ok {
			t.Fatalf("configs/example.toml has no [%s] table", name)
		}
		return m
	}
	dir := t.TempDir()
	section("rules")["dir"] = rulesDir(t)
	section("state")["path"] = filepath.Join(dir, "state.db")
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(cfg); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "psagate.toml")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	snap, err := app.LoadSnapshot(path)
	if err != nil {
		t.Fatalf("load the example config with the shipped rules: %v", err)
	}
	return snap
}

func TestPacksCompile(t *testing.T) {
	dir := rulesDir(t)
	set, err := rules.Load(dir, rules.Options{})
	if err != nil {
		t.Fatalf("rules.Load(%s): %v", dir, err)
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.toml"))
	if err != nil || len(files) != len(shippedPacks) {
		t.Fatalf("rule files: %v (%v)", files, err)
	}
	perFile := map[string]int{}
	for _, r := range set.Rules() {
		perFile[filepath.Base(r.File)]++
	}
	for _, f := range files {
		base := filepath.Base(f)
		// Each pack must also compile on its own: admins copy single packs.
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rules.Compile([]rules.File{{Name: base, Data: data}}, rules.Options{}); err != nil {
			t.Errorf("%s alone: %v", base, err)
		}
		if perFile[base] == 0 {
			t.Errorf("%s holds no rule", base)
		}
	}

	genericMax, vendorMin := -1<<31, 1<<31-1
	for _, r := range set.Rules() {
		base := filepath.Base(r.File)
		if base == "generic.toml" {
			genericMax = max(genericMax, r.Priority)
			if r.Then.Action != rules.ActionDrop && r.Then.Action != rules.ActionQuarantine {
				t.Errorf("%s: generic rules only drop or quarantine, not %s", r.Name, r.Then.Action)
			}
			continue
		}
		vendorMin = min(vendorMin, r.Priority)
		if fallbackWithoutDevice(r) {
			continue
		}
		if strings.HasPrefix(r.Name, "fallback/") != (base == "fallback.toml") {
			t.Errorf("%s:%d %q: fallback rules, and only they, are named \"fallback/...\" (try -summary counts them by that)", base, r.Line, r.Name)
		}
		if base == "fallback.toml" && r.Priority < 9000 {
			t.Errorf("%s:%d %q: fallback rules run after every vendor and admin rule (priority 9000 and up)", base, r.Line, r.Name)
		}
		switch r.Then.Action {
		case rules.ActionTicket, rules.ActionNote, rules.ActionClose:
			// Failure and recovery meet on a key only if both know the device.
			if !slices.Contains(r.Fields, "device") {
				t.Errorf("%s:%d %q: a %s rule must extract a device", base, r.Line, r.Name, r.Then.Action)
			}
			if !slices.Contains(r.Then.Key.Fields(), "device") {
				t.Errorf("%s:%d %q: key %q does not hold {device}", base, r.Line, r.Name, r.Then.Key)
			}
			if r.Then.Check == r.Name {
				t.Errorf("%s:%d %q: no check word: failure and success rules must name the same check", base, r.Line, r.Name)
			}
		}
		if r.Then.Action == rules.ActionTicket && !slices.Contains(r.Then.Summary.Fields(), "device") {
			t.Errorf("%s:%d %q: summary %q does not name the device", base, r.Line, r.Name, r.Then.Summary)
		}
		// An expect timer fires on `try`'s message clock but not on a
		// live gateway's within a test: the shipped packs only suggest it.
		if r.Then.Expect > 0 {
			t.Errorf("%s:%d %q: shipped packs leave expect commented out", base, r.Line, r.Name)
		}
	}
	if genericMax >= vendorMin {
		t.Errorf("generic rules (up to priority %d) must run before every vendor rule (from %d)", genericMax, vendorMin)
	}
}

// replayed is one sample's outcome.
type replayed struct {
	row testutil.Row
	res *gateway.TrialResult
}

// replay sends a sample set through a fresh trial in EXPECTED.tsv order.
func replay(t *testing.T, snap *gateway.Snapshot, set string) ([]replayed, *gateway.Trial) {
	t.Helper()
	tr, err := gateway.NewTrial(snap, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.Close)
	var out []replayed
	for i, r := range testutil.ReadExpected(t, set) {
		raw, err := os.ReadFile(filepath.Join(set, r.File))
		if err != nil {
			t.Fatal(err)
		}
		res, err := tr.Run(fmt.Sprint(i), raw, message.Envelope{MailFrom: r.MailFrom, RcptTo: []string{r.RcptTo}}, false)
		if err != nil {
			t.Fatalf("%s: %v", r.File, err)
		}
		out = append(out, replayed{row: r, res: res})
	}
	return out, tr
}

// sampleSets are the sets to replay, by a short name.
func sampleSets(t *testing.T) map[string]string {
	sets := map[string]string{}
	// Every folder of testdata/ with an EXPECTED.tsv is a set, so a new
	// set (or a new mail in one) is replayed and checked automatically.
	tables, err := filepath.Glob(filepath.Join(testutil.RepoRoot(t), "testdata", "*", "EXPECTED.tsv"))
	if err != nil || len(tables) < 2 {
		t.Fatalf("testdata/*/EXPECTED.tsv: %v (%v)", tables, err)
	}
	for _, tb := range tables {
		dir := filepath.Dir(tb)
		sets["testdata/"+filepath.Base(dir)] = dir
	}
	if s := testutil.SharedSamples(t); s != "" {
		sets["shared"] = s
	} else {
		t.Log("SKIPPED PART: ../shared/samples is absent; replaying only testdata/samples")
	}
	return sets
}

func TestSamplesReplay(t *testing.T) {
	snap := snapshot(t)
	sets := sampleSets(t)
	for _, name := range slices.Sorted(maps.Keys(sets)) {
		set := sets[name]
		t.Run(name, func(t *testing.T) {
			got, tr := replay(t, snap, set)
			opened := map[string]uint64{} // file → incident it opened
			for _, g := range got {
				r, res, v := g.row, g.res, g.res.Verdict
				if !r.Accepts(string(res.Decision), string(res.Effect)) {
					t.Errorf("%s: %s (%s) by rule %q, EXPECTED.tsv wants %s or %v", r.File, res.Decision, res.Effect, v.Rule, r.Decision, r.AlsoOK)
					continue
				}
				if res.Decision != rules.ActionTicket && res.Decision != rules.ActionNote && res.Decision != rules.ActionClose {
					continue
				}
				// The rule found the device and check the row names, so
				// failure and recovery meet on one incident.
				if v.Device != r.DeviceKey || v.Check != r.Check {
					t.Errorf("%s: device %q check %q, EXPECTED.tsv says %q %q", r.File, v.Device, v.Check, r.DeviceKey, r.Check)
				}
				if r.DeviceKey != "" && !strings.HasPrefix(v.Key, v.Client+"/"+r.DeviceKey+"/") {
					t.Errorf("%s: key %q does not start with client/device", r.File, v.Key)
				}
				if res.Decision == rules.ActionTicket && r.DeviceKey != "" && !strings.Contains(v.Summary, r.DeviceKey) {
					t.Errorf("%s: summary %q does not name %q", r.File, v.Summary, r.DeviceKey)
				}
				inc := res.Outcome.Incident
				switch {
				case rules.Action(r.Decision) == rules.ActionTicket && res.Effect == "opened":
					opened[r.File] = inc.ID
				case rules.Action(r.Decision) == rules.ActionNote || rules.Action(r.Decision) == rules.ActionClose:
					var id uint64 // 0: no incident (a no-op)
					if inc != nil {
						id = inc.ID
					}
					if want, ok := opened[r.IncidentOf]; !ok || id != want {
						t.Errorf("%s: %s went to incident %d, EXPECTED.tsv says to the one %s opened (%d)", r.File, res.Decision, id, r.IncidentOf, want)
					}
				}
			}
			checkOpenAtEnd(t, tr, got)
		})
	}
}

// checkOpenAtEnd compares the incidents the trial leaves open with those
// the ticket and close rows of EXPECTED.tsv imply, by device and check (a
// pack may put more into its key, such as Acronis's plan).
func checkOpenAtEnd(t *testing.T, tr *gateway.Trial, got []replayed) {
	t.Helper()
	want := map[string]bool{}
	for _, g := range got {
		k := g.row.DeviceKey + "/" + g.row.Check
		switch rules.Action(g.row.Decision) {
		case rules.ActionTicket:
			want[k] = true
		case rules.ActionClose:
			delete(want, k)
		}
	}
	_, incs, err := tr.Pending()
	if err != nil {
		t.Fatal(err)
	}
	open := map[string]bool{}
	for _, inc := range incs {
		open[inc.Device+"/"+inc.Check] = true
	}
	if a, b := slices.Sorted(maps.Keys(open)), slices.Sorted(maps.Keys(want)); !slices.Equal(a, b) {
		t.Errorf("open after the set:\n got %q\nwant %q", a, b)
	}
}

func TestEveryRuleDecidesASample(t *testing.T) {
	snap := snapshot(t)
	sets := sampleSets(t)
	decided := map[string][]string{} // rule → files
	for _, name := range slices.Sorted(maps.Keys(sets)) {
		got, _ := replay(t, snap, sets[name])
		for _, g := range got {
			decided[g.res.Verdict.Rule] = append(decided[g.res.Verdict.Rule], name+"/"+g.row.File)
		}
	}
	for _, r := range snap.Rules.Rules() {
		_, listed := unexercised[r.Name]
		files := decided[r.Name]
		switch {
		case listed && len(files) > 0:
			t.Errorf("rule %q is listed as unexercised but decides %v: remove it from the list", r.Name, files)
		case listed:
			t.Logf("rule %q has no sample: %s", r.Name, unexercised[r.Name])
		case len(files) == 0 && sets["shared"] == "" && slices.Contains(sharedPacks, filepath.Base(r.File)):
			t.Logf("SKIPPED PART: rule %q (%s) is exercised by ../shared/samples, which is absent", r.Name, filepath.Base(r.File))
		case len(files) == 0:
			t.Errorf("rule %q (%s:%d) decides no sample: add one to testdata/samples or list it in unexercised with the reason", r.Name, filepath.Base(r.File), r.Line)
		}
	}
	for name := range unexercised {
		if !slices.ContainsFunc(snap.Rules.Rules(), func(r *rules.Rule) bool { return r.Name == name }) {
			t.Errorf("unexercised names rule %q, which does not exist", name)
		}
	}
}

// TestGenericRulesSpareRealAlerts evaluates every vendor sample (failures,
// warnings, recoveries, even vendor chatter) against the generic pack
// alone: none of its rules may match, or a real alert would be dropped
// before its vendor's rules see it. Every generic sample, in turn, must be
// decided by a generic rule.
func TestGenericRulesSpareRealAlerts(t *testing.T) {
	path := filepath.Join(rulesDir(t), "generic.toml")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	generic, err := rules.Compile([]rules.File{{Name: path, Data: data}}, rules.Options{})
	if err != nil {
		t.Fatal(err)
	}
	snap := snapshot(t)
	sets := sampleSets(t)
	var alerts int
	for _, name := range slices.Sorted(maps.Keys(sets)) {
		set := sets[name]
		for _, r := range testutil.ReadExpected(t, set) {
			raw, err := os.ReadFile(filepath.Join(set, r.File))
			if err != nil {
				t.Fatal(err)
			}
			env := message.Envelope{MailFrom: r.MailFrom, RcptTo: []string{r.RcptTo}}
			if r.Vendor == "generic" {
				v, _, _ := snap.Decide("g", raw, env)
				if filepath.Base(v.RuleFile) != "generic.toml" {
					t.Errorf("%s/%s: decided by %q (%s), not by a generic rule", name, r.File, v.Rule, v.RuleFile)
				}
				continue
			}
			if r.Kind == "hostile" || r.Kind == "test" || r.Kind == "digest" || r.Kind == "notice" {
				continue // not alerts: a generic rule may drop them
			}
			alerts++
			a := message.Decode(raw, env, message.Limits{})
			d := generic.Evaluate(rules.Input{Alert: a, Client: "pinecrest"})
			if d.Rule != nil || len(d.Audit) > 0 {
				t.Errorf("%s/%s (%s %s): generic rule %q matches a real alert", name, r.File, r.Vendor, r.Kind, d.Matched[0].Name)
			}
		}
	}
	if alerts < 30 {
		t.Errorf("only %d vendor samples checked", alerts)
	}
}

// TestSampleFiles checks the sample set itself: CRLF line ends as on the
// wire, EXPECTED.tsv rows in date order and matching each file's Date
// header, every file listed, and the screenshot a valid PNG.
func TestSampleFiles(t *testing.T) {
	set := filepath.Join(testutil.RepoRoot(t), "testdata", "samples")
	data, err := os.ReadFile(filepath.Join(set, "EXPECTED.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	head := strings.Split(lines[0], "\t")
	wantHead := []string{"file", "vendor", "kind", "device_key", "decision", "also_ok", "check", "incident_ref", "date_utc", "mail_from", "rcpt_to", "malformed", "notes"}
	if !slices.Equal(head, wantHead) {
		t.Fatalf("EXPECTED.tsv columns %q, want %q", head, wantHead)
	}
	listed := map[string]bool{}
	var last time.Time
	var pngs int
	for _, l := range lines[1:] {
		f := strings.Split(l, "\t")
		if len(f) != len(wantHead) {
			t.Errorf("row %q has %d columns", l, len(f))
			continue
		}
		file, decision, dateUTC := f[0], f[4], f[8]
		listed[file] = true
		if !slices.Contains([]string{"ticket", "note", "close", "drop", "quarantine", "reject"}, decision) {
			t.Errorf("%s: decision %q is not a decision word (rules.Action, docs/design.md)", file, decision)
		}
		raw, err := os.ReadFile(filepath.Join(set, file))
		if err != nil {
			t.Error(err)
			continue
		}
		if bytes.Count(raw, []byte("\n")) != bytes.Count(raw, []byte("\r\n")) || !bytes.HasSuffix(raw, []byte("\r\n")) {
			t.Errorf("%s: not CRLF throughout", file)
		}
		at, err := time.Parse(time.RFC3339, dateUTC)
		if err != nil {
			t.Errorf("%s: date_utc %q: %v", file, dateUTC, err)
			continue
		}
		if !at.After(last) {
			t.Errorf("%s: date_utc %s is not after the previous row's %s", file, at, last)
		}
		last = at
		a := message.Decode(raw, message.Envelope{}, message.Limits{})
		if !a.Date.Equal(at) {
			t.Errorf("%s: Date header %s, date_utc %s", file, a.Date.UTC(), at)
		}
		for _, att := range a.Attachments {
			if att.ContentType == "image/png" {
				if _, err := png.Decode(bytes.NewReader(att.Data)); err != nil {
					t.Errorf("%s: attachment %s: %v", file, att.Name, err)
				}
				pngs++
			}
		}
	}
	if pngs == 0 {
		t.Error("no sample carries a PNG screenshot")
	}
	emls, _ := filepath.Glob(filepath.Join(set, "*.eml"))
	var unlisted []string
	for _, e := range emls {
		if !listed[filepath.Base(e)] {
			unlisted = append(unlisted, filepath.Base(e))
		}
	}
	sort.Strings(unlisted)
	if len(unlisted) > 0 || len(emls) != len(lines)-1 {
		t.Errorf("%d .eml files, %d rows; not in EXPECTED.tsv: %v", len(emls), len(lines)-1, unlisted)
	}
}

// TestWordingVariants feeds subjects and bodies the samples do not show,
// the variations the pack comments promise to tolerate, and mail that
// looks like noise but must get through.
func TestWordingVariants(t *testing.T) {
	snap := snapshot(t)
	cases := []struct {
		name, from, subject, body string
		headers                   string
		rule, device, check       string // rule "" means: no rule decides (default action)
	}{
		{name: "datto prefixed subject, agent only in the body", from: "siris1@pinecrest-vet.example",
			subject: "[PVC-SIRIS1] Backup Failure", body: "Datto SIRIS alert\n  Agent: PVC-SRV-X1\n",
			rule: "datto backup failed", device: "PVC-SRV-X1", check: "backup"},
		{name: "datto offsite behind", from: "siris1@pinecrest-vet.example",
			subject: "Datto Alert: Offsite Sync Behind for PVC-SRV-X2 on PVC-SIRIS1", body: "Datto SIRIS alert\n",
			rule: "datto offsite sync failed", device: "PVC-SRV-X2", check: "offsite"},
		{name: "datto ZFS pool degraded is a drive problem, not usage", from: "siris1@pinecrest-vet.example",
			subject: "Datto Alert: ZFS Pool Degraded on PVC-SIRIS1", body: "Datto SIRIS alert\n",
			rule: "datto drive or pool failure", device: "PVC-SIRIS1", check: "drive"},
		{name: "datto pool usage over the threshold", from: "siris1@pinecrest-vet.example",
			subject: "Datto Alert: Local Storage 91% Full on PVC-SIRIS1", body: "Datto SIRIS alert\n",
			rule: "datto local storage warning", device: "PVC-SIRIS1", check: "storage"},
		{name: "a device named OOO-SRV1 is no out-of-office", from: "backup@pinecrest-vet.example",
			subject: "OOO-SRV1 backup job Failed", body: "Host: OOO-SRV1\n",
			rule: "fallback/failure", device: "OOO-SRV1", check: "backup"},
		{name: "fallback: Backup Exec job failed", from: "be@pinecrest-vet.example",
			subject: `Backup Exec Alert: Job Failed (Server: "PVC-BE1") (Job: "Daily")`, body: "Job Failed\n",
			rule: "fallback/failure", device: "PVC-BE1", check: "backup"},
		{name: "fallback: zero errors is a success", from: "be@pinecrest-vet.example",
			subject: "Backup of PVC-SRV-Y1 completed, 0 errors", body: "done\n",
			rule: "fallback/success", device: "PVC-SRV-Y1", check: "backup"},
		{name: "fallback: 'on schedule' is no device", from: "be@pinecrest-vet.example",
			subject: "Backup did not run on schedule", body: "check it\n",
			rule: "fallback/failure without device"},
		{name: "fallback: French success", from: "be@pinecrest-vet.example",
			subject: "Sauvegarde réussie", body: "Ordinateur : PVC-SRV-Y2\n",
			rule: "fallback/success", device: "PVC-SRV-Y2", check: "backup"},
		{name: "fallback: German digest", from: "be@pinecrest-vet.example",
			subject: "Tägliche Zusammenfassung: 2 Sicherungen fehlgeschlagen", body: "Gerät: PVC-SRV-Y3\n",
			rule: "fallback/digest"},
		{name: "datto all-clear that repeats the warning words", from: "siris1@pinecrest-vet.example",
			subject: "Datto Notice: Local Storage Warning Resolved on PVC-SIRIS1", body: "Datto SIRIS notice\n",
			rule: "datto local storage ok", device: "PVC-SIRIS1", check: "storage"},
		{name: "acronis machine named in the subject", from: "acronis-alerts@pinecrest-vet.example",
			subject: "Backup of PVC-SRV-X10 failed", body: "Acronis Cyber Protect\nMachine: PVC-SRV-X10\nBackup plan: Daily\n",
			rule: "acronis backup failed or missed", device: "PVC-SRV-X10", check: "backup"},
		{name: "acronis did not start, newer field names", from: "acronis-alerts@pinecrest-vet.example",
			subject: "Backup did not start", body: "Acronis Cyber Protect\nWorkload: PVC-SRV-X3\nProtection plan: SQL hourly\n",
			rule: "acronis backup failed or missed", device: "PVC-SRV-X3", check: "backup"},
		{name: "spx completed with errors is a failure", from: "spx@pinecrest-vet.example",
			subject: `ShadowProtect SPX: Job "Nightly" on PVC-SRV-X4 completed with errors`, body: "ShadowProtect SPX\n",
			rule: "shadowprotect backup job failed", device: "PVC-SRV-X4", check: "backup"},
		{name: "hyper backup partially completed", from: "nas1@pinecrest-vet.example",
			subject: "[PVC-NAS1] Hyper Backup: backup task [Büro Dokumente] partially completed", body: "Sincerely,\nSynology DiskStation\n",
			rule: "synology backup failed or partial", device: "Büro Dokumente", check: "backup"},
		{name: "wsb event id, host in brackets", from: "wsb@pinecrest-vet.example",
			subject: "[PVC-SRV-X5] Backup event ID 517", body: "Source: Backup\nWindows Server Backup\n",
			rule: "windows server backup failed", device: "PVC-SRV-X5", check: "backup"},
		{name: "wsb host from the Computer line, domain cut", from: "wsb@pinecrest-vet.example",
			subject: "Server backup FAILED", body: "Source: Microsoft-Windows-Backup\nComputer: PVC-SRV-X6.pinecrest.lan\n",
			rule: "windows server backup failed", device: "PVC-SRV-X6", check: "backup"},
		{name: "CW reply to a ticket notification", from: "tech@northwind-msp.example",
			subject: "RE: Service Ticket #48213 - PVC-SRV-FS1: backup failed", body: "done\n",
			rule: "generic ConnectWise ticket notification"},
		{name: "exchange NDR from postmaster", from: "postmaster@pinecrest-vet.example",
			subject: "Undeliverable: Datto Alert: Backup Failed for PVC-SRV-PIMS on PVC-SIRIS1", body: "Delivery has failed.\n",
			rule: "generic bounce from the mail system"},
		// Mail that must get through the generic pack.
		{name: "an appliance sending as postmaster@", from: "postmaster@pinecrest-vet.example",
			subject: "Datto Alert: Backup Failed for PVC-SRV-X7 on PVC-SIRIS1", body: "Datto SIRIS alert\n",
			rule: "datto backup failed", device: "PVC-SRV-X7", check: "backup"},
		{name: "alert that mentions a ticket number", from: "siris1@pinecrest-vet.example",
			subject: "Datto Alert: Backup Failed for PVC-SRV-X8 on PVC-SIRIS1 (see Ticket #48213)", body: "Datto SIRIS alert\n",
			rule: "datto backup failed", device: "PVC-SRV-X8", check: "backup"},
		{name: "alert marked auto-generated", from: "siris1@pinecrest-vet.example", headers: "Auto-Submitted: auto-generated\r\nPrecedence: bulk\r\n",
			subject: "Datto Alert: Backup Failed for PVC-SRV-X9 on PVC-SIRIS1", body: "Datto SIRIS alert\n",
			rule: "datto backup failed", device: "PVC-SRV-X9", check: "backup"},
		{name: "a subject about an office is no out-of-office", from: "nas1@pinecrest-vet.example",
			subject: "Office PC backup: backup task [Office] on [PVC-WS-OFFICE] failed", body: "Synology\n",
			rule: "synology backup failed or partial", device: "PVC-WS-OFFICE", check: "backup"},
		{name: "unknown mail falls to the default action", from: "someone@pinecrest-vet.example",
			subject: "Printer toner low", body: "Replace the cartridge.\n", rule: ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			raw := "From: " + c.from + "\r\nTo: pinecrest@alerts.example.net\r\nSubject: " + c.subject +
				"\r\nDate: Mon, 03 Mar 2025 09:00:00 -0700\r\nMessage-ID: <v@test>\r\n" + c.headers +
				"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + strings.ReplaceAll(c.body, "\n", "\r\n")
			v, _, _ := snap.Decide("v", []byte(raw), message.Envelope{MailFrom: c.from, RcptTo: []string{"pinecrest@alerts.example.net"}})
			switch {
			case c.rule == "" && v.Rule != gateway.BuiltinDefault:
				t.Fatalf("decided by %q, want the default action", v.Rule)
			case c.rule != "" && v.Rule != c.rule:
				t.Fatalf("decided by %q (%s), want %q", v.Rule, v.Action, c.rule)
			}
			if c.device != "" && (v.Device != c.device || v.Check != c.check) {
				t.Errorf("device %q check %q, want %q %q", v.Device, v.Check, c.device, c.check)
			}
		})
	}
}

// TestScreenshotIsAttached follows the Datto screenshot failure to its PSA
// jobs: the PNG of the mail is uploaded to the new ticket.
func TestScreenshotIsAttached(t *testing.T) {
	snap := snapshot(t)
	var found int
	var got []replayed
	for _, set := range []string{"samples", "vendors"} {
		g, _ := replay(t, snap, filepath.Join(testutil.RepoRoot(t), "testdata", set))
		got = append(got, g...)
	}
	for _, g := range got {
		if g.res.Verdict.Rule != "datto screenshot verification failed" && g.res.Verdict.Rule != "x360recover boot vm check failed" {
			continue
		}
		found++
		var ops []string
		for _, j := range g.res.Outcome.Jobs {
			ops = append(ops, j.Op)
			if j.Op == store.OpAttach {
				if _, err := png.Decode(bytes.NewReader(j.AttachData)); err != nil || j.AttachType != "image/png" {
					t.Errorf("%s: attachment %q (%s): %v", g.row.File, j.AttachName, j.AttachType, err)
				}
			}
		}
		if g.res.Verdict.Attachments == 0 {
			if !slices.Equal(ops, []string{store.OpCreate}) {
				t.Errorf("%s: PSA jobs %v for a mail without attachment, want create", g.row.File, ops)
			}
			continue
		}
		if !slices.Equal(ops, []string{store.OpCreate, store.OpAttach}) {
			t.Errorf("%s: PSA jobs %v, want create then attach", g.row.File, ops)
		}
	}
	if found < 3 {
		t.Fatalf("%d samples were decided by the screenshot rules, want at least 3", found)
	}
}

// TestInvariants replays every set of testdata/ (and ../shared/samples)
// and checks what must hold for any mail, whatever its row says, so that a
// new sample is checked without writing a test for it:
//   - a mail whose outcome is success never opens a ticket or adds a note;
//   - test notifications, digests and update/licence notices never reach
//     a PSA (no ticket, note or close);
//   - the failure and the recovery of one job/device produce the same
//     incident key (every note or close row names the row that opened it);
//   - no testdata/vendors mail falls to the default action.
func TestInvariants(t *testing.T) {
	snap := snapshot(t)
	sets := sampleSets(t)
	for _, name := range slices.Sorted(maps.Keys(sets)) {
		t.Run(name, func(t *testing.T) {
			got, _ := replay(t, snap, sets[name])
			keyOf := map[string]string{}
			var fallback, byDefault int
			for _, g := range got {
				r, v := g.row, g.res.Verdict
				keyOf[r.File] = v.Key
				reaches := g.res.Decision == rules.ActionTicket || g.res.Decision == rules.ActionNote || g.res.Decision == rules.ActionClose
				switch r.Kind {
				case "success", "recovery":
					if g.res.Decision == rules.ActionTicket || g.res.Decision == rules.ActionNote {
						t.Errorf("%s: a %s mail got %s by %q", r.File, r.Kind, g.res.Decision, v.Rule)
					}
				case "test", "digest", "notice":
					if reaches {
						t.Errorf("%s: a %s mail reached the PSA: %s by %q", r.File, r.Kind, g.res.Decision, v.Rule)
					}
				}
				if r.IncidentOf != "" && (rules.Action(r.Decision) == rules.ActionNote || rules.Action(r.Decision) == rules.ActionClose) {
					if want, ok := keyOf[r.IncidentOf]; !ok || v.Key != want {
						t.Errorf("%s: key %q, but %s (which it recovers or repeats) has %q", r.File, v.Key, r.IncidentOf, want)
					}
				}
				switch {
				case v.Rule == gateway.BuiltinDefault:
					byDefault++
					if name == "testdata/vendors" {
						t.Errorf("%s: fell to the default action; a vendor rule or the fallback must decide it", r.File)
					}
				case strings.HasPrefix(v.Rule, "fallback/"):
					fallback++
				}
			}
			t.Logf("%d mails: %d decided by the fallback, %d by the default action", len(got), fallback, byDefault)
		})
	}
}

// TestVendorSet checks the size and coverage of testdata/vendors: at least
// 12 mails per shipped vendor pack, at least 2 for each of six vendors
// without a pack, every row with a source, and every family of outcome.
func TestVendorSet(t *testing.T) {
	set := filepath.Join(testutil.RepoRoot(t), "testdata", "vendors")
	data, err := os.ReadFile(filepath.Join(set, "EXPECTED.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	head := strings.Split(lines[0], "\t")
	src := slices.Index(head, "source")
	if src < 0 {
		t.Fatal("EXPECTED.tsv has no source column")
	}
	perVendor := map[string]int{}
	kinds := map[string]map[string]bool{}
	for _, l := range lines[1:] {
		f := strings.Split(l, "\t")
		if len(f) != len(head) || strings.TrimSpace(f[src]) == "" {
			t.Errorf("row %q: %d columns or no source", l, len(f))
			continue
		}
		perVendor[f[1]]++
		if kinds[f[1]] == nil {
			kinds[f[1]] = map[string]bool{}
		}
		kinds[f[1]][f[2]] = true
		if _, err := os.Stat(filepath.Join(set, f[0])); err != nil {
			t.Error(err)
		}
	}
	for _, v := range []string{"axcient", "veeam", "datto", "acronis", "storagecraft", "synology", "wsb"} {
		if perVendor[v] < 12 {
			t.Errorf("vendor %s: %d mails, want at least 12", v, perVendor[v])
		}
		for _, k := range []string{"failure", "recovery"} {
			if !kinds[v][k] {
				t.Errorf("vendor %s has no %s mail", v, k)
			}
		}
		if !kinds[v]["test"] && !kinds[v]["digest"] && !kinds[v]["notice"] {
			t.Errorf("vendor %s has no test, digest or notice mail", v)
		}
	}
	for _, v := range []string{"n-able-cove", "msp360", "veritas-backup-exec", "unitrends", "nakivo", "arcserve"} {
		if perVendor[v] < 2 {
			t.Errorf("vendor without a pack %s: %d mails, want at least 2", v, perVendor[v])
		}
	}
	emls, _ := filepath.Glob(filepath.Join(set, "*.eml"))
	if len(emls) != len(lines)-1 {
		t.Errorf("%d .eml files, %d rows", len(emls), len(lines)-1)
	}
}
