package stack

import (
	"path/filepath"
	"testing"
)

// TestAPIBase: --api and DIGESTLINE_API_URL take a URL or the host:port
// --api-addr takes, and refuse what is neither.
func TestAPIBase(t *testing.T) {
	for in, want := range map[string]string{
		"http://127.0.0.1:8080":       "http://127.0.0.1:8080",
		"http://127.0.0.1:8080/":      "http://127.0.0.1:8080",
		"127.0.0.1:18080":             "http://127.0.0.1:18080",
		":8080":                       "http://127.0.0.1:8080",
		"https://reporter.example/ci": "https://reporter.example/ci",
		"reporter.example":            "http://reporter.example",
	} {
		if got, err := APIBase(in); err != nil || got != want {
			t.Errorf("APIBase(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "ftp://host", "http://", "http://:8080"} {
		if got, err := APIBase(bad); err == nil {
			t.Errorf("APIBase(%q) = %q, want an error", bad, got)
		}
	}
}

// TestSaveThenLoad: the context dev saves is the one the commands load;
// with none saved, Load finds nothing and says no error.
func TestSaveThenLoad(t *testing.T) {
	t.Setenv(EnvPath, filepath.Join(t.TempDir(), "nested", "context.json"))
	if _, found, err := Load(); found || err != nil {
		t.Fatalf("before dev: found %v, %v", found, err)
	}
	want := Context{NATSURL: "nats://127.0.0.1:1", APIURL: "http://127.0.0.1:2", TokenFile: "/data/api-token", Registry: "127.0.0.1:3"}
	if _, err := Save(want); err != nil {
		t.Fatal(err)
	}
	if got, found, err := Load(); !found || err != nil || got != want {
		t.Fatalf("Load = %+v, %v, %v; want %+v", got, found, err, want)
	}
}
