package main

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// markdownLink is a Markdown link's target: [text](target) or ![alt](target).
var markdownLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// checkLinks finds the links of the repository's Markdown files that do
// not resolve: a relative link to a file that is not there, or any link out
// of the repository by path (a clone has nothing beside it).
func checkLinks(root string) ([]string, error) {
	var problems []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); path != root && (strings.HasPrefix(n, ".") || n == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".md") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		inCode := false
		for i, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "```") {
				inCode = !inCode
			}
			if inCode {
				continue
			}
			for _, m := range markdownLink.FindAllStringSubmatch(line, -1) {
				target, _, _ := strings.Cut(m[1], "#")
				if target == "" || strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				resolved := filepath.Join(filepath.Dir(path), target)
				rel, err := filepath.Rel(root, resolved)
				switch {
				case err != nil || strings.HasPrefix(rel, ".."):
					problems = append(problems, fmt.Sprintf("%s:%d links %s, outside the repository", path, i+1, m[1]))
				default:
					if _, err := os.Stat(resolved); err != nil {
						problems = append(problems, fmt.Sprintf("%s:%d links %s, which is not there", path, i+1, m[1]))
					}
				}
			}
		}
		return nil
	})
	return problems, err
}
