package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/digestline/digestline/cmd/digestline/internal/ship"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/service"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"
)

// TestPipelineInContainers builds every image with `make images`' script —
// digestline building its own FROM-scratch images — loads them into the
// container engine, starts NATS, the registry and the four services as
// containers on one network, and ships an image through them to promoted.
func TestPipelineInContainers(t *testing.T) {
	podman := requireContainers(t)
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	images := t.TempDir()
	build := exec.Command("./scripts/images.sh", images)
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("scripts/images.sh: %v\n%s", err, out)
	}
	image := map[string]string{}
	for _, n := range []string{"nats", "digestline", "builder", "pusher", "verifier", "reporter"} {
		out, err := exec.Command(podman, "pull", "-q", "oci-archive:"+filepath.Join(images, n+".tar")).CombinedOutput()
		if err != nil {
			t.Fatalf("load the %s image: %v\n%s", n, err, out)
		}
		fields := strings.Fields(string(out)) // the image id comes last
		id := fields[len(fields)-1]
		image[n] = id
		t.Cleanup(func() { _ = exec.Command(podman, "rmi", "-f", id).Run() })
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// The network is made with the engine's own CLI: podman refuses to start
	// containers on the one testcontainers' network.New creates.
	netName := fmt.Sprintf("digestline-test-%d", time.Now().UnixNano())
	if out, err := exec.Command(podman, "network", "create", netName).CombinedOutput(); err != nil {
		t.Fatalf("podman network create: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command(podman, "network", "rm", "-f", netName).Run() })
	start := func(name, alias string, req testcontainers.ContainerRequest) testcontainers.Container {
		t.Helper()
		req.Image = image[name]
		req.Networks = []string{netName}
		req.NetworkAliases = map[string][]string{netName: {alias}}
		c, err := testcontainers.GenericContainer(ctx, testcontainers.GenericContainerRequest{ContainerRequest: req, Started: true})
		if c != nil {
			t.Cleanup(func() {
				if t.Failed() {
					if logs, err := c.Logs(context.Background()); err == nil {
						b, _ := io.ReadAll(logs)
						t.Logf("%s:\n%s", name, b)
					}
				}
				_ = c.Terminate(context.Background())
			})
		}
		if err != nil {
			t.Fatalf("start %s: %v", name, err)
		}
		return c
	}
	nats := start("nats", "nats", testcontainers.ContainerRequest{ExposedPorts: []string{"4222/tcp"}, WaitingFor: wait.ForListeningPort("4222/tcp")})
	start("digestline", "registry", testcontainers.ContainerRequest{Cmd: []string{"registry", "--addr", ":5000", "--data", "/data/registry"},
		WaitingFor: wait.ForLog("registry on")})
	env := map[string]string{"DIGESTLINE_NATS_URL": "nats://nats:4222", "DIGESTLINE_HEALTH_ADDR": ":8081",
		"DIGESTLINE_INSECURE_REGISTRIES": "registry:5000", "DIGESTLINE_READY_REGISTRIES": "registry:5000"}
	for _, s := range []string{"builder", "pusher", "verifier"} {
		c := start(s, s, testcontainers.ContainerRequest{Env: env, ExposedPorts: []string{"8081/tcp"}, WaitingFor: wait.ForHTTP("/readyz").WithPort("8081/tcp")})
		// The compose file's health check: the service binary probing itself
		// (the image has no shell and no curl).
		code, _, err := c.Exec(ctx, []string{"/usr/local/bin/" + s, "--healthcheck", "http://127.0.0.1:8081/readyz"})
		if err != nil || code != 0 {
			t.Fatalf("%s --healthcheck: exit %d, %v", s, code, err)
		}
	}
	reporter := start("reporter", "reporter", testcontainers.ContainerRequest{Env: env, Cmd: []string{"--api-addr", ":8080"},
		ExposedPorts: []string{"8080/tcp"}, WaitingFor: wait.ForHTTP("/readyz").WithPort("8080/tcp")})

	natsURL, err := nats.PortEndpoint(ctx, "4222/tcp", "nats")
	if err != nil {
		t.Fatal(err)
	}
	nc, js, err := service.Connect(natsURL, "container-test")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	res, err := ship.Ship(ctx, events.NewBus(js, "/digestline/test/containers"), ship.Request{Dir: sourceDir(t, "in containers"), Target: "registry:5000/team/app:1"}, io.Discard)
	if err != nil {
		t.Fatalf("ship through the containers: %v", err)
	}
	api, err := reporter.PortEndpoint(ctx, "8080/tcp", "http")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(api + "/v1/promotions")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var recs []events.Promotion
	if err := json.NewDecoder(resp.Body).Decode(&recs); err != nil || len(recs) != 1 || recs[0].Digest != res.Promotion.Digest {
		t.Fatalf("the reporter container's records: %+v %v", recs, err)
	}
}
