package policy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/digestline/digestline/pkg/sign"
	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types/ref"
	"github.com/opencontainers/go-digest"
	"go.yaml.in/yaml/v3"
)

// Policy is the policy as code: per environment, the keys whose signatures
// and attestations count, and rules in CEL over the evidence a promotion
// has (see docs/policy.md). A promotion enters an environment only when
// every rule is true; the five built-in gates run before them.
type Policy struct {
	path   string
	digest digest.Digest // of the file's bytes, as a verification summary names the policy
	envs   map[string]*envPolicy
	places map[string]Place
	queues map[string]bool // Queues
	// freezes are the environments' freeze windows (freeze.go), and
	// emergency who may approve a promotion through one.
	freezes   map[string][]Window
	emergency map[string][]string
	// rollbackOnFailure are the environments a failed deployment report
	// rolls back (RollbackOnFailure).
	rollbackOnFailure map[string]bool
	// rollbackDepth is how many digests before its current one each
	// environment may roll back to (RollbackDepth).
	rollbackDepth map[string]int
}

type envPolicy struct {
	keys  []sign.Verifier
	rules []rule
}

// rule is one compiled clause.
type rule struct {
	Name string
	Expr string
	Line int
	prg  cel.Program
	vars []string // the variables the expression reads, for reports
}

// The variables a rule reads (docs/policy.md lists their fields).
var policyVars = []string{"environment", "repository", "digest", "requested_by", "signatures", "attestations",
	"provenance", "referrers", "packages", "approvals", "soak", "now"}

