package runs

import (
	"cmp"
	"fmt"
	"strings"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/digestline/digestline/pkg/events"
)

// addRelease folds a release's own events (events.ReleaseRequested and
// what follows it) into the run, and returns their lines.
func (r *Run) addRelease(ev cloudevents.Event, name events.Name, at time.Time) []string {
	switch name {
	case events.ReleaseRequested:
		if req, err := events.Decode[events.ReleaseRequest](ev); err == nil {
			r.Target = fmt.Sprintf("release %s to %s", req.Name, req.To)
		}
	case events.ReleaseApproved:
		if ra, err := events.Decode[events.ReleaseApproval](ev); err == nil {
			r.step(Step{Name: "gates", Status: events.StatusOK, Detail: fmt.Sprintf("every gate passed for %d images", len(ra.Images))}, at, 0)
			lines := []string{fmt.Sprintf("[GATE] every gate passed for every image of release %s: moving %d tags", ra.Name, len(ra.Images))}
			for _, a := range ra.Images {
				lines = append(lines, fmt.Sprintf("[GATE]   %s:%s from %s to %s", a.Place(), a.Tag, cmp.Or(a.Previous, "nothing"), a.Digest))
			}
			return lines
		}
	case events.ReleaseMoved:
		if rm, err := events.Decode[events.ReleaseMoves](ev); err == nil {
			lines := make([]string, 0, len(rm.Images))
			for _, p := range rm.Images {
				lines = append(lines, fmt.Sprintf("[RELEASE] %s moved to %s", p.Target, p.Digest))
			}
			return lines
		}
	case events.ReleaseVerified:
		if rv, err := events.Decode[events.ReleaseVerification](ev); err == nil {
			r.step(Step{Name: "verify", Status: events.StatusOK, Detail: fmt.Sprintf("every byte of %d images matches", len(rv.Images))}, at, 0)
			var lines []string
			for _, v := range rv.Images {
				lines = append(lines, v.Checks...)
			}
			return lines
		}
	}
	return nil
}

// ReleaseFailure says which image a release failed at, and what became of
// the tags it had moved.
func ReleaseFailure(f events.ReleaseFailure) string {
	what := fmt.Sprintf("release %s failed at %s", f.Name, f.Image)
	if len(f.PutBack) > 0 {
		what += " (put back: " + strings.Join(f.PutBack, ", ") + ")"
	}
	if len(f.Left) > 0 {
		what += " (left where the release moved them: " + strings.Join(f.Left, "; ") + ")"
	}
	return what
}
