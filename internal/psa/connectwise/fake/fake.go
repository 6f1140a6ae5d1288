// Package fake is an in-process ConnectWise Manage (ConnectWise PSA) REST
// server for tests and demos. It speaks the wire format of the real API as
// far as psagate uses it and is strict where a real server is, so that a
// client bug fails a test instead of a customer's ticket:
//
//   - /login/companyinfo/{companyId} outside the API prefix, without auth,
//     PascalCase keys, and a "null" body for an unknown company;
//   - every call under /{codebase}apis/3.0 needs the exact Basic credentials
//     "company+public:private" and the registered clientId header;
//   - JSON bodies need Content-Type application/json, documents need
//     multipart/form-data (415 otherwise);
//   - required fields, maximum lengths, references scoped to the board, note
//     flags and the JSON-Patch shape are checked and refused with the real
//     error envelope {"code","message","errors":[{code,message,resource,field}]};
//   - lists honour conditions, orderBy, page and pageSize and send a Link
//     header; every list has a /count.
//
// The server keeps its state (tickets with their notes and documents) and
// records every request, so a test can assert the exact bytes a client sent.
// Faults (401, 403, 429 with Retry-After, 500, slow answers, dropped
// connections, and a POST whose response is lost after it took effect) can be
// injected per route for the next N matching requests.
package fake

import (
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"psagate/internal/psa"
)

// Config describes the ConnectWise instance the fake pretends to be.
type Config struct {
	CompanyID  string // login company ID ("mymsp")
	PublicKey  string // API member public key
	PrivateKey string // API member private key
	ClientID   string // registered clientId GUID

	// Codebase is the path segment before apis/3.0, with its trailing
	// slash ("v4_6_release/", "v2025_1/"). The API is served only there.
	Codebase string
	// NullCodebase makes /login/companyinfo report "Codebase": null, as some
	// servers do; clients should then fall back to v4_6_release/.
	NullCodebase bool
	CompanyName  string // CompanyName in company info
	Version      string // "version" of /system/info, e.g. "v2025.1.10431"
	Member       string // identifier of the API member (enteredBy, closedBy, note member)

	Companies  []Company
	Contacts   []Contact
	Boards     []Board // the first board is the default for tickets posted without one
	Priorities []Priority

	// PageSizeLimit caps pageSize (default and real maximum 1000). A small
	// value forces clients through several pages.
	PageSizeLimit int
	// StrictPatch refuses nested PATCH paths such as "status/id", which the
	// Developer Guide warns may silently do nothing on a real server.
	StrictPatch bool
	// MaxDocumentBytes refuses larger uploads with 413 (0: no limit).
	MaxDocumentBytes int
	// Now is the clock for dateEntered, closedDate ... (default time.Now).
	Now func() time.Time

	// Countries (/company/countries) and Locations (/system/locations, the
	// MSP's territories) a ticket's country and location refer to.
	Countries []Named
	Locations []Named
	// ReadOnlyMember makes the API member's security role read-only:
	// every POST, PATCH, PUT or DELETE answers 403 while reads work (a
	// common mistake that a read-only connection test does not catch).
	ReadOnlyMember bool
}

// Company is a customer company (ticket "company").
type Company struct {
	ID         int
	Identifier string // max 30, e.g. "ACME01"
	Name       string
	Inactive   bool
	Website    string // "" when unknown
}

// Contact is a person at a company.
type Contact struct {
	ID        int
	FirstName string
	LastName  string
	CompanyID int
	Email     string
	Inactive  bool
}

// Board is a service board with its statuses, types, subtypes and items.
type Board struct {
	ID       int
	Name     string
	Inactive bool
	Statuses []Status
	Types    []Named
	SubTypes []Named
	Items    []Named
	// Required are ticket fields this board requires on create ("type",
	// "subType", "item", "contact", "addressLine1", "city", "zip",
	// "country", "location" ...), as board and workflow setups make them:
	// a create without one is refused with MissingRequiredField. The API
	// does not publish this list, so a client learns it only by the 400.
	Required []string
	// Associations are the board's valid type/subtype/item combinations
	// (/service/boards/{id}/typeSubTypeItemAssociations); a ticket must use
	// one of them. Nil: every combination of Types, SubTypes and Items is
	// valid.
	Associations []Association
}

