// Package transport is the HTTP layer under the registry client, as
// go-containerregistry's remote/transport is under remote: the operations
// in package registry never see a raw answer.
//
// Auth meets a registry's 401 challenge when one comes (a token for the
// scopes, or basic credentials) and proves a credential up front; New
// stacks what every request goes through (counting for a push's request
// total, an HTTP client span, the per-registry Limits on rate and uploads);
// IdleDialer fails a connection on which no byte moved for the timeout;
// Classify and ClassifyError turn every failed answer, or the lack of one,
// into a *failure.Error with its class and a hint.
package transport
