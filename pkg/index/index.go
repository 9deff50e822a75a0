package index

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/digestline/digestline/pkg/events"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Headers of an entry's message: the sequence of the entry before it on
// its list (absent on a list's first entry), and, on an entry that points
// at the one holding its data, that entry's sequence.
const (
	prevHeader = "Digestline-Prev"
	refHeader  = "Digestline-Ref"
	timeHeader = "Digestline-Time" // when the entry happened (RFC 3339)
)

// seekSlack is how far out of time order entries may be appended (two
// replicas recording at once) and still be found by a query's Before.
const seekSlack = time.Minute

// subjectPrefix prefixes every list's subject.
const subjectPrefix = "index."

// ErrCursor is a cursor that does not belong to the list it is used with.
var ErrCursor = errors.New("the cursor belongs to another list or query")

// Index appends to and reads the lists of the index stream.
type Index struct {
	js     jetstream.JetStream
	stream jetstream.Stream
	heads  heads
}

// Open opens the index stream (bus.Provision creates it).
func Open(ctx context.Context, js jetstream.JetStream) (*Index, error) {
	s, err := js.Stream(ctx, events.IndexStream)
	if err != nil {
		return nil, fmt.Errorf("open %s (is the bus provisioned?): %w", events.IndexStream, err)
	}
	return &Index{js: js, stream: s, heads: heads{of: map[string]head{}}}, nil
}

// List names a list by its tokens (each a valid NATS subject token: no
// dots, spaces or wildcards), e.g. List("history", "env", "prod").
func List(tokens ...string) string {
	s := subjectPrefix[:len(subjectPrefix)-1]
	for _, t := range tokens {
		s += "." + t
	}
	return s
}

// Entry is one entry of a list.
type Entry struct {
	// Seq is where the entry is in the index stream: a page's cursor.
	Seq uint64
	// Time is when what it records happened, as appended.
	Time time.Time
	// Data is what was appended.
	Data []byte
	prev uint64
	// gone: the entry holding its data is past retention.
	gone bool
}

// Append adds data, which records what happened at t, to the front of
// each list: in full to the first, by reference to the others, so data is
// stored once however many lists hold it. Entries are appended in time
// order (within seekSlack), which Query.Before relies on. id names the addition: appending the same id again within the
// stream's duplicate window, or while it is still a list's newest entry,
// adds nothing (a redelivered handler appends once). Appends to one list
// from many writers (replicas of a service) are ordered by the server:
// each names the entry it follows, and one that lost the race to another
// reads the new head and tries again.
func (x *Index) Append(ctx context.Context, id string, t time.Time, data []byte, lists ...string) error {
	if len(lists) == 0 {
		return errors.New("append to no list")
	}
	at := t.UTC().Format(time.RFC3339Nano)
	seq, err := x.push(ctx, lists[0], id, nats.Header{timeHeader: []string{at}}, data)
	if err != nil {
		return err
	}
	ref := strconv.FormatUint(seq, 10)
	for _, list := range lists[1:] {
		if _, err := x.push(ctx, list, id, nats.Header{timeHeader: []string{at}, refHeader: []string{ref}}, nil); err != nil {
			return err
		}
	}
	return nil
}

// push appends one message to list and returns its sequence (the
// original's, for a duplicate). It follows the list's head as this Index
// last appended it, without reading it: the server refuses the append
// when another writer moved the head since, and push then reads it.
func (x *Index) push(ctx context.Context, list, id string, hdr nats.Header, data []byte) (uint64, error) {
	msgID := id + "@" + list
	for try, wait := 0, time.Millisecond; ; try, wait = try+1, min(2*wait, 100*time.Millisecond) {
		cur, known := x.heads.get(list)
		// A list this Index holds no head of is most often a new one (a
		// new digest's, a new repository's): the first try appends as if
		// it were empty, and the server, which refuses that when the list
		// has entries, says when its head must be read.
		guessed := !known && try == 0
		if !known && !guessed {
			var err error
			if cur, err = x.head(ctx, list); err != nil {
				return 0, err
			}
		}
		if cur.id == msgID {
			x.heads.set(list, cur)
			return cur.seq, nil
		}
		msg := &nats.Msg{Subject: list, Header: nats.Header{}, Data: data}
		for k, v := range hdr {
			msg.Header[k] = v
		}
		if cur.seq > 0 {
			msg.Header.Set(prevHeader, strconv.FormatUint(cur.seq, 10))
		}
		ack, err := x.js.PublishMsg(ctx, msg, jetstream.WithMsgID(msgID), jetstream.WithExpectLastSequencePerSubject(cur.seq))
		if err == nil {
			if !ack.Duplicate {
				x.heads.set(list, head{seq: ack.Sequence, id: msgID})
			}
			return ack.Sequence, nil
		}
		x.heads.forget(list)
		var apiErr *jetstream.APIError
		if !errors.As(err, &apiErr) || apiErr.ErrorCode != jetstream.JSErrCodeStreamWrongLastSequence {
			return 0, fmt.Errorf("append to %s: %w", list, err)
		}
		if known || guessed {
			continue // only this Index's memory (or guess) was behind
		}
		// Another writer appended first: follow its entry.
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("append to %s: %w", list, ctx.Err())
		case <-time.After(wait):
		}
	}
}

// head reads list's newest entry (zero: the list is empty).
func (x *Index) head(ctx context.Context, list string) (head, error) {
	m, err := x.stream.GetLastMsgForSubject(ctx, list)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return head{}, nil
	case err != nil:
		return head{}, fmt.Errorf("append to %s: %w", list, err)
	}
	return head{seq: m.Sequence, id: m.Header.Get(jetstream.MsgIDHeader)}, nil
}

