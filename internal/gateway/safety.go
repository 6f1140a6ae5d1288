package gateway

import (
	"fmt"
	"strings"
	"unicode"

	"psagate/internal/message"
	"psagate/internal/rules"
)

// The safety checks run after the rules have decided. A close marks a real
// problem solved and a drop makes a mail disappear; both are irreversible
// from the PSA's point of view, so on mail whose meaning is ambiguous
// neither may happen: the message is quarantined instead (kept for an
// admin, no PSA call) and the reason goes into the audit trail and into
// `psagate try`. Ticket and note decisions are left alone: a ticket too
// many is visible and cheap, a failure closed by mistake is neither.
//
// The one check that also stops tickets and notes is sender pinning: a
// client that lists its senders says where its alerts come from, and mail
// a rule would act on that comes from anywhere else (a look-alike domain
// such as datt0.com) must not reach that client's board.

// safetyCheck returns why the verdict v of alert a must not stand, or "".
// th and vars are the deciding Then and the template fields; ruleDecided
// is false for the default action.
func (s *Snapshot) safetyCheck(v *Verdict, a *message.Alert, th *rules.Then, ruleDecided bool, vars map[string]string) string {
	var why []string
	if ruleDecided && (v.Action == rules.ActionTicket || v.Action == rules.ActionNote || v.Action == rules.ActionClose) {
		if s.Router.SenderPinned(v.Client, a.MailFrom, a.From) {
			why = append(why, fmt.Sprintf("sender %s is not one of client %s's senders (look-alike or unknown sender)",
				senderOf(a), v.Client))
		} else if c, p := s.lookAlike(a); c != "" {
			// Routed to another client (or none), but imitating a pinned
			// sender: the pin must not end where the routing does.
			why = append(why, fmt.Sprintf("sender %s looks like client %s's sender %s (look-alike domain)", senderOf(a), c, p))
		}
	}
	if v.Action != rules.ActionClose && v.Action != rules.ActionDrop {
		return strings.Join(why, "; ")
	}
	for _, h := range []string{"subject", "from"} {
		if vals := a.Header[h]; len(vals) > 1 {
			why = append(why, fmt.Sprintf("%d %s headers (%s)", len(vals), headerTitle(h), quoteList(vals)))
		}
	}
	if v.Action == rules.ActionClose && a.MailFrom == "" && !isMailReport(a) {
		why = append(why, "null envelope sender (MAIL FROM:<>) on a mail that is not a delivery report")
	}
	if !isMailReport(a) {
		subj, body := outcomeOf(a.Subject, false), outcomeOf(a.Text, true)
		if subj.clear() && body.clear() && subj != body {
			why = append(why, fmt.Sprintf("the subject says %s but the body says %s", subj, body))
		}
	}
	if v.Action == rules.ActionClose && !keyHasSubject(th, vars) {
		why = append(why, fmt.Sprintf("the key %q names no device or job", v.Key))
	}
	return strings.Join(why, "; ")
}

// lookAlike checks the envelope sender and the From address.
func (s *Snapshot) lookAlike(a *message.Alert) (client, pinned string) {
	for _, addr := range []string{a.From, a.MailFrom} {
		if c, p := s.Router.LookAlike(addr); c != "" {
			return c, p
		}
	}
	return "", ""
}

// keyHasSubject reports whether the key of a close names the device or job
// it closes: one of its device/job fields is non-empty. Without one the key
// is the same for every machine of the client.
func keyHasSubject(th *rules.Then, vars map[string]string) bool {
	parts := []string{"device", "job"}
	if th != nil && th.Key != nil {
		parts = rules.KeyParts(th.Key)
	}
	for _, p := range parts {
		if strings.TrimSpace(vars[p]) != "" {
			return true
		}
	}
	return false
}

func senderOf(a *message.Alert) string {
	switch {
	case a.From != "" && a.MailFrom != "" && !strings.EqualFold(a.From, a.MailFrom):
		return a.From + " (envelope " + a.MailFrom + ")"
	case a.From != "":
		return a.From
	case a.MailFrom != "":
		return a.MailFrom
	}
	return "(none)"
}

func headerTitle(h string) string {
	if h == "from" {
		return "From:"
	}
	return "Subject:"
}

func quoteList(vals []string) string {
	q := make([]string, len(vals))
	for i, v := range vals {
		if r := []rune(v); len(r) > 100 {
			v = string(r[:100]) + "…"
		}
		q[i] = fmt.Sprintf("%q", v)
	}
	return strings.Join(q, ", ")
}

