package systemtest

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// TestDeploymentManifests reads deploy/k8s and docker-compose.yml as their
// tools would and checks what operators rely on: every service probed for
// liveness and readiness, bounded, non-root; every file kustomize names
// exists; every compose service of ours has a health check its image can run.
func TestDeploymentManifests(t *testing.T) {
	root := filepath.Join("..", "..", "..")
	kust := readYAML(t, filepath.Join(root, "deploy", "k8s", "kustomization.yaml"))[0]
	deployments := 0
	for _, r := range kust["resources"].([]any) {
		for _, doc := range readYAML(t, filepath.Join(root, "deploy", "k8s", r.(string))) {
			if doc["kind"] != "Deployment" {
				continue
			}
			deployments++
			spec := doc["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
			if sc, _ := spec["securityContext"].(map[string]any); sc["runAsNonRoot"] != true {
				t.Errorf("%v does not run as non-root", doc["metadata"])
			}
			for _, c := range spec["containers"].([]any) {
				c := c.(map[string]any)
				for _, k := range []string{"livenessProbe", "readinessProbe", "resources", "envFrom"} {
					if c[k] == nil {
						t.Errorf("container %s has no %s", c["name"], k)
					}
				}
			}
		}
	}
	if deployments != 4 {
		t.Errorf("%d Deployments, want one per service", deployments)
	}
	for _, g := range kust["configMapGenerator"].([]any) {
		files, _ := g.(map[string]any)["files"].([]any)
		for _, f := range files {
			_, path, _ := strings.Cut(f.(string), "=")
			if _, err := os.Stat(filepath.Join(root, "deploy", "k8s", path)); err != nil {
				t.Errorf("kustomize names a file that is not there: %v", err)
			}
		}
	}

	compose := readYAML(t, filepath.Join(root, "docker-compose.yml"))[0]
	services := compose["services"].(map[string]any)
	images, err := os.ReadFile(filepath.Join(root, "scripts", "images.sh"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"nats", "registry", "jaeger", "builder", "pusher", "verifier", "reporter"} {
		svc, _ := services[name].(map[string]any)
		if svc == nil {
			t.Errorf("docker-compose.yml has no %s", name)
			continue
		}
		// Nothing is pulled: every image is one that make images builds.
		image, _ := svc["image"].(string)
		built, ok := strings.CutPrefix(strings.TrimSuffix(image, ":dev"), "localhost/digestline-")
		if !ok || !bytes.Contains(images, []byte("\nimage "+built+" ")) {
			t.Errorf("compose %s runs %q, which make images does not build", name, image)
		}
	}
	for _, name := range []string{"builder", "pusher", "verifier", "reporter"} {
		svc := services[name].(map[string]any)
		if svc["image"] != "localhost/digestline-"+name+":dev" || svc["restart"] == nil {
			t.Errorf("compose %s: image %v, restart %v", name, svc["image"], svc["restart"])
		}
		hc, _ := svc["healthcheck"].(map[string]any)
		test, _ := hc["test"].([]any)
		if len(test) < 3 || test[1] != "/usr/local/bin/"+name || !slices.Contains(test, any("--healthcheck")) {
			t.Errorf("compose %s: health check %v does not probe with the service's own binary", name, test)
		}
	}
}

// readYAML returns the documents of a YAML file.
func readYAML(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var docs []map[string]any
	for _, part := range bytes.Split(b, []byte("\n---\n")) {
		var doc map[string]any
		if err := yaml.Unmarshal(part, &doc); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if doc != nil {
			docs = append(docs, doc)
		}
	}
	return docs
}
