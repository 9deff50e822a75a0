// Package progress shows pushes to a person: live bars on a terminal, plain
// lines anywhere else.
package progress

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"
)

// View shows a push to a person. On a terminal it draws a live bar per blob
// and one for the whole upload (bytes, rate, ETA), with the lines written to
// it printed above the bars; anywhere else it passes the lines through and
// draws nothing. It is safe for concurrent use.
type View struct {
	out  io.Writer
	bars *mpb.Progress // nil when out is not a terminal

	mu       sync.Mutex
	blobs    map[digest.Digest]*track
	all      *mpb.Bar // every blob together
	allClock *clock
	total    int64 // bytes of every blob announced
	sent     int64 // of which the registry has this many
	closed   bool
}

// New returns a View on out; it draws bars when out is a terminal.
func New(out io.Writer) *View {
	v := &View{out: out, blobs: map[digest.Digest]*track{}}
	if f, ok := out.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		v.bars = mpb.New(mpb.WithOutput(out), mpb.WithWidth(32))
	}
	return v
}

// Live reports whether the view draws bars, so callers only pay for
// counting bytes when someone watches.
func (v *View) Live() bool { return v.bars != nil }

// Write prints whole lines above the bars, or plainly.
func (v *View) Write(p []byte) (int, error) {
	if v.bars != nil {
		return v.bars.Write(p)
	}
	return v.out.Write(p)
}

// Println prints one line.
func (v *View) Println(line string) { _, _ = fmt.Fprintln(v, line) }

// Blob moves blob b's bar to done bytes (a registry.Progress).
func (v *View) Blob(b v1.Descriptor, done int64) {
	if v.bars == nil {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return // a late frame: the bars are drawn for good
	}
	if v.all == nil {
		v.allClock = &clock{}
		v.all = v.bars.AddBar(0, mpb.BarPriority(1<<30), // the overall bar stays at the bottom
			mpb.PrependDecorators(decor.Name("total", decor.WCSyncSpaceR)),
			mpb.AppendDecorators(counters(), decor.Any(v.allClock.rate, decor.WCSyncSpace)))
	}
	t, ok := v.blobs[b.Digest]
	if !ok {
		t = &track{clock: &clock{}}
		t.bar = v.bars.AddBar(b.Size,
			mpb.PrependDecorators(decor.Name(blobName(b), decor.WCSyncSpaceR)),
			mpb.AppendDecorators(counters(), decor.Any(t.clock.rate, decor.WCSyncSpace)))
		v.blobs[b.Digest] = t
		v.total += b.Size
		v.all.SetTotal(v.total, false)
	}
	v.sent += done - t.done // less when a failed upload starts over
	v.all.SetCurrent(v.sent)
	t.done = done
	if done > 0 {
		// A blob waits for a free upload slot after it is announced: its
		// rate and time left count from its first byte.
		t.clock.tick(done == b.Size)
		v.allClock.tick(v.sent == v.total)
	}
	t.bar.SetCurrent(done)
}

// track is one blob's bar and how far it got.
type track struct {
	bar   *mpb.Bar
	clock *clock
	done  int64
}

func counters() decor.Decorator {
	return decor.Counters(decor.SizeB1024(0), "% .1f / % .1f", decor.WCSyncSpace)
}

// clock times one bar from its first byte to its last, for its rate and the
// time it has left. (mpb's own average decorators start when the bar is
// added and print nothing for a bar that completes between two frames.)
type clock struct {
	mu         sync.Mutex
	start, end time.Time
}

func (c *clock) tick(last bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if c.start.IsZero() {
		c.start = now
	}
	if last {
		c.end = now
	}
}

// rate renders "12.3 MiB/s 4s" while the bar moves and "12.3 MiB/s done"
// once it is full.
func (c *clock) rate(s decor.Statistics) string {
	c.mu.Lock()
	start, end := c.start, c.end
	c.mu.Unlock()
	if start.IsZero() {
		return "waiting"
	}
	if end.IsZero() {
		end = time.Now()
	}
	elapsed := max(end.Sub(start), time.Millisecond)
	perSecond := float64(s.Current) / elapsed.Seconds()
	left := "done"
	if !s.Completed && s.Current < s.Total {
		left = "-"
		if perSecond > 0 {
			left = (time.Duration(float64(s.Total-s.Current)/perSecond) * time.Second).Round(time.Second).String()
		}
	}
	return fmt.Sprintf("% .1f %s", decor.FmtAsSpeed(decor.SizeB1024(perSecond)), left)
}

// blobName labels a blob's bar: its kind and short digest.
func blobName(b v1.Descriptor) string {
	kind := "layer"
	if b.MediaType == v1.MediaTypeImageConfig || b.MediaType == "application/vnd.docker.container.image.v1+json" {
		kind = "config"
	}
	return kind + " " + b.Digest.Encoded()[:12]
}

// Close finishes the bars (a failed push leaves its bars where they stopped)
// and waits until they are drawn. A nil view has nothing to close.
func (v *View) Close() {
	if v == nil || v.bars == nil {
		return
	}
	v.mu.Lock()
	v.closed = true
	for _, t := range v.blobs {
		if !t.bar.Completed() {
			t.bar.Abort(false)
		}
	}
	if v.all != nil {
		if v.sent == v.total {
			v.all.SetTotal(-1, true)
		} else {
			v.all.Abort(false)
		}
	}
	v.mu.Unlock()
	v.bars.Wait()
}
