package connectwise

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"psagate/internal/psa"
)

// entity is a row of any lookup list: boards, statuses, types, subtypes,
// items, priorities, companies, contacts. Fields a list lacks stay zero.
type entity struct {
	ID           int    `json:"id"`
	Name         string `json:"name"`
	Identifier   string `json:"identifier"`
	FirstName    string `json:"firstName"`
	LastName     string `json:"lastName"`
	InactiveFlag bool   `json:"inactiveFlag"`
	Inactive     bool   `json:"inactive"` // board statuses say "inactive"
	DeletedFlag  bool   `json:"deletedFlag"`
	ClosedStatus bool   `json:"closedStatus"`
	DefaultFlag  bool   `json:"defaultFlag"`
	SortOrder    int    `json:"sortOrder"`
	Company      *struct {
		ID         int    `json:"id"`
		Identifier string `json:"identifier"`
		Name       string `json:"name"`
	} `json:"company"`
	CommunicationItems []struct {
		Value             string `json:"value"`
		CommunicationType string `json:"communicationType"`
	} `json:"communicationItems"`
}

func (e entity) inactive() bool { return e.InactiveFlag || e.Inactive || e.DeletedFlag }

// label is how a human names the row.
func (e entity) label() string {
	switch {
	case e.Identifier != "":
		return e.Identifier
	case e.Name != "":
		return e.Name
	}
	return strings.TrimSpace(e.FirstName + " " + e.LastName)
}

func (e entity) email() string {
	for _, ci := range e.CommunicationItems {
		if strings.EqualFold(ci.CommunicationType, "Email") {
			return ci.Value
		}
	}
	return ""
}

// idRef is a reference sent to the API: always by id, since names were
// resolved (and checked) here.
type idRef struct {
	ID int `json:"id"`
}

// quote writes a string literal of the conditions language.
func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// listCached returns the rows of a list, from the cache unless fresh.
func (c *call) listCached(ctx context.Context, path string, q url.Values, fresh bool) (rows []entity, cached bool, err error) {
	key := path + "?" + encodeQuery(q)
	if !fresh {
		c.cn.mu.Lock()
		rows, ok := c.cn.lists[key]
		c.cn.mu.Unlock()
		if ok {
			return rows, true, nil
		}
	}
	rows, err = getAll[entity](ctx, c, path, q)
	if err != nil {
		return nil, false, err
	}
	c.cn.mu.Lock()
	c.cn.lists[key] = rows
	c.cn.mu.Unlock()
	return rows, false, nil
}

// matchEntity finds value among rows by name (ignoring case, active rows
// first) or, when value is a number, by id.
func matchEntity(rows []entity, value string) (entity, bool) {
	v := strings.TrimSpace(value)
	var found *entity
	for i := range rows {
		if strings.EqualFold(rows[i].label(), v) || strings.EqualFold(rows[i].Name, v) {
			if found == nil || found.inactive() && !rows[i].inactive() {
				found = &rows[i]
			}
		}
	}
	if found != nil {
		return *found, true
	}
	if id, err := strconv.Atoi(v); err == nil {
		for _, r := range rows {
			if r.ID == id {
				return r, true
			}
		}
	}
	return entity{}, false
}

// listNames shows the active rows for an error message.
func listNames(rows []entity) string {
	const show = 30
	var names []string
	for _, r := range rows {
		if !r.inactive() {
			names = append(names, strconv.Quote(r.label()))
		}
	}
	switch {
	case len(names) == 0:
		return "(none)"
	case len(names) > show:
		return strings.Join(names[:show], ", ") + fmt.Sprintf(" and %d more", len(names)-show)
	}
	return strings.Join(names, ", ")
}

// resolveIn resolves a setting's value among the rows of a list. A value
// missing from a cached list makes one fresh read before it is an error.
func (c *call) resolveIn(ctx context.Context, setting, value, what, path string, q url.Values) (entity, error) {
	var rows []entity
	for attempt := range 2 {
		r, cached, err := c.listCached(ctx, path, q, attempt > 0)
		if err != nil {
			return entity{}, err
		}
		rows = r
		if e, ok := matchEntity(rows, value); ok {
			if e.inactive() {
				return entity{}, c.errorf(psa.Permanent, fmt.Sprintf("%s %q is inactive in ConnectWise: reactivate it or choose another; valid %s: %s",
					setting, value, what, listNames(rows)))
			}
			return e, nil
		}
		if !cached {
			break
		}
	}
	return entity{}, c.errorf(psa.Permanent, fmt.Sprintf("%s %q does not exist in ConnectWise; valid %s: %s",
		setting, value, what, listNames(rows)))
}

