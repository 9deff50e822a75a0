package reporter

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/digestline/digestline/pkg/api"
	"github.com/digestline/digestline/pkg/bus"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/index"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/nats-io/nats.go/jetstream"
)

// store keeps promotion records, verified digests and history in
// JetStream KV.
type store struct {
	promotions jetstream.KeyValue // <env>.<repo>: the current promotion
	verified   jetstream.KeyValue // <repo>.<hex>: a verified digest
	history    jetstream.KeyValue // h.<env>.<repo>.<event id>: promotions and rejections; d.<event id>: decisions
	controls   jetstream.KeyValue // pin.<env>.<repo>: an environment's pin (controls.go); upgrade.<name>: an upgrade done
	pushes     jetstream.KeyValue // <commit>: what the webhooks' deliveries of it started (the builder writes it)
	index      *index.Index       // the history's lists, read a page at a time (history.go)
}

func openStore(ctx context.Context, js jetstream.JetStream) (*store, error) {
	s := &store{}
	for bucket, kv := range map[string]*jetstream.KeyValue{
		events.PromotionsBucket: &s.promotions, events.VerifiedBucket: &s.verified,
		events.HistoryBucket: &s.history, events.ControlsBucket: &s.controls, events.PushesBucket: &s.pushes,
	} {
		var err error
		if *kv, err = js.KeyValue(ctx, bucket); err != nil {
			return nil, fmt.Errorf("open %s (is the bus provisioned?): %w", bucket, err)
		}
	}
	var err error
	if s.index, err = index.Open(ctx, js); err != nil {
		return nil, err
	}
	return s, nil
}

// upgraded says whether the one-time upgrade name of what earlier
// versions stored is done on this bus. The marks are in the controls
// bucket, which nothing ages out, so an upgrade is done once for good.
func (s *store) upgraded(ctx context.Context, name string) (bool, error) {
	_, err := s.controls.Get(ctx, "upgrade."+name)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read whether %s is done: %w", name, err)
	}
	return true, nil
}

// markUpgraded marks the upgrade name done.
func (s *store) markUpgraded(ctx context.Context, name string) error {
	if _, err := s.controls.Put(ctx, "upgrade."+name, []byte(time.Now().UTC().Format(time.RFC3339))); err != nil {
		return fmt.Errorf("mark %s done: %w", name, err)
	}
	return nil
}

// repoToken is a repository as one KV key token: repositories hold ':' and
// '/' that key tokens may not.
func repoToken(repo string) string { return base64.RawURLEncoding.EncodeToString([]byte(repo)) }

// envToken is an environment as a key token: the name itself, or, for a
// name outside the chain's alphabet (a rejected request may carry any), its
// base64url behind a "=" (which no chain name has).
func envToken(env string) string {
	if env == "" || envName.MatchString(env) {
		return env
	}
	return "=" + base64.RawURLEncoding.EncodeToString([]byte(env))
}

// promotionKey is <env>.<repository token>.
func promotionKey(env, repo string) string { return env + "." + repoToken(repo) }

// current returns the environment's current promotion of repo.
func (s *store) current(ctx context.Context, env, repo string) (events.Promotion, bool, error) {
	var rec events.Promotion
	_, found, err := getJSON(ctx, s.promotions, promotionKey(env, repo), &rec)
	return rec, found, err
}

// getJSON reads key into v; found is false when there is no such key.
func getJSON(ctx context.Context, kv jetstream.KeyValue, key string, v any) (revision uint64, found bool, err error) {
	entry, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("read %s: %w", key, err)
	}
	if err := json.Unmarshal(entry.Value(), v); err != nil {
		return 0, false, fmt.Errorf("%s is corrupt: %w", key, err)
	}
	return entry.Revision(), true, nil
}

// Verified is what the reporter knows of a verified digest: the proof the
// "verified" gate asks for, and every environment it reached.
type Verified struct {
	Repository string          `json:"repository"`
	Digest     string          `json:"digest"`
	VerifiedAt time.Time       `json:"verifiedAt"`
	RunID      string          `json:"runId"`
	Evidence   events.Evidence `json:"evidence"`
	// Commit is the git commit the digest was built from, when it was
	// built from git: every promotion of the digest records it.
	Commit string `json:"commit,omitempty"`
	// PromotedTo lists the environments the digest was ever promoted to, so
	// a rollback to it passes the previous-environment gate.
	PromotedTo []string `json:"promotedTo,omitempty"`
	// Trust is what an admitted image was proven with: its promotions'
	// verifications prove it with the same.
	Trust *events.Trust `json:"trust,omitempty"`
}

func verifiedKey(repo, dgst string) string {
	_, hex, _ := strings.Cut(dgst, ":")
	return repoToken(repo) + "." + hex
}

