package reporter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/digestline/digestline/pkg/api"
	"github.com/digestline/digestline/pkg/service"
	"github.com/google/go-containerregistry/pkg/name"
	"go.yaml.in/yaml/v3"
)

// GCSchedule is the reporter's scheduled garbage collection (the file
// DIGESTLINE_GC names; off without one): every Every, each repository is
// collected as digestline gc would, but as a dry run until Delete says
// otherwise: its plan is logged and kept as its last report
// (GET /v1/gc/{repository}), and nothing is deleted until a person has
// read one and turned deletes on.
type GCSchedule struct {
	Every        time.Duration  `yaml:"every"`
	Delete       bool           `yaml:"delete"`
	Repositories []GCRepository `yaml:"repositories"`
}

// GCRepository is one repository of a GCSchedule, with what it keeps
// (api.DefaultKeepLast and api.DefaultKeepDays when not set).
type GCRepository struct {
	Repository string `yaml:"repository"`
	KeepLast   *int   `yaml:"keepLast"`
	KeepDays   *int   `yaml:"keepDays"`
}

// LoadGCSchedule reads the schedule at path; every error names the file.
func LoadGCSchedule(path string) (*GCSchedule, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("gc schedule: %w", err)
	}
	var s GCSchedule
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("gc schedule %s: %w", path, err)
	}
	if s.Every == 0 {
		s.Every = 24 * time.Hour
	}
	if s.Every < time.Second {
		return nil, fmt.Errorf("gc schedule %s: every %s: want a second or more (e.g. 24h)", path, s.Every)
	}
	if len(s.Repositories) == 0 {
		return nil, fmt.Errorf("gc schedule %s: names no repository (repositories: [{repository: registry/path}])", path)
	}
	for _, r := range s.Repositories {
		if _, err := name.NewRepository(r.Repository); err != nil {
			return nil, fmt.Errorf("gc schedule %s: repository %q: want registry/path: %w", path, r.Repository, err)
		}
		for _, n := range []*int{r.KeepLast, r.KeepDays} {
			if n != nil && *n < 0 {
				return nil, fmt.Errorf("gc schedule %s: %s: keepLast and keepDays are 0 or more", path, r.Repository)
			}
		}
	}
	return &s, nil
}

// collectEvery runs the schedule until ctx ends: at start, then every
// interval. A repository another collection holds (another replica's) is
// left to it.
func (r *reporter) collectEvery(ctx context.Context, s *GCSchedule) error {
	tick := time.NewTicker(s.Every)
	defer tick.Stop()
	for {
		for _, repo := range s.Repositories {
			rep, err := r.collect(ctx, api.GCRequest{Repository: repo.Repository, KeepLast: repo.KeepLast, KeepDays: repo.KeepDays, DryRun: !s.Delete})
			switch {
			case errors.Is(err, errGCBusy) || ctx.Err() != nil:
			case err != nil:
				r.cfg.Log().Warn(fmt.Sprintf("scheduled gc of %s: %v (tried again in %s)", repo.Repository, err, s.Every), "run_id", rep.RunID)
			case rep.DryRun:
				r.cfg.Log().Info(fmt.Sprintf("scheduled gc of %s, a dry run: %d manifests would be deleted (GET /v1/gc/%s; set delete: true in the schedule to delete)",
					rep.Repository, count(rep, api.GCDelete), rep.Repository), "run_id", rep.RunID)
			default:
				r.cfg.Log().Info(fmt.Sprintf("scheduled gc of %s: %d deleted, %d kept, %d skipped", rep.Repository, rep.Deleted, rep.Kept, rep.Skipped), "run_id", rep.RunID)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

func count(rep api.GCReport, action string) int {
	n := 0
	for _, it := range rep.Items {
		if it.Action == action {
			n++
		}
	}
	return n
}

func gcReportKey(repo string) string { return "gcreport." + repoToken(repo) }

// lastGC answers GET /v1/gc/{repo...}: the repository's last collection's
// report, by hand or scheduled, dry run or not (404 when none ran).
func (r *reporter) lastGC(w http.ResponseWriter, req *http.Request) {
	repo, err := name.NewRepository(req.PathValue("repo"))
	if err != nil {
		service.WriteError(w, http.StatusBadRequest, fmt.Sprintf("repository %q: want registry/path", req.PathValue("repo")))
		return
	}
	var rep api.GCReport
	_, found, err := getJSON(req.Context(), r.store.controls, gcReportKey(repo.Name()), &rep)
	writeRecord(w, rep, found, err, fmt.Sprintf("no garbage collection of %s ran yet (digestline gc %s --dry-run)", repo.Name(), repo.Name()))
}