// Association is one valid type/subtype/item combination of a board; 0
// means "none" for SubType and Item.
type Association struct{ Type, SubType, Item int }

// associations returns b's combinations, all of them when none are set.
func (b *Board) associations() []Association {
	if b.Associations != nil {
		return b.Associations
	}
	var out []Association
	for _, t := range b.Types {
		out = append(out, Association{Type: t.ID})
		for _, st := range b.SubTypes {
			out = append(out, Association{Type: t.ID, SubType: st.ID})
			for _, it := range b.Items {
				out = append(out, Association{Type: t.ID, SubType: st.ID, Item: it.ID})
			}
		}
	}
	return out
}

// Status is a board status.
type Status struct {
	ID        int
	Name      string
	SortOrder int
	Default   bool // defaultFlag: the status new tickets get
	Closed    bool // closedStatus: moving a ticket here closes it
	Inactive  bool
}

// Named is a board type, subtype or item.
type Named struct {
	ID       int
	Name     string
	Inactive bool
}

// Priority is a service priority.
type Priority struct {
	ID        int
	Name      string
	SortOrder int
	Default   bool
}

// Credentials of DefaultConfig, exported so tests can assert that none of them
// leaks into an error or a log line.
const (
	DefaultCompanyID  = "mymsp"
	DefaultPublicKey  = "k3Y8pUbL1cQx7WmZ"
	DefaultPrivateKey = "Pr1v8tEk3yN0t4U2"
	DefaultClientID   = "7c1f0e52-3b8d-4e2a-9f61-5a0d2c4b8e19"
)

// DefaultConfig is a realistic small MSP: companies PVC01 (Pinecrest
// Veterinary Clinic) and ACME01, a board "Backup Alerts" with statuses New
// (default), In Progress, an inactive "Closed (old)", Closed and
// "Closed - Auto" (both closedStatus), types Backup and Monitoring, subtypes
// Failure and Warning, items Server and Workstation; boards "Help Desk" and
// "Vault Alerts"; the four usual priorities.
func DefaultConfig() Config {
	return Config{
		CompanyID:   DefaultCompanyID,
		PublicKey:   DefaultPublicKey,
		PrivateKey:  DefaultPrivateKey,
		ClientID:    DefaultClientID,
		Codebase:    "v4_6_release/",
		CompanyName: "My MSP",
		Version:     "v2025.1.10431",
		Member:      "psagate-api",
		Companies: []Company{
			{ID: 2, Identifier: "MyMSP", Name: "My MSP"},
			{ID: 250, Identifier: "PVC01", Name: "Pinecrest Veterinary Clinic", Website: "www.pinecrest-vet.example"},
			{ID: 251, Identifier: "ACME01", Name: "Acme Inc"},
			{ID: 252, Identifier: "OLD01", Name: "Former Customer", Inactive: true},
		},
		Contacts: []Contact{
			{ID: 700, FirstName: "Jane", LastName: "Doe", CompanyID: 250, Email: "jane.doe@pinecrest.example"},
			{ID: 701, FirstName: "Tom", LastName: "Weber", CompanyID: 250, Email: "tom.weber@pinecrest.example"},
			{ID: 702, FirstName: "John", LastName: "Smith", CompanyID: 251, Email: "john@acme.example"},
		},
		Boards: []Board{
			{ID: 1, Name: "Help Desk",
				Statuses: []Status{
					{ID: 1, Name: "New", SortOrder: 0, Default: true},
					{ID: 2, Name: "Assigned", SortOrder: 1},
					{ID: 5, Name: "Completed", SortOrder: 5, Closed: true},
				},
				Types: []Named{{ID: 10, Name: "Request"}, {ID: 11, Name: "Incident"}},
			},
			{ID: 12, Name: "Backup Alerts",
				Statuses: []Status{
					{ID: 101, Name: "New", SortOrder: 0, Default: true},
					{ID: 102, Name: "In Progress", SortOrder: 1},
					{ID: 105, Name: "Closed (old)", SortOrder: 1, Closed: true, Inactive: true},
					{ID: 103, Name: "Closed", SortOrder: 2, Closed: true},
					{ID: 104, Name: "Closed - Auto", SortOrder: 3, Closed: true},
				},
				Types:    []Named{{ID: 201, Name: "Backup"}, {ID: 202, Name: "Monitoring"}},
				SubTypes: []Named{{ID: 301, Name: "Failure"}, {ID: 302, Name: "Warning"}},
				Items:    []Named{{ID: 401, Name: "Server"}, {ID: 402, Name: "Workstation"}},
			},
			{ID: 13, Name: "Vault Alerts",
				Statuses: []Status{
					{ID: 131, Name: "Open", SortOrder: 0, Default: true},
					{ID: 132, Name: "Resolved", SortOrder: 1, Closed: true},
				},
				Types: []Named{{ID: 231, Name: "Backup"}},
			},
		},
		Countries: []Named{{ID: 1, Name: "United States"}, {ID: 2, Name: "Canada"}, {ID: 3, Name: "United Kingdom"}},
		Locations: []Named{{ID: 2, Name: "Tampa Office"}, {ID: 3, Name: "Remote"}, {ID: 9, Name: "Closed Branch", Inactive: true}},
		Priorities: []Priority{
			{ID: 1, Name: "Priority 1 - Emergency Response", SortOrder: 1},
			{ID: 2, Name: "Priority 2 - Quick Response", SortOrder: 2},
			{ID: 4, Name: "Priority 3 - Normal Response", SortOrder: 3, Default: true},
			{ID: 6, Name: "Priority 4 - Schedule Maintenance", SortOrder: 4},
		},
	}
}

