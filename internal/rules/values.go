package rules

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// parseAddrPattern reads a value of from or to.
func parseAddrPattern(s string) (addrPat, error) {
	v := strings.ToLower(strings.TrimSpace(s))
	if strings.ContainsAny(v, " \t<>,;\"") {
		return addrPat{}, fmt.Errorf("%q is not an address pattern: give one address, \"@domain\" or glob per list item", s)
	}
	switch {
	case strings.ContainsAny(v, "*?"):
		return addrPat{kind: addrGlob, s: v,
			prefix: v[:strings.IndexAny(v, "*?")], suffix: v[strings.LastIndexAny(v, "*?")+1:]}, nil
	case strings.HasPrefix(v, "@"):
		if len(v) == 1 || strings.Contains(v[1:], "@") {
			return addrPat{}, fmt.Errorf("%q is not a domain: write \"@example.com\"", s)
		}
		return addrPat{kind: addrDomain, s: v[1:]}, nil
	case strings.Contains(v, "@"):
		i := strings.LastIndexByte(v, '@')
		if i == 0 || i == len(v)-1 {
			return addrPat{}, fmt.Errorf("%q is not an address", s)
		}
		return addrPat{kind: addrExact, s: v}, nil
	}
	return addrPat{}, fmt.Errorf("%q is neither an address, \"@domain\" nor a glob; for the whole domain write \"@%s\"", s, v)
}

// parseNet reads a value of sender_ip: a CIDR network or one address.
func parseNet(s string) (netip.Prefix, error) {
	v := strings.TrimSpace(s)
	bad := fmt.Errorf("%q is not an IP address or CIDR network (e.g. \"10.0.0.0/8\", \"192.0.2.7\", \"2001:db8::/32\")", s)
	if strings.Contains(v, "/") {
		p, err := netip.ParsePrefix(v)
		if err != nil {
			return netip.Prefix{}, bad
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(v)
	if err != nil {
		return netip.Prefix{}, bad
	}
	a = a.WithZone("").Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

var sizeUnits = map[string]float64{
	"": 1, "b": 1,
	"kb": 1e3, "mb": 1e6, "gb": 1e9,
	"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30,
}

// parseSize reads size_over: an integer number of bytes, or a string such
// as "512KiB", "2MB" or "1.5 MB".
func parseSize(v any) (int64, error) {
	switch x := v.(type) {
	case int64:
		if x < 0 {
			return 0, fmt.Errorf("%d is negative", x)
		}
		return x, nil
	case string:
		s := strings.TrimSpace(x)
		i := 0
		for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
			i++
		}
		num, unit := s[:i], strings.ToLower(strings.TrimSpace(s[i:]))
		f, err := strconv.ParseFloat(num, 64)
		mult, okUnit := sizeUnits[unit]
		if num == "" || err != nil || !okUnit {
			return 0, fmt.Errorf("bad size %q: give bytes as an integer, or a number with a unit (B, KB, MB, GB, KiB, MiB, GiB), e.g. \"512KiB\" or \"1.5 MB\"", x)
		}
		n := f * mult
		if n >= 1<<53 {
			return 0, fmt.Errorf("size %q is too large", x)
		}
		return int64(n), nil
	}
	return 0, fmt.Errorf("must be an integer (bytes) or a string such as \"2MB\", not %s", typeName(v))
}

// parseDuration reads a Go duration ("90s", "15m", "4h30m") or a number of
// days ("2d").
func parseDuration(s string) (time.Duration, error) {
	v := strings.TrimSpace(s)
	d, err := time.ParseDuration(v)
	if err != nil {
		if n, ok := strings.CutSuffix(v, "d"); ok {
			if days, err2 := strconv.Atoi(n); err2 == nil && days >= 0 && days <= 3650 {
				return time.Duration(days) * 24 * time.Hour, nil
			}
		}
		return 0, fmt.Errorf("bad duration %q: write e.g. \"90s\", \"15m\", \"4h\" or \"2d\"", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("duration %q is negative", s)
	}
	return d, nil
}

func joinActions(as []Action) string {
	parts := make([]string, len(as))
	for i, a := range as {
		parts[i] = string(a)
	}
	if len(parts) == 1 {
		return parts[0] + " only"
	}
	return strings.Join(parts, ", ")
}

func typeName(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a decimal number"
	case bool:
		return "a boolean"
	case []any, []map[string]any:
		return "a list"
	case map[string]any:
		return "a table"
	case time.Time:
		return "a date"
	}
	return fmt.Sprintf("a %T", v)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// isOneLine reports whether s is valid UTF-8 without control characters
// or line breaks.
func isOneLine(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) || r == 0x2028 || r == 0x2029 {
			return false
		}
	}
	return true
}

func isHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == ':' {
			return false
		}
	}
	return true
}
