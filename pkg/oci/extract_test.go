package oci_test

import (
	"archive/tar"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/digestline/digestline/pkg/oci"
)

type entry struct {
	hdr  tar.Header
	body string
}

func tarball(t *testing.T, entries ...entry) *bytes.Reader {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if e.body != "" {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return bytes.NewReader(buf.Bytes())
}

func file(name, body string) entry {
	return entry{hdr: tar.Header{Name: name, Typeflag: tar.TypeReg}, body: body}
}

func TestExtractTarRefusesHostileEntries(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		entries []entry
		names   string // the entry the error must name
	}{
		"dot-dot path":          {[]entry{file("../evil", "x")}, "../evil"},
		"nested dot-dot":        {[]entry{file("a/../../evil", "x")}, "a/../../evil"},
		"absolute path":         {[]entry{file("/etc/evil", "x")}, "/etc/evil"},
		"symlink out, absolute": {[]entry{{hdr: tar.Header{Name: "link", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"}}}, "link"},
		"symlink out, relative": {[]entry{{hdr: tar.Header{Name: "a/link", Typeflag: tar.TypeSymlink, Linkname: "../../outside"}}}, "a/link"},
		"hardlink out":          {[]entry{{hdr: tar.Header{Name: "hl", Typeflag: tar.TypeLink, Linkname: "../outside"}}}, "hl"},
		"write through a symlink planted earlier": {[]entry{
			{hdr: tar.Header{Name: "dir", Typeflag: tar.TypeSymlink, Linkname: "."}},
			{hdr: tar.Header{Name: "esc", Typeflag: tar.TypeSymlink, Linkname: "dir/../.."}},
		}, "esc"},
		"char device": {[]entry{{hdr: tar.Header{Name: "null", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3}}}, "null"},
		"fifo":        {[]entry{{hdr: tar.Header{Name: "pipe", Typeflag: tar.TypeFifo}}}, "pipe"},
		"absurd size": {[]entry{file("big", strings.Repeat("x", 2048))}, "big"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			parent := t.TempDir()
			dir := filepath.Join(parent, "root")
			lim := oci.DefaultExtractLimits
			lim.MaxFileSize = 1024
			err := oci.ExtractTar(tarball(t, tc.entries...), dir, lim)
			if !errors.Is(err, oci.ErrUnsafeEntry) {
				t.Fatalf("ExtractTar = %v, want ErrUnsafeEntry", err)
			}
			if !strings.Contains(err.Error(), `"`+tc.names+`"`) {
				t.Errorf("error %q does not name entry %q", err, tc.names)
			}
			// Nothing landed beside the root.
			got, _ := os.ReadDir(parent)
			if len(got) != 1 || got[0].Name() != "root" {
				t.Errorf("extraction wrote outside its root: %v", got)
			}
		})
	}
}

func TestExtractTarUnpacksAnOrdinaryTree(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	err := oci.ExtractTar(tarball(t,
		entry{hdr: tar.Header{Name: "app/", Typeflag: tar.TypeDir, Mode: 0o755}},
		file("app/main.txt", "hello"),
		entry{hdr: tar.Header{Name: "app/link", Typeflag: tar.TypeSymlink, Linkname: "main.txt"}},
		entry{hdr: tar.Header{Name: "app/hard", Typeflag: tar.TypeLink, Linkname: "app/main.txt"}},
	), dir, oci.DefaultExtractLimits)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"app/main.txt", "app/link", "app/hard"} {
		b, err := os.ReadFile(filepath.Join(dir, p))
		if err != nil || string(b) != "hello" {
			t.Errorf("%s = %q, %v", p, b, err)
		}
	}
}
