package reporter

import (
	"fmt"
	"testing"

	"github.com/digestline/digestline/pkg/api"
)

// TestKeptReportFitsABusMessage: a collection's report is kept whole
// while it fits in a bus message, and with its counts alone when it
// lists thousands of manifests (a KV put of it would fail).
func TestKeptReportFitsABusMessage(t *testing.T) {
	report := func(n int) api.GCReport {
		rep := api.GCReport{Repository: "reg.example/app", Deleted: n}
		for i := range n {
			rep.Items = append(rep.Items, api.GCItem{Digest: fmt.Sprintf("sha256:%064x", i), Kind: "referrer", Action: api.GCDeleted,
				Why: "held by no environment now nor within its rollback depth, not pinned, not among the last 5 runs' digests"})
		}
		return rep
	}
	if kept := keptReport(report(100)); len(kept.Items) != 100 || kept.ItemsOmitted != 0 {
		t.Errorf("a small report: %d items kept, %d omitted", len(kept.Items), kept.ItemsOmitted)
	}
	if kept := keptReport(report(14000)); len(kept.Items) != 0 || kept.ItemsOmitted != 14000 || kept.Deleted != 14000 {
		t.Errorf("a report of 14,000 manifests: %d items kept, %d omitted, %d deleted", len(kept.Items), kept.ItemsOmitted, kept.Deleted)
	}
}
