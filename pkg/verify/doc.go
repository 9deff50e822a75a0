// Package verify proves that a registry serves exactly what was built: it
// pulls an image by digest and hashes every manifest and blob against its
// descriptor, compares the graph with the build's, checks that each
// attached artifact is listed under its subject, and — with trusted keys —
// proves every signature and attestation attached. The verifier service
// runs it on every push; the pusher runs it at a promotion's destination
// before it moves the environment's tag, and `digestline copy` after a copy.
package verify
