package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/digestline/digestline/pkg/bus"
	"github.com/digestline/digestline/pkg/bus/bustest"
	"github.com/digestline/digestline/pkg/events"
)

// TestFollowDeploysEachPromotionToItsEnvironmentOnceAndReportsIt: the
// deployer deploys each promotion to its environment once, even across a
// restart, and reports it in the promoted run: ok, or failed with what
// the deploy said.
func TestFollowDeploysEachPromotionToItsEnvironmentOnceAndReportsIt(t *testing.T) {
	ns := bustest.NewServer(t)
	js := ns.JetStream
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := bus.NewBus(js, "/digestline/test/reporter")
	promote := func(env, dgst, location string) {
		t.Helper()
		p := events.Promotion{Environment: env, Repository: "registry.example/team/app", Digest: dgst, Tag: env,
			PromotedAt: time.Now().UTC(), RunID: "run-" + env, Location: location}
		ev, err := b.Start(ctx, events.Promoted, p.RunID, p.Repository, p)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Publish(ctx, ev); err != nil { // a duplicate publish is stored once
			t.Fatal(err)
		}
	}
	prod := "sha256:" + strings.Repeat("a", 64)
	promote("staging", "sha256:"+strings.Repeat("b", 64), "")
	promote("prod", prod, "registry-b.example/prod/team/app") // prod lives in another registry

	var out bustest.LogBuffer
	failing := func(_ context.Context, p events.Promotion) (string, error) {
		return "kubectl: deployment \"app\" exceeded its progress deadline", errors.New("exit status 1")
	}
	d := Deployer{Name: "test-deployer", Env: "prod", Deploy: failing, Out: &out}
	fctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- d.Follow(fctx, js) }()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), prod) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	want := "deploy prod registry-b.example/prod/team/app@" + prod + " (previous none, run run-prod): failed\n"
	if out.String() != want {
		t.Fatalf("printed %q, want %q", out.String(), want)
	}
	evs := ns.WaitRun(t, "run-prod", events.DeploymentReported)
	rep := bustest.Last[events.DeploymentReport](t, evs, events.DeploymentReported)
	if rep.Status != events.DeployFailed || rep.Deployer != "test-deployer" || rep.Digest != prod || !strings.Contains(rep.Detail, "progress deadline") {
		t.Errorf("the report: %+v", rep)
	}

	// A restarted deployer with the same name does not deploy it again.
	var again bustest.LogBuffer
	fctx, stop = context.WithTimeout(ctx, 500*time.Millisecond)
	defer stop()
	d.Out = &again
	if err := d.Follow(fctx, js); err != nil {
		t.Fatal(err)
	}
	if again.String() != "" {
		t.Fatalf("the restarted deployer printed %q", again.String())
	}
}

// TestFollowDeploysEveryImageOfARelease: a release's promoted event is
// deployed image by image, each reported on its own, naming the release.
func TestFollowDeploysEveryImageOfARelease(t *testing.T) {
	ns := bustest.NewServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := bus.NewBus(ns.JetStream, "/digestline/test/reporter")
	now := time.Now().UTC()
	image := func(app, hex string) events.Promotion {
		return events.Promotion{Environment: "prod", Repository: "registry.example/shop/" + app, Digest: "sha256:" + strings.Repeat(hex, 64),
			Tag: "prod", PromotedAt: now, RunID: "run-release", Release: &events.ReleaseRecord{Name: "shop-1"}}
	}
	rel := events.Promotion{Environment: "prod", PromotedAt: now, RunID: "run-release",
		Release: &events.ReleaseRecord{Name: "shop-1", Images: []events.Promotion{image("cart", "c"), image("checkout", "d")}}}
	if _, err := b.Start(ctx, events.Promoted, rel.RunID, "shop-1", rel); err != nil {
		t.Fatal(err)
	}
	var out bustest.LogBuffer
	d := Deployer{Name: "test-deployer", Out: &out}
	fctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- d.Follow(fctx, ns.JetStream) }()
	var reports []string
	for deadline := time.Now().Add(10 * time.Second); len(reports) < 2 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		reports = nil
		for _, ev := range ns.WaitRun(t, "run-release", events.DeploymentReported) {
			if ev.Name == events.DeploymentReported {
				rep, err := events.Decode[events.DeploymentReport](ev.Event)
				if err != nil {
					t.Fatal(err)
				}
				reports = append(reports, rep.Repository+" "+rep.Status+" "+rep.Release)
			}
		}
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if want := "registry.example/shop/cart ok shop-1,registry.example/shop/checkout ok shop-1"; strings.Join(reports, ",") != want {
		t.Errorf("reports: %s, want %s\n%s", strings.Join(reports, ","), want, out.String())
	}
}

