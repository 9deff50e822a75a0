package api

import (
	"slices"
	"time"
)

// Push is what the webhooks' deliveries of a commit started (GET
// /v1/pushes/{commit}): the runs, and why a push built nothing. A commit
// pushed more than once (to a branch, then tagged) gathers them all.
type Push struct {
	// Commit is the object the pushes named: a commit's full id, or an
	// annotated tag's from the forges that send its own.
	Commit  string    `json:"commit"`
	Runs    []string  `json:"runs"`
	Ignored []string  `json:"ignored,omitempty"`
	Updated time.Time `json:"updated"`
}

// pushKeeps is how many runs and reasons a Push keeps of each.
const pushKeeps = 200

// Add records what one delivery of the commit started at at: runs, or
// why it started none. It reports whether that was new (a redelivery
// adds nothing).
func (p *Push) Add(runs []string, ignored string, at time.Time) bool {
	added := false
	for _, run := range runs {
		if !slices.Contains(p.Runs, run) && len(p.Runs) < pushKeeps {
			p.Runs, added = append(p.Runs, run), true
		}
	}
	if ignored != "" && !slices.Contains(p.Ignored, ignored) && len(p.Ignored) < pushKeeps {
		p.Ignored, added = append(p.Ignored, ignored), true
	}
	if added {
		p.Updated = at.UTC()
	}
	return added
}
