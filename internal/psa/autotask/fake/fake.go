// Package fake is an Autotask PSA REST API server for tests and demos. It
// speaks the wire format of the API digest (docs in
// /work/shared/reference/autotask-rest-api.md, section 10) and is strict
// where the real service is strict, and a little stricter where a client bug
// would otherwise go unnoticed:
//
//   - zone discovery is served on one listener and the API on a second
//     "zone" listener, so a client that sends credentials to the discovery
//     host, or builds URLs from the wrong base, shows up (CredentialLeaks);
//   - paths are case-insensitive, only the documented routes exist, "//" and
//     paths without "V1.0" are refused;
//   - every API call needs UserName, Secret and ApiIntegrationCode (401 with
//     an empty body, or 500 "IntegrationCode is invalid.");
//   - writes answer exactly 200 {"itemId":N}; tickets, notes and attachments
//     are validated against the fake's own entityInformation/fields
//     (required fields, lengths in UTF-16 units like .NET, active picklist
//     values, subIssueType under its issueType, company references);
//   - queries validate operator spelling, MaxRecords and fields, and page
//     through nextPageUrl with the same-body rule of POST queries;
//   - a thread limit per integration code and entity, a rolling request
//     counter reflected by ThresholdInformation, attachment size caps;
//   - faults can be injected for the next N matching requests.
//
// Every request is recorded (Requests) and the state is inspectable
// (Tickets). A Server is safe for concurrent use.
package fake

import (
	"maps"
	"net"
	"net/http/httptest"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"psagate/internal/psa"
)

// Config describes the fake tenant. Zero values take the defaults noted on
// each field; DefaultConfig returns a complete tenant.
type Config struct {
	Username        string // the API user (zone discovery matches it case-insensitively)
	Secret          string
	IntegrationCode string
	ZoneName        string // default "Fake Zone"
	DatabaseID      int    // "ci" of zone information

	Companies []Company
	Resources []Resource
	// TicketPicklists holds the picklists of Tickets/entityInformation/fields,
	// keyed by field name: status, priority, queueID, issueType,
	// subIssueType, ticketType, source, ticketCategory.
	TicketPicklists map[string][]PicklistValue
	// NotePicklists holds noteType and publish of
	// TicketNotes/entityInformation/fields.
	NotePicklists map[string][]PicklistValue
	// AttachmentPublish are the publish values of attachments.
	AttachmentPublish []PicklistValue

	RequireQueue     bool // queueID required on tickets (tenant setting)
	RequireNoteTitle bool // "Require titles on ticket notes"

	// RequiredTicketFields are ticket fields the tenant makes required
	// (through ticket categories and settings): "billingCodeID",
	// "ticketCategory", "contactID", "issueType" ... They are reported
	// isRequired in entityInformation/fields and enforced on create.
	RequiredTicketFields []string
	// FieldLengths override the length of ticket fields ("title": 80),
	// reported in the metadata and enforced.
	FieldLengths map[string]int
	// UDFs are the tenant's ticket user-defined fields.
	UDFs []UDF
	// Contacts of the tenant's companies.
	Contacts []Contact
	// ReadOnly makes the API user's security level read-only: queries and
	// reads work, every create or update answers 403 (a common permission
	// mistake that a read-only connection test does not catch).
	ReadOnly bool
	// NoVersion removes the Version route (older zones lack it: the API
	// digest's open question 10), so a client must fall back to a read.
	NoVersion bool

	PageSize              int           // rows per query page, default 500
	MaxAttachmentBytes    int           // decoded bytes per file, default 6,000,000
	AttachmentWindowBytes int           // bytes per AttachmentWindow, default 10,000,000
	AttachmentWindow      time.Duration // default 5 minutes
	AttachmentTypes       []string      // allowed attachmentType values, default FILE_ATTACHMENT

	ThreadLimit       int // in-flight requests per integration code and entity, default 3
	ThreadLimitStatus int // status of a thread-limit rejection, default 429

	RequestThreshold   int           // requests per ThresholdTimeframe, default 10,000
	ThresholdTimeframe time.Duration // default 60 minutes
	ThresholdStatus    int           // status when over the threshold, default 429

	MissingPatchStatus int // status of a PATCH for an unknown ticket: 500 (default, envelope) or 404

	// Latency delays every API answer (not zone discovery); cancelled
	// requests stop waiting.
	Latency time.Duration
	// Now is the fake's clock for dates, the request window and the
	// attachment window. Default time.Now.
	Now func() time.Time
}

