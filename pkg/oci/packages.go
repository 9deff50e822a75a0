package oci

import (
	"bufio"
	"bytes"
	"debug/buildinfo"
	"encoding/json"
	"fmt"
	"net/url"
	"path"
	"strings"
	"time"
)

// Package is a software package found in an image's files, named as
// scanners match it: by its package URL (https://github.com/package-url/purl-spec).
type Package struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	PURL    string `json:"purl"`
	// Source is the file it was read from: a Go binary, dpkg's status, a
	// Python dist-info METADATA, an npm package.json.
	Source string `json:"source"`
}

// maxPackageFile bounds what is read of a file to find packages in it: a Go
// binary's build info is read from the binary itself.
const maxPackageFile = 256 << 20

// packageFile reports whether path may hold package metadata, judged by
// its name, or by its first bytes for a binary (head: up to 4 bytes).
func packageFile(p string, head []byte) bool {
	switch {
	case p == "/var/lib/dpkg/status", strings.HasPrefix(p, "/var/lib/dpkg/status.d/"):
		return true
	case strings.HasSuffix(p, ".dist-info/METADATA"):
		return true
	case strings.HasSuffix(p, "/package.json") && strings.Contains(p, "/node_modules/"):
		return true
	}
	return bytes.HasPrefix(head, []byte("\x7fELF"))
}

// packagesIn reads the packages the file at path lists.
func packagesIn(p string, data []byte) []Package {
	switch {
	case p == "/var/lib/dpkg/status", strings.HasPrefix(p, "/var/lib/dpkg/status.d/"):
		return dpkgPackages(p, data)
	case strings.HasSuffix(p, ".dist-info/METADATA"):
		return pythonPackage(p, data)
	case strings.HasSuffix(p, "/package.json"):
		return npmPackage(p, data)
	}
	return goPackages(p, data)
}

// mainVersion is the version of a Go binary's own module: the one go
// build stamped (a tag, or a pseudo-version from the commit it was built
// at), else one made from the commit its VCS settings name, as Go makes
// pseudo-versions; "" when nothing says.
func mainVersion(bi *buildinfo.BuildInfo) string {
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, at string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			if t, err := time.Parse(time.RFC3339, s.Value); err == nil {
				at = t.UTC().Format("20060102150405")
			}
		}
	}
	if len(rev) < 12 || at == "" {
		return ""
	}
	return "v0.0.0-" + at + "-" + rev[:12]
}

// goPackages reads a Go binary's build info: its main module and every
// module it was built with.
func goPackages(p string, data []byte) []Package {
	bi, err := buildinfo.Read(bytes.NewReader(data))
	if err != nil {
		return nil // an ELF file that is no Go binary
	}
	var out []Package
	add := func(mod, version string) {
		if mod == "" || version == "" {
			return
		}
		out = append(out, Package{Name: mod, Version: version, PURL: "pkg:golang/" + purlPath(mod) + "@" + url.PathEscape(version), Source: p})
	}
	if main := mainVersion(bi); main != "" {
		add(bi.Main.Path, main)
	} else if bi.Main.Path != "" { // the binary's own module, its version unknown: named all the same
		out = append(out, Package{Name: bi.Main.Path, PURL: "pkg:golang/" + purlPath(bi.Main.Path), Source: p})
	}
	for _, d := range bi.Deps {
		if d.Replace != nil {
			d = d.Replace
		}
		add(d.Path, d.Version)
	}
	out = append(out, Package{Name: "stdlib", Version: bi.GoVersion, PURL: "pkg:golang/stdlib@" + url.PathEscape(strings.TrimPrefix(bi.GoVersion, "go")), Source: p})
	return out
}

// dpkgPackages reads dpkg's status: one stanza per package, those
// installed.
func dpkgPackages(p string, data []byte) []Package {
	var out []Package
	for _, stanza := range strings.Split(string(data), "\n\n") {
		fields := map[string]string{}
		sc := bufio.NewScanner(strings.NewReader(stanza))
		for sc.Scan() {
			line := sc.Text()
			if k, v, ok := strings.Cut(line, ":"); ok && !strings.HasPrefix(line, " ") {
				fields[k] = strings.TrimSpace(v)
			}
		}
		name, version := fields["Package"], fields["Version"]
		if name == "" || version == "" || (fields["Status"] != "" && !strings.HasSuffix(fields["Status"], " installed")) {
			continue
		}
		purl := "pkg:deb/debian/" + url.PathEscape(name) + "@" + url.PathEscape(version)
		if arch := fields["Architecture"]; arch != "" {
			purl += "?arch=" + url.QueryEscape(arch)
		}
		out = append(out, Package{Name: name, Version: version, PURL: purl, Source: p})
	}
	return out
}

