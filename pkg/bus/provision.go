package bus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/digestline/digestline/pkg/events"
	"github.com/nats-io/nats.go/jetstream"
)

// ProvisionOptions size the JetStream resources.
type ProvisionOptions struct {
	// Replicas is the replication factor (1 for one server, 3 for a cluster).
	Replicas int
	// DuplicateWindow is how long JetStream remembers message ids; a
	// redelivered handler that re-publishes within it stores nothing new.
	DuplicateWindow time.Duration
	// Events bounds the run events (DefaultEventRetention when zero),
	// DeadLetters the dead letters (DefaultDeadLetterRetention), History
	// the promotion history and decisions (kept for good when zero).
	// RetentionFromEnv reads what a user set.
	Events, DeadLetters, History Retention
}

func (o ProvisionOptions) withDefaults() ProvisionOptions {
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.DuplicateWindow <= 0 {
		o.DuplicateWindow = 30 * time.Minute
	}
	if o.Events == (Retention{}) {
		o.Events = DefaultEventRetention
	}
	if o.DeadLetters == (Retention{}) {
		o.DeadLetters = DefaultDeadLetterRetention
	}
	return o
}

// Provision creates or updates the streams, the blob Object Store and the KV
// buckets. It is idempotent: every service runs it at start.
func Provision(ctx context.Context, js jetstream.JetStream, opts ProvisionOptions) error {
	o := opts.withDefaults()
	for _, cfg := range streamConfigs(o) {
		if err := ensureStream(ctx, js, cfg); err != nil {
			return fmt.Errorf("provision stream %s: %w", cfg.Name, err)
		}
	}
	if err := ensureObjectStore(ctx, js, jetstream.ObjectStoreConfig{
		Bucket:      events.BlobBucket,
		Description: "digestline blobs between builder and pusher, keyed by digest",
		Storage:     jetstream.FileStorage,
		Replicas:    o.Replicas,
		TTL:         o.Events.MaxAge, // a blob outlives no run that needs it
	}); err != nil {
		return fmt.Errorf("provision object store %s: %w", events.BlobBucket, err)
	}
	buckets := []jetstream.KeyValueConfig{
		{Bucket: events.PromotionsBucket, Description: "current digest per environment and repository", History: 64, Storage: jetstream.FileStorage, Replicas: o.Replicas},
		{Bucket: events.VerifiedBucket, Description: "verified digests per repository, and where they were promoted", Storage: jetstream.FileStorage, Replicas: o.Replicas},
		{Bucket: events.HistoryBucket, Description: "every promotion, rejection and promotion decision", Storage: jetstream.FileStorage, Replicas: o.Replicas, TTL: o.History.MaxAge},
		{Bucket: events.TagsBucket, Description: "the pipeline's last move of each tag, and the move in progress", Storage: jetstream.FileStorage, Replicas: o.Replicas},
		{Bucket: events.NotifiedBucket, Description: "the notifications each webhook was sent", Storage: jetstream.FileStorage, Replicas: o.Replicas, TTL: o.Events.MaxAge},
		{Bucket: events.ControlsBucket, Description: "pins and freezes of environments, until they end or someone lifts them", Storage: jetstream.FileStorage, Replicas: o.Replicas},
		{Bucket: events.RunsBucket, Description: "each run's summary, as it started and as it ended", Storage: jetstream.FileStorage, Replicas: o.Replicas, TTL: o.History.MaxAge},
		{Bucket: events.PushesBucket, Description: "what the webhooks' deliveries of each commit started: its runs, or why none", Storage: jetstream.FileStorage, Replicas: o.Replicas, TTL: o.Events.MaxAge},
		{Bucket: events.WatchesBucket, Description: "each watched repository's tags, and the digest each was last admitted at", Storage: jetstream.FileStorage, Replicas: o.Replicas},
	}
	for _, cfg := range buckets {
		if err := ensureStream(ctx, js, kvStream(cfg, directReads(o.Replicas))); err != nil {
			return fmt.Errorf("provision key-value bucket %s: %w", cfg.Bucket, err)
		}
	}
	return nil
}