// Default values of DefaultConfig, exported so tests can refer to them.
const (
	DefaultUsername        = "psagate-api@pinecrest-msp.example"
	DefaultSecret          = "S3cr3t-Fake-Autotask-Pa55"
	DefaultIntegrationCode = "FAKEINTEGRATIONCODE4PSAGATE"
	DefaultCompanyID       = 500
	DefaultQueueID         = 29683482
)

// DefaultConfig returns a small tenant: two companies, two active queues and
// one inactive, the system statuses, four priorities, issue and sub-issue
// types, ticket types, sources, note types and publish values.
func DefaultConfig() Config {
	return Config{
		Username:        DefaultUsername,
		Secret:          DefaultSecret,
		IntegrationCode: DefaultIntegrationCode,
		ZoneName:        "Fake Zone",
		DatabaseID:      30595,
		Companies: []Company{
			{ID: 500, Name: "Pinecrest Veterinary Clinic", Type: 1, WebAddress: "https://www.pinecrest-vet.example/"},
			{ID: 501, Name: "ACME", Type: 1},
		},
		Contacts: []Contact{
			{ID: 30682001, CompanyID: 500, FirstName: "Dana", LastName: "Reyes", Email: "dana.reyes@pinecrest-vet.example"},
			{ID: 30682002, CompanyID: 501, FirstName: "Sam", LastName: "Lee", Email: "sam.lee@acme.example"},
		},
		Resources: []Resource{
			{ID: 29682885, UserName: "jdoe", Email: "jdoe@pinecrest-msp.example", FirstName: "Jane", LastName: "Doe"},
		},
		TicketPicklists: map[string][]PicklistValue{
			"status": {
				{Value: "1", Label: "New", Default: true, System: true},
				{Value: "5", Label: "Complete", System: true},
				{Value: "7", Label: "Waiting Customer"},
				{Value: "8", Label: "In Progress"},
				{Value: "13", Label: "Retired", Inactive: true},
			},
			"priority": {
				{Value: "1", Label: "High"},
				{Value: "2", Label: "Medium", Default: true},
				{Value: "3", Label: "Low"},
				{Value: "4", Label: "Critical"},
				{Value: "6", Label: "Obsolete", Inactive: true},
			},
			"queueID": {
				{Value: "29683482", Label: "Backup Alerts"},
				{Value: "29683483", Label: "Monitoring"},
				{Value: "29683490", Label: "Old Alerts", Inactive: true},
			},
			"issueType": {
				{Value: "10", Label: "Backup"},
				{Value: "11", Label: "Monitoring"},
			},
			"subIssueType": {
				{Value: "101", Label: "Backup Failed", Parent: "10"},
				{Value: "102", Label: "Backup Warning", Parent: "10"},
				{Value: "111", Label: "Agent Offline", Parent: "11"},
				{Value: "112", Label: "Disk Space", Parent: "11"},
			},
			"ticketType": {
				{Value: "1", Label: "Service Request", Default: true, System: true},
				{Value: "2", Label: "Incident", System: true},
				{Value: "3", Label: "Problem", System: true},
				{Value: "4", Label: "Change Request", System: true},
				{Value: "5", Label: "Alert", System: true},
			},
			"source": {
				{Value: "-1", Label: "Client Portal", System: true},
				{Value: "1", Label: "Other", Default: true},
				{Value: "2", Label: "Email"},
				{Value: "4", Label: "Monitoring Alert"},
			},
			"ticketCategory": {
				{Value: "3", Label: "Standard", Default: true},
				{Value: "4", Label: "Alert"},
			},
			"billingCodeID": {
				{Value: "29682801", Label: "Remote Support"},
				{Value: "29682802", Label: "Monitoring"},
				{Value: "29682803", Label: "Onsite (retired)", Inactive: true},
			},
		},
		NotePicklists: map[string][]PicklistValue{
			"noteType": {
				{Value: "1", Label: "Task Notes", Default: true},
				{Value: "2", Label: "Internal Notes"},
				{Value: "3", Label: "Resolution"},
			},
			"publish": {
				{Value: "1", Label: "All Autotask Users", Default: true},
				{Value: "2", Label: "Internal Only"},
			},
		},
		AttachmentPublish: []PicklistValue{
			{Value: "1", Label: "All Autotask Users", Default: true},
			{Value: "2", Label: "Internal Only"},
		},
		RequireNoteTitle:      true,
		PageSize:              500,
		MaxAttachmentBytes:    6_000_000,
		AttachmentWindowBytes: 10_000_000,
		AttachmentWindow:      5 * time.Minute,
		AttachmentTypes:       []string{"FILE_ATTACHMENT"},
		ThreadLimit:           3,
		ThreadLimitStatus:     429,
		RequestThreshold:      10_000,
		ThresholdTimeframe:    60 * time.Minute,
		ThresholdStatus:       429,
		MissingPatchStatus:    500,
	}
}