// Ticket is a service ticket as the fake stores it.
type Ticket struct {
	ID                 int
	Summary            string
	RecordType         string
	CompanyID          int
	BoardID            int
	StatusID           int
	TypeID             int // 0: none
	SubTypeID          int
	ItemID             int
	PriorityID         int
	ContactID          int
	AddressLine1       string
	AddressLine2       string
	City               string
	StateIdentifier    string
	Zip                string
	CountryID          int
	LocationID         int
	ExternalXRef       string
	InitialDescription string
	// ProcessNotifications is the value the client sent (nil: not sent).
	ProcessNotifications *bool
	ClosedFlag           bool
	ClosedDate           time.Time
	ClosedBy             string
	DateEntered          time.Time
	Notes                []Note
	Documents            []Document
}

// Note is a ticket note. The ticket's initialDescription is its first note.
type Note struct {
	ID                    int
	TicketID              int
	Text                  string
	DetailDescriptionFlag bool // Discussion
	InternalAnalysisFlag  bool // Internal
	ResolutionFlag        bool // Resolution
	ProcessNotifications  *bool
	DateCreated           time.Time
	CreatedBy             string
}

// Document is an uploaded file.
type Document struct {
	ID          int
	RecordType  string
	RecordID    int
	Title       string
	FileName    string
	ContentType string // of the multipart "file" part
	Data        []byte
	URL         string
	PrivateFlag bool
	GUID        string
	Created     time.Time
}

// Request is one request the server received.
type Request struct {
	Method string
	Path   string // full URL path, e.g. /v4_6_release/apis/3.0/service/tickets
	// APIPath is Path without the /{codebase}apis/3.0 prefix ("/service/tickets"),
	// or Path itself for calls outside the API (companyinfo).
	APIPath string
	Query   url.Values
	Header  http.Header
	Body    []byte
	// Status is the status the server answered, 0 when the connection was
	// dropped without an answer.
	Status int
}

// Fault changes the server's answer to the next Times requests that match
// Method and Path. The effects apply in this order: Delay, then Drop, Status
// or LoseResponse; a Fault with only Delay answers normally after the delay.
type Fault struct {
	Method string // "" matches any method
	// Path is a path.Match pattern on the API path ("/service/tickets",
	// "/service/tickets/*/notes") or, outside the API, on the full path
	// ("/login/companyinfo/*"). "" matches any path.
	Path string
	// Status answers with this HTTP status and a body in ConnectWise's style
	// (401 Unauthorized, 403 Security, 429 Too many requests, 5xx error).
	Status     int
	RetryAfter string // Retry-After header value, for 429
	Body       string // overrides the default body of Status
	// Delay waits this long before answering; a request cancelled by the
	// client ends the wait (and gets no answer).
	Delay time.Duration
	// Drop closes the connection without answering and without applying the request.
	Drop bool
	// LoseResponse applies the request (a POST creates its record) and then
	// closes the connection, so the client never learns the outcome.
	LoseResponse bool
	Times        int // number of matching requests affected; 0 means 1
}

