package fake

import (
	"net/http"
	"time"
)

// PicklistValue is one value of a picklist field as entityInformation/fields
// reports it. Values are strings on the wire even for integer fields.
type PicklistValue struct {
	Value    string
	Label    string
	Default  bool
	Inactive bool
	System   bool
	Parent   string // parentValue: for subIssueType, the issueType value it belongs to
}

// Company is a row of the Companies entity.
type Company struct {
	ID       int64
	Name     string
	Inactive bool
	Type     int // companyType: 1 customer (default)
	// WebAddress is the company's web site ("www.pinecrest-vet.example"),
	// "" when unknown.
	WebAddress string
}

// Contact is a row of the Contacts entity: a person at a company.
type Contact struct {
	ID        int64
	CompanyID int64
	FirstName string
	LastName  string
	Email     string
}

// UDF is a ticket user-defined field of the tenant.
type UDF struct {
	Name     string
	Required bool
	Length   int // 0: no limit
}

// Resource is a row of the Resources entity.
type Resource struct {
	ID        int64
	UserName  string
	Email     string
	FirstName string
	LastName  string
	Inactive  bool
}

// Ticket is the fake's view of a stored ticket, with its notes and
// attachments. Integer fields hold 0 when the ticket has no value (null on
// the wire); times are UTC and zero when unset.
type Ticket struct {
	ID                     int64
	TicketNumber           string
	CompanyID              int64
	Title                  string
	Description            string
	Status                 int
	Priority               int
	QueueID                int
	IssueType              int
	SubIssueType           int
	TicketType             int
	Source                 int
	TicketCategory         int
	ExternalID             string
	ContactID              int64
	AssignedResourceID     int64
	AssignedResourceRoleID int64
	Resolution             string
	DueDateTime            time.Time
	CreateDate             time.Time
	CompletedDate          time.Time
	LastActivityDate       time.Time
	BillingCodeID          int
	UDFs                   map[string]string // userDefinedFields by name

	Notes       []Note
	Attachments []Attachment
}

// Note is a stored ticket note.
type Note struct {
	ID             int64
	TicketID       int64
	Title          string
	Description    string
	NoteType       int
	Publish        int
	CreateDateTime time.Time
}

// Attachment is a stored ticket attachment with its decoded bytes.
type Attachment struct {
	ID             int64
	ParentID       int64
	Title          string
	FullPath       string
	AttachmentType string
	Publish        int
	ContentType    string
	Data           []byte
	AttachDate     time.Time
}

// Request is one recorded HTTP request, with the status the fake answered.
type Request struct {
	Time     time.Time
	Listener string // "discovery" or "zone"
	Host     string // host:port of the listener
	Method   string
	Path     string // as sent, with its original case
	Query    string // raw query
	Header   http.Header
	Body     []byte
	Status   int    // 0 when the connection was dropped before an answer
	Fault    string // the injected fault that shaped the answer, if any
}

// HasCredentials reports whether the request carried any of the three
// Autotask credential headers.
func (r Request) HasCredentials() bool {
	return r.Header.Get("UserName") != "" || r.Header.Get("Secret") != "" || r.Header.Get("ApiIntegrationCode") != ""
}

// FaultKind selects what an injected fault does.
type FaultKind int

const (
	// Fault401 answers 401 with an empty body (bad credentials).
	Fault401 FaultKind = iota + 1
	// Fault403 answers 403 with a permission message.
	Fault403
	// Fault429 answers 429 with a threshold envelope (and Retry-After if set).
	Fault429
	// Fault500Envelope answers 500 with {"errors":[Message]}.
	Fault500Envelope
	// Fault500HTML answers 500 with an HTML page (an IIS/gateway error).
	Fault500HTML
	// Fault500Empty answers 500 with an empty body.
	Fault500Empty
	// Fault503 answers 503 with an HTML body (and Retry-After if set).
	Fault503
	// FaultSlow waits Delay (or until the client gives up) before handling
	// the request normally.
	FaultSlow
	// FaultReset drops the connection with a TCP reset before handling.
	FaultReset
	// FaultLostResponse handles the request (state changes happen) and then
	// drops the connection instead of answering: "the write succeeded but
	// the response was lost".
	FaultLostResponse
	// FaultZoneMoved moves the API user to a new zone listener as soon as it
	// is injected: the old zone answers 401 to everything and zone discovery
	// returns the new URL. Method, Path and Count are ignored.
	FaultZoneMoved
)

var faultNames = map[FaultKind]string{
	Fault401: "401", Fault403: "403", Fault429: "429", Fault500Envelope: "500-envelope",
	Fault500HTML: "500-html", Fault500Empty: "500-empty", Fault503: "503", FaultSlow: "slow",
	FaultReset: "reset", FaultLostResponse: "lost-response", FaultZoneMoved: "zone-moved",
}

func (k FaultKind) String() string {
	if n, ok := faultNames[k]; ok {
		return n
	}
	return "unknown"
}

// Fault shapes the answers to the next Count requests that match Method and
// Path.
type Fault struct {
	Kind FaultKind
	// Method matches the HTTP method exactly ("POST"); empty matches any.
	Method string
	// Path is a case-insensitive path.Match pattern on the path after
	// ".../V1.0/", e.g. "Tickets", "Tickets/*/Notes", "Tickets/query";
	// "zoneInformation" matches discovery. Empty matches any path.
	Path string
	// Count is how many matching requests the fault applies to (default 1).
	Count int
	// Delay is how long FaultSlow waits.
	Delay time.Duration
	// Message replaces the default message of envelope faults.
	Message string
	// RetryAfter, when set, is sent as the Retry-After header (429/503).
	RetryAfter string
}
