// Command registry is the CNCF distribution v3 registry (the registry of
// Docker Hub, GitLab and many self-hosted ones) as its own cmd/registry
// builds it, with the storage drivers the tests and benchmarks use
// (filesystem and in-memory) and without the cloud ones (Azure, GCS, S3,
// CloudFront): those pull in three cloud SDKs, 416 of its 999 packages,
// and half its build time on a fresh machine. The server, its API and its
// notifications are the same code. scripts/tools.sh builds it.
package main

import (
	"github.com/distribution/distribution/v3/registry"
	_ "github.com/distribution/distribution/v3/registry/auth/htpasswd"
	_ "github.com/distribution/distribution/v3/registry/auth/silly"
	_ "github.com/distribution/distribution/v3/registry/auth/token"
	_ "github.com/distribution/distribution/v3/registry/proxy"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/middleware/redirect"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/middleware/rewrite"
)

func main() {
	// As distribution's own main: the command reports its own errors and
	// exits non-zero on them.
	_ = registry.RootCmd.Execute()
}
