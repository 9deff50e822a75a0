package systemtest

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/digestline/digestline/cmd/digestline/internal/e2etest"
)

// binaries is the directory TestMain built the CLI and the four services
// into, once for every test: the binaries that run in production.
var binaries string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "digestline-systemtest-*")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// The binaries as they ship (make build, the images): static and
	// -trimpath, which also makes this build the one the container test's
	// images reuse, and the standard library the one the peer tools share.
	build := exec.Command("go", "build", "-trimpath", "-o", dir+"/", "github.com/digestline/digestline/cmd/digestline",
		"github.com/digestline/digestline/services/builder/cmd/builder", "github.com/digestline/digestline/services/pusher/cmd/pusher",
		"github.com/digestline/digestline/services/verifier/cmd/verifier", "github.com/digestline/digestline/services/reporter/cmd/reporter",
		"github.com/digestline/digestline/services/notifier/cmd/notifier")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build the binaries: %v\n%s", err, out)
		os.Exit(1)
	}
	binaries = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// serviceBinaries is the directory of the service binaries.
func serviceBinaries(t *testing.T) string {
	t.Helper()
	return binaries
}

// cli and promoteCLI run the digestline binary (cliErr).
var (
	cli        = e2etest.CLI(cliErr).Must
	promoteCLI = e2etest.CLI(cliErr).Promote
)

// cliErr runs the digestline binary and returns what it printed on its
// standard output and how it ended.
func cliErr(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binaries, "digestline"), args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		err = fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return string(out), err
}

// process is one service binary run as a real process, which a test may
// kill (a crash) or stop (SIGTERM: drain, flush telemetry) and start again.
type process struct {
	name, bin string
	args, env []string
	logs      io.Writer
	mu        sync.Mutex
	cmd       *exec.Cmd
	exited    chan struct{}
	started   time.Time // when the running process was started
	kills     int
	killedNew bool // the last kill came before the process had been up for a crashLoop
}

// newProcess is the service binary name in bins (see serviceBinaries),
// to run with env and args; nothing runs until start.
func newProcess(bins, name string, env []string, logs io.Writer, args ...string) *process {
	return &process{name: name, bin: filepath.Join(bins, name), args: args, env: env, logs: logs}
}

func (p *process) start(t *testing.T) {
	p.mu.Lock()
	defer p.mu.Unlock()
	cmd := exec.Command(p.bin, p.args...)
	cmd.Env, cmd.Stdout, cmd.Stderr = p.env, p.logs, p.logs
	if err := cmd.Start(); err != nil {
		t.Errorf("start %s: %v", p.name, err)
		return
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }() // reaped whether it is killed or exits
	p.cmd, p.exited, p.started = cmd, exited, time.Now()
}

// kill sends SIGKILL: no drain, no goodbye — a crash at an arbitrary line.
func (p *process) kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && p.cmd.Process != nil {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		p.kills++
		p.killedNew = time.Since(p.started) < crashLoop
	}
}

// crashLoop is how long a service that was killed soon after it started
// must stay up before it may be killed again: the chaos tests'
// DIGESTLINE_ACK_WAIT, by when what it held as it died has come back to
// it. Killed sooner, again and again, it is in a crash loop, and the
// events it holds are dead-lettered once they were delivered MaxDeliver
// times (docs/design.md).
const crashLoop = 2 * time.Second

// mayKill says whether the monkey may kill p now: any time, except twice in
// a row before it has been up for a crashLoop.
func (p *process) mayKill() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.killedNew || time.Since(p.started) >= crashLoop
}

// stop sends SIGTERM and waits for the process to exit (killing it after
// 30 s): a graceful shutdown, which also flushes its spans.
func (p *process) stop(t *testing.T) {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		t.Errorf("%s did not stop within 30 s of SIGTERM", p.name)
		p.kill()
		<-exited
	}
}
