package runs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A batched direct get asks a stream that allows direct gets for up to
// batch messages on a subject from a sequence on, with one request; the
// server answers with each message and then an end of batch (ADR-31).
// nats.go has no call for it. Orbit's jetstreamext.GetBatch does it over a
// synchronous subscription whose channel holds the connection's default of
// 65,536 messages: half a megabyte allocated and cleared for every run
// read, a fifth of the bytes the pipeline allocated under load. This one
// subscribes with a channel no bigger than the answer.

// errNoDirect is a stream that answers no batched direct get: it does not
// allow direct gets (no responders), or its server predates batches.
var errNoDirect = errors.New("the stream answers no batched direct get")

// directMsg is one message of a batched direct get's answer.
type directMsg struct {
	subject string
	seq     uint64
	data    []byte
	more    bool // the stream holds more of those asked for after it
}

// directRequest is a batched direct get's request (the server's
// JSApiMsgGetRequest).
type directRequest struct {
	Seq     uint64 `json:"seq"`
	Subject string `json:"next_by_subj"`
	Batch   int    `json:"batch"`
}

// getBatch asks stream for up to batch messages on subject from seq on and
// hands each to each, in order; none is an answer, not an error.
func getBatch(ctx context.Context, js jetstream.JetStream, stream, subject string, seq uint64, batch int, each func(directMsg)) error {
	req, err := json.Marshal(directRequest{Seq: seq, Subject: subject, Batch: batch})
	if err != nil {
		return err
	}
	nc := js.Conn()
	inbox := nc.NewInbox()
	answers := make(chan *nats.Msg, batch+1) // every message and the end
	sub, err := nc.ChanSubscribe(inbox, answers)
	if err != nil {
		return err
	}
	defer sub.Unsubscribe() //nolint:errcheck // the answer is read
	if err := nc.PublishRequest(apiSubject(js, "DIRECT.GET."+stream), inbox, req); err != nil {
		return err
	}
	for {
		var m *nats.Msg
		select {
		case <-ctx.Done():
			return fmt.Errorf("batched direct get on %s: %w", stream, ctx.Err())
		case m = <-answers:
		}
		switch status := m.Header.Get("Status"); {
		case status == "204": // the end of the batch
			return nil
		case status == "404": // nothing (more) on the subject
			return nil
		case status == "503":
			return errNoDirect
		case status != "":
			return fmt.Errorf("batched direct get on %s: status %s %s", stream, status, m.Header.Get("Description"))
		}
		pending := m.Header.Get("Nats-Num-Pending")
		if pending == "" {
			return errNoDirect // a single message: no batches on this server
		}
		seq, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
		if err != nil {
			return fmt.Errorf("batched direct get on %s: sequence %q: %w", stream, m.Header.Get(jetstream.SequenceHeader), err)
		}
		each(directMsg{subject: m.Header.Get(jetstream.SubjectHeader), seq: seq, data: m.Data, more: pending != "0"})
	}
}

// apiSubject is the JetStream API subject name under js's prefix or domain.
func apiSubject(js jetstream.JetStream, name string) string {
	switch o := js.Options(); {
	case o.APIPrefix != "":
		return strings.TrimSuffix(o.APIPrefix, ".") + "." + name
	case o.Domain != "":
		return "$JS." + o.Domain + ".API." + name
	}
	return jetstream.DefaultAPIPrefix + name
}
