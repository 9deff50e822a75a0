package builder

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
)

// LogDeliveries logs each delivery to the webhooks, one [WEBHOOK] line
// each: which endpoint, the forge's event and delivery id, and what was
// answered — the run it started, why it built nothing, or why it was
// refused. "My push built nothing" is answered from the builder's log as
// from the forge's page of deliveries. Only the path is logged, never the
// query (a registry's notification may carry its token there) nor the
// body.
func LogDeliveries(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &answerRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		var answer struct {
			RunID   string
			More    []struct{ RunID string }
			Runs    []struct{ RunID string } // a registry's notification's admissions
			Ignored []string
			Message string
			Error   string
		}
		_ = json.Unmarshal(rec.body.Bytes(), &answer)
		var runs []string
		if answer.RunID != "" {
			runs = append(runs, answer.RunID)
		}
		for _, run := range slices.Concat(answer.More, answer.Runs) {
			runs = append(runs, run.RunID)
		}
		what := strings.TrimPrefix(r.URL.Path, "/webhooks/")
		if event := deliveryEvent(r.Header); event != "" {
			what += " " + event
		}
		if id := deliveryID(r.Header); id != "" {
			what += " " + id
		}
		switch {
		case rec.status == http.StatusAccepted && len(runs) > 0:
			line := fmt.Sprintf("[WEBHOOK] %s: run %s", what, strings.Join(runs, ", run "))
			if len(answer.Ignored) > 0 {
				line += "; ignored: " + strings.Join(answer.Ignored, "; ")
			}
			log.Info(line, "run_id", runs[0], "status", rec.status)
		case rec.status < http.StatusBadRequest:
			log.Info(fmt.Sprintf("[WEBHOOK] %s: %d %s", what, rec.status, answer.Message), "status", rec.status)
		default:
			log.Warn(fmt.Sprintf("[WEBHOOK] %s: refused %d: %s", what, rec.status, cmp.Or(answer.Error, answer.Message, http.StatusText(rec.status))), "status", rec.status)
		}
	})
}

// deliveryEvent is the event a delivery says it is, in the header its
// sender names it in.
func deliveryEvent(h http.Header) string {
	return cmp.Or(h.Get("X-GitHub-Event"), h.Get("X-Gitea-Event"), h.Get("X-Gitlab-Event"), h.Get("X-Event-Key"), h.Get("Ce-Type"))
}

// deliveryID is a delivery's id, as its sender's page of deliveries shows
// it (Azure DevOps's is in its body alone).
func deliveryID(h http.Header) string {
	return cmp.Or(h.Get("X-GitHub-Delivery"), h.Get("X-Gitea-Delivery"), h.Get("X-Gitlab-Event-UUID"), h.Get("X-Request-UUID"), h.Get("X-Request-Id"), h.Get("Ce-Id"))
}

// answerRecorder passes an answer on, keeping its status and the start of
// its body (the webhooks answer with a few hundred bytes of JSON).
type answerRecorder struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (a *answerRecorder) WriteHeader(status int) {
	a.status = status
	a.ResponseWriter.WriteHeader(status)
}

func (a *answerRecorder) Write(b []byte) (int, error) {
	if room := 4096 - a.body.Len(); room > 0 {
		a.body.Write(b[:min(len(b), room)])
	}
	return a.ResponseWriter.Write(b)
}
