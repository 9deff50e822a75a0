package notifier

import (
	"errors"
	"strings"
	"testing"

	"github.com/digestline/digestline/pkg/failure"
)

// A refused notification names what the webhook said with its status —
// Slack says why in a word — on one line, cut short, and never its URL.
func TestARefusalSaysWhatTheWebhookAnswered(t *testing.T) {
	url := "https://hooks.slack.example/services/T0/B0/s3cret"
	err := statusError(400, answer([]byte("no_text\n"), url))
	var f *failure.Error
	if !errors.As(err, &f) || f.Class != failure.Input || !strings.Contains(err.Error(), "HTTP 400: no_text") {
		t.Errorf("a 400 saying no_text: %v", err)
	}
	said := answer([]byte("<html>\n  <body>"+url+strings.Repeat(" x", 300)+"</body>\n</html>"), url)
	if strings.Contains(said, "s3cret") || strings.Contains(said, "\n") || len([]rune(said)) > 201 || !strings.HasPrefix(said, "<html> <body><the webhook's URL>") {
		t.Errorf("a long answer that repeats the URL became %q", said)
	}
	if err := statusError(503, ""); err == nil || err.Error() != "notify: transport error: HTTP 503" {
		t.Errorf("a 503 with nothing said: %v", err)
	}
}
