package config

import (
	"encoding"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
)

// BurntSushi/toml stops at the first value it cannot convert, so one bad
// duration would hide every other problem in the file, and a value of the
// wrong type would be reported without the file:line form. checkValues runs
// first, over the document decoded without a schema: it compares each value
// with the Go type it is meant for, reports every mismatch at its own line,
// and removes it, so that the real decode can run on what is left and the
// loader can go on to the remaining checks.

var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

// checkValues checks the keys of table m against struct type t; path is
// the table's key path ("" for the document, "smtp.user[0]" for an element
// of an array of tables). It reports whether it removed anything.
func (l *loader) checkValues(m map[string]any, t reflect.Type, path string) bool {
	removed := false
	for _, k := range slices.Sorted(maps.Keys(m)) {
		ft, ok := fieldType(t, k)
		if !ok {
			continue // an unknown key: reported from the decoder's Undecoded
		}
		p := k
		if path != "" {
			p = path + "." + k
		}
		ok, sub := l.checkValue(m[k], ft, p)
		if !ok {
			delete(m, k)
			l.bad[p] = true
			removed = true
		}
		removed = removed || sub
	}
	return removed
}

// checkValue checks one value. ok is false when v itself must be removed;
// removed is true when something inside v was.
func (l *loader) checkValue(v any, t reflect.Type, p string) (ok, removed bool) {
	if reflect.PointerTo(t).Implements(textUnmarshaler) {
		return l.checkText(v, t, p), false
	}
	switch t.Kind() {
	case reflect.Pointer:
		return l.checkValue(v, t.Elem(), p)
	case reflect.Struct:
		m, isTable := v.(map[string]any)
		if !isTable {
			return l.mismatch(p, "a table", v), false
		}
		return true, l.checkValues(m, t, p)
	case reflect.Map:
		if _, isTable := v.(map[string]any); !isTable {
			return l.mismatch(p, "a table", v), false
		}
		return true, false // free-form: the loader checks the keys itself
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Struct {
			return l.checkTables(v, t.Elem(), p)
		}
		list, isList := v.([]any)
		if !isList {
			return l.mismatch(p, listName(t.Elem()), v), false
		}
		for _, e := range list {
			if !fits(e, t.Elem()) {
				l.errf(p, "must be %s; %s is not %s", listName(t.Elem()), describe(e, isSecretName(p)), kindName(t.Elem()))
				return false, false
			}
		}
		return true, false
	}
	if !fits(v, t) {
		return l.mismatch(p, kindName(t), v), false
	}
	return true, false
}

// checkTables checks an array of tables ([[smtp.user]], [[client]]),
// element by element, so the error names the element.
func (l *loader) checkTables(v any, t reflect.Type, p string) (ok, removed bool) {
	var tables []map[string]any
	switch x := v.(type) {
	case []map[string]any:
		tables = x
	case []any: // written inline: user = [{name = "a"}]
		for _, e := range x {
			m, isTable := e.(map[string]any)
			if !isTable {
				return l.mismatch(p, "a list of tables", e), false
			}
			tables = append(tables, m)
		}
	default:
		return l.mismatch(p, "a list of tables", v), false
	}
	for i, m := range tables {
		if l.checkValues(m, t, fmt.Sprintf("%s[%d]", p, i)) {
			removed = true
		}
	}
	return true, removed
}

// checkText runs the type's own UnmarshalText (Duration, Secret) on the
// text BurntSushi would give it, so the message is the one the type writes.
func (l *loader) checkText(v any, t reflect.Type, p string) bool {
	var s string
	switch x := v.(type) {
	case string:
		s = x
	case bool, int64:
		s = fmt.Sprint(x)
	case float64:
		s = fmt.Sprintf("%f", x)
	case encoding.TextMarshaler: // a date
		b, err := x.MarshalText()
		if err != nil {
			return l.mismatch(p, "a string", v)
		}
		s = string(b)
	default:
		return l.mismatch(p, "a string", v)
	}
	if err := reflect.New(t).Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s)); err != nil {
		l.errf(p, "%v", err)
		return false
	}
	return true
}

// fits reports whether BurntSushi can store v in a value of kind t.
func fits(v any, t reflect.Type) bool {
	switch t.Kind() {
	case reflect.String:
		_, ok := v.(string)
		return ok
	case reflect.Bool:
		_, ok := v.(bool)
		return ok
	case reflect.Int, reflect.Int64:
		_, ok := v.(int64)
		return ok
	case reflect.Float64:
		switch v.(type) {
		case float64, int64:
			return true
		}
		return false
	case reflect.Interface:
		return true
	}
	return false
}

func kindName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int64:
		return "a whole number"
	case reflect.Float64:
		return "a number"
	}
	return t.String()
}

func listName(t reflect.Type) string {
	if t.Kind() == reflect.String {
		return "a list of strings"
	}
	return "a list of " + t.String()
}

// mismatch reports that the value at p is not what the key needs, and
// returns false so callers can return it as "remove this".
func (l *loader) mismatch(p, want string, v any) bool {
	l.errf(p, "must be %s, not %s", want, describe(v, isSecretName(p)))
	return false
}

// describe names a TOML value for an error, without showing a secret.
func describe(v any, secret bool) string {
	switch v.(type) {
	case map[string]any:
		return "a table"
	case []map[string]any, []any:
		return "a list"
	case time.Time:
		return "a date"
	}
	if secret {
		return "the value given (not shown: it may be the secret)"
	}
	switch x := v.(type) {
	case string:
		return strconv.Quote(x)
	case int64, float64, bool:
		return fmt.Sprint(x)
	}
	return fmt.Sprintf("%T", v)
}

// fieldType finds the struct field BurntSushi would decode key into: the
// exact tag first, then a case-insensitive match, as its decoder does.
func fieldType(t reflect.Type, key string) (reflect.Type, bool) {
	var fold reflect.Type
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		if name == key {
			return f.Type, true
		}
		if fold == nil && strings.EqualFold(name, key) {
			fold = f.Type
		}
	}
	return fold, fold != nil
}
