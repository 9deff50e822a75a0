package bus

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/digestline/digestline/pkg/events"
	"github.com/nats-io/nats.go/jetstream"
)

// Takers are the services' durable consumers of the events stream that
// take the events of one subject (Idle).
type Takers struct {
	// Names are every such consumer's, sorted; none when no service has
	// ever taken the subject's events.
	Names []string
	// Idle are those no worker is asking events of and none is working
	// on: their service is not running. A consumer whose worker is busy
	// holds its events (ack pending), and one that waits has a pull
	// request with the server (its waiting count).
	Idle []string
}

// Idle says which services take the events of subject and which of them
// are not running, from the consumers' state on the server: what a run
// whose latest event is on subject waits for, when nothing happens.
func Idle(ctx context.Context, js jetstream.JetStream, subject string) (Takers, error) {
	stream, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		return Takers{}, fmt.Errorf("read the consumers of %s: %w", events.StreamName, err)
	}
	var t Takers
	list := stream.ListConsumers(ctx)
	for info := range list.Info() {
		if info.Config.Durable == "" || !takes(info.Config, subject) {
			continue // a follower (ordered, ephemeral), or another service's
		}
		t.Names = append(t.Names, info.Name)
		if info.NumWaiting == 0 && info.NumAckPending == 0 {
			t.Idle = append(t.Idle, info.Name)
		}
	}
	if err := list.Err(); err != nil {
		return Takers{}, fmt.Errorf("read the consumers of %s: %w", events.StreamName, err)
	}
	slices.Sort(t.Names)
	slices.Sort(t.Idle)
	return t, nil
}

// takes says whether a consumer of cfg is given the events of subject.
func takes(cfg jetstream.ConsumerConfig, subject string) bool {
	filters := cfg.FilterSubjects
	if cfg.FilterSubject != "" {
		filters = append(filters, cfg.FilterSubject)
	}
	if len(filters) == 0 {
		return true
	}
	return slices.ContainsFunc(filters, func(f string) bool { return subjectMatches(f, subject) })
}

// subjectMatches says whether the literal subject matches filter, with
// NATS's wildcards: * one token, > one or more at the end.
func subjectMatches(filter, subject string) bool {
	ft, st := strings.Split(filter, "."), strings.Split(subject, ".")
	for i, f := range ft {
		switch {
		case f == ">":
			return len(st) > i
		case i >= len(st):
			return false
		case f != "*" && f != st[i]:
			return false
		}
	}
	return len(ft) == len(st)
}
