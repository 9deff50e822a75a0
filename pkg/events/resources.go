package events

// The JetStream resources of the pipeline.
const (
	// StreamName holds every pipeline event, on digestline.<event>.<run id>.
	StreamName = "DIGESTLINE"
	// RunLogStream holds the same events, sourced from StreamName, on
	// runlog.<run id>.<event>: where one run's events are read.
	RunLogStream = "DIGESTLINE_RUNLOG"
	// DeadLetterStream holds events no handler could process, with the reason.
	DeadLetterStream = "DIGESTLINE_DLQ"
	// DeadLetterPrefix prefixes the original subject of a dead-lettered event.
	DeadLetterPrefix = "dlq."
	// BlobBucket is the Object Store of blobs between builder and pusher, keyed by digest.
	BlobBucket = "DIGESTLINE_BLOBS"
	// PromotionsBucket is the KV bucket of current promotions per environment and repository.
	PromotionsBucket = "DIGESTLINE_PROMOTIONS"
	// VerifiedBucket holds every verified digest per repository: the
	// promotion gates' proof, and where it has been promoted.
	VerifiedBucket = "DIGESTLINE_VERIFIED"
	// HistoryBucket keeps every promotion and rejection, and each promotion
	// request's decision, for good.
	HistoryBucket = "DIGESTLINE_HISTORY"
	// RunsBucket holds each run's summary, from its start, and as it
	// ended: what the API lists, kept as long as the history.
	RunsBucket = "DIGESTLINE_RUNS"
	// TagsBucket holds, per tag the pipeline moves, its last move and the
	// move in progress (package tags): the moves of one tag, in the order
	// they were requested.
	TagsBucket = "DIGESTLINE_TAGS"
	// ControlsBucket holds what promotions into an environment must
	// respect besides the evidence: its pins (a rollback's) and the
	// freezes someone set, kept until they end or someone lifts them.
	ControlsBucket = "DIGESTLINE_CONTROLS"
	// NotifiedBucket remembers which notifications each webhook was sent
	// (package notifier), as long as the events: an event stored twice,
	// or delivered again, is sent once.
	NotifiedBucket = "DIGESTLINE_NOTIFIED"
	// PushesBucket holds what the webhooks' deliveries of each commit
	// started (api.Push), by the commit the push named, as long as the
	// events: what `run follow --commit` waits for.
	PushesBucket = "DIGESTLINE_PUSHES"
	// WatchesBucket holds each watched repository's tags as last read, and
	// the digest each tag was last admitted at (the builder's watches).
	WatchesBucket = "DIGESTLINE_WATCHES"
	// IndexStream holds the lists the API pages through, newest first
	// (package index): history by environment, repository and digest, and
	// the runs.
	IndexStream = "DIGESTLINE_INDEX"
)

// ContentType is the NATS Content-Type header of a structured CloudEvent.
const ContentType = "application/cloudevents+json"

// The distributed-tracing extension's attribute names.
const (
	ExtTraceParent = "traceparent"
	ExtTraceState  = "tracestate"
)
