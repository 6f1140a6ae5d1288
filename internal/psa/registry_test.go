package psa_test

import (
	"slices"
	"testing"

	. "psagate/internal/psa"
)

func TestRegistryHoldsTheShippedProviders(t *testing.T) {
	for _, name := range []string{"autotask", "connectwise", "log"} {
		d, ok := Lookup(name)
		if !ok {
			t.Fatalf("%s is not registered", name)
		}
		if d.Limits.Concurrency < 1 {
			t.Errorf("%s: no default concurrency", name)
		}
		for _, k := range d.TicketKeys() {
			if slices.Contains(d.Secrets, k) || slices.Contains(d.Connection, k) || k == "timeout" {
				t.Errorf("%s: TicketKeys lists %q", name, k)
			}
		}
	}
	if !IsSecretKey("autotask.secret") || IsSecretKey("autotask.queue_id") || IsSecretKey("nosuch.secret") {
		t.Error("IsSecretKey does not follow the descriptors")
	}
	if !IsConnectionKey("connectwise.site") || IsConnectionKey("autotask.company_id") {
		t.Error("IsConnectionKey does not follow the descriptors")
	}
}

func TestRegisterRefusesDuplicatesAndIncompleteDescriptors(t *testing.T) {
	for name, d := range map[string]Descriptor{
		"duplicate":      {Name: "log", New: func(Env) Provider { return nil }},
		"no name":        {New: func(Env) Provider { return nil }},
		"no constructor": {Name: "x-none"},
		"stray secret":   {Name: "x-stray", Keys: []string{"a"}, Secrets: []string{"b"}, New: func(Env) Provider { return nil }},
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("Register did not panic")
				}
			}()
			Register(d)
		})
	}
}
