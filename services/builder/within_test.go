package builder

import (
	"os"
	"path/filepath"
	"testing"
)

// A source's dir is a directory inside it: not a file, not one that is
// missing, and not a symlink that leads out of the source.
func TestASourcesDirStaysInsideIt(t *testing.T) {
	root, outside := t.TempDir(), t.TempDir()
	for _, d := range []string{"services/api", "services/web"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "README"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{"out": outside, "services/current": "api"} {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	realRoot, _ := filepath.EvalSymlinks(root)
	for rel, want := range map[string]string{
		"services/api":     filepath.Join(realRoot, "services/api"),
		"services/current": filepath.Join(realRoot, "services/api"),
		"services/nope":    "",
		"README":           "",
		"out":              "",
	} {
		got, err := within(root, rel)
		if got != want || (want == "") != (err != nil) {
			t.Errorf("within(%q): %q %v, want %q", rel, got, err, want)
		}
	}
}
