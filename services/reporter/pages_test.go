package reporter

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// A page that cannot be shown (an unknown run, environment or digest) is
// a page that says why, with the header's links and one to the front
// page, not a bare line of text.
func TestAPageThatCannotBeShownSaysWhyAndLeadsOn(t *testing.T) {
	t.Parallel()
	hs, _, _, _ := runIndexAPI(t)
	for _, c := range []struct {
		path, why string
		status    int
	}{
		{"/runs/0000", "no run id starts with 0000", http.StatusNotFound},
		{"/runs/ab", "give its first 4 characters or more", http.StatusBadRequest},
		{"/envs/nope", "&#34;nope&#34; is not in the promotion chain dev", http.StatusNotFound},
		{"/digests/sha256:abc", "want sha256:&lt;64 hex digits&gt;", http.StatusBadRequest},
	} {
		resp, err := http.Get(hs.URL + c.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		page := string(body)
		if resp.StatusCode != c.status || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") ||
			!strings.Contains(page, c.why) || !strings.Contains(page, `href="/envs/dev"`) || !strings.Contains(page, `<a href="/">front page</a>`) {
			t.Errorf("GET %s: %d %s, want %d, a page saying %q with links on:\n%s", c.path, resp.StatusCode,
				resp.Header.Get("Content-Type"), c.status, c.why, page)
		}
	}
}