// policyEnv declares the variables: typed where a typo should fail at
// start, dynamic where they hold documents (statements, annotations).
func policyEnv() (*cel.Env, error) {
	return cel.NewEnv(
		cel.Variable("environment", cel.StringType),
		cel.Variable("repository", cel.StringType),
		cel.Variable("digest", cel.StringType),
		cel.Variable("requested_by", cel.StringType),
		cel.Variable("signatures", cel.ListType(cel.MapType(cel.StringType, cel.StringType))),
		cel.Variable("attestations", cel.ListType(cel.MapType(cel.StringType, cel.DynType))),
		cel.Variable("provenance", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("referrers", cel.ListType(cel.MapType(cel.StringType, cel.DynType))),
		cel.Variable("packages", cel.ListType(cel.MapType(cel.StringType, cel.StringType))),
		cel.Variable("approvals", cel.ListType(cel.MapType(cel.StringType, cel.DynType))),
		cel.Variable("soak", cel.DurationType),
		cel.Variable("now", cel.TimestampType),
	)
}

// policyFile is the YAML a policy is written in.
type policyFile struct {
	Environments map[string]envFile `yaml:"environments"`
}

// envFile is one environment of a policy file.
type envFile struct {
	// Place is where the environment lives (place.go), when it is not
	// the repository builds are pushed to.
	Place string `yaml:"place"`
	// Promotions is newest (default: a request overtaken by a newer
	// one for the environment is superseded) or queue (every digest
	// passes through the environment, in the order requested).
	Promotions string `yaml:"promotions"`
	// Freezes are when promotions into the environment are refused
	// (freeze.go); Emergency names the API tokens whose approval of a
	// digest lets its promotion through a freeze.
	Freezes   []freezeFile `yaml:"freezes"`
	Emergency []string     `yaml:"emergency"`
	// RollbackOn: failed rolls the environment back when a deployer
	// reports a failed deployment of what it holds.
	RollbackOn string `yaml:"rollbackOn"`
	// RollbackDepth is how many digests before its current one the
	// environment may roll back to: garbage collection keeps them.
	RollbackDepth *int     `yaml:"rollbackDepth"`
	Keys          []string `yaml:"keys"`
	Rules         []struct {
		Name string    `yaml:"name"`
		Expr yaml.Node `yaml:"expr"`
	} `yaml:"rules"`
}

// Load reads and compiles the policy at path for the promotion
// chain. Every error names the file and line: an unknown field, an
// environment outside the chain, a key that does not load, a rule whose
// expression does not compile or is not a bool.
func Load(path string, chain []string) (*Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f policyFile
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("policy %s: %w", path, err)
	}
	env, err := policyEnv()
	if err != nil {
		return nil, err
	}
	p := &Policy{path: path, digest: digest.FromBytes(data), envs: map[string]*envPolicy{}, places: map[string]Place{}, queues: map[string]bool{},
		freezes: map[string][]Window{}, emergency: map[string][]string{}, rollbackOnFailure: map[string]bool{}, rollbackDepth: map[string]int{}}
	for name, e := range f.Environments {
		if !slices.Contains(chain, name) {
			return nil, fmt.Errorf("policy %s: environment %q is not in the promotion chain %s", path, name, strings.Join(chain, " → "))
		}
		if e.Place != "" {
			place, err := ParsePlace(e.Place)
			if err != nil {
				return nil, fmt.Errorf("policy %s: environment %s: %w", path, name, err)
			}
			p.places[name] = place
		}
		switch e.Promotions {
		case "", "newest":
		case "queue":
			p.queues[name] = true
		default:
			return nil, fmt.Errorf("policy %s: environment %s: promotions %q: want newest (the default) or queue", path, name, e.Promotions)
		}
		if err := p.loadControls(name, e); err != nil {
			return nil, fmt.Errorf("policy %s: environment %s: %w", path, name, err)
		}
		if len(e.Keys) == 0 && len(e.Rules) == 0 {
			continue // a place alone: no rules
		}
		ep := &envPolicy{}
		for _, k := range e.Keys {
			v, err := sign.LoadVerifier(k)
			if err != nil {
				return nil, fmt.Errorf("policy %s: environment %s: %w", path, name, err)
			}
			ep.keys = append(ep.keys, v)
		}
		for i, r := range e.Rules {
			line := r.Expr.Line
			if r.Name == "" || r.Expr.Value == "" {
				return nil, fmt.Errorf("policy %s:%d: environment %s, rule %d: want a name and an expr", path, line, name, i+1)
			}
			ast, iss := env.Compile(r.Expr.Value)
			if iss.Err() != nil {
				return nil, fmt.Errorf("policy %s:%d: rule %q: %w", path, line, r.Name, iss.Err())
			}
			if ast.OutputType() != cel.BoolType {
				return nil, fmt.Errorf("policy %s:%d: rule %q is a %s, want a bool", path, line, r.Name, ast.OutputType())
			}
			prg, err := env.Program(ast)
			if err != nil {
				return nil, fmt.Errorf("policy %s:%d: rule %q: %w", path, line, r.Name, err)
			}
			ep.rules = append(ep.rules, rule{Name: r.Name, Expr: r.Expr.Value, Line: line, prg: prg, vars: readVars(ast)})
		}
		p.envs[name] = ep
	}
	return p, nil
}

// loadControls reads what an environment's promotions wait for besides
// the rules: its freezes, who may approve one through them, and whether a
// failed deployment rolls it back.
func (p *Policy) loadControls(env string, e envFile) error {
	for _, f := range e.Freezes {
		w, err := f.window()
		if err != nil {
			return err
		}
		p.freezes[env] = append(p.freezes[env], w)
	}
	p.emergency[env] = e.Emergency
	switch e.RollbackOn {
	case "":
	case "failed":
		p.rollbackOnFailure[env] = true
	default:
		return fmt.Errorf("rollbackOn %q: want failed (or leave it out)", e.RollbackOn)
	}
	if d := e.RollbackDepth; d != nil {
		if *d < 0 {
			return fmt.Errorf("rollbackDepth %d: want 0 or more digests", *d)
		}
		p.rollbackDepth[env] = *d
	}
	return nil
}

// readVars lists the policy variables a checked expression reads, in
// policyVars' order: the identifiers the type checker resolved to them.
func readVars(ast *cel.Ast) []string {
	names := map[string]bool{}
	for _, r := range ast.NativeRep().ReferenceMap() {
		names[r.Name] = true
	}
	return slices.DeleteFunc(slices.Clone(policyVars), func(v string) bool { return !names[v] })
}

// Path is the file the policy was read from.
func (p *Policy) Path() string { return p.path }