type faultState struct {
	Fault
	left int
}

// Server is a running fake. All methods are safe for concurrent use.
type Server struct {
	cfg  Config
	http *httptest.Server
	mux  *http.ServeMux
	now  func() time.Time

	mu        sync.Mutex
	codebase  string
	tickets   []*Ticket
	nextID    map[string]int
	requests  []Request
	faults    []*faultState
	documents []*Document
}

// Start runs a fake on a plain HTTP listener on 127.0.0.1. Put Endpoint() in
// the connectwise.endpoint setting.
func Start(cfg Config) *Server {
	s := newServer(cfg)
	s.http = httptest.NewServer(s)
	return s
}

// StartTLS runs a fake over HTTPS with a self-signed certificate, so that
// codebase discovery through site = Host() works; use Client() as the HTTP
// client, it trusts the certificate.
func StartTLS(cfg Config) *Server {
	s := newServer(cfg)
	s.http = httptest.NewTLSServer(s)
	return s
}

// Listen runs a fake on a given address ("127.0.0.1:18081"), for demos and
// manual runs where the port must be known in advance.
func Listen(addr string, cfg Config) (*Server, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("fake connectwise: listen on %s: %w", addr, err)
	}
	s := newServer(cfg)
	s.http = httptest.NewUnstartedServer(s)
	s.http.Listener.Close()
	s.http.Listener = l
	s.http.Start()
	return s, nil
}

func newServer(cfg Config) *Server {
	if cfg.Codebase == "" {
		cfg.Codebase = "v4_6_release/"
	}
	if !strings.HasSuffix(cfg.Codebase, "/") {
		cfg.Codebase += "/"
	}
	if cfg.PageSizeLimit <= 0 || cfg.PageSizeLimit > 1000 {
		cfg.PageSizeLimit = 1000
	}
	if cfg.Member == "" {
		cfg.Member = "api-member"
	}
	if cfg.Version == "" {
		cfg.Version = "v2025.1.10431"
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	s := &Server{
		cfg:      cfg,
		now:      func() time.Time { return now().UTC().Truncate(time.Second) },
		codebase: cfg.Codebase,
		nextID:   map[string]int{"ticket": 5000, "note": 90000, "document": 700},
	}
	s.mux = s.routes()
	return s
}

// Close shuts the server down, ending open connections.
func (s *Server) Close() {
	s.http.CloseClientConnections()
	s.http.Close()
}

// URL is the server's base URL, "http://127.0.0.1:PORT" (https for StartTLS).
func (s *Server) URL() string { return s.http.URL }

// Host is "127.0.0.1:PORT", usable as connectwise.site with StartTLS.
func (s *Server) Host() string {
	u, _ := url.Parse(s.http.URL)
	return u.Host
}

// Endpoint is the full API base URL, "http://127.0.0.1:PORT/v4_6_release/apis/3.0",
// for the connectwise.endpoint setting.
func (s *Server) Endpoint() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.http.URL + "/" + s.codebase + "apis/3.0"
}

// Client is an HTTP client that trusts the server's certificate.
func (s *Server) Client() *http.Client { return s.http.Client() }

// Config returns the configuration the server runs with.
func (s *Server) Config() Config { return s.cfg }

// Settings returns psagate settings that reach this server through
// connectwise.endpoint with its credentials, the company of the first
// active customer (PVC01 in DefaultConfig), and the board "Backup Alerts"
// when it exists. Tests change what they need.
func (s *Server) Settings() psa.Settings {
	st := psa.Settings{
		"provider":                "connectwise",
		"connectwise.endpoint":    s.Endpoint(),
		"connectwise.company_id":  s.cfg.CompanyID,
		"connectwise.public_key":  s.cfg.PublicKey,
		"connectwise.private_key": s.cfg.PrivateKey,
		"connectwise.client_id":   s.cfg.ClientID,
	}
	for _, c := range s.cfg.Companies {
		if !c.Inactive && !strings.EqualFold(c.Identifier, s.cfg.CompanyID) {
			st["connectwise.company"] = c.Identifier
			break
		}
	}
	for _, b := range s.cfg.Boards {
		if b.Name == "Backup Alerts" {
			st["connectwise.board"] = b.Name
		}
	}
	return st
}