// verifiedDigest returns the digest's verification, if it has one.
func (s *store) verifiedDigest(ctx context.Context, repo, dgst string) (Verified, bool, error) {
	var v Verified
	_, found, err := getJSON(ctx, s.verified, verifiedKey(repo, dgst), &v)
	return v, found, err
}

// markVerified keeps the first verification of a digest (its evidence names
// the build that made it) and, with env, adds env to where it was promoted.
// A verification kept without a commit (its build's source was not git, or
// it was kept by a version that carried none) takes the first commit a
// later one names: the same bytes, built from that commit.
func (s *store) markVerified(ctx context.Context, v Verified, env string) error {
	key := verifiedKey(v.Repository, v.Digest)
	for {
		var cur Verified
		rev, found, err := getJSON(ctx, s.verified, key, &cur)
		if err != nil {
			return err
		}
		changed := !found
		if !found {
			cur = v
		}
		if cur.Commit == "" && v.Commit != "" {
			cur.Commit, changed = v.Commit, true
		}
		if env != "" && !slices.Contains(cur.PromotedTo, env) {
			cur.PromotedTo, changed = append(cur.PromotedTo, env), true
		}
		if !changed {
			return nil // nothing new
		}
		b, err := json.Marshal(cur)
		if err != nil {
			return err
		}
		_, raced, err := bus.PutRevision(ctx, s.verified, key, b, rev)
		if err != nil {
			return fmt.Errorf("record verification of %s: %w", v.Digest, err)
		}
		if !raced {
			return nil
		}
		// a concurrent writer got there first: read again and merge
	}
}

// decision is what the gates said to one promotion request.
type decision struct {
	Approval     *events.Approval        `json:"approval,omitempty"`
	Release      *events.ReleaseApproval `json:"release,omitempty"`
	Rejection    *events.Rejection       `json:"rejection,omitempty"`
	Supersession *events.Supersession    `json:"supersession,omitempty"`
}

// decide stores d as the decision on request id unless one is stored
// already, and returns the stored one: a request is decided once, however
// often it is delivered.
func (s *store) decide(ctx context.Context, requestID string, d decision) (decision, error) {
	key := "d." + requestID
	b, err := json.Marshal(d)
	if err != nil {
		return d, err
	}
	if _, err := s.history.Create(ctx, key, b); err == nil {
		return d, nil
	} else if !errors.Is(err, jetstream.ErrKeyExists) {
		return d, fmt.Errorf("record decision: %w", err)
	}
	var stored decision
	if _, _, err := getJSON(ctx, s.history, key, &stored); err != nil {
		return d, err
	}
	return stored, nil
}

// decided returns the decision stored for request id, if any.
func (s *store) decided(ctx context.Context, requestID string) (decision, bool, error) {
	var d decision
	_, found, err := getJSON(ctx, s.history, "d."+requestID, &d)
	return d, found, err
}

// record makes rec the current promotion of its environment and
// repository, and returns what is current and whether this run made it so.
// A redelivery of the run that made it finds its own record (made: true,
// so what follows is done again, idempotently). Another run promoting the
// digest the environment already holds changes nothing (made: false): the
// record keeps its time, run and previous digest, and is no new history.
// Concurrent writers are serialized by the KV revision.
func (s *store) record(ctx context.Context, rec events.Promotion) (current events.Promotion, made bool, err error) {
	key := promotionKey(rec.Environment, rec.Repository)
	var cur events.Promotion
	rev, found, err := getJSON(ctx, s.promotions, key, &cur)
	if err != nil {
		return rec, false, err
	}
	if found && cur.Digest == rec.Digest {
		return cur, cur.RunID == rec.RunID, nil
	}
	if found && !rec.RequestedAt.IsZero() && cur.RequestedAt.After(rec.RequestedAt) {
		return rec, false, &recordedLater{current: cur}
	}
	if found && rec.PreviousDigest == "" {
		rec.PreviousDigest = cur.Digest
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return rec, false, err
	}
	if found {
		_, err = s.promotions.Update(ctx, key, b, rev)
	} else {
		_, err = s.promotions.Create(ctx, key, b)
	}
	if err != nil {
		return rec, false, fmt.Errorf("write promotion %s/%s (a concurrent writer is retried): %w", rec.Environment, rec.Repository, err)
	}
	return rec, true, nil
}

// recordedLater is record's answer for a promotion older than the
// environment's current one: the tag moved for both, in order, and the
// newer was recorded first.
type recordedLater struct{ current events.Promotion }

func (e *recordedLater) Error() string {
	return fmt.Sprintf("%s holds %s since run %s, requested later", e.current.Environment, e.current.Digest, e.current.RunID)
}

