package main

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/digestline/digestline/pkg/bus"
	"github.com/digestline/digestline/pkg/bus/bustest"
	"github.com/digestline/digestline/pkg/events"
)

// syncBuffer is a bytes.Buffer safe for the consumer's goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func TestFollowPrintsEachPromotionToItsEnvironmentOnce(t *testing.T) {
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

	var out syncBuffer
	fctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- Follow(fctx, js, "test-deployer", "prod", &out) }()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), prod) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	want := "deploy prod registry-b.example/prod/team/app@" + prod + " (previous none, run run-prod)\n"
	if out.String() != want {
		t.Fatalf("printed %q, want %q", out.String(), want)
	}

	// A restarted deployer with the same name does not deploy it again.
	var again syncBuffer
	fctx, stop = context.WithTimeout(ctx, 500*time.Millisecond)
	defer stop()
	if err := Follow(fctx, js, "test-deployer", "prod", &again); err != nil {
		t.Fatal(err)
	}
	if again.String() != "" {
		t.Fatalf("the restarted deployer printed %q", again.String())
	}
}
