// Package policy is an environment's policy as code, and nothing that
// gathers its inputs: Load reads and compiles a policy file (the keys whose
// signatures count per environment, rules in CEL, and where an environment
// lives, its Place), refusing at start anything it could not enforce;
// Evaluate runs an environment's rules over the evidence a promotion has
// and returns every clause with the values it read. The reporter gathers
// that evidence and turns a failed clause into a refusal (docs/policy.md).
package policy
