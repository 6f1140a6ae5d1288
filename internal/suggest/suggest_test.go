package suggest

import "testing"

func TestClosest(t *testing.T) {
	keys := []string{"board", "priority", "subtype", "closed_status"}
	for in, want := range map[string]string{"bord": "board", "priorty": "priority", "closedstatus": "closed_status", "zebra": "", "": ""} {
		if got := Closest(in, keys); got != want {
			t.Errorf("Closest(%q) = %q, want %q", in, got, want)
		}
	}
	if d := Distance("kitten", "sitting"); d != 3 {
		t.Errorf("Distance = %d", d)
	}
}
