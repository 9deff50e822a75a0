package service

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

// A request no route takes is answered in JSON under the API's prefix (a
// client reads every error alike), and as the mux answers elsewhere.
func TestUnknownRoutesAnswerInJSON(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/things/{id}", func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, http.StatusOK, map[string]string{"id": r.PathValue("id")})
	})
	srv := httptest.NewServer(JSONErrors("/v1/", mux))
	defer srv.Close()

	for _, tc := range []struct {
		method, path string
		status       int
		allow, body  string
		json         bool
	}{
		{"GET", "/v1/things/7", http.StatusOK, "", "", true},
		{"GET", "/v1/nothing", http.StatusNotFound, "", "no such endpoint: GET /v1/nothing", true},
		{"POST", "/v1/things/7", http.StatusMethodNotAllowed, "GET, HEAD", "/v1/things/7 takes GET, HEAD, not POST", true},
		{"GET", "/elsewhere", http.StatusNotFound, "", "", false},
	} {
		req, _ := http.NewRequest(tc.method, srv.URL+tc.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body struct{ ID, Error string }
		isJSON := resp.Header.Get("Content-Type") == "application/json" && json.NewDecoder(resp.Body).Decode(&body) == nil
		_ = resp.Body.Close()
		if resp.StatusCode != tc.status || isJSON != tc.json || body.Error != tc.body || resp.Header.Get("Allow") != tc.allow {
			t.Errorf("%s %s: %d json=%v %+v Allow %q; want %d json=%v %q Allow %q", tc.method, tc.path,
				resp.StatusCode, isJSON, body, resp.Header.Get("Allow"), tc.status, tc.json, tc.body, tc.allow)
		}
		if tc.status == http.StatusOK && body.ID != "7" {
			t.Errorf("%s %s: the route's own answer lost its path value: %+v", tc.method, tc.path, body)
		}
	}
}