func (c *call) resolveBoard(ctx context.Context) (entity, error) {
	return c.resolveIn(ctx, "connectwise.board", c.cfg.board, "boards", "/service/boards", nil)
}

func boardPath(board entity, sub string) string {
	return fmt.Sprintf("/service/boards/%d/%s", board.ID, sub)
}

func boardWhat(board entity, sub string) string {
	if board.Name != "" {
		return fmt.Sprintf("%s of board %q", sub, board.Name)
	}
	return fmt.Sprintf("%s of board %d", sub, board.ID)
}

// resolveOnBoard resolves a status, type, subtype or item of a board.
func (c *call) resolveOnBoard(ctx context.Context, setting, value string, board entity, sub string) (entity, error) {
	return c.resolveIn(ctx, setting, value, boardWhat(board, sub), boardPath(board, sub), nil)
}

func (c *call) resolvePriority(ctx context.Context) (entity, error) {
	return c.resolveIn(ctx, "connectwise.priority", c.cfg.priority, "priorities", "/service/priorities", nil)
}

// resolveCompany finds the ticket company by identifier (or id).
func (c *call) resolveCompany(ctx context.Context) (entity, error) {
	v := c.cfg.company
	if v == "" {
		return entity{}, c.errorf(psa.Permanent, `connectwise.company is not set: every ConnectWise ticket needs a company; set its identifier (e.g. "ACME01"; psagate psa lookup companies lists them)`)
	}
	key := strings.ToLower(v)
	c.cn.mu.Lock()
	e, ok := c.cn.companies[key]
	c.cn.mu.Unlock()
	if ok {
		return e, nil
	}
	rows, err := getAll[entity](ctx, c, "/company/companies", url.Values{"conditions": {"identifier=" + quote(v)}})
	if err != nil {
		return entity{}, err
	}
	found, ok := matchEntity(rows, v)
	if !ok {
		if id, err := strconv.Atoi(v); err == nil {
			rows, err := getAll[entity](ctx, c, "/company/companies", url.Values{"conditions": {"id=" + strconv.Itoa(id)}})
			if err != nil {
				return entity{}, err
			}
			found, ok = matchEntity(rows, v)
		}
	}
	if !ok {
		var some []entity
		resp, err := c.do(ctx, "GET", "/company/companies", url.Values{
			"conditions": {"deletedFlag=false"}, "orderBy": {"identifier"}, "pageSize": {"25"}}, nil, "")
		if err == nil {
			_ = c.decode("/company/companies", resp.body, &some)
		}
		return entity{}, c.errorf(psa.Permanent, fmt.Sprintf("connectwise.company %q is not a company identifier in ConnectWise; some identifiers: %s (psagate psa lookup companies lists all)",
			v, listNames(some)))
	}
	if found.inactive() {
		return entity{}, c.errorf(psa.Permanent, fmt.Sprintf("connectwise.company %q is marked deleted in ConnectWise", v))
	}
	c.cn.mu.Lock()
	c.cn.companies[key] = found
	c.cn.mu.Unlock()
	return found, nil
}

// resolveContact finds the contact setting (id, "First Last" or e-mail)
// among the company's contacts.
func (c *call) resolveContact(ctx context.Context, company entity) (entity, error) {
	v := strings.TrimSpace(c.cfg.contact)
	var rows []entity
	for attempt := range 2 {
		c.cn.mu.Lock()
		cached, ok := c.cn.contacts[company.ID]
		c.cn.mu.Unlock()
		if ok && attempt == 0 {
			rows = cached
		} else {
			r, err := getAll[entity](ctx, c, "/company/contacts", url.Values{"conditions": {fmt.Sprintf("company/id=%d", company.ID)}})
			if err != nil {
				return entity{}, err
			}
			rows = r
			c.cn.mu.Lock()
			c.cn.contacts[company.ID] = rows
			c.cn.mu.Unlock()
		}
		if e, found := matchEntity(rows, v); found {
			return e, nil
		}
		for _, r := range rows {
			if r.email() != "" && strings.EqualFold(r.email(), v) {
				return r, nil
			}
		}
		if !ok {
			break
		}
	}
	return entity{}, c.errorf(psa.Permanent, fmt.Sprintf("connectwise.contact %q is not a contact of company %q; valid contacts: %s",
		v, company.label(), listNames(rows)))
}

