package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/uuid"
)

// ExtRunID is the CloudEvents extension that ties every event of one
// build→promotion run together.
const ExtRunID = "runid"

// ErrInvalid marks an event that can never be handled: malformed envelope,
// unknown type or version, or data that fails its schema. The runtime
// terminates and dead-letters it instead of retrying.
var ErrInvalid = errors.New("invalid event")

// MaxEventSize bounds an event: NATS's default max_payload. Blobs travel in
// the Object Store, never inside events.
const MaxEventSize = 1 << 20

// idNamespace scopes derived event ids to digestline.
var idNamespace = uuid.MustParse("5b0f3c1e-8a55-4f0e-9d2a-6c1d7e0b9a41")

// NewEvent builds a new event of the given name with a fresh id. subject is
// the image repository the event is about.
func NewEvent(source string, name Name, runID, subject string, data any) (event.Event, error) {
	return build(uuid.NewString(), source, name, runID, subject, data)
}

// Follow builds the event a handler emits in answer to parent: same run and
// subject, and an id derived from the parent's id, the name and key. A
// redelivered parent therefore yields the same id, and JetStream's
// de-duplication stores the event once. key distinguishes several events of
// one name answering the same parent (e.g. the stages of one push).
func Follow(source string, parent event.Event, name Name, key string, data any) (event.Event, error) {
	id := uuid.NewSHA1(idNamespace, []byte(parent.ID()+"\x00"+string(name)+"\x00"+key)).String()
	return build(id, source, name, RunID(parent), parent.Subject(), data)
}

func build(id, source string, name Name, runID, subject string, data any) (event.Event, error) {
	if _, ok := dataTypes[name]; !ok {
		return event.Event{}, fmt.Errorf("event %q is not part of the contract", name)
	}
	ev := event.New(event.CloudEventsVersionV1)
	ev.SetID(id)
	ev.SetSource(source)
	ev.SetType(name.Type())
	ev.SetTime(time.Now().UTC())
	if subject != "" {
		ev.SetSubject(subject)
	}
	if runID != "" {
		ev.SetExtension(ExtRunID, runID)
	}
	if err := ev.SetData(event.ApplicationJSON, data); err != nil {
		return event.Event{}, fmt.Errorf("encode %s data: %w", name, err)
	}
	return ev, nil
}

// RunID returns the event's run id, or "".
func RunID(ev event.Event) string { return Extension(ev, ExtRunID) }

// Extension is the string value of one of an event's extension attributes
// ("" when it has none), read where the event keeps it: Event.Extensions
// copies them all, on every event a handler reads.
func Extension(ev event.Event, name string) string {
	var exts map[string]any
	switch ec := ev.Context.(type) {
	case *event.EventContextV1:
		exts = ec.Extensions
	default:
		exts = ev.Extensions()
	}
	s, _ := exts[name].(string)
	return s
}

// Decode unmarshals an event's data into T.
func Decode[T any](ev event.Event) (T, error) {
	var v T
	if err := json.Unmarshal(ev.Data(), &v); err != nil {
		return v, fmt.Errorf("%w: decode %s data: %v", ErrInvalid, ev.Type(), err)
	}
	return v, nil
}

// ParseMsg is Parse for a message read from the stream or the run log: the
// event must also be the one its subject names, that event of that run. A
// run's history is what its subjects hold, so an event filed under another
// run, or as another event, would falsify it.
func ParseMsg(subject string, body []byte) (event.Event, Name, error) {
	ev, name, err := Parse(body)
	if err == nil && subject != name.Subject(RunID(ev)) && subject != name.RunLogSubject(RunID(ev)) {
		err = fmt.Errorf("%w: a %s of run %s was published on %s", ErrInvalid, name, RunID(ev), subject)
	}
	return ev, name, err
}

// Parse decodes a structured-mode CloudEvent and checks it against the
// contract: a valid CloudEvents 1.0 envelope, a known type and version, a
// run id, JSON data that validates against the type's schema. Every failure
// wraps ErrInvalid and says why.
func Parse(body []byte) (event.Event, Name, error) {
	var ev event.Event
	if len(body) > MaxEventSize {
		return ev, "", fmt.Errorf("%w: %d bytes is over the %d-byte limit of an event", ErrInvalid, len(body), MaxEventSize)
	}
	// The SDK's own decoder, called directly: json.Unmarshal would scan
	// the whole body once more before handing it over (a tenth of the
	// pipeline's decoding, profiled under load).
	if err := ev.UnmarshalJSON(body); err != nil {
		return ev, "", fmt.Errorf("%w: not a structured CloudEvent: %v", ErrInvalid, err)
	}
	if err := ev.Validate(); err != nil {
		return ev, "", fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	name, ok := NameOfType(ev.Type())
	if !ok {
		return ev, "", fmt.Errorf("%w: unknown event type %q", ErrInvalid, ev.Type())
	}
	if RunID(ev) == "" {
		return ev, name, fmt.Errorf("%w: %s has no %s extension", ErrInvalid, ev.Type(), ExtRunID)
	}
	if err := CheckRunID(RunID(ev)); err != nil {
		return ev, name, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if ct := ev.DataContentType(); ct != event.ApplicationJSON {
		return ev, name, fmt.Errorf("%w: %s has datacontenttype %q, want %s", ErrInvalid, ev.Type(), ct, event.ApplicationJSON)
	}
	if err := ValidateData(name, ev.Data()); err != nil {
		return ev, name, err
	}
	return ev, name, nil
}
