// Command shape checks the code's shape, as `make lint` runs it: no
// non-test Go file over 600 lines, no non-test function over 80 lines (a
// function that is a table of data may be longer when its doc comment says
// "A table"), and the imports between the project's layers:
//
//   - the event contract (pkg/events) imports no NATS client and no HTTP client;
//   - no service imports another service, and nothing in pkg imports a
//     service or the CLI;
//   - the CLI imports a service package only where it runs it: internal/dev
//     and internal/e2etest (the stacks of dev and of the tests), and
//     build.go (the standalone build runs the builder's code).
//
// Usage: go run ./scripts/shape [ROOT]   (ROOT: the repository, default .)
package main

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

const (
	maxFileLines = 600
	maxFuncLines = 80
	module       = "github.com/digestline/digestline"
)

func main() {
	root := "."
	if len(os.Args) > 1 {
		root = os.Args[1]
	}
	problems, err := check(root)
	if err != nil {
		fmt.Fprintln(os.Stderr, "shape:", err)
		os.Exit(2)
	}
	for _, p := range problems {
		fmt.Println(p)
	}
	if len(problems) > 0 {
		fmt.Fprintf(os.Stderr, "shape: %d problems (see docs/architecture.md, The shape of the code)\n", len(problems))
		os.Exit(1)
	}
}

func check(root string) ([]string, error) {
	var problems []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); path != root && (strings.HasPrefix(n, ".") || n == "testdata" || n == "bin") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		p, err := checkFile(path)
		problems = append(problems, p...)
		return err
	})
	if err != nil {
		return nil, err
	}
	imports, err := checkImports(root)
	if err != nil {
		return nil, err
	}
	cli, err := checkCLIImports(root)
	if err != nil {
		return nil, err
	}
	links, err := checkLinks(root)
	return append(append(append(problems, imports...), cli...), links...), err
}

// checkFile reports a file over maxFileLines and its functions over maxFuncLines.
func checkFile(path string) ([]string, error) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, nil, parser.ParseComments)
	if err != nil {
		return nil, err
	}
	var problems []string
	if n := fset.File(f.Pos()).LineCount(); n > maxFileLines {
		problems = append(problems, fmt.Sprintf("%s: %d lines (at most %d): split it by what it does", path, n, maxFileLines))
	}
	for _, decl := range f.Decls {
		fn, ok := decl.(*ast.FuncDecl)
		if !ok || fn.Body == nil {
			continue
		}
		n := fset.Position(fn.End()).Line - fset.Position(fn.Pos()).Line + 1
		if n > maxFuncLines && !isTable(fn) {
			problems = append(problems, fmt.Sprintf("%s:%d: func %s is %d lines (at most %d)", path, fset.Position(fn.Pos()).Line, fn.Name.Name, n, maxFuncLines))
		}
	}
	return problems, nil
}

// isTable reports whether a function's doc comment says it is a table of data.
func isTable(fn *ast.FuncDecl) bool {
	return fn.Doc != nil && strings.Contains(fn.Doc.Text(), "A table")
}

// checkImports lists every package of the workspace with its imports (go
// list -deps for the contract) and checks the rules between layers.
func checkImports(root string) ([]string, error) {
	var problems []string
	out, err := goList(root, "-f", "{{.ImportPath}} {{join .Imports \" \"}}", "all")
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 || !strings.HasPrefix(fields[0], module+"/") {
			continue
		}
		pkg := strings.TrimPrefix(fields[0], module+"/")
		for _, imp := range fields[1:] {
			if p := layerRule(pkg, strings.TrimPrefix(imp, module+"/")); p != "" {
				problems = append(problems, fmt.Sprintf("%s imports %s: %s", pkg, imp, p))
			}
		}
	}
	deps, err := goList(root, "-deps", module+"/pkg/events")
	if err != nil {
		return nil, err
	}
	for _, dep := range strings.Fields(deps) {
		if dep == "net/http" || strings.HasPrefix(dep, "github.com/nats-io/") {
			problems = append(problems, fmt.Sprintf("pkg/events (the contract) depends on %s: a deployer importing the contract must not pull in a NATS or HTTP client", dep))
		}
	}
	return problems, nil
}

// layerRule says why package pkg may not import imp, or "".
func layerRule(pkg, imp string) string {
	service := func(p string) string {
		if rest, ok := strings.CutPrefix(p, "services/"); ok {
			return strings.SplitN(rest, "/", 2)[0]
		}
		return ""
	}
	switch {
	case service(imp) == "":
		return ""
	case strings.HasPrefix(pkg, "pkg/"):
		return "a library never imports a service"
	case service(pkg) != "" && service(pkg) != service(imp):
		return "a service never imports another service: share through pkg/"
	}
	return ""
}

// cliRunsServices is where in the CLI a service may be imported: the files
// that run one (dev's stack, the tests' stacks, the standalone build).
func cliRunsServices(file string) bool {
	return strings.HasPrefix(file, "cmd/digestline/internal/dev/") || strings.HasPrefix(file, "cmd/digestline/internal/e2etest/") ||
		file == "cmd/digestline/build.go"
}

// checkCLIImports checks each non-test file of the CLI imports a service
// only where it runs it.
func checkCLIImports(root string) ([]string, error) {
	var problems []string
	err := filepath.WalkDir(filepath.Join(root, "cmd"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		for _, imp := range f.Imports {
			p := strings.Trim(imp.Path.Value, `"`)
			if strings.HasPrefix(p, module+"/services/") && !cliRunsServices(filepath.ToSlash(rel)) {
				problems = append(problems, fmt.Sprintf("%s imports %s: the CLI imports a service only where it runs it (internal/dev, internal/e2etest, build.go); its types belong in pkg/", rel, p))
			}
		}
		return nil
	})
	return problems, err
}

func goList(dir string, args ...string) (string, error) {
	cmd := exec.Command("go", append([]string{"list"}, args...)...)
	cmd.Dir = dir
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go list %s: %w", strings.Join(args, " "), err)
	}
	return string(out), nil
}