// list returns the current records for env and repo ("" = any), by
// environment then repository, a page at a time: limit records after the
// place cursor names ("": from the first), and the cursor of the next
// page ("" when none). It lists the bucket's keys (one per environment
// and repository that ever held a promotion, not per promotion) and reads
// the page's records alone.
func (s *store) list(ctx context.Context, env, repo, cursor string, limit int) ([]events.Promotion, string, error) {
	filter := cmp.Or(envToken(env), "*") + "."
	if repo != "" {
		filter += repoToken(repo)
	} else {
		filter += "*"
	}
	after, err := decodePlace(cursor)
	if err != nil {
		return nil, "", err
	}
	lister, err := s.promotions.ListKeysFiltered(ctx, filter)
	if err != nil {
		return nil, "", err
	}
	var places [][2]string // environment token and repository, sortable
	for key := range lister.Keys() {
		e, tok, _ := strings.Cut(key, ".")
		r, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil {
			continue // not a key this store writes
		}
		if p := [2]string{e, string(r)}; cmpPlace(p, after) > 0 {
			places = append(places, p)
		}
	}
	slices.SortFunc(places, cmpPlace)
	next := ""
	if limit > 0 && len(places) > limit {
		places, next = places[:limit], encodePlace(places[limit-1])
	}
	out := []events.Promotion{}
	for _, p := range places {
		var rec events.Promotion
		if _, found, err := getJSON(ctx, s.promotions, p[0]+"."+repoToken(p[1]), &rec); err != nil {
			return nil, "", err
		} else if found { // not deleted since listed
			out = append(out, rec)
		}
	}
	return out, next, nil
}

func cmpPlace(a, b [2]string) int { return cmp.Or(cmp.Compare(a[0], b[0]), cmp.Compare(a[1], b[1])) }

// A place cursor is the last environment and repository of a page.
func encodePlace(p [2]string) string {
	return base64.RawURLEncoding.EncodeToString([]byte("p." + p[0] + "\x00" + p[1]))
}

func decodePlace(c string) ([2]string, error) {
	if c == "" {
		return [2]string{}, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(c)
	if rest, ok := strings.CutPrefix(string(b), "p."); err == nil && ok {
		if e, r, ok := strings.Cut(rest, "\x00"); ok {
			return [2]string{e, r}, nil
		}
	}
	return [2]string{}, fmt.Errorf("%w: cursor %q is not one a page gave (ask again without it)", errBadQuery, c)
}

// splitTarget returns a target's repository and tag ("" when by digest).
func splitTarget(target string) (repo, tag string, err error) {
	ref, err := name.ParseReference(target)
	if err != nil {
		return "", "", err
	}
	if t, ok := ref.(name.Tag); ok {
		tag = t.TagStr()
	}
	return ref.Context().Name(), tag, nil
}

// approvalPrefix is a.<env>.<repo>.<hex>: one key per approver below it.
func approvalPrefix(env, repo, dgst string) string {
	_, hex, _ := strings.Cut(dgst, ":")
	return "a." + envToken(env) + "." + repoToken(repo) + "." + hex
}

// approve records a's approval, once per approver: approving again keeps
// the first record (and its time), which it returns.
func (s *store) approve(ctx context.Context, a api.ApprovalRecord) (api.ApprovalRecord, error) {
	key := approvalPrefix(a.Environment, a.Repository, a.Digest) + "." + repoToken(a.By)
	b, err := json.Marshal(a)
	if err != nil {
		return a, err
	}
	if _, err := s.history.Create(ctx, key, b); err == nil {
		return a, nil
	} else if !errors.Is(err, jetstream.ErrKeyExists) {
		return a, fmt.Errorf("record approval: %w", err)
	}
	var stored api.ApprovalRecord
	_, _, err = getJSON(ctx, s.history, key, &stored)
	return stored, err
}

// approvals lists the approvals of dgst in repo for env, oldest first.
func (s *store) approvals(ctx context.Context, env, repo, dgst string) ([]api.ApprovalRecord, error) {
	out, err := allJSON[api.ApprovalRecord](ctx, s.history, approvalPrefix(env, repo, dgst)+".*")
	slices.SortStableFunc(out, func(a, b api.ApprovalRecord) int { return a.At.Compare(b.At) })
	return out, err
}

// allJSON reads every value under the keys filter matches: for the few
// keys of one digest's approvals, or of the pins.
func allJSON[T any](ctx context.Context, kv jetstream.KeyValue, filter string) ([]T, error) {
	lister, err := kv.ListKeysFiltered(ctx, filter)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", filter, err)
	}
	out := []T{}
	for key := range lister.Keys() {
		var v T
		if _, found, err := getJSON(ctx, kv, key, &v); err != nil {
			return nil, err
		} else if found {
			out = append(out, v)
		}
	}
	return out, nil
}