// Digest is the SHA-256 of the policy file's bytes, as a verification
// summary names the policy.
func (p *Policy) Digest() digest.Digest { return p.digest }

// Places are the environments' places the policy file names.
func (p *Policy) Places() map[string]Place {
	if p == nil {
		return nil
	}
	return p.places
}

// Has reports whether the policy has rules or keys for env.
func (p *Policy) Has(env string) bool { return p != nil && p.envs[env] != nil }

// Queues reports whether env takes every digest in turn (promotions:
// queue): its promotions wait for the ones requested before them instead
// of superseding them (package tags).
func (p *Policy) Queues(env string) bool { return p != nil && p.queues[env] }

// RollbackOnFailure reports whether a failed deployment report of what env
// holds rolls env back to the last digest reported deployed.
func (p *Policy) RollbackOnFailure(env string) bool { return p != nil && p.rollbackOnFailure[env] }

// DefaultRollbackDepth is how many digests before its current one an
// environment may roll back to when its policy does not say.
const DefaultRollbackDepth = 5

// RollbackDepth is how many digests before its current one env may roll
// back to (rollbackDepth), which garbage collection keeps.
func (p *Policy) RollbackDepth(env string) int {
	if d, ok := p.rollbackDepthOf(env); ok {
		return d
	}
	return DefaultRollbackDepth
}

func (p *Policy) rollbackDepthOf(env string) (int, bool) {
	if p == nil {
		return 0, false
	}
	d, ok := p.rollbackDepth[env]
	return d, ok
}

// Queueing reports whether any environment queues its promotions.
func (p *Policy) Queueing() bool { return p != nil && len(p.queues) > 0 }

// Reads reports whether any of env's rules reads the variable v: what no
// rule reads is not gathered.
func (p *Policy) Reads(env, v string) bool {
	if p == nil || p.envs[env] == nil {
		return false
	}
	return slices.ContainsFunc(p.envs[env].rules, func(r rule) bool { return slices.Contains(r.vars, v) })
}

// Keys are the keys whose evidence counts in env (nil: the reporter's
// trusted keys).
func (p *Policy) Keys(env string) []sign.Verifier {
	if p == nil || p.envs[env] == nil {
		return nil
	}
	return p.envs[env].keys
}

// Clause is one rule's result.
type Clause struct {
	Name   string         `json:"name"`
	Expr   string         `json:"expr"`
	Line   int            `json:"line"`
	Passed bool           `json:"passed"`
	Error  string         `json:"error,omitempty"`
	Values map[string]any `json:"values"` // the variables the rule reads
}

// Evaluate runs env's rules over input, every one, in order.
func (p *Policy) Evaluate(env string, input map[string]any) []Clause {
	if p == nil || p.envs[env] == nil {
		return nil
	}
	var out []Clause
	for _, r := range p.envs[env].rules {
		c := Clause{Name: r.Name, Expr: r.Expr, Line: r.Line, Values: map[string]any{}}
		for _, v := range r.vars {
			c.Values[v] = shown(input[v])
		}
		val, _, err := r.prg.Eval(input)
		switch {
		case err != nil:
			c.Error = err.Error()
		default:
			c.Passed = isTrue(val)
		}
		out = append(out, c)
	}
	return out
}

func isTrue(v ref.Val) bool {
	b, ok := v.Value().(bool)
	return ok && b
}

// shown is a value as a report shows it: durations and times as text.
func shown(v any) any {
	switch x := v.(type) {
	case time.Duration:
		return x.String()
	case time.Time:
		return x.UTC().Format(time.RFC3339)
	}
	return v
}

// Reason says why a clause failed, with the values it read.
func (c Clause) Reason() string {
	vals, _ := json.Marshal(c.Values)
	why := "is false"
	if c.Error != "" {
		why = "could not be evaluated: " + c.Error
	}
	s := fmt.Sprintf("rule %q (line %d) %s: %s; values: %s", c.Name, c.Line, why, c.Expr, vals)
	if len(s) > 1500 {
		s = s[:1500] + "…"
	}
	return s
}
