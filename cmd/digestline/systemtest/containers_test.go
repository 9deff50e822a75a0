package systemtest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/digestline/digestline/cmd/digestline/internal/e2etest"
	"github.com/digestline/digestline/cmd/digestline/internal/ship"
	"github.com/digestline/digestline/pkg/api"
	"github.com/digestline/digestline/pkg/bus"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/service"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"
)

// TestPipelineInContainers builds every image with `make images`' script —
// digestline building its own FROM-scratch images — loads them into the
// container engine, starts NATS, the registry and the four services as
// containers on one network, and ships an image through them to promoted.
func TestPipelineInContainers(t *testing.T) {
	podman := e2etest.RequireContainers(t)
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..", "..")
	images := t.TempDir()
	build := exec.Command("./scripts/images.sh", images)
	build.Dir = root
	build.Env = append(os.Environ(), "IMAGES_BINARIES="+binaries) // TestMain's, linked once
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
	// containers on the one testcontainers' network.New creates. It has no
	// DNS: the engine's resolver (aardvark-dns) stopped answering in CI while
	// other containers came and went, so every container gets a fixed
	// address and finds the others through /etc/hosts.
	netName := fmt.Sprintf("digestline-test-%d", time.Now().UnixNano())
	if out, err := exec.Command(podman, "network", "create", "--disable-dns", netName).CombinedOutput(); err != nil {
		t.Fatalf("podman network create: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command(podman, "network", "rm", "-f", netName).Run() })
	out, err := exec.Command(podman, "network", "inspect", netName, "--format", "{{range .Subnets}}{{.Subnet}}{{end}}").CombinedOutput()
	if err != nil {
		t.Fatalf("podman network inspect: %v\n%s", err, out)
	}
	subnet, err := netip.ParsePrefix(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("the network's subnet %q: %v", out, err)
	}
	hosts, addrs := []string{}, map[string]string{}
	next := subnet.Addr()
	for range 10 { // .10 onwards: clear of the gateway
		next = next.Next()
	}
	for _, alias := range []string{"nats", "registry", "builder", "pusher", "verifier", "reporter"} {
		addrs[alias] = next.String()
		hosts = append(hosts, alias+":"+next.String())
		next = next.Next()
	}
	start := func(name, alias string, req testcontainers.ContainerRequest) testcontainers.Container {
		t.Helper()
		req.Image = image[name]
		req.Networks = []string{netName}
		req.HostConfigModifier = func(hc *container.HostConfig) { hc.ExtraHosts = hosts }
		req.EndpointSettingsModifier = func(eps map[string]*network.EndpointSettings) {
			eps[netName] = &network.EndpointSettings{IPAMConfig: &network.EndpointIPAMConfig{IPv4Address: netip.MustParseAddr(addrs[alias])}}
		}
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
	res, err := ship.Ship(ctx, bus.NewBus(js, "/digestline/test/containers"), ship.Request{Dir: e2etest.SourceDir(t, "in containers"), Target: "registry:5000/team/app:1"}, io.Discard)
	if err != nil {
		t.Fatalf("ship through the containers: %v", err)
	}
	apiURL, err := reporter.PortEndpoint(ctx, "8080/tcp", "http")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(apiURL + "/v1/promotions")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var recs api.Page[events.Promotion]
	if err := json.NewDecoder(resp.Body).Decode(&recs); err != nil || len(recs.Items) != 1 || recs.Items[0].Digest != res.Promotion.Digest {
		t.Fatalf("the reporter container's records: %+v %v", recs.Items, err)
	}
}
