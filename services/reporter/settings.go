package reporter

import (
	"fmt"
	"strings"

	"github.com/digestline/digestline/pkg/policy"
)

// Settings are the reporter's settings as text, as flags and DIGESTLINE_
// variables give them, for the reporter's own process and digestline dev
// alike.
type Settings struct {
	Environments      string // comma-separated, first to last
	RequiredReferrers string // env=artifactType,…;…
	Places            string // env=REGISTRY/PATH[:TAG];…
	PolicyFile        string
	TraceURL          string // a trace's page, with {traceId}
	GCFile            string // the garbage collection schedule (GCSchedule)
}

// Configure reads s, and the API tokens of the environment
// (DIGESTLINE_API_TOKEN, DIGESTLINE_API_TOKENS), into cfg.
func (s Settings) Configure(cfg *Config) error {
	var err error
	if cfg.Tokens, err = TokensFromEnv(); err != nil {
		return err
	}
	if cfg.RequiredReferrers, err = ParseRequiredReferrers(s.RequiredReferrers); err != nil {
		return err
	}
	cfg.Environments = strings.Split(s.Environments, ",")
	if s.TraceURL != "" && !strings.Contains(s.TraceURL, "{traceId}") {
		return fmt.Errorf("trace URL %q has no {traceId}: e.g. http://jaeger:16686/trace/{traceId}", s.TraceURL)
	}
	cfg.TraceURL = s.TraceURL
	if cfg.Places, err = policy.ParsePlaces(s.Places); err != nil {
		return err
	}
	if s.GCFile != "" {
		if cfg.GC, err = LoadGCSchedule(s.GCFile); err != nil {
			return err
		}
	}
	if s.PolicyFile != "" {
		if cfg.Policy, err = policy.Load(s.PolicyFile, cfg.Environments); err != nil {
			return err
		}
	}
	return nil
}
