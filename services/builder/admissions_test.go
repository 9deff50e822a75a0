package builder

import (
	"strings"
	"testing"
	"time"

	"github.com/digestline/digestline/pkg/events"
)

// TestAdmissionRulesTakeWhatTheySay: a rule matches its repository on any
// registry, or on the one it names, or a path pattern; it takes tagged
// pushes its tags allow, never cosign's evidence tags or a push by digest;
// a bad rule is refused at load, saying why.
func TestAdmissionRulesTakeWhatTheySay(t *testing.T) {
	r := AdmissionRule{Match: "team/*", Tags: `^v[0-9]+`}
	if err := r.load(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		host, repo string
		want       bool
	}{
		{"registry.example.com", "team/app", true},
		{"", "team/app", true},
		{"registry.example.com", "other/app", false},
		{"registry.example.com", "team/app/sub", false},
	} {
		if got := r.matches(c.host, c.repo); got != c.want {
			t.Errorf("team/* matches %s/%s: %v", c.host, c.repo, got)
		}
	}
	hosted := AdmissionRule{Match: "registry.example.com/team/app"}
	if !hosted.matches("registry.example.com", "team/app") || hosted.matches("other.example.com", "team/app") || hosted.matches("", "team/app") {
		t.Error("a rule naming its registry takes that registry's pushes alone")
	}
	for tag, want := range map[string]string{
		"v1.2.0": "",
		"latest": "does not match the rule's tags",
		"":       "pushed by digest",
		"sha256-" + strings.Repeat("a", 64) + ".sig": "evidence attached",
		"sha256-" + strings.Repeat("a", 64):          "evidence attached",
	} {
		ok, why := r.admits(tag)
		if ok != (want == "") || !strings.Contains(why, want) {
			t.Errorf("admits %q: %v %q, want %q", tag, ok, why, want)
		}
	}
	for _, bad := range []AdmissionRule{
		{},
		{Match: "team/[app"},
		{Match: "team/app", Tags: "("},
		{Match: "team/app", Keys: []string{"/nonexistent/cosign.pub"}},
		{Match: "team/app", Provenance: &events.ProvenanceRule{Builder: "https://ci.example.com"}}, // with no keys
		{Match: "team/app", WaitForSignature: "forever"},
		{Match: "team/app", WaitForSignature: "1h"},
	} {
		if err := bad.load(); err == nil {
			t.Errorf("%+v loaded", bad)
		}
	}
}

// TestSplitResource: the registries' names of an image, with a scheme, a
// port, a tag or a digest, split into host and repository.
func TestSplitResource(t *testing.T) {
	for in, want := range map[string][2]string{
		"hub.harbor.com/test-webhook/debian:latest":       {"hub.harbor.com", "test-webhook/debian"},
		"https://harbor.example.com/library/myapp:v1.0.0": {"harbor.example.com", "library/myapp"},
		"192.168.78.129:8787/library/followme:1.0.0":      {"192.168.78.129:8787", "library/followme"},
		"harbor.dev/library/busybox:v1.0@sha256:" + hex64: {"harbor.dev", "library/busybox"},
		"ghcr.io/timothydodd/cadence/api:sha-33cefd3":     {"ghcr.io", "timothydodd/cadence/api"},
		"quay.io/mynamespace/repository":                  {"quay.io", "mynamespace/repository"},
		"oci://harbor.example.com/helm/magic-sandbox":     {"harbor.example.com", "helm/magic-sandbox"},
		"localhost:5000/team/app":                         {"localhost:5000", "team/app"},
	} {
		if host, repo := splitResource(in); host != want[0] || repo != want[1] {
			t.Errorf("splitResource(%q) = %q, %q; want %q, %q", in, host, repo, want[0], want[1])
		}
	}
}

var hex64 = strings.Repeat("0", 64)

// TestHarborCloudEventsKeepTheirTime: Harbor's CloudEvents format is read
// as its default one, the event's time as the push's (not 1970: runs to
// one tag are ordered by it, and a signature is waited for from it).
func TestHarborCloudEventsKeepTheirTime(t *testing.T) {
	body := `{"specversion": "1.0", "id": "4b2e", "source": "/projects/2/webhook/policies/3", "type": "harbor.artifact.pushed",
		"time": "2026-12-06T10:00:00Z", "datacontenttype": "application/json",
		"data": {"resources": [{"digest": "sha256:` + hex64 + `", "tag": "latest", "resource_url": "hub.harbor.com/test-webhook/busybox:latest"}],
		"repository": {"repo_full_name": "test-webhook/busybox"}}}`
	got, err := harborPushes(nil, []byte(body))
	if err != nil || len(got) != 1 {
		t.Fatalf("%+v %v", got, err)
	}
	if p := got[0]; p.host != "hub.harbor.com" || p.repo != "test-webhook/busybox" || p.tag != "latest" || p.at.UTC().Format(time.RFC3339) != "2026-12-06T10:00:00Z" {
		t.Errorf("%+v", p)
	}
}