// closedStatus is the status Close moves a ticket of board to:
// closed_status when set, else the board's first active closed status.
func (c *call) closedStatus(ctx context.Context, board entity) (entity, error) {
	if c.cfg.closedStatus != "" {
		st, err := c.resolveOnBoard(ctx, "connectwise.closed_status", c.cfg.closedStatus, board, "statuses")
		if err != nil {
			return entity{}, err
		}
		if !st.ClosedStatus {
			rows, _, _ := c.listCached(ctx, boardPath(board, "statuses"), nil, false)
			return entity{}, c.errorf(psa.Permanent, fmt.Sprintf("connectwise.closed_status %q is not a closed status of board %q; closed statuses: %s",
				c.cfg.closedStatus, board.label(), listNames(filter(rows, func(e entity) bool { return e.ClosedStatus }))))
		}
		return st, nil
	}
	for attempt := range 2 {
		rows, cached, err := c.listCached(ctx, boardPath(board, "statuses"), nil, attempt > 0)
		if err != nil {
			return entity{}, err
		}
		if st, ok := firstBySort(rows, func(e entity) bool { return e.ClosedStatus && !e.inactive() }); ok {
			return st, nil
		}
		if !cached {
			break
		}
	}
	return entity{}, c.errorf(psa.Permanent, fmt.Sprintf("board %q has no active status marked closed: set connectwise.closed_status or mark a status closed in ConnectWise", board.label()))
}

// openStatus is the status Reopen moves a ticket of board to: the
// configured status, else the board's default, else its first open status.
func (c *call) openStatus(ctx context.Context, board entity) (entity, error) {
	if c.cfg.status != "" {
		st, err := c.resolveOnBoard(ctx, "connectwise.status", c.cfg.status, board, "statuses")
		if err == nil && st.ClosedStatus {
			err = c.errorf(psa.Permanent, fmt.Sprintf("connectwise.status %q is a closed status of board %q: choose an open one", c.cfg.status, board.label()))
		}
		return st, err
	}
	rows, _, err := c.listCached(ctx, boardPath(board, "statuses"), nil, false)
	if err != nil {
		return entity{}, err
	}
	if st, ok := firstBySort(rows, func(e entity) bool { return e.DefaultFlag && !e.inactive() && !e.ClosedStatus }); ok {
		return st, nil
	}
	if st, ok := firstBySort(rows, func(e entity) bool { return !e.inactive() && !e.ClosedStatus }); ok {
		return st, nil
	}
	return entity{}, c.errorf(psa.Permanent, fmt.Sprintf("board %q has no active open status: set connectwise.status", board.label()))
}

func filter(rows []entity, keep func(entity) bool) []entity {
	var out []entity
	for _, r := range rows {
		if keep(r) {
			out = append(out, r)
		}
	}
	return out
}

// firstBySort returns the row with the lowest sortOrder that keep accepts;
// ties go to the earlier row.
func firstBySort(rows []entity, keep func(entity) bool) (entity, bool) {
	cand := filter(rows, keep)
	if len(cand) == 0 {
		return entity{}, false
	}
	slices.SortStableFunc(cand, func(a, b entity) int { return a.SortOrder - b.SortOrder })
	return cand[0], true
}

// ticketRefs are the resolved references of a new ticket; nil fields are
// left for ConnectWise to default.
type ticketRefs struct {
	Company, Board, Status, Type, SubType, Item, Priority, Contact *idRef
	Country, Location                                              *idRef
}

// assocRow is one valid type/subtype/item combination of a board.
type assocRow struct {
	Type    *assocRef `json:"type"`
	SubType *assocRef `json:"subType"`
	Item    *assocRef `json:"item"`
}

type assocRef struct {
	ID   int    `json:"id"`
	Name string `json:"name"`
}

func (r *assocRef) id() int {
	if r == nil {
		return 0
	}
	return r.ID
}