// pythonPackage reads an installed distribution's METADATA headers.
func pythonPackage(p string, data []byte) []Package {
	var name, version string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() && sc.Text() != "" { // the headers end at the first blank line
		if v, ok := strings.CutPrefix(sc.Text(), "Name: "); ok {
			name = strings.TrimSpace(v)
		} else if v, ok := strings.CutPrefix(sc.Text(), "Version: "); ok {
			version = strings.TrimSpace(v)
		}
	}
	if name == "" || version == "" {
		return nil
	}
	// PyPI names are case-insensitive, with runs of -_. alike: purl's canonical form.
	canonical := strings.ToLower(strings.NewReplacer("_", "-", ".", "-").Replace(name))
	return []Package{{Name: name, Version: version, PURL: "pkg:pypi/" + url.PathEscape(canonical) + "@" + url.PathEscape(version), Source: p}}
}

// npmPackage reads an installed package's package.json: the one directly
// under node_modules/<name> (or node_modules/@scope/<name>), not those of
// files inside it.
func npmPackage(p string, data []byte) []Package {
	dir := path.Dir(p)
	parent := path.Base(path.Dir(dir))
	if parent != "node_modules" && !(strings.HasPrefix(parent, "@") && path.Base(path.Dir(path.Dir(dir))) == "node_modules") {
		return nil
	}
	var pj struct {
		Name    string `json:"name"`
		Version string `json:"version"`
	}
	if json.Unmarshal(data, &pj) != nil || pj.Name == "" || pj.Version == "" {
		return nil
	}
	return []Package{{Name: pj.Name, Version: pj.Version, PURL: "pkg:npm/" + purlPath(pj.Name) + "@" + url.PathEscape(pj.Version), Source: p}}
}

// purlPath escapes each segment of a slash-separated name (a Go module, a
// scoped npm package: @ is %40).
func purlPath(name string) string {
	segs := strings.Split(name, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
		segs[i] = strings.ReplaceAll(segs[i], "@", "%40")
	}
	return strings.Join(segs, "/")
}

// SBOMPackages reads the packages an SBOM lists (with their purls), from
// CycloneDX JSON or SPDX JSON (mediaType says which).
func SBOMPackages(mediaType string, content []byte) ([]Package, error) {
	var out []Package
	switch mediaType {
	case MediaTypeCycloneDX:
		var doc struct {
			Components []struct {
				Type    string `json:"type"`
				Name    string `json:"name"`
				Version string `json:"version"`
				PURL    string `json:"purl"`
			} `json:"components"`
		}
		if err := json.Unmarshal(content, &doc); err != nil {
			return nil, fmt.Errorf("CycloneDX SBOM: %w", err)
		}
		for _, c := range doc.Components {
			if c.Type != "file" {
				out = append(out, Package{Name: c.Name, Version: c.Version, PURL: c.PURL})
			}
		}
	case MediaTypeSPDX:
		var doc struct {
			Packages []struct {
				Name         string `json:"name"`
				Version      string `json:"versionInfo"`
				ExternalRefs []struct {
					Type    string `json:"referenceType"`
					Locator string `json:"referenceLocator"`
				} `json:"externalRefs"`
			} `json:"packages"`
		}
		if err := json.Unmarshal(content, &doc); err != nil {
			return nil, fmt.Errorf("SPDX SBOM: %w", err)
		}
		for _, p := range doc.Packages {
			for _, r := range p.ExternalRefs {
				if r.Type == "purl" {
					out = append(out, Package{Name: p.Name, Version: p.Version, PURL: r.Locator})
				}
			}
		}
	default:
		return nil, fmt.Errorf("%s is no SBOM format digestline reads (CycloneDX or SPDX JSON)", mediaType)
	}
	return out, nil
}