// head is a list's newest entry: its sequence, and the id it was appended
// with.
type head struct {
	seq uint64
	id  string
}

// heads are the heads of the lists an Index appended to last: its
// appends follow them without reading them first. At most maxHeads are
// kept; when full they are forgotten, and read again as needed.
type heads struct {
	mu sync.Mutex
	of map[string]head
}

const maxHeads = 4096

func (h *heads) get(list string) (head, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	v, ok := h.of[list]
	return v, ok
}

func (h *heads) set(list string, v head) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.of) >= maxHeads {
		clear(h.of)
	}
	h.of[list] = v
}

func (h *heads) forget(list string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.of, list)
}

// Query reads a page of a list.
type Query struct {
	// From is the sequence of the newest entry to read (a page's Next):
	// zero starts at the list's newest entry.
	From uint64
	// Before, when set, leaves out the entries of that time or later; with
	// From zero, the page starts near the newest entry before it (found
	// by a binary search of the stream, not by reading the newer ones).
	Before time.Time
	// Limit is the most entries a page holds.
	Limit int
	// Keep, when set, says whether an entry belongs on the page, and
	// whether the entries after it could (false ends the list early: a
	// time range the list has passed).
	Keep func(Entry) (keep, more bool)
	// Scan bounds how many entries one page reads (4×Limit when zero):
	// a page of a query that keeps few entries may hold fewer than Limit
	// and still have a Next.
	Scan int
}

// Page is a page of a list, newest first.
type Page struct {
	Entries []Entry
	// Next is the Query.From of the next page; zero when the list ends.
	Next uint64
}

// Read returns a page of list. The cost is the entries read (Limit, or
// Scan when Keep skips some), never the list's length.
func (x *Index) Read(ctx context.Context, list string, q Query) (Page, error) {
	scan := q.Scan
	if scan <= 0 {
		scan = 4 * q.Limit
	}
	next, err := x.start(ctx, list, q)
	if err != nil {
		return Page{}, err
	}
	var page Page
	for read := 0; next > 0 && len(page.Entries) < q.Limit && read < scan; read++ {
		e, err := x.entry(ctx, list, next)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return page, nil // older entries are past retention
		}
		if err != nil {
			return page, err
		}
		next = e.prev
		if e.gone || (!q.Before.IsZero() && !e.Time.Before(q.Before)) {
			continue // its data is past retention, or it is too new
		}
		keep, more := true, true
		if q.Keep != nil {
			keep, more = q.Keep(e)
		}
		if keep {
			page.Entries = append(page.Entries, e)
		}
		if !more {
			return page, nil
		}
	}
	page.Next = next
	return page, nil
}

// start is the sequence of the first entry a query reads (zero: none).
func (x *Index) start(ctx context.Context, list string, q Query) (uint64, error) {
	if q.From > 0 {
		return q.From, nil
	}
	if !q.Before.IsZero() {
		seq, err := x.seek(ctx, list, q.Before.Add(seekSlack))
		if err != nil {
			return 0, fmt.Errorf("read %s: %w", list, err)
		}
		if seq > 0 {
			return seq, nil
		}
		// none so new: start at the newest
	}
	head, err := x.stream.GetLastMsgForSubject(ctx, list)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", list, err)
	}
	return head.Sequence, nil
}

// entry reads the entry at seq of list, and its data.
func (x *Index) entry(ctx context.Context, list string, seq uint64) (Entry, error) {
	m, err := x.stream.GetMsg(ctx, seq)
	if err != nil {
		return Entry{}, err
	}
	if m.Subject != list {
		return Entry{}, fmt.Errorf("%w: entry %d is on %s, not %s", ErrCursor, seq, m.Subject, list)
	}
	e := Entry{Seq: seq, Time: timeOf(m.Header), Data: m.Data, prev: prevOf(m.Header)}
	if ref := m.Header.Get(refHeader); ref != "" {
		at, err := strconv.ParseUint(ref, 10, 64)
		if err != nil {
			return Entry{}, fmt.Errorf("entry %d of %s is corrupt: %w", seq, list, err)
		}
		d, err := x.stream.GetMsg(ctx, at)
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
			e.Data, e.gone = nil, true
		case err != nil:
			return Entry{}, err
		default:
			e.Data = d.Data
		}
	}
	return e, nil
}

func prevOf(h nats.Header) uint64 {
	prev, _ := strconv.ParseUint(h.Get(prevHeader), 10, 64)
	return prev
}

// seek returns the sequence of list's oldest entry of time t or later
// (zero: none), by a binary search over the stream's sequences: each probe
// reads the list's first entry at or after a sequence, and entries are
// in time order along the list.
func (x *Index) seek(ctx context.Context, list string, t time.Time) (uint64, error) {
	info, err := x.stream.Info(ctx)
	if err != nil {
		return 0, err
	}
	var found uint64
	for lo, hi := info.State.FirstSeq, info.State.LastSeq; lo <= hi && hi > 0; {
		mid := lo + (hi-lo)/2
		m, err := x.stream.GetMsg(ctx, mid, jetstream.WithGetMsgSubject(list))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			hi = mid - 1 // nothing on the list from mid on
			continue
		}
		if err != nil {
			return 0, err
		}
		if at := timeOf(m.Header); !at.Before(t) {
			found, hi = m.Sequence, mid-1
		} else {
			lo = m.Sequence + 1
		}
	}
	return found, nil
}

func timeOf(h nats.Header) time.Time {
	t, _ := time.Parse(time.RFC3339Nano, h.Get(timeHeader))
	return t
}
