package connectwise

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"psagate/internal/psa"
)

const (
	// defaultAPIVersion is the API release the client was written and tested
	// against; it is pinned in Accept so a server upgrade cannot change the
	// models under us.
	defaultAPIVersion = "2025.8"
	defaultTimeout    = 30 * time.Second
	// fallbackCodebase is used when company info reports no codebase; the
	// Developer Guide's own cloud examples use it, and on-premise reports it.
	fallbackCodebase = "v4_6_release/"
)

// config is the parsed "connectwise.*" settings of one call.
type config struct {
	site       string // API host[:port], already mapped from a login host; "" with endpoint
	siteMapped string // the login host the admin wrote, when it was mapped
	endpoint   string // full base URL override, without trailing slash
	companyID  string
	publicKey  string
	privateKey string
	clientID   string
	apiVersion string

	company, board, status, typ, subtype, item, priority, contact, closedStatus string

	// The ticket's address and location (x360Recover Manager's client
	// settings have them). country and location are names or ids.
	addressLine1, addressLine2, city, state, zip, country, location string

	timeout time.Duration
	raw     psa.Settings // for scrubbing secrets out of text
}

// cloudLogin maps the hosts cloud users log in at to their API hosts.
var cloudLogin = map[string]string{
	"na.myconnectwise.net":       "api-na.myconnectwise.net",
	"eu.myconnectwise.net":       "api-eu.myconnectwise.net",
	"au.myconnectwise.net":       "api-au.myconnectwise.net",
	"aus.myconnectwise.net":      "api-aus.myconnectwise.net",
	"za.myconnectwise.net":       "api-za.myconnectwise.net",
	"staging.connectwisedev.com": "api-staging.connectwisedev.com",
}

var hostLabel = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)

// normalizeSite checks that site is a bare host[:port] and maps a cloud
// login host to its API host. mapped is true when it did. A refused form gets
// an error that shows the form to write instead.
func normalizeSite(site string) (host string, mapped bool, err error) {
	site = strings.TrimSpace(site)
	if site == "" {
		return "", false, errors.New(`connectwise.site is not set: write the API host, e.g. site = "api-na.myconnectwise.net"`)
	}
	bad := func(why string) error {
		return fmt.Errorf("connectwise.site %q %s: write only the host, e.g. site = %q", psa.RedactURL(site), why, suggestSite(psa.RedactURL(site)))
	}
	low := strings.ToLower(site)
	switch {
	case strings.Contains(low, "://"):
		return "", false, bad(`must not include a scheme such as "https://"`)
	case strings.HasPrefix(low, "www."):
		return "", false, bad(`must not start with "www."`)
	case strings.ContainsAny(site, "/?#"):
		return "", false, bad("must not include a path")
	case strings.ContainsAny(site, "@ \t\\"):
		return "", false, bad("is not a host name")
	}
	h, port := low, ""
	if strings.Contains(low, ":") {
		var perr error
		h, port, perr = net.SplitHostPort(low)
		if perr != nil {
			return "", false, bad("is not a host or host:port")
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return "", false, bad("has an invalid port")
		}
	}
	if net.ParseIP(h) == nil {
		for label := range strings.SplitSeq(strings.TrimSuffix(h, "."), ".") {
			if !hostLabel.MatchString(label) {
				return "", false, bad("is not a valid host name")
			}
		}
	}
	if api, ok := cloudLogin[h]; ok {
		h, mapped = api, true
	}
	if port != "" {
		return net.JoinHostPort(h, port), mapped, nil
	}
	return h, mapped, nil
}

// suggestSite turns a URL-ish site into the bare host it most likely means.
func suggestSite(site string) string {
	s := strings.ToLower(strings.TrimSpace(site))
	if i := strings.Index(s, "://"); i >= 0 {
		s = s[i+3:]
	}
	if i := strings.IndexAny(s, "/?#"); i >= 0 {
		s = s[:i]
	}
	if i := strings.LastIndex(s, "@"); i >= 0 {
		s = s[i+1:]
	}
	s = strings.TrimPrefix(s, "www.")
	host := s
	port := ""
	if h, p, err := net.SplitHostPort(s); err == nil {
		host, port = h, p
	}
	if api, ok := cloudLogin[host]; ok {
		host = api
	}
	if host == "" || host == "myconnectwise.net" {
		host = "api-na.myconnectwise.net"
	}
	if port != "" && port != "443" {
		return net.JoinHostPort(host, port)
	}
	return host
}

var apiVersionRE = regexp.MustCompile(`^\d{4}\.\d{1,2}$`)

