package main

import (
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

var updateDocs = flag.Bool("update-docs", false, "rewrite docs/cli.md from the commands")

// TestCLIReferenceIsCurrent: docs/cli.md is what the commands say of
// themselves (go test ./cmd/digestline -run TestCLIReferenceIsCurrent
// -update-docs rewrites it).
func TestCLIReferenceIsCurrent(t *testing.T) {
	var b strings.Builder
	b.WriteString("# CLI reference\n\nGenerated from the commands themselves (`go test ./cmd/digestline -run TestCLIReferenceIsCurrent -update-docs`);\n" +
		"a test fails when it is not current. Variables: [configuration.md](configuration.md).\n")
	writeCommand(&b, newRootCommand())
	const path = "../../docs/cli.md"
	if *updateDocs {
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	have, err := os.ReadFile(path)
	if err != nil || string(have) != b.String() {
		t.Fatalf("docs/cli.md is not current (%v): go test ./cmd/digestline -run TestCLIReferenceIsCurrent -update-docs", err)
	}
}

// writeCommand writes cmd's section, then its subcommands'.
func writeCommand(b *strings.Builder, cmd *cobra.Command) {
	if cmd.Hidden || cmd.Name() == "help" || cmd.Name() == "completion" {
		return
	}
	if cmd.HasParent() {
		fmt.Fprintf(b, "\n## %s\n\n%s\n", cmd.CommandPath(), cmd.Short)
		if cmd.Long != "" {
			fmt.Fprintf(b, "\n%s\n", cmd.Long)
		}
		if cmd.Runnable() {
			fmt.Fprintf(b, "\n```\n%s\n", cmd.UseLine())
			if flags := cmd.NonInheritedFlags().FlagUsagesWrapped(100); flags != "" {
				fmt.Fprintf(b, "\n%s", flags)
			}
			if inherited := cmd.InheritedFlags().FlagUsagesWrapped(100); inherited != "" {
				fmt.Fprintf(b, "\nfrom %s:\n%s", cmd.Parent().CommandPath(), inherited)
			}
			b.WriteString("```\n")
		}
	}
	for _, sub := range cmd.Commands() {
		writeCommand(b, sub)
	}
}

// TestEveryVariableIsDocumented: every DIGESTLINE_ variable the code reads
// is in docs/configuration.md.
func TestEveryVariableIsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	read := regexp.MustCompile(`(?:Getenv|LookupEnv)\("(DIGESTLINE_[A-Z0-9_]+)"\)|\bEnv\("([A-Z0-9_]+)"|\bEnv[A-Za-z]* += "(DIGESTLINE_[A-Z0-9_]+)"`)
	var missing []string
	for _, root := range []string{"../../pkg", "../../services", "."} {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			src, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, m := range read.FindAllStringSubmatch(string(src), -1) {
				name := m[1] + m[3]
				if m[2] != "" {
					name = "DIGESTLINE_" + m[2]
				}
				if !strings.Contains(string(doc), "`"+name+"`") && !slices.Contains(missing, name+" ("+path+")") {
					missing = append(missing, name+" ("+path+")")
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(missing) > 0 {
		t.Errorf("docs/configuration.md lacks %s", strings.Join(missing, ", "))
	}
}