// Server is a running fake. Close it when done.
type Server struct {
	cfg Config
	now func() time.Time

	disc *httptest.Server

	mu     sync.Mutex
	zones  []*httptest.Server
	active int

	tickets     map[int64]record
	notes       map[int64]record
	attachments map[int64]record
	attachData  map[int64][]byte
	nextTicket  int64
	nextNote    int64
	nextAttach  int64
	numberSeq   map[string]int

	pages   map[string]*pageState
	pageSeq int

	requests    []Request
	faults      []*Fault
	inflight    map[string]int // integration code + entity
	inflightAll map[string]int // integration code
	maxInFlight int
	hits        []time.Time // accepted API requests, for the rolling threshold
	uploads     []upload
	attachBlock time.Time // attachment creation refused until then
}

type upload struct {
	at    time.Time
	bytes int
}

// Listen is Start with the discovery listener on addr ("127.0.0.1:18082"),
// for demos and manual runs where the zone_url must be known in advance;
// the zone listener takes a free port on the same host.
func Listen(addr string, cfg Config) (*Server, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := start(cfg, false)
	s.disc = httptest.NewUnstartedServer(s.handler("discovery", -1))
	s.disc.Listener.Close()
	s.disc.Listener = l
	s.disc.Start()
	host, _, _ := net.SplitHostPort(l.Addr().String())
	zl, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		s.disc.Close()
		return nil, err
	}
	z := httptest.NewUnstartedServer(s.handler("zone", 0))
	z.Listener.Close()
	z.Listener = zl
	z.Start()
	s.zones = []*httptest.Server{z}
	return s, nil
}

// Start starts the discovery and zone listeners on 127.0.0.1.
func Start(cfg Config) *Server { return start(cfg, true) }

