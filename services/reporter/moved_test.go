package reporter_test

import (
	"strings"
	"testing"

	"github.com/digestline/digestline/pkg/bus/bustest"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/policy"
	"github.com/digestline/digestline/pkg/registry/registrytest"
	"github.com/digestline/digestline/services/reporter"
)

// TestAnEnvironmentMovedToAnotherPlace: prod was promoted where builds go;
// restarted with prod in another registry, the reporter does not take the
// empty tag there for the record, and says how to bring prod along.
func TestAnEnvironmentMovedToAnotherPlace(t *testing.T) {
	t.Parallel()
	srv, addr, elsewhere := bustest.NewServer(t), registrytest.Memory(t, true), registrytest.Memory(t, false)
	chain := func(c *reporter.Config) { c.Environments = []string{"prod"} }
	h, stop := startOn(t, srv, addr, chain)
	first := h.push(t, "1", "before the move")
	run := h.verified(t, "1", first, "")
	h.moveAndReverify(t, run, srv.WaitRun(t, run, events.PromotionApproved))
	srv.WaitRun(t, run, events.Promoted)
	stop()

	h, _ = startOn(t, srv, addr, chain, func(c *reporter.Config) {
		c.Places = map[string]policy.Place{"prod": {Repository: elsewhere + "/prod/{path}"}}
	})
	second := h.push(t, "2", "after the move")
	run = h.verified(t, "2", second, "")
	rej := bustest.Last[events.Rejection](t, srv.WaitRun(t, run, events.PromotionRejected), events.PromotionRejected)
	want := "prod now lives at " + elsewhere + "/prod/team/app, its record at " + addr + "/team/app: copy what it holds there first (digestline copy " +
		addr + "/team/app@" + first + " " + elsewhere + "/prod/team/app:prod)"
	if rej.Gate != reporter.GateTagDrift || !strings.Contains(rej.Hint, want) {
		t.Fatalf("rejected at %s: %s\nhint: %s\nwant a hint saying %q", rej.Gate, rej.Reason, rej.Hint, want)
	}
}
