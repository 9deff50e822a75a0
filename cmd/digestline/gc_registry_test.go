package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/digestline/digestline/cmd/digestline/internal/dev"
	"github.com/digestline/digestline/cmd/digestline/internal/e2etest"
	"github.com/digestline/digestline/cmd/digestline/internal/ship"
	"github.com/digestline/digestline/pkg/api"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/registry/registrytest"
)

// TestGCOnDockerRegistry: on Debian's docker-registry (deletes enabled, no
// referrers API: every referrer is listed by its fallback tag), after
// twelve signed runs with SBOMs, a chain dev → staging → prod and a
// rollback in prod, gc --keep-last 5 deletes exactly the digests no
// environment holds or may roll back to, that are not pinned nor among
// the last five runs', with their trees; the registry's own
// garbage-collect then runs; and every digest kept still verifies with
// digestline and with cosign, and oras lists its whole referrer tree as
// before. cosign's own signatures, kept in its legacy tags, go with the
// image they sign, and stay with one kept.
func TestGCOnDockerRegistry(t *testing.T) {
	t.Setenv("DIGESTLINE_API_TOKEN", "")
	host, collect := registrytest.DistributionWithGC(t, registrytest.DockerRegistry)
	dir := t.TempDir()
	pol := policyOf(t, "environments:\n  dev:\n    rollbackDepth: 1\n  staging:\n    rollbackDepth: 1\n  prod:\n    rollbackDepth: 2\n")
	s, _ := e2etest.StartStack(t, e2etest.WithSigningKey(t, dir), func(c *dev.Config) { c.Reporter.Policy = pol })
	token := []string{"--api", s.APIURL, "--token-file", s.TokenFile, "--timeout", "1m"}
	repo := host + "/team/shop"
	v := map[int]string{}
	for i := 1; i <= 12; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		var out bytes.Buffer
		res, err := ship.Ship(ctx, s.Bus, ship.Request{Dir: e2etest.SourceDir(t, fmt.Sprintf("shop v%d", i)), Target: fmt.Sprintf("%s:v%d", repo, i),
			Spec: events.BuildSpec{Entrypoint: []string{"/bin/app"}, SBOM: true}}, &out)
		cancel()
		if err != nil {
			t.Fatalf("ship v%d: %v\n%s", i, err, out.String())
		}
		v[i] = res.Promotion.Digest
		if i%3 == 0 && i <= 9 { // v3, v6, v9 on through the chain
			for _, env := range []string{"staging", "prod"} {
				if out, err := promoteCLI(t, s, repo+"@"+v[i], env, "--token-file", s.TokenFile); err != nil {
					t.Fatalf("promote v%d to %s: %v\n%s", i, env, err, out)
				}
			}
		}
	}
	cli(t, append([]string{"rollback", "prod", repo, "--reason", "v9 corrupts carts"}, token...)...) // back to v6, pinned
	// Another pipeline signs v1 and v12 with cosign, in its legacy layout:
	// a sha256-<hex>.sig tag beside each.
	keys := t.TempDir()
	if out, err := e2etest.Cosign(t, keys, "generate-key-pair"); err != nil {
		t.Fatalf("cosign generate-key-pair: %v\n%s", err, out)
	}
	for _, i := range []int{1, 12} {
		if out, err := e2etest.Cosign(t, keys, "sign", "--key", "cosign.key", "--tlog-upload=false", "--allow-http-registry", "--allow-insecure-registry", "--yes", repo+"@"+v[i]); err != nil {
			t.Fatalf("cosign sign v%d: %v\n%s", i, err, out)
		}
	}
	sigTag := func(i int) string { return strings.Replace(v[i], ":", "-", 1) + ".sig" }
	if tagDigestAt(t, host, "team/shop", sigTag(1)) == "" {
		t.Fatal("cosign left no .sig tag")
	}
	trees := map[int]string{}
	for i := range v {
		trees[i] = orasTree(t, repo+"@"+v[i])
	}

	// dev holds v12 and may go back to v11; staging v9, and v6; prod v6
	// (pinned), and v9 and v3; the last five runs were the rollback's
	// (v6), v12, v11, v10 and prod's v9.
	out := cli(t, append([]string{"gc", repo, "--keep-last", "5", "--keep-days", "0", "--json"}, token...)...)
	var rep api.GCReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	var deleted []int
	for i, d := range v {
		if slices.ContainsFunc(rep.Items, func(it api.GCItem) bool { return it.Digest == d && it.Action == api.GCDeleted }) {
			deleted = append(deleted, i)
		}
	}
	slices.Sort(deleted)
	if want := []int{1, 2, 4, 5, 7, 8}; !slices.Equal(deleted, want) {
		t.Fatalf("gc deleted v%v, want v%v\n%s", deleted, want, out)
	}
	if gcOut, err := collect(); err != nil {
		t.Fatalf("docker-registry garbage-collect: %v\n%s", err, gcOut)
	}
	for _, i := range []int{3, 6, 9, 10, 11, 12} {
		ref := repo + "@" + v[i]
		// Both keys: digestline reads cosign's .sig tag too, and every
		// signature attached must be a trusted key's.
		out, err := cliErr(t, "verify", ref, "--key", filepath.Join(dir, "digestline.pub"), "--key", filepath.Join(keys, "cosign.pub"))
		if err != nil {
			t.Errorf("digestline verify v%d after gc: %v\n%s", i, err, out)
		}
		if cosigned := strings.Count(out, "[VERIFY] signature"); i == 12 && cosigned != 2 {
			t.Errorf("digestline verify v12 after gc proved %d signatures, want digestline's and cosign's:\n%s", cosigned, out)
		}
		if out, err := e2etest.Cosign(t, dir, "verify", "--key", "digestline.pub", "--insecure-ignore-tlog=true", "--experimental-oci11",
			"--allow-http-registry", "--allow-insecure-registry", "--trusted-root", e2etest.EmptyTrustedRoot(t), ref); err != nil {
			t.Errorf("cosign verify v%d after gc: %v\n%s", i, err, out)
		}
		if got := orasTree(t, ref); got != trees[i] {
			t.Errorf("oras discover v%d after gc:\n%s\nwant, as before:\n%s", i, got, trees[i])
		}
	}
	for _, i := range deleted {
		if got := tagDigestAt(t, host, "team/shop", v[i]); got != "" {
			t.Errorf("v%d is still in the registry", i)
		}
	}
	// cosign's signature of v1 went with it; v12's stayed, and verifies.
	if tagDigestAt(t, host, "team/shop", sigTag(1)) != "" {
		t.Error("the .sig tag of v1, deleted, is still there")
	}
	if out, err := e2etest.Cosign(t, keys, "verify", "--key", "cosign.pub", "--insecure-ignore-tlog=true", "--allow-http-registry", "--allow-insecure-registry", repo+"@"+v[12]); err != nil {
		t.Errorf("cosign verify of v12's own cosign signature after gc: %v\n%s", err, out)
	}
}

// orasTree is oras discover's tree of ref's referrers, every depth: the
// artifact types and digests, sorted.
func orasTree(t *testing.T, ref string) string {
	t.Helper()
	var tree struct {
		Referrers []json.RawMessage `json:"referrers"`
	}
	out := e2etest.RunTool(t, "oras", "discover", "--plain-http", "--format", "json", ref)
	if err := json.Unmarshal([]byte(out), &tree); err != nil {
		t.Fatalf("oras discover %s: %v\n%s", ref, err, out)
	}
	var lines []string
	var walk func(raw []json.RawMessage, depth int)
	walk = func(raw []json.RawMessage, depth int) {
		for _, r := range raw {
			var node struct {
				Digest       string            `json:"digest"`
				ArtifactType string            `json:"artifactType"`
				Referrers    []json.RawMessage `json:"referrers"`
			}
			if err := json.Unmarshal(r, &node); err != nil {
				t.Fatal(err)
			}
			lines = append(lines, fmt.Sprintf("%d %s %s", depth, node.ArtifactType, node.Digest))
			walk(node.Referrers, depth+1)
		}
	}
	walk(tree.Referrers, 1)
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}