// isMailReport reports whether a is a report of the mail system about
// another message (RFC 6522 multipart/report: delivery status notifications
// and read receipts). Such reports come with a null sender by design and
// quote the message they report on, so its subject says nothing about them.
func isMailReport(a *message.Alert) bool {
	for _, ct := range a.Header["content-type"] {
		ct = strings.ToLower(ct)
		if strings.Contains(ct, "multipart/report") &&
			(strings.Contains(ct, "delivery-status") || strings.Contains(ct, "disposition-notification")) {
			return true
		}
	}
	return false
}

// outcome is what a text says about how something went.
type outcome uint8

const (
	outcomeNone    outcome = iota // no outcome wording
	outcomeSuccess                // success wording only
	outcomeFailure                // failure wording only
	outcomeMixed                  // both ("completed with errors")
)

func (o outcome) clear() bool { return o == outcomeSuccess || o == outcomeFailure }

func (o outcome) String() string {
	switch o {
	case outcomeSuccess:
		return "success"
	case outcomeFailure:
		return "failure"
	case outcomeMixed:
		return "both success and failure"
	}
	return "nothing"
}

// Outcome words, lower case, in the languages the shipped packs' vendors
// mail in (English, German, French). They are whole words: "unsuccessful"
// is not "successful". "ok" and "complete" count only in a subject: in a
// body they are too common in other senses ("click OK").
var (
	successWords = wordSet("success", "successful", "successfully", "succeeded", "succeed", "completed", "passed",
		"resolved", "restored", "resumed", "recovered", "healthy", "erfolgreich", "abgeschlossen", "réussi", "réussie",
		"reussi", "reussie", "succès", "terminé", "terminée", "termine")
	subjectSuccessWords = wordSet("ok", "complete")
	failureWords        = wordSet("failed", "failure", "failures", "fail", "fails", "error", "errors", "unsuccessful",
		"aborted", "missed", "critical", "fehlgeschlagen", "fehler", "abgebrochen", "échec", "echec", "échoué",
		"échouée", "echoue", "erreur", "erreurs", "undeliverable", "undelivered", "unzustellbar", "returned")
	// An outcome word right after one of these says there was none: "0
	// errors", "no errors", "ohne Fehler", "sans erreur"; right before "0"
	// too: "Failed: 0".
	noneWords = wordSet("0", "no", "none", "without", "zero", "kein", "keine", "keinen", "ohne", "sans", "aucun",
		"aucune")
	// An outcome word up to three words after one of these is negated:
	// "could not be completed", "nicht erfolgreich", "n'a pas réussi".
	notWords = wordSet("not", "nicht", "pas", "non", "never", "nie", "cannot", "couldn", "wasn", "didn", "hasn",
		"isn", "weren", "won", "unable")
	// A body line with one of these describes a setting or a condition
	// ("notify me on failure", "if the backup fails"), not what happened.
	conditionWords = wordSet("if", "when", "whenever", "notify", "notification", "notifications", "unless",
		"wenn", "falls", "benachrichtigung", "benachrichtigen", "si", "lorsque", "notifier")
)

func wordSet(ws ...string) map[string]bool {
	m := make(map[string]bool, len(ws))
	for _, w := range ws {
		m[w] = true
	}
	return m
}

// maxOutcomeBytes bounds the body text read for its outcome: the status of
// an alert is at its top, and this runs while DATA is open.
const maxOutcomeBytes = 16 << 10

// outcomeOf classifies text by its outcome words. A body is read line by
// line, skipping lines that describe conditions or settings.
func outcomeOf(text string, body bool) outcome {
	if len(text) > maxOutcomeBytes {
		text = text[:maxOutcomeBytes]
	}
	var succ, fail bool
	for line := range strings.SplitSeq(text, "\n") {
		words := strings.FieldsFunc(strings.ToLower(line), func(r rune) bool {
			return !unicode.IsLetter(r) && !unicode.IsDigit(r)
		})
		if body && containsAny(words, conditionWords) {
			continue
		}
		for i, w := range words {
			isSucc := successWords[w] || (!body && subjectSuccessWords[w])
			isFail := failureWords[w]
			if !isSucc && !isFail {
				continue
			}
			// "0 errors", "Errors: 0", "not successful": neither.
			if (i > 0 && noneWords[words[i-1]]) || (i+1 < len(words) && words[i+1] == "0") ||
				containsAny(words[max(0, i-3):i], notWords) {
				continue
			}
			succ = succ || isSucc
			fail = fail || isFail
		}
	}
	switch {
	case succ && fail:
		return outcomeMixed
	case succ:
		return outcomeSuccess
	case fail:
		return outcomeFailure
	}
	return outcomeNone
}

func containsAny(words []string, set map[string]bool) bool {
	for _, w := range words {
		if set[w] {
			return true
		}
	}
	return false
}
