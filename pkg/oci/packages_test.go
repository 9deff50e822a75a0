package oci_test

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/digestline/digestline/pkg/oci"
	"github.com/digestline/digestline/pkg/tooltest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// TestSBOMsListPackagesWithPurls: the SBOMs name what scanners match —
// Go modules from a Go binary's build info, installed Debian packages from
// dpkg's status, Python distributions, npm packages (scoped too) — each
// with its purl, in SPDX 2.3 and in CycloneDX 1.5. What is not a package
// (a package.json inside a package, a package dpkg removed) is not listed.
func TestSBOMsListPackagesWithPurls(t *testing.T) {
	t.Parallel()
	// A Go binary built from a module, with its build info: crane.
	goBinary, err := os.ReadFile(tooltest.Find(t, "crane"))
	if err != nil {
		t.Fatal(err)
	}
	img, l := build(t, files(t, map[string]string{
		"usr/bin/tool": string(goBinary),
		"var/lib/dpkg/status": "Package: libc6\nStatus: install ok installed\nArchitecture: amd64\nVersion: 2.36-9+deb12u4\nDescription: GNU C Library\n continued line: not a field\n\n" +
			"Package: removed\nStatus: deinstall ok config-files\nVersion: 1.0\n",
		"usr/lib/python3/site-packages/Requests_OAuth-2.31.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: Requests_OAuth\nVersion: 2.31.0\n\nName: not a header\n",
		"app/node_modules/@babel/core/package.json":                              `{"name": "@babel/core", "version": "7.24.0"}`,
		"app/node_modules/lodash/package.json":                                   `{"name": "lodash", "version": "4.17.21"}`,
		"app/node_modules/lodash/fp/package.json":                                `{"name": "lodash-fp-internal", "version": "0.0.0"}`,
	}), oci.ImageConfig{})
	sboms, err := oci.BuildSBOMs(context.Background(), img, "example.com/app", time.Time{}, l)
	if err != nil || len(sboms) != 2 {
		t.Fatalf("%d SBOMs, %v", len(sboms), err)
	}
	var spdx struct {
		Packages []struct {
			Name         string `json:"name"`
			ExternalRefs []struct {
				Type    string `json:"referenceType"`
				Locator string `json:"referenceLocator"`
			} `json:"externalRefs"`
		} `json:"packages"`
	}
	var cdx struct {
		BOMFormat   string `json:"bomFormat"`
		SpecVersion string `json:"specVersion"`
		Components  []struct {
			PURL string `json:"purl"`
		} `json:"components"`
	}
	for i, doc := range []any{&spdx, &cdx} {
		var m v1.Manifest
		readJSON(t, l, sboms[i].Root, &m)
		if want := []string{oci.MediaTypeSPDX, oci.MediaTypeCycloneDX}[i]; m.ArtifactType != want || m.Subject == nil || m.Subject.Digest != img.Root.Digest {
			t.Fatalf("SBOM %d: %+v, want %s about the image", i, m, want)
		}
		readJSON(t, l, m.Layers[0], doc)
	}
	var spdxPurls, cdxPurls []string
	for _, p := range spdx.Packages {
		for _, r := range p.ExternalRefs {
			if r.Type == "purl" {
				spdxPurls = append(spdxPurls, r.Locator)
			}
		}
	}
	for _, c := range cdx.Components {
		cdxPurls = append(cdxPurls, c.PURL)
	}
	if cdx.BOMFormat != "CycloneDX" || cdx.SpecVersion != "1.5" {
		t.Errorf("CycloneDX %s %s", cdx.BOMFormat, cdx.SpecVersion)
	}
	for _, want := range []string{
		"pkg:deb/debian/libc6@2.36-9+deb12u4?arch=amd64",
		"pkg:pypi/requests-oauth@2.31.0",
		"pkg:npm/%40babel/core@7.24.0",
		"pkg:npm/lodash@4.17.21",
		"pkg:golang/github.com/google/go-containerregistry@v0.22.1", // crane's main module
		"pkg:golang/github.com/spf13/cobra@",                        // a module crane is built with
		"pkg:golang/stdlib@",
	} {
		for name, purls := range map[string][]string{"SPDX": spdxPurls, "CycloneDX": cdxPurls} {
			if !slices.ContainsFunc(purls, func(p string) bool { return strings.HasPrefix(p, want) }) {
				t.Errorf("%s lists no %s: %v", name, want, purls)
			}
		}
	}
	for _, not := range []string{"removed", "lodash-fp-internal"} {
		if slices.ContainsFunc(cdxPurls, func(p string) bool { return strings.Contains(p, not) }) {
			t.Errorf("%s is listed: %v", not, cdxPurls)
		}
	}
}
