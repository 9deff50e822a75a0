package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/digestline/digestline/cmd/digestline/internal/e2etest"
	"github.com/digestline/digestline/cmd/digestline/internal/ship"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
)

// onTerminal runs fn with a pseudo-terminal as its output, as a person at a
// shell would see it, and returns everything fn drew.
func onTerminal(t *testing.T, fn func(tty *os.File) error) (string, error) {
	t.Helper()
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatalf("open a pseudo-terminal: %v", err)
	}
	defer ptmx.Close()
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 40, Cols: 120}); err != nil {
		t.Fatal(err)
	}
	var screen bytes.Buffer
	copied := make(chan struct{})
	go func() { _, _ = io.Copy(&screen, ptmx); close(copied) }() // ends when tty closes (EIO)
	err = fn(tty)
	_ = tty.Close()
	<-copied
	return screen.String(), err
}

// noiseDir is a source of incompressible bytes, so its layer takes a moment
// to send.
func noiseDir(t *testing.T, size int) string {
	t.Helper()
	src := t.TempDir()
	noise := make([]byte, size)
	_, _ = rand.Read(noise)
	if err := os.WriteFile(filepath.Join(src, "noise"), noise, 0o644); err != nil {
		t.Fatal(err)
	}
	return src
}

var drawnBars = []string{"total", "layer ", "config ", "/s", "done", "[="}

func TestPushShowsLiveProgressOnATerminal(t *testing.T) {
	newRegistry := func() string {
		srv := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
		t.Cleanup(srv.Close)
		return strings.TrimPrefix(srv.URL, "http://")
	}
	layout := filepath.Join(t.TempDir(), "layout")
	cli(t, "build", noiseDir(t, 8<<20), "-o", layout)

	out, err := onTerminal(t, func(tty *os.File) error {
		cmd := newRootCommand()
		cmd.SetOut(tty)
		cmd.SetErr(tty)
		cmd.SetArgs([]string{"push", layout, newRegistry() + "/progress/app:1"})
		return cmd.ExecuteContext(context.Background())
	})
	if err != nil {
		t.Fatalf("push on a terminal: %v\n%s", err, out)
	}
	for _, want := range append(drawnBars, "[STAGE] upload OK", "pushed ") {
		if !strings.Contains(out, want) {
			t.Errorf("the terminal shows no %q:\n%s", want, out)
		}
	}

	// Not a terminal: the [STAGE] lines only, nothing drawn.
	plain := cli(t, "push", layout, newRegistry()+"/progress/app:1")
	if !strings.Contains(plain, "[STAGE] upload OK 2/2 blobs") || strings.Contains(plain, "[=") || strings.Contains(plain, "\x1b[") {
		t.Errorf("a push into a pipe printed:\n%s", plain)
	}
}

// TestShipShowsThePushersProgressOnATerminal: the upload runs in the pusher
// service; ship draws its progress from the frames the pusher publishes.
func TestShipShowsThePushersProgressOnATerminal(t *testing.T) {
	s, _ := e2etest.StartStack(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := onTerminal(t, func(tty *os.File) error {
		_, err := ship.Ship(ctx, s.Bus, ship.Request{Dir: noiseDir(t, 8<<20), Target: s.RegistryAddr + "/progress/ship:1"}, tty)
		return err
	})
	if err != nil {
		t.Fatalf("ship on a terminal: %v\n%s", err, out)
	}
	for _, want := range append(drawnBars, "[STAGE] upload OK", "[VERIFY] digest match", "promoted ") {
		if !strings.Contains(out, want) {
			t.Errorf("the terminal shows no %q:\n%s", want, out)
		}
	}
}