// AuthHeader is the Authorization value the server accepts.
func (s *Server) AuthHeader() string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(s.cfg.CompanyID+"+"+s.cfg.PublicKey+":"+s.cfg.PrivateKey))
}

// SetCodebase moves the API to another codebase, as hosted ConnectWise does
// on upgrades: the old prefix then answers 404.
func (s *Server) SetCodebase(codebase string) {
	if !strings.HasSuffix(codebase, "/") {
		codebase += "/"
	}
	s.mu.Lock()
	s.codebase = codebase
	s.mu.Unlock()
}

// SetReadOnlyMember switches the API member between read-only and full access.
func (s *Server) SetReadOnlyMember(ro bool) {
	s.mu.Lock()
	s.cfg.ReadOnlyMember = ro
	s.mu.Unlock()
}

// SetBoardRequired sets the fields board id requires on create.
func (s *Server) SetBoardRequired(board int, fields ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.cfg.Boards {
		if s.cfg.Boards[i].ID == board {
			s.cfg.Boards[i].Required = slices.Clone(fields)
		}
	}
}

// Inject adds a fault for the next f.Times matching requests. Faults are
// tried in the order they were injected.
func (s *Server) Inject(f Fault) {
	n := f.Times
	if n <= 0 {
		n = 1
	}
	s.mu.Lock()
	s.faults = append(s.faults, &faultState{Fault: f, left: n})
	s.mu.Unlock()
}

// PendingFaults is the number of injected fault uses not yet consumed.
func (s *Server) PendingFaults() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, f := range s.faults {
		n += f.left
	}
	return n
}

// Requests returns a copy of every request received so far, in order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Request, len(s.requests))
	for i, r := range s.requests {
		r.Header = r.Header.Clone()
		r.Query = cloneValues(r.Query)
		r.Body = slices.Clone(r.Body)
		out[i] = r
	}
	return out
}

// ResetRequests forgets the recorded requests.
func (s *Server) ResetRequests() {
	s.mu.Lock()
	s.requests = nil
	s.mu.Unlock()
}

// Tickets returns a deep copy of every ticket, in creation order, with its
// notes and documents.
func (s *Server) Tickets() []Ticket {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Ticket, 0, len(s.tickets))
	for _, t := range s.tickets {
		out = append(out, s.copyTicket(t))
	}
	return out
}

// Ticket returns a copy of one ticket.
func (s *Server) Ticket(id int) (Ticket, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.tickets {
		if t.ID == id {
			return s.copyTicket(t), true
		}
	}
	return Ticket{}, false
}

// AddTicket stores a ticket directly (not through the API), for tests that
// need an existing ticket. ID 0 assigns the next id; the stored ticket is returned.
func (s *Server) AddTicket(t Ticket) Ticket {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t.ID == 0 {
		t.ID = s.newID("ticket")
	}
	if t.DateEntered.IsZero() {
		t.DateEntered = s.now()
	}
	if t.RecordType == "" {
		t.RecordType = "ServiceTicket"
	}
	for i := range t.Notes {
		if t.Notes[i].ID == 0 {
			t.Notes[i].ID = s.newID("note")
		}
		t.Notes[i].TicketID = t.ID
	}
	t.Documents = nil
	cp := t
	s.tickets = append(s.tickets, &cp)
	return s.copyTicket(&cp)
}

func (s *Server) copyTicket(t *Ticket) Ticket {
	c := *t
	c.Notes = slices.Clone(t.Notes)
	c.Documents = nil
	for _, d := range s.documents {
		if d.RecordType == "Ticket" && d.RecordID == t.ID {
			dc := *d
			dc.Data = slices.Clone(d.Data)
			c.Documents = append(c.Documents, dc)
		}
	}
	return c
}

func (s *Server) newID(kind string) int {
	s.nextID[kind]++
	return s.nextID[kind]
}

// matchFault consumes and returns the first fault matching the request.
func (s *Server) matchFault(method, apiPath string) *Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.faults {
		if f.left == 0 {
			continue
		}
		if f.Method != "" && !strings.EqualFold(f.Method, method) {
			continue
		}
		if f.Path != "" {
			if ok, _ := path.Match(f.Path, apiPath); !ok {
				continue
			}
		}
		f.left--
		fc := f.Fault
		return &fc
	}
	return nil
}

func cloneValues(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = slices.Clone(vs)
	}
	return out
}