func start(cfg Config, listen bool) *Server {
	d := DefaultConfig()
	if cfg.ZoneName == "" {
		cfg.ZoneName = d.ZoneName
	}
	if cfg.TicketPicklists == nil {
		cfg.TicketPicklists = d.TicketPicklists
	}
	if cfg.NotePicklists == nil {
		cfg.NotePicklists = d.NotePicklists
	}
	if cfg.AttachmentPublish == nil {
		cfg.AttachmentPublish = d.AttachmentPublish
	}
	if cfg.PageSize <= 0 {
		cfg.PageSize = d.PageSize
	}
	if cfg.MaxAttachmentBytes <= 0 {
		cfg.MaxAttachmentBytes = d.MaxAttachmentBytes
	}
	if cfg.AttachmentWindowBytes <= 0 {
		cfg.AttachmentWindowBytes = d.AttachmentWindowBytes
	}
	if cfg.AttachmentWindow <= 0 {
		cfg.AttachmentWindow = d.AttachmentWindow
	}
	if len(cfg.AttachmentTypes) == 0 {
		cfg.AttachmentTypes = d.AttachmentTypes
	}
	if cfg.ThreadLimit <= 0 {
		cfg.ThreadLimit = d.ThreadLimit
	}
	if cfg.ThreadLimitStatus == 0 {
		cfg.ThreadLimitStatus = d.ThreadLimitStatus
	}
	if cfg.RequestThreshold <= 0 {
		cfg.RequestThreshold = d.RequestThreshold
	}
	if cfg.ThresholdTimeframe <= 0 {
		cfg.ThresholdTimeframe = d.ThresholdTimeframe
	}
	if cfg.ThresholdStatus == 0 {
		cfg.ThresholdStatus = d.ThresholdStatus
	}
	if cfg.MissingPatchStatus == 0 {
		cfg.MissingPatchStatus = d.MissingPatchStatus
	}
	// Copy what the caller might still hold, so later changes on either side
	// do not race.
	cfg.Companies = slices.Clone(cfg.Companies)
	cfg.Resources = slices.Clone(cfg.Resources)
	cfg.Contacts = slices.Clone(cfg.Contacts)
	cfg.UDFs = slices.Clone(cfg.UDFs)
	cfg.RequiredTicketFields = slices.Clone(cfg.RequiredTicketFields)
	cfg.FieldLengths = maps.Clone(cfg.FieldLengths)
	cfg.TicketPicklists = clonePicklists(cfg.TicketPicklists)
	cfg.NotePicklists = clonePicklists(cfg.NotePicklists)
	cfg.AttachmentPublish = slices.Clone(cfg.AttachmentPublish)

	s := &Server{
		cfg:         cfg,
		now:         cfg.Now,
		tickets:     map[int64]record{},
		notes:       map[int64]record{},
		attachments: map[int64]record{},
		attachData:  map[int64][]byte{},
		nextTicket:  128926,
		nextNote:    30500001,
		nextAttach:  29800001,
		numberSeq:   map[string]int{},
		pages:       map[string]*pageState{},
		inflight:    map[string]int{},
		inflightAll: map[string]int{},
	}
	if s.now == nil {
		s.now = time.Now
	}
	if listen {
		s.disc = httptest.NewServer(s.handler("discovery", -1))
		s.zones = []*httptest.Server{httptest.NewServer(s.handler("zone", 0))}
	}
	return s
}

func clonePicklists(m map[string][]PicklistValue) map[string][]PicklistValue {
	out := make(map[string][]PicklistValue, len(m))
	for k, v := range m {
		out[k] = slices.Clone(v)
	}
	return out
}

// Close stops every listener.
func (s *Server) Close() {
	s.disc.Close()
	s.mu.Lock()
	zones := slices.Clone(s.zones)
	s.mu.Unlock()
	for _, z := range zones {
		z.Close()
	}
}

// ZoneURL is what to put in autotask.zone_url: the discovery base,
// ".../atservicesrest/v1.0/" on the discovery listener.
func (s *Server) ZoneURL() string { return s.disc.URL + "/atservicesrest/v1.0/" }

// DiscoveryHost is host:port of the discovery listener.
func (s *Server) DiscoveryHost() string { return strings.TrimPrefix(s.disc.URL, "http://") }

// APIURL is the REST root the current zone announces ("url" of zone
// information): ".../ATServicesRest/" on the active zone listener.
func (s *Server) APIURL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.zones[s.active].URL + "/ATServicesRest/"
}