// streamConfigs are the streams' configurations: the events, the run log,
// the dead letters and the index.
func streamConfigs(o ProvisionOptions) []jetstream.StreamConfig {
	// The stream takes the contract's events and nothing else: a publish on
	// any other subject is refused (no responders) instead of being stored
	// where no consumer reads it.
	var subjects []string
	for _, n := range events.Names() {
		subjects = append(subjects, n.Filter())
	}
	return []jetstream.StreamConfig{{
		Name:       events.StreamName,
		Subjects:   subjects,
		Storage:    jetstream.FileStorage,
		Replicas:   o.Replicas,
		Duplicates: duplicates(o.DuplicateWindow, o.Events.MaxAge),
		MaxAge:     o.Events.MaxAge,
		MaxBytes:   o.Events.MaxBytes,
	}, {
		// One run's events, read a run at a time (package runs): the
		// server copies each event here a moment after it is stored, on a
		// subject that starts with its run id (events.RunLogFilter).
		Name:        events.RunLogStream,
		Description: "the run events again, by run: runlog.<run id>.<event>",
		Sources:     []*jetstream.StreamSource{runLogSource()},
		Storage:     jetstream.FileStorage,
		Replicas:    o.Replicas,
		Duplicates:  duplicates(o.DuplicateWindow, o.Events.MaxAge),
		MaxAge:      o.Events.MaxAge,
		MaxBytes:    o.Events.MaxBytes,
		AllowDirect: directReads(o.Replicas), // a run is one request (package runs)
	}, {
		Name:       events.DeadLetterStream,
		Subjects:   []string{events.DeadLetterPrefix + ">"},
		Storage:    jetstream.FileStorage,
		Replicas:   o.Replicas,
		Duplicates: duplicates(o.DuplicateWindow, o.DeadLetters.MaxAge),
		MaxAge:     o.DeadLetters.MaxAge,
		MaxBytes:   o.DeadLetters.MaxBytes,
	}, {
		// The lists the API reads a page at a time (package index), kept as
		// long as the history they index, read as the buckets (directReads).
		Name:        events.IndexStream,
		Description: "newest-first lists of the history and the runs, read a page at a time",
		Subjects:    []string{"index.>"},
		Storage:     jetstream.FileStorage,
		Replicas:    o.Replicas,
		Duplicates:  duplicates(o.DuplicateWindow, o.History.MaxAge),
		MaxAge:      o.History.MaxAge,
		AllowDirect: directReads(o.Replicas),
	}}
}

// duplicates is the duplicate window of a stream that keeps messages for
// maxAge (zero: for good): the server refuses a window longer than that.
func duplicates(window, maxAge time.Duration) time.Duration {
	if maxAge > 0 && maxAge < window {
		return maxAge
	}
	return window
}

// runLogSource sources the events stream into the run log, each event on
// its run's subject.
func runLogSource() *jetstream.StreamSource {
	src := &jetstream.StreamSource{Name: events.StreamName}
	for _, t := range events.RunLogTransforms() {
		src.SubjectTransforms = append(src.SubjectTransforms, jetstream.SubjectTransformConfig{Source: t[0], Destination: t[1]})
	}
	return src
}

// ensureStream creates the stream, or updates it when its configuration
// differs from cfg in what digestline sets, and leaves it alone when it is
// as cfg says: services provision at every start, and an update racing a
// consumer's creation on the same stream trips a data race inside
// nats-server (v2.15.2, fileStore.UpdateConfig against ConsumerStore).
//
// Services that start at once on a new bus all find no stream: each then
// creates it, never updates it (CreateOrUpdateStream tries an update
// first), since two updates at once trip another data race in the server.
// Creating what is there already as cfg says is no error; one that
// differs is read again, and updated.
func ensureStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) error {
	st, err := js.Stream(ctx, cfg.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		if _, err = js.CreateStream(ctx, cfg); !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return err
		}
		st, err = js.Stream(ctx, cfg.Name) // another provisioner made it, otherwise
	}
	if err != nil {
		return err
	}
	if sameStream(cfg, st.CachedInfo().Config) {
		return nil
	}
	_, err = js.UpdateStream(ctx, cfg)
	return err
}

// ensureObjectStore is ensureStream for an object store.
func ensureObjectStore(ctx context.Context, js jetstream.JetStream, cfg jetstream.ObjectStoreConfig) error {
	for range 2 {
		obs, err := js.ObjectStore(ctx, cfg.Bucket)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			if _, err := js.CreateObjectStore(ctx, cfg); !errors.Is(err, jetstream.ErrBucketExists) && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
				return err
			}
			continue // another provisioner made it: look at it
		}
		if err != nil {
			return err
		}
		st, err := obs.Status(ctx)
		if err != nil {
			return err
		}
		if st.Description() == cfg.Description && st.TTL() == cfg.TTL && st.Storage() == cfg.Storage && st.Replicas() == max(cfg.Replicas, 1) {
			return nil
		}
		_, err = js.UpdateObjectStore(ctx, cfg)
		return err
	}
	return fmt.Errorf("object store %s was made, and is gone again", cfg.Bucket)
}

