// Package api holds the requests and answers of the reporter's HTTP API
// (docs/architecture.md lists the endpoints): what the CLI and any other
// client send and read, so that none imports the reporter to talk to it.
package api