// parseConfig reads the connectwise.* settings. The problems it returns
// block every call (no way to reach or authenticate against the server).
func parseConfig(s psa.Settings) (*config, []error) {
	get := func(k string) string { return strings.TrimSpace(s.Get("connectwise." + k)) }
	c := &config{
		endpoint:     strings.TrimRight(get("endpoint"), "/"),
		companyID:    get("company_id"),
		publicKey:    get("public_key"),
		privateKey:   get("private_key"),
		clientID:     get("client_id"),
		apiVersion:   get("api_version"),
		company:      get("company"),
		board:        get("board"),
		status:       get("status"),
		typ:          get("type"),
		subtype:      get("subtype"),
		item:         get("item"),
		priority:     get("priority"),
		contact:      get("contact"),
		closedStatus: get("closed_status"),
		addressLine1: get("address_line1"),
		addressLine2: get("address_line2"),
		city:         get("city"),
		state:        get("state"),
		zip:          get("zip"),
		country:      get("country"),
		location:     get("location"),
		timeout:      defaultTimeout,
		raw:          s,
	}
	var errs []error
	if c.endpoint != "" {
		u, err := url.Parse(c.endpoint)
		switch {
		case err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https"):
			errs = append(errs, fmt.Errorf("connectwise.endpoint %q is not a URL: write the full API base, e.g. endpoint = %q",
				c.endpoint, "https://cw.example.com/v4_6_release/apis/3.0"))
		case u.User != nil:
			errs = append(errs, errors.New("connectwise.endpoint must not contain a user name or password: use company_id, public_key and private_key"))
		case u.RawQuery != "" || u.Fragment != "":
			errs = append(errs, fmt.Errorf("connectwise.endpoint %q must not have a query or fragment", c.endpoint))
		}
	} else {
		host, mapped, err := normalizeSite(get("site"))
		if err != nil {
			errs = append(errs, err)
		}
		c.site = host
		if mapped {
			c.siteMapped = get("site")
		}
	}
	if c.companyID == "" {
		errs = append(errs, errors.New("connectwise.company_id is not set: use the company ID you type on the ConnectWise login page"))
	} else if strings.ContainsAny(c.companyID, "+:/ ") {
		errs = append(errs, fmt.Errorf("connectwise.company_id %q must be the login company ID alone (no '+', ':', '/' or spaces)", c.companyID))
	}
	if c.publicKey == "" {
		errs = append(errs, errors.New("connectwise.public_key is not set: generate an API key pair for the API member (System > Members > API Members > API Keys)"))
	}
	if c.privateKey == "" {
		errs = append(errs, errors.New("connectwise.private_key is not set: it is shown once, when the API key pair is generated"))
	}
	if c.clientID == "" {
		errs = append(errs, errors.New("connectwise.client_id is not set: register a clientId at developer.connectwise.com (ClientID menu)"))
	}
	if c.apiVersion == "" {
		c.apiVersion = defaultAPIVersion
	} else if !apiVersionRE.MatchString(c.apiVersion) {
		errs = append(errs, fmt.Errorf("connectwise.api_version %q must look like %q (a PSA release, YYYY.N)", c.apiVersion, defaultAPIVersion))
	}
	if v := get("timeout"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			n, nerr := strconv.Atoi(v)
			d, err = time.Duration(n)*time.Second, nerr
		}
		if err != nil || d <= 0 {
			errs = append(errs, fmt.Errorf("connectwise.timeout %q must be a duration such as \"30s\"", v))
		} else {
			c.timeout = d
		}
	}
	return c, errs
}

// scrub removes every secret of the call from text: the configured values
// and the Authorization token built from them.
func (c *config) scrub(text string) string {
	text = c.raw.Scrub(text)
	if tok := c.authToken(); tok != "" {
		text = strings.ReplaceAll(text, tok, "[redacted]")
	}
	return text
}

// authToken is the base64 part of the Basic Authorization header.
func (c *config) authToken() string {
	if c.companyID == "" || c.publicKey == "" || c.privateKey == "" {
		return ""
	}
	return basicToken(c.companyID+"+"+c.publicKey, c.privateKey)
}

// where names the server for messages.
func (c *config) where() string {
	if c.endpoint != "" {
		return c.endpoint
	}
	return c.site
}

// connKey identifies the per-connection state: two clients with the same
// server, login company and API member share discovery and name caches.
func (c *config) connKey() string {
	return c.endpoint + "\x00" + c.site + "\x00" + strings.ToLower(c.companyID) + "\x00" + c.publicKey
}

// addressFields are the free-text address settings with the ticket field
// each fills and its length (Ticket model: addressLine1, addressLine2, city
// and stateIdentifier max 50, zip max 12; Jetbuilt/connect_wise
// docs/Ticket.md, generated from ConnectWise's OpenAPI document).
func (c *config) addressFields() []addressField {
	return []addressField{
		{"connectwise.address_line1", "addressLine1", c.addressLine1, 50},
		{"connectwise.address_line2", "addressLine2", c.addressLine2, 50},
		{"connectwise.city", "city", c.city, 50},
		{"connectwise.state", "stateIdentifier", c.state, 50},
		{"connectwise.zip", "zip", c.zip, 12},
	}
}

type addressField struct {
	setting, field, value string
	max                   int
}

// checkAddress reports address settings longer than ConnectWise keeps.
func (c *config) checkAddress() []error {
	var errs []error
	for _, f := range c.addressFields() {
		if n := utf16Len(f.value); n > f.max {
			errs = append(errs, fmt.Errorf("%s is %d characters; ConnectWise's ticket field %s takes at most %d", f.setting, n, f.field, f.max))
		}
	}
	return errs
}