// sameStream reports whether have is configured as want in every field
// digestline sets (a limit want leaves at zero is the server's -1).
func sameStream(want, have jetstream.StreamConfig) bool {
	limit := func(v int64) int64 {
		if v == 0 {
			return -1
		}
		return v
	}
	return want.Description == have.Description && slices.Equal(want.Subjects, have.Subjects) &&
		want.Storage == have.Storage && max(want.Replicas, 1) == max(have.Replicas, 1) &&
		want.Duplicates == have.Duplicates && want.MaxAge == have.MaxAge && want.Retention == have.Retention &&
		limit(want.MaxMsgsPerSubject) == limit(have.MaxMsgsPerSubject) && limit(want.MaxBytes) == limit(have.MaxBytes) &&
		limit(int64(want.MaxMsgSize)) == limit(int64(have.MaxMsgSize)) && limit(want.MaxMsgs) == limit(have.MaxMsgs) &&
		limit(int64(want.MaxConsumers)) == limit(int64(have.MaxConsumers)) &&
		want.AllowRollup == have.AllowRollup && want.DenyDelete == have.DenyDelete &&
		want.AllowDirect == have.AllowDirect && want.Discard == have.Discard &&
		slices.EqualFunc(want.Sources, have.Sources, func(w, h *jetstream.StreamSource) bool {
			return w.Name == h.Name && slices.Equal(w.SubjectTransforms, h.SubjectTransforms)
		})
}

// directReads says whether reads of the buckets, the index and the run
// log may be direct gets, answered by whichever server holds a copy,
// rather than requests to the stream's leader through the JetStream API
// (which also publishes an API advisory for each), or, for the run log,
// an ordered consumer made for each read. With one copy they are the same
// server and see every acknowledged write, at a third of the cost (no
// JSON either way, no advisory): a run reads a bucket or an index head
// two dozen times. With replicas a follower that lags (or a node catching
// up after a restart) would answer with an older value: the reporter then
// read "never verified" for a digest the verifier had stored a moment
// before, and decided a gate on it. So with replicas every read goes to
// the leader.
func directReads(replicas int) bool { return max(replicas, 1) == 1 }

// kvStream is the stream behind a key-value bucket, as
// jetstream.CreateOrUpdateKeyValue makes it, with direct gets as
// directReads says.
func kvStream(cfg jetstream.KeyValueConfig, direct bool) jetstream.StreamConfig {
	duplicates := 2 * time.Minute
	if cfg.TTL > 0 && cfg.TTL < duplicates {
		duplicates = cfg.TTL
	}
	return jetstream.StreamConfig{
		Name:              "KV_" + cfg.Bucket,
		Description:       cfg.Description,
		Subjects:          []string{"$KV." + cfg.Bucket + ".>"},
		MaxMsgsPerSubject: int64(max(cfg.History, 1)),
		MaxBytes:          -1,
		MaxAge:            cfg.TTL,
		MaxMsgSize:        -1,
		Storage:           cfg.Storage,
		Replicas:          max(cfg.Replicas, 1),
		AllowRollup:       true,
		DenyDelete:        true,
		Duplicates:        duplicates,
		MaxMsgs:           -1,
		MaxConsumers:      -1,
		AllowDirect:       direct,
		Discard:           jetstream.DiscardNew,
	}
}

// FollowFrom returns where a follower must start so it misses nothing
// published from now on: the stream's next sequence. (An ordered consumer
// that starts with DeliverNew and is reset before its first message would
// start "new" again and lose what came in between; a start sequence
// survives resets.)
func FollowFrom(ctx context.Context, js jetstream.JetStream) (jetstream.OrderedConsumerConfig, error) {
	s, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		return jetstream.OrderedConsumerConfig{}, fmt.Errorf("open %s (is the bus provisioned?): %w", events.StreamName, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return jetstream.OrderedConsumerConfig{}, err
	}
	return jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: info.State.LastSeq + 1}, nil
}
