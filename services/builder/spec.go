package builder

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/oci"
	"sigs.k8s.io/yaml"
)

// Files read from the root of a build's source. Neither goes into the image.
const (
	SpecFile   = "digestline.yaml"
	IgnoreFile = ".digestlineignore"
)

// maxSpecFile bounds the build files read from an untrusted source.
const maxSpecFile = 1 << 20

// ResolveSpec returns the spec a build of dir uses: digestline.yaml from dir
// when there is one, with every field the request sets taking precedence, and
// the patterns of .digestlineignore added to ignore. Unknown keys in the file
// are errors, so a typo does not silently build the wrong image.
func ResolveSpec(dir string, req events.BuildSpec) (events.BuildSpec, error) {
	var spec events.BuildSpec
	raw, err := readSmall(filepath.Join(dir, SpecFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return spec, err
	default:
		if err := yaml.UnmarshalStrict(raw, &spec); err != nil {
			return spec, fmt.Errorf("%s: %w", SpecFile, err)
		}
	}
	fileIgnore := slices.Clone(spec.Ignore) // overlay decodes into spec.Ignore's backing array
	if err := overlay(&spec, req); err != nil {
		return spec, err
	}
	ignored, err := readIgnoreFile(filepath.Join(dir, IgnoreFile))
	if err != nil {
		return spec, err
	}
	spec.Ignore = uniq(append(append(append([]string{"/" + SpecFile, "/" + IgnoreFile}, fileIgnore...), req.Ignore...), ignored...))
	return spec, nil
}

// overlay sets on dst every field src sets: src's empty fields are left out
// of its JSON (omitempty), so they keep dst's value.
func overlay(dst *events.BuildSpec, src events.BuildSpec) error {
	b, err := json.Marshal(src)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, dst)
}

func readSmall(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var buf bytes.Buffer
	if n, err := buf.ReadFrom(io.LimitReader(f, maxSpecFile+1)); err != nil {
		return nil, fmt.Errorf("read %s: %w", filepath.Base(p), err)
	} else if n > maxSpecFile {
		return nil, fmt.Errorf("%s is larger than %d bytes", filepath.Base(p), maxSpecFile)
	}
	return buf.Bytes(), nil
}

// readIgnoreFile reads one pattern a line; blank lines and # comments are skipped.
func readIgnoreFile(p string) ([]string, error) {
	raw, err := readSmall(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" && !strings.HasPrefix(line, "#") {
			out = append(out, line)
		}
	}
	return out, sc.Err()
}

func uniq(s []string) []string {
	out := s[:0]
	for _, v := range s {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

// ImageConfig is the image configuration a build spec asks for, stamped
// with created: where the contract's spec meets the OCI builder.
func ImageConfig(s events.BuildSpec, created time.Time) (oci.ImageConfig, error) {
	platform, err := oci.ParsePlatform(s.Platform)
	if err != nil {
		return oci.ImageConfig{}, err
	}
	format := oci.LayerFormat{Compression: oci.Compression(s.Compression), Level: s.CompressionLevel}
	switch s.MediaTypes {
	case "", "oci":
	case "docker":
		format.Docker = true
	default:
		return oci.ImageConfig{}, fmt.Errorf("media types %q: want oci or docker", s.MediaTypes)
	}
	if err := format.Validate(); err != nil {
		return oci.ImageConfig{}, err
	}
	return oci.ImageConfig{
		Entrypoint: s.Entrypoint, Cmd: s.Cmd, Env: s.Env, WorkingDir: s.WorkingDir, User: s.User,
		ExposedPorts: s.Ports, Labels: s.Labels, Annotations: s.Annotations, Platform: platform,
		Created: created, Layers: s.Layers, Ignore: s.Ignore, Format: format,
	}, nil
}