// ZoneHost is host:port of the active zone listener.
func (s *Server) ZoneHost() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.TrimPrefix(s.zones[s.active].URL, "http://")
}

// MoveZone moves the tenant to a new zone listener and returns its host:port.
// The old zone answers 401 to every API call from then on.
func (s *Server) MoveZone() string {
	s.mu.Lock()
	idx := len(s.zones)
	s.mu.Unlock()
	z := httptest.NewServer(s.handler("zone", idx))
	s.mu.Lock()
	s.zones = append(s.zones, z)
	s.active = idx
	s.mu.Unlock()
	return strings.TrimPrefix(z.URL, "http://")
}

// Settings returns the autotask settings that work against this fake:
// credentials, zone_url, company 500 and the "Backup Alerts" queue, plus
// provider = "autotask".
func (s *Server) Settings() psa.Settings {
	return psa.Settings{
		"provider":                  "autotask",
		"autotask.username":         s.cfg.Username,
		"autotask.secret":           s.cfg.Secret,
		"autotask.integration_code": s.cfg.IntegrationCode,
		"autotask.zone_url":         s.ZoneURL(),
		"autotask.company_id":       strconv.Itoa(DefaultCompanyID),
		"autotask.queue_id":         strconv.Itoa(DefaultQueueID),
	}
}

// Inject adds a fault. FaultZoneMoved takes effect at once.
func (s *Server) Inject(f Fault) {
	if f.Kind == FaultZoneMoved {
		s.MoveZone()
		return
	}
	if f.Count <= 0 {
		f.Count = 1
	}
	s.mu.Lock()
	s.faults = append(s.faults, &f)
	s.mu.Unlock()
}

// PendingFaults is the number of injected faults not yet used up.
func (s *Server) PendingFaults() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.faults)
}

// Requests returns a copy of every recorded request, in arrival order of
// their completion.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Request, len(s.requests))
	for i, r := range s.requests {
		r.Header = r.Header.Clone()
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

// CredentialLeaks returns the requests that carried credentials to a host
// other than the active zone at the time (the discovery listener).
func (s *Server) CredentialLeaks() []Request {
	var out []Request
	for _, r := range s.Requests() {
		if r.Listener == "discovery" && r.HasCredentials() {
			out = append(out, r)
		}
	}
	return out
}

// MaxInFlightSeen is the largest number of API requests of one integration
// code that were in flight at the same time.
func (s *Server) MaxInFlightSeen() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxInFlight
}

// ResetMaxInFlight sets MaxInFlightSeen back to 0.
func (s *Server) ResetMaxInFlight() {
	s.mu.Lock()
	s.maxInFlight = 0
	s.mu.Unlock()
}

// AddExternalRequests counts n requests made now by other integrations of
// the same database against the hourly threshold.
func (s *Server) AddExternalRequests(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	for range n {
		s.hits = append(s.hits, now)
	}
}

// RequestCount is the rolling request count ThresholdInformation reports.
func (s *Server) RequestCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pruneHitsLocked()
	return len(s.hits)
}

func (s *Server) pruneHitsLocked() {
	cut := s.now().Add(-s.cfg.ThresholdTimeframe)
	i := sort.Search(len(s.hits), func(i int) bool { return s.hits[i].After(cut) })
	s.hits = s.hits[i:]
}

// AddTicketPicklistValue adds a value to a ticket picklist (e.g. a new queue
// an admin created after the client cached the list).
func (s *Server) AddTicketPicklistValue(field string, v PicklistValue) {
	s.mu.Lock()
	s.cfg.TicketPicklists[field] = append(s.cfg.TicketPicklists[field], v)
	s.mu.Unlock()
}