// TestAFirstStartDeploysWhatEachEnvironmentHoldsNotItsPast: a deployer
// started for the first time on a stream with a history of promotions
// deploys the newest of each repository in its environment, not each old
// version in turn, then follows the promotions after them, and a restart
// deploys nothing again.
func TestAFirstStartDeploysWhatEachEnvironmentHoldsNotItsPast(t *testing.T) {
	ns := bustest.NewServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := bus.NewBus(ns.JetStream, "/digestline/test/reporter")
	n := 0
	promote := func(env, app, hex string) string {
		t.Helper()
		n++
		p := events.Promotion{Environment: env, Repository: "registry.example/team/" + app, Digest: "sha256:" + strings.Repeat(hex, 64),
			Tag: env, PromotedAt: time.Now().UTC(), RunID: fmt.Sprintf("run-%d", n)}
		if _, err := b.Start(ctx, events.Promoted, p.RunID, p.Repository, p); err != nil {
			t.Fatal(err)
		}
		return p.Ref()
	}
	promote("prod", "app", "1")
	promote("prod", "app", "2")
	other := promote("prod", "other", "c")
	promote("staging", "app", "s")
	app := promote("prod", "app", "3")

	follow := func(until func(out string) bool, wait time.Duration) string {
		t.Helper()
		var out bustest.LogBuffer
		d := Deployer{Name: "new-deployer", Env: "prod", Out: &out}
		fctx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- d.Follow(fctx, ns.JetStream) }()
		for deadline := time.Now().Add(wait); !until(out.String()) && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(200 * time.Millisecond) // and anything it would deploy after
		stop()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		return out.String()
	}
	out := follow(func(out string) bool { return strings.Contains(out, app) }, 5*time.Second)
	want := "deploy prod " + other + " (previous none, run run-3): ok\ndeploy prod " + app + " (previous none, run run-5): ok\n"
	if out != want {
		t.Fatalf("the first start deployed\n%swant\n%s", out, want)
	}
	next := promote("prod", "app", "4")
	if out := follow(func(out string) bool { return strings.Contains(out, next) }, 5*time.Second); out != "deploy prod "+next+" (previous none, run run-6): ok\n" {
		t.Fatalf("after a newer promotion the deployer deployed\n%s", out)
	}
	if out := follow(func(string) bool { return false }, 500*time.Millisecond); out != "" {
		t.Fatalf("a restart deployed\n%s", out)
	}
}

// A deploy command runs with the environment and the reference after its
// own arguments, a program alone or with arguments (through sh); its last
// line is the detail, and a failing exit status fails the deployment.
func TestCommandGetsTheEnvironmentAndTheReference(t *testing.T) {
	p := events.Promotion{Environment: "prod", Repository: "registry.example/team/app", Digest: "sha256:" + strings.Repeat("a", 64)}
	for command, want := range map[string]string{
		"echo":                    "prod " + p.Ref(),
		"echo deploying to":       "deploying to prod " + p.Ref(),
		"printf '%s|%s\\n' first": "first|prod\n" + p.Ref() + "|",
	} {
		detail, err := Command(command)(context.Background(), p)
		if lines := strings.Split(want, "\n"); err != nil || detail != lines[len(lines)-1] {
			t.Errorf("%s: %q, %v; want %q", command, detail, err, lines[len(lines)-1])
		}
	}
	if detail, err := Command("sh -c 'echo no cluster; exit 3' --")(context.Background(), p); err == nil || detail != "no cluster" {
		t.Errorf("a failing command: %q, %v", detail, err)
	}
}
