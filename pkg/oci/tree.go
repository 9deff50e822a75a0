package oci

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/bmatcuk/doublestar/v4"
)

// LayerRule sends the files that match any of its paths to a layer of their
// own, so that what changes rarely (dependencies) is uploaded rarely.
type LayerRule struct {
	Name  string   `json:"name"`
	Paths []string `json:"paths"`
}

// treeEntry is one file, directory or symlink of a build's source tree.
type treeEntry struct {
	rel   string // slash-separated, relative to the root
	info  fs.FileInfo
	link  string
	layer int // files only: the layer it goes to
}

// matches reports whether rel matches pattern. A pattern without a slash
// matches a name at any depth (like .gitignore); a pattern that matches a
// directory matches everything below it.
func matches(pattern, rel string) bool {
	pattern = strings.TrimSuffix(strings.TrimPrefix(pattern, "/"), "/")
	if !strings.Contains(pattern, "/") {
		pattern = "**/" + pattern
	}
	for p := rel; p != "." && p != ""; p = path.Dir(p) {
		if ok, _ := doublestar.Match(pattern, p); ok {
			return true
		}
	}
	return false
}

// MatchesAny reports whether the slash-separated path rel matches one of
// the globs as digestline.yaml's ignore and layers match: ** at any depth,
// a pattern without a slash a name anywhere, a directory's pattern all of
// it.
func MatchesAny(patterns []string, rel string) bool { return matchesAny(patterns, rel) }

// ValidatePatterns reports the first malformed glob of patterns.
func ValidatePatterns(kind string, patterns []string) error { return validatePatterns(kind, patterns) }

func matchesAny(patterns []string, rel string) bool {
	for _, p := range patterns {
		if matches(p, rel) {
			return true
		}
	}
	return false
}

// validatePatterns reports a malformed glob before any work is done.
func validatePatterns(kind string, patterns []string) error {
	for _, p := range patterns {
		if !doublestar.ValidatePattern(p) {
			return fmt.Errorf("%s pattern %q is not a valid glob", kind, p)
		}
	}
	return nil
}

// scanTree lists dir's entries in lexical order, leaving out ignored ones,
// and assigns each file to the first layer rule that matches it, or to the
// last layer (index len(rules)) when none does.
func scanTree(ctx context.Context, dir string, ignore []string, rules []LayerRule) ([]treeEntry, error) {
	if err := validatePatterns("ignore", ignore); err != nil {
		return nil, err
	}
	for _, r := range rules {
		if err := validatePatterns("layer "+r.Name, r.Paths); err != nil {
			return nil, err
		}
	}
	var entries []treeEntry
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("read %s: %w", p, err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		if matchesAny(ignore, rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return fmt.Errorf("stat %s: %w", p, err)
		}
		e := treeEntry{rel: rel, info: info, layer: len(rules)}
		switch {
		case info.Mode().IsRegular(), info.IsDir():
		case info.Mode()&fs.ModeSymlink != 0:
			if e.link, err = os.Readlink(p); err != nil {
				return fmt.Errorf("read link %s: %w", p, err)
			}
		default:
			return fmt.Errorf("%s: unsupported file type %s (only files, directories and symlinks go into a layer)", rel, info.Mode().Type())
		}
		if !info.IsDir() {
			for i, r := range rules {
				if matchesAny(r.Paths, rel) {
					e.layer = i
					break
				}
			}
		}
		entries = append(entries, e)
		return nil
	})
	return entries, err
}

// layerEntries returns layer k's entries in order: its files, the
// directories above them, and — in the last layer — directories no layer
// needed (so empty directories are kept).
func layerEntries(entries []treeEntry, k, last int) []treeEntry {
	need := make([]map[string]bool, last+1)
	for i := range need {
		need[i] = map[string]bool{}
	}
	for _, e := range entries {
		if e.info.IsDir() {
			continue
		}
		for d := path.Dir(e.rel); d != "."; d = path.Dir(d) {
			need[e.layer][d] = true
		}
	}
	var out []treeEntry
	for _, e := range entries {
		if !e.info.IsDir() {
			if e.layer == k {
				out = append(out, e)
			}
			continue
		}
		neededSomewhere := false
		for i := range need {
			neededSomewhere = neededSomewhere || need[i][e.rel]
		}
		if need[k][e.rel] || (k == last && !neededSomewhere) {
			out = append(out, e)
		}
	}
	return out
}