// SetPicklistActive marks a value of a ticket or note picklist ("queueID",
// "publish" ...) active or inactive, as an admin retiring a value does.
func (s *Server) SetPicklistActive(field, value string, active bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, lists := range []map[string][]PicklistValue{s.cfg.TicketPicklists, s.cfg.NotePicklists} {
		for i := range lists[field] {
			if lists[field][i].Value == value {
				lists[field][i].Inactive = !active
			}
		}
	}
}

// SetReadOnly switches the API user between read-only and full access.
func (s *Server) SetReadOnly(ro bool) {
	s.mu.Lock()
	s.cfg.ReadOnly = ro
	s.mu.Unlock()
}

// requiredTicketLocked is the tenant's extra required ticket fields.
func (s *Server) requiredTicketLocked() map[string]bool {
	req := map[string]bool{"queueID": s.cfg.RequireQueue}
	for _, f := range s.cfg.RequiredTicketFields {
		if spec, ok := ticketEntity.field(f); ok {
			req[spec.Name] = true
		}
	}
	return req
}

// SetCompanies replaces the companies of the tenant.
func (s *Server) SetCompanies(cs []Company) {
	s.mu.Lock()
	s.cfg.Companies = slices.Clone(cs)
	s.mu.Unlock()
}

// Tickets returns every ticket with its notes and attachments, by id.
func (s *Server) Tickets() []Ticket {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]int64, 0, len(s.tickets))
	for id := range s.tickets {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	out := make([]Ticket, 0, len(ids))
	for _, id := range ids {
		out = append(out, s.ticketLocked(id))
	}
	return out
}

// Ticket returns one ticket.
func (s *Server) Ticket(id int64) (Ticket, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.tickets[id]; !ok {
		return Ticket{}, false
	}
	return s.ticketLocked(id), true
}

func (s *Server) ticketLocked(id int64) Ticket {
	r := s.tickets[id]
	t := Ticket{
		ID: id, TicketNumber: r.str("ticketNumber"), CompanyID: r.int("companyID"),
		Title: r.str("title"), Description: r.str("description"),
		Status: int(r.int("status")), Priority: int(r.int("priority")), QueueID: int(r.int("queueID")),
		IssueType: int(r.int("issueType")), SubIssueType: int(r.int("subIssueType")),
		TicketType: int(r.int("ticketType")), Source: int(r.int("source")),
		TicketCategory: int(r.int("ticketCategory")), ExternalID: r.str("externalID"),
		ContactID: r.int("contactID"), AssignedResourceID: r.int("assignedResourceID"),
		AssignedResourceRoleID: r.int("assignedResourceRoleID"), Resolution: r.str("resolution"),
		DueDateTime: r.time("dueDateTime"), CreateDate: r.time("createDate"),
		CompletedDate: r.time("completedDate"), LastActivityDate: r.time("lastActivityDate"),
		BillingCodeID: int(r.int("billingCodeID")),
	}
	if u, ok := r["userDefinedFields"].(map[string]string); ok {
		t.UDFs = maps.Clone(u)
	}
	for _, nid := range sortedIDs(s.notes) {
		n := s.notes[nid]
		if n.int("ticketID") != id {
			continue
		}
		t.Notes = append(t.Notes, Note{
			ID: nid, TicketID: id, Title: n.str("title"), Description: n.str("description"),
			NoteType: int(n.int("noteType")), Publish: int(n.int("publish")), CreateDateTime: n.time("createDateTime"),
		})
	}
	for _, aid := range sortedIDs(s.attachments) {
		a := s.attachments[aid]
		if a.int("parentID") != id {
			continue
		}
		t.Attachments = append(t.Attachments, Attachment{
			ID: aid, ParentID: id, Title: a.str("title"), FullPath: a.str("fullPath"),
			AttachmentType: a.str("attachmentType"), Publish: int(a.int("publish")),
			ContentType: a.str("contentType"), Data: slices.Clone(s.attachData[aid]), AttachDate: a.time("attachDate"),
		})
	}
	return t
}

func sortedIDs(m map[int64]record) []int64 {
	ids := make([]int64, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}
