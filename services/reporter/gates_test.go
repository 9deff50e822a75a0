package reporter

import (
	"errors"
	"strings"
	"testing"

	"github.com/digestline/digestline/pkg/events"
)

const someDigest = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"

// TestRequestGates: a request names an environment of the chain, a
// repository and a digest, or the gate it fails says which and why.
func TestRequestGates(t *testing.T) {
	t.Parallel()
	chain := []string{"dev", "staging", "prod"}
	for name, tc := range map[string]struct {
		req  events.PromotionRequest
		gate string // "" when it passes
		says string
	}{
		"in the chain":      {events.PromotionRequest{Repository: "r.example/app", Digest: someDigest, To: "staging"}, "", ""},
		"outside the chain": {events.PromotionRequest{Repository: "r.example/app", Digest: someDigest, To: "qa"}, GateEnvironment, "dev → staging → prod"},
		"a bad repository":  {events.PromotionRequest{Repository: "R.example/App!", Digest: someDigest, To: "dev"}, GateVerified, "repository"},
		"a tag, no digest":  {events.PromotionRequest{Repository: "r.example/app", Digest: "latest", To: "dev"}, GateVerified, "sha256:<64 hex>"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := requestGates(chain, tc.req)
			checkRefusal(t, err, tc.gate, tc.says)
		})
	}
}

// TestChainGates: a digest enters an environment only once this pipeline
// verified it and the environment before holds it, unless it was in this
// environment before (a rollback); the first environment needs only the
// verification.
func TestChainGates(t *testing.T) {
	t.Parallel()
	chain := []string{"dev", "staging", "prod"}
	other := "sha256:" + strings.Repeat("0", 64)
	req := func(to string) events.PromotionRequest {
		return events.PromotionRequest{Repository: "r.example/app", Digest: someDigest, To: to}
	}
	held := func(d string) *events.Promotion { return &events.Promotion{Digest: d} }
	rollback := func(to string) events.PromotionRequest {
		r := req(to)
		r.Rollback = &events.Rollback{Reason: "broken", From: other}
		return r
	}
	for name, tc := range map[string]struct {
		req      events.PromotionRequest
		v        Verified
		verified bool
		prev     *events.Promotion
		gate     string
		says     string
	}{
		"never verified":                    {req("dev"), Verified{}, false, nil, GateVerified, "never verified"},
		"the first environment":             {req("dev"), Verified{}, true, nil, "", ""},
		"the environment before has it":     {req("staging"), Verified{}, true, held(someDigest), "", ""},
		"the environment before is bare":    {req("staging"), Verified{}, true, nil, GatePreviousEnv, "dev, which holds nothing"},
		"it holds another digest":           {req("prod"), Verified{}, true, held(other), GatePreviousEnv, "staging, which holds " + other},
		"a rollback":                        {req("prod"), Verified{PromotedTo: []string{"dev", "staging", "prod"}}, true, held(other), "", ""},
		"promoted elsewhere is no rollback": {req("prod"), Verified{PromotedTo: []string{"dev"}}, true, held(other), GatePreviousEnv, "promote it to staging first"},
		"a rollback asked for":              {rollback("prod"), Verified{PromotedTo: []string{"dev", "staging", "prod"}}, true, held(other), "", ""},
		"a rollback to a digest never held": {rollback("staging"), Verified{PromotedTo: []string{"dev"}}, true, held(someDigest), GatePreviousEnv, "never held " + someDigest},
		"a rollback of the first one":       {rollback("dev"), Verified{}, true, nil, GatePreviousEnv, "never held"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			checkRefusal(t, chainGates(chain, tc.req, tc.v, tc.verified, tc.prev), tc.gate, tc.says)
		})
	}
}

// checkRefusal checks err is nil when gate is "", else a refusal by gate
// whose reason or hint says says.
func checkRefusal(t *testing.T, err error, gate, says string) {
	t.Helper()
	if gate == "" {
		if err != nil {
			t.Fatalf("refused: %v", err)
		}
		return
	}
	var no *refusal
	if !errors.As(err, &no) || no.gate != gate || !strings.Contains(no.reason+" "+no.hint, says) {
		t.Fatalf("%v, want a refusal by %s saying %q", err, gate, says)
	}
}
