package autotask

import (
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"

	"psagate/internal/psa"
)

// FuzzClassify feeds Autotask error answers (untrusted text from the
// network) through the classifier: it never panics, always classifies,
// keeps the message one printable line, names a field only as a setting
// or a plain word, and never shows the configured secret.
func FuzzClassify(f *testing.F) {
	for _, s := range []string{
		`{"errors":["dueDateTime is required.; on record number [0]."]}`,
		`{"errors":["Missing required field: billingCodeID."]}`,
		`{"errors":["User defined field Backup Vault is required."]}`,
		`{"errors":["An unexpected error has occurred."]}`,
		`{"errors":[{"message":"Picklist value [9] does not exist for priority."}]}`,
		`{"errors":["S3cr3t-value is invalid"]}`,
		`<html>500</html>`, ``, `{"errors":null}`,
	} {
		f.Add(500, []byte(s))
		f.Add(400, []byte(s))
	}
	j := &job{p: New(Options{}), c: &config{settings: psa.Settings{"autotask.secret": "S3cr3t-value"}}, op: "create"}
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		if status < 100 || status > 599 {
			status = 500
		}
		e := j.classify(&response{status: status, header: http.Header{}, body: body})
		if e == nil || e.Kind < psa.Transient || e.Kind > psa.Auth {
			t.Fatalf("classify gave %+v", e)
		}
		if strings.ContainsAny(e.Message, "\r\n") || !utf8.ValidString(e.Message) {
			t.Errorf("message is not one valid line: %q", e.Message)
		}
		if strings.Contains(e.Error(), "S3cr3t-value") {
			t.Errorf("secret shown: %q", e.Error())
		}
		if e.Reason == psa.ReasonValidation && e.Kind != psa.Permanent {
			t.Errorf("a validation error must be permanent: %+v", e)
		}
	})
}
