package reporter

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/digestline/digestline/pkg/api"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/service"
)

// getPush answers what the webhooks' deliveries of a commit started (GET
// /v1/pushes/{commit}): its runs, and why a push of it built nothing. The
// builder records it as it answers each delivery (events.PushesBucket).
func (r *reporter) getPush(w http.ResponseWriter, req *http.Request) {
	commit := strings.ToLower(req.PathValue("commit"))
	if !events.IsCommitID(commit) {
		service.WriteError(w, http.StatusBadRequest, fmt.Sprintf("%q is not a full commit id: give all its hex digits, as git rev-parse HEAD prints them", req.PathValue("commit")))
		return
	}
	var p api.Push
	_, found, err := getJSON(req.Context(), r.store.pushes, commit, &p)
	writeRecord(w, p, found, err, fmt.Sprintf("no webhook delivery of commit %s is recorded (yet, or in the events' retention)", commit))
}
