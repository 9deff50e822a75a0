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

	"github.com/creack/pty"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
)

// TestPushShowsLiveProgressOnATerminal pushes through a pseudo-terminal, as
// a person at a shell would, and again into a pipe, as CI would.
func TestPushShowsLiveProgressOnATerminal(t *testing.T) {
	newRegistry := func() string {
		srv := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
		t.Cleanup(srv.Close)
		return strings.TrimPrefix(srv.URL, "http://")
	}
	src := t.TempDir()
	noise := make([]byte, 8<<20) // incompressible: the layer takes a moment to send
	_, _ = rand.Read(noise)
	if err := os.WriteFile(filepath.Join(src, "noise"), noise, 0o644); err != nil {
		t.Fatal(err)
	}
	layout := filepath.Join(t.TempDir(), "layout")
	cli(t, "build", src, "-o", layout)

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
	cmd := newRootCommand()
	cmd.SetOut(tty)
	cmd.SetErr(tty)
	cmd.SetArgs([]string{"push", layout, newRegistry() + "/progress/app:1"})
	err = cmd.ExecuteContext(context.Background())
	_ = tty.Close()
	<-copied
	if err != nil {
		t.Fatalf("push on a terminal: %v\n%s", err, screen.String())
	}
	out := screen.String()
	for _, want := range []string{"[STAGE] upload OK", "total", "layer ", "config ", "/s", "done", "[=", "pushed "} {
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