// checkCombination checks that type, subtype and item form a combination
// the board allows (GET /service/boards/{id}/typeSubTypeItemAssociations,
// the endpoint christaylorcodes/ConnectWiseManageAPI issue #20 uses to find
// a board's items). A board that lists no combination for the type is not
// judged. The combinations are cached like the names.
func (c *call) checkCombination(ctx context.Context, board entity, typ, sub, item *idRef, names [3]string) error {
	if typ == nil || (sub == nil && item == nil) {
		return nil
	}
	c.cn.mu.Lock()
	rows, ok := c.cn.assocs[board.ID]
	c.cn.mu.Unlock()
	if !ok {
		var err error
		rows, err = getAll[assocRow](ctx, c, boardPath(board, "typeSubTypeItemAssociations"), nil)
		if err != nil {
			return err
		}
		c.cn.mu.Lock()
		c.cn.assocs[board.ID] = rows
		c.cn.mu.Unlock()
	}
	subID, itemID := 0, 0
	if sub != nil {
		subID = sub.ID
	}
	if item != nil {
		itemID = item.ID
	}
	var forType []string
	seen := map[string]bool{}
	for _, r := range rows {
		if r.Type.id() != typ.ID {
			continue
		}
		if r.SubType.id() == subID && (itemID == 0 || r.Item.id() == itemID) {
			return nil
		}
		if r.SubType != nil && !seen[r.SubType.Name] {
			seen[r.SubType.Name] = true
			forType = append(forType, strconv.Quote(r.SubType.Name))
		}
	}
	if len(forType) == 0 && len(seen) == 0 {
		hasType := false
		for _, r := range rows {
			hasType = hasType || r.Type.id() == typ.ID
		}
		if !hasType {
			return nil
		}
	}
	e := c.errorf(psa.Permanent, fmt.Sprintf("connectwise.type %q, connectwise.subtype %q and connectwise.item %q are not a combination board %q allows; subtypes of type %q there: %s",
		names[0], names[1], names[2], board.label(), names[0], strings.Join(forType, ", ")))
	e.Field = "connectwise.subtype"
	e.Reason = psa.ReasonValidation
	return e
}

// resolveCountry resolves connectwise.country (a name or an id).
func (c *call) resolveCountry(ctx context.Context) (entity, error) {
	return c.resolveIn(ctx, "connectwise.country", c.cfg.country, "countries", "/company/countries", nil)
}

// resolveLocation resolves connectwise.location, the MSP's location
// (territory) a ticket belongs to.
func (c *call) resolveLocation(ctx context.Context) (entity, error) {
	return c.resolveIn(ctx, "connectwise.location", c.cfg.location, "locations", "/system/locations", nil)
}

// resolveTicket resolves every configured name of a new ticket.
func (c *call) resolveTicket(ctx context.Context) (ticketRefs, error) {
	var r ticketRefs
	company, err := c.resolveCompany(ctx)
	if err != nil {
		return r, err
	}
	r.Company = &idRef{company.ID}
	if c.cfg.board == "" {
		for _, s := range []struct{ key, v string }{{"status", c.cfg.status}, {"type", c.cfg.typ}, {"subtype", c.cfg.subtype}, {"item", c.cfg.item}} {
			if s.v != "" {
				return r, c.errorf(psa.Permanent, fmt.Sprintf("connectwise.%s %q needs connectwise.board: statuses, types, subtypes and items belong to a board", s.key, s.v))
			}
		}
	} else {
		board, err := c.resolveBoard(ctx)
		if err != nil {
			return r, err
		}
		r.Board = &idRef{board.ID}
		for _, s := range []struct {
			setting, value, sub string
			out                 **idRef
		}{
			{"connectwise.status", c.cfg.status, "statuses", &r.Status},
			{"connectwise.type", c.cfg.typ, "types", &r.Type},
			{"connectwise.subtype", c.cfg.subtype, "subtypes", &r.SubType},
			{"connectwise.item", c.cfg.item, "items", &r.Item},
		} {
			if s.value == "" {
				continue
			}
			e, err := c.resolveOnBoard(ctx, s.setting, s.value, board, s.sub)
			if err != nil {
				return r, err
			}
			*s.out = &idRef{e.ID}
		}
		if err := c.checkCombination(ctx, board, r.Type, r.SubType, r.Item, [3]string{c.cfg.typ, c.cfg.subtype, c.cfg.item}); err != nil {
			return r, err
		}
	}
	if c.cfg.priority != "" {
		p, err := c.resolvePriority(ctx)
		if err != nil {
			return r, err
		}
		r.Priority = &idRef{p.ID}
	}
	if c.cfg.contact != "" {
		ct, err := c.resolveContact(ctx, company)
		if err != nil {
			return r, err
		}
		r.Contact = &idRef{ct.ID}
	}
	if c.cfg.country != "" {
		e, err := c.resolveCountry(ctx)
		if err != nil {
			return r, err
		}
		r.Country = &idRef{e.ID}
	}
	if c.cfg.location != "" {
		e, err := c.resolveLocation(ctx)
		if err != nil {
			return r, err
		}
		r.Location = &idRef{e.ID}
	}
	return r, nil
}
