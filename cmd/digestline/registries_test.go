package main

import (
	"cmp"
	"crypto/sha256"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/digestline/digestline/cmd/digestline/internal/e2etest"
	"github.com/digestline/digestline/pkg/oci"
	"github.com/digestline/digestline/pkg/registry/registrytest"
)

// TestEveryRegistryThroughEveryQuirk runs what a user runs — push (cold,
// then warm), verify, attach, discover — with an image whose layer is a
// 100 MB blob, against each real registry digestline is tested with (the
// embedded one, Debian's docker-registry, distribution v3), each behind
// each quirk of the registries in the field that digestline works around
// (docs/registries.md). The quirks that refuse something for good (a
// missing repository, an immutable tag, a policy, an artifact type) have
// their classes and hints tested in pkg/registry.
func TestEveryRegistryThroughEveryQuirk(t *testing.T) {
	layout, root := bigLayoutWithSBOM(t)
	registries := map[string]func(*testing.T) string{
		"embedded":                  e2etest.EmbeddedRegistry,
		registrytest.DockerRegistry: func(t *testing.T) string { return registrytest.Distribution(t, registrytest.DockerRegistry) },
		registrytest.DistributionV3: func(t *testing.T) string { return registrytest.Distribution(t, registrytest.DistributionV3) },
	}
	quirks := []registrytest.Quirk{"", registrytest.NoChunkedUploads, registrytest.NoDigestHeader, registrytest.HTMLReferrers,
		registrytest.RedirectReferrers, registrytest.NotIndexReferrers, registrytest.MountOpensSession, registrytest.Throttles}
	sig := filepath.Join(t.TempDir(), "sig.json")
	if err := os.WriteFile(sig, []byte(`{"signed":true}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for regName, start := range registries {
		for _, quirk := range quirks {
			t.Run(regName+"/"+cmp.Or(string(quirk), "as it is"), func(t *testing.T) {
				t.Parallel()
				host := start(t)
				if quirk != "" {
					host = registrytest.Proxy(t, host, quirk)
				}
				repo := host + "/team/app"

				cold := cli(t, "push", layout, repo+":1")
				if got := pushCounts(t, cold); got.uploaded != 2 || !strings.Contains(cold, "referrers OK 2 attached") {
					t.Fatalf("cold push uploaded %d blobs, want 2 (the layer and the config), and the SBOMs attached (SPDX, CycloneDX):\n%s", got.uploaded, cold)
				}
				warm := cli(t, "push", layout, repo+":1")
				if got := pushCounts(t, warm); got.uploaded != 0 {
					t.Fatalf("warm push uploaded %d blobs:\n%s", got.uploaded, warm)
				}

				image := repo + "@" + root
				if out := cli(t, "verify", image); !strings.Contains(out, "[VERIFY] digest match") {
					t.Fatalf("verify:\n%s", out)
				}
				cli(t, "attach", image, sig, "--artifact-type", "application/vnd.example.signature.v1+json")
				var tree node
				if err := json.Unmarshal([]byte(cli(t, "discover", image, "--json")), &tree); err != nil {
					t.Fatal(err)
				}
				var types []string
				for _, c := range tree.Children {
					types = append(types, c.ArtifactType)
				}
				slices.Sort(types)
				if want := []string{oci.MediaTypeSPDX, "application/vnd.cyclonedx+json", "application/vnd.example.signature.v1+json"}; !slices.Equal(types, want) {
					t.Fatalf("discover lists %v, want %v", types, want)
				}
			})
		}
	}
}

// bigLayoutWithSBOM builds, once for the test, an image of a 100 MB file
// of incompressible bytes with its SBOM attached, and returns the layout
// and the image's digest.
func bigLayoutWithSBOM(t *testing.T) (layout, root string) {
	t.Helper()
	src := t.TempDir()
	data := make([]byte, 100<<20)
	_, _ = rand.NewChaCha8(sha256.Sum256([]byte(t.Name()))).Read(data)
	if err := os.WriteFile(filepath.Join(src, "big.bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	layout = filepath.Join(t.TempDir(), "layout")
	out := cli(t, "build", src, "-o", layout, "--sbom")
	return layout, strings.TrimSpace(strings.SplitN(out, "\n", 2)[0])
}

type pushCount struct{ uploaded, existing, requests int }

var pushedLine = regexp.MustCompile(`pushed \S+: (\d+) uploaded, (\d+) existing, (\d+) requests`)

// pushCounts reads the counts from push's last line.
func pushCounts(t *testing.T, out string) pushCount {
	t.Helper()
	m := pushedLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no counts in the push's output:\n%s", out)
	}
	var c pushCount
	for i, p := range []*int{&c.uploaded, &c.existing, &c.requests} {
		*p, _ = strconv.Atoi(m[i+1]) // the pattern admits only digits
	}
	return c
}
