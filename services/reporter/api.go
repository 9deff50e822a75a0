package reporter

import (
	"encoding/json"
	"net/http"
)

// routes is the reporter's HTTP API.
func (r *reporter) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /v1/promotions", func(w http.ResponseWriter, req *http.Request) {
		recs, err := r.store.list(req.Context())
		if err != nil {
			httpError(w, http.StatusServiceUnavailable, "read promotions: "+err.Error())
			return
		}
		writeJSON(w, recs)
	})
	mux.HandleFunc("GET /v1/runs/{runid}", func(w http.ResponseWriter, req *http.Request) {
		run := req.PathValue("runid")
		if !runIDPattern.MatchString(run) {
			httpError(w, http.StatusBadRequest, "run id must match "+runIDPattern.String())
			return
		}
		evs, err := r.store.run(req.Context(), run)
		if err != nil {
			httpError(w, http.StatusServiceUnavailable, "read run: "+err.Error())
			return
		}
		if len(evs) == 0 {
			httpError(w, http.StatusNotFound, "no events for run "+run)
			return
		}
		writeJSON(w, evs)
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func httpError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}
