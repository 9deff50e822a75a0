package bus_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/digestline/digestline/pkg/bus"
	"github.com/digestline/digestline/pkg/bus/bustest"
	"github.com/digestline/digestline/pkg/events"
)

// TestDeadLettersPageNewestFirst: the dead letters come newest first, a
// page at a time, without the ones replayed (deleted), and the pages
// follow each other without a gap or a repeat.
func TestDeadLettersPageNewestFirst(t *testing.T) {
	srv := bustest.NewServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 10 {
		if _, err := srv.JetStream.Publish(ctx, events.DeadLetterPrefix+"digestline.build.requested.run-"+strconv.Itoa(i), []byte("{}")); err != nil {
			t.Fatal(err)
		}
	}
	s, err := srv.JetStream.Stream(ctx, events.DeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	for _, seq := range []uint64{4, 9} { // replayed
		if err := s.DeleteMsg(ctx, seq); err != nil {
			t.Fatal(err)
		}
	}
	var got []uint64
	var before uint64
	for pages := 0; ; pages++ {
		page, next, err := bus.DeadLetterPage(ctx, srv.JetStream, before, 3)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) > 3 || pages > 5 {
			t.Fatalf("page %d holds %d", pages, len(page))
		}
		for _, dl := range page {
			got = append(got, dl.Sequence)
		}
		if next == 0 {
			break
		}
		before = next
	}
	if fmt.Sprint(got) != "[10 8 7 6 5 3 2 1]" {
		t.Errorf("dead letters, newest first: %v", got)
	}
}
