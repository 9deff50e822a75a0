package tags_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/digestline/digestline/pkg/bus/bustest"
	"github.com/digestline/digestline/pkg/tags"
)

func open(t *testing.T) (*tags.Ledger, context.Context) {
	t.Helper()
	srv := bustest.NewServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	l, err := tags.Open(ctx, srv.JetStream)
	if err != nil {
		t.Fatal(err)
	}
	return l, ctx
}

// registryTag is a tag in a registry that has no compare-and-swap: a move
// checks where it points, as the pusher does, and overwrites it.
type registryTag struct {
	mu      sync.Mutex
	digest  string
	movers  atomic.Int32 // moves at once: the ledger must keep this at 1
	overlap atomic.Bool
}

// move is the pusher's tag update: refuse drift, then put.
func (r *registryTag) move(to string) tags.MoveFunc {
	return func(ctx context.Context, known []string) (string, error) {
		if r.movers.Add(1) > 1 {
			r.overlap.Store(true)
		}
		defer r.movers.Add(-1)
		r.mu.Lock()
		found := r.digest
		r.mu.Unlock()
		if found != "" && known != nil && !slices.Contains(known, found) {
			return "", fmt.Errorf("drift: tag at %s, the pipeline left it at %v", found, known)
		}
		time.Sleep(time.Duration(rand.IntN(3)) * time.Millisecond) // the PUT
		r.mu.Lock()
		r.digest = to
		r.mu.Unlock()
		return found, nil
	}
}

func request(i int, at time.Time) tags.Request {
	return tags.Request{RunID: fmt.Sprintf("run%03d", i), RequestedAt: at, Digest: fmt.Sprintf("sha256:%064d", i)}
}

// Requests for one tag arrive at its move in any order, 8 at once: each is
// moved or superseded, never failed; moves happen one at a time, in
// request order, each from where the one before left the tag; the tag
// ends at the newest request's digest.
func TestMovesLandInRequestOrder(t *testing.T) {
	l, ctx := open(t)
	const n, parallel = 64, 8
	t0 := time.Now()
	reqs := make([]tags.Request, n)
	for i := range reqs {
		reqs[i] = request(i, t0.Add(time.Duration(i)*time.Millisecond))
	}
	arrival := rand.Perm(n)
	// Let the arrival order roughly follow the request order, as runs do.
	slices.SortFunc(arrival, func(a, b int) int { return (a + rand.IntN(12)) - (b + rand.IntN(12)) })

	reg := &registryTag{}
	var (
		mu         sync.Mutex
		moved      []tags.Move
		superseded int
		next       = make(chan int)
		wg         sync.WaitGroup
	)
	for range parallel {
		wg.Go(func() {
			for i := range next {
				m, err := l.Move(ctx, "reg.example/app:dev", reqs[i], reg.move(reqs[i].Digest))
				var s *tags.SupersededError
				mu.Lock()
				switch {
				case errors.As(err, &s):
					if !s.By.Newer(reqs[i]) {
						t.Errorf("%s superseded by %s, which is not newer", reqs[i].RunID, s.By.RunID)
					}
					superseded++
				case err != nil:
					t.Errorf("%s: %v", reqs[i].RunID, err)
				default:
					moved = append(moved, m)
				}
				mu.Unlock()
			}
		})
	}
	for _, i := range arrival {
		next <- i
	}
	close(next)
	wg.Wait()

	if reg.overlap.Load() {
		t.Error("two runs moved the tag at once")
	}
	if len(moved)+superseded != n {
		t.Fatalf("%d moved + %d superseded, want %d runs", len(moved), superseded, n)
	}
	slices.SortFunc(moved, func(a, b tags.Move) int { return a.MovedAt.Compare(b.MovedAt) })
	for i := 1; i < len(moved); i++ {
		if !moved[i].Newer(moved[i-1].Request) {
			t.Errorf("move %d (%s) is older than the move before it (%s)", i, moved[i].RunID, moved[i-1].RunID)
		}
		if moved[i].From != moved[i-1].Digest {
			t.Errorf("move %d (%s) is from %s, but the move before left the tag at %s", i, moved[i].RunID, moved[i].From, moved[i-1].Digest)
		}
	}
	if reg.digest != reqs[n-1].Digest {
		t.Errorf("tag at %s, want the newest request's %s", reg.digest, reqs[n-1].Digest)
	}
	last, err := l.Last(ctx, "reg.example/app:dev")
	if err != nil || last == nil || last.RunID != reqs[n-1].RunID {
		t.Errorf("last move %+v, %v; want %s's", last, err, reqs[n-1].RunID)
	}
	t.Logf("%d moved, %d superseded", len(moved), superseded)
}

func TestRedeliveredMoveReturnsItsMoveAgain(t *testing.T) {
	l, ctx := open(t)
	reg := &registryTag{}
	a := request(1, time.Now())
	first, err := l.Move(ctx, "reg.example/app:dev", a, reg.move(a.Digest))
	if err != nil {
		t.Fatal(err)
	}
	again, err := l.Move(ctx, "reg.example/app:dev", a, func(context.Context, []string) (string, error) {
		t.Error("a move done already was made again")
		return "", nil
	})
	if err != nil || again != first {
		t.Errorf("redelivered: %+v, %v; want %+v", again, err, first)
	}
}

// A move from outside the pipeline is still drift: the move function sees
// where the pipeline left the tag, and refuses.
func TestMoveSeesWhereThePipelineLeftTheTag(t *testing.T) {
	l, ctx := open(t)
	reg := &registryTag{}
	a, b := request(1, time.Now()), request(2, time.Now().Add(time.Second))
	if _, err := l.Move(ctx, "reg.example/app:dev", a, reg.move(a.Digest)); err != nil {
		t.Fatal(err)
	}
	reg.digest = "sha256:outside"
	if _, err := l.Move(ctx, "reg.example/app:dev", b, reg.move(b.Digest)); err == nil || reg.digest != "sha256:outside" {
		t.Fatalf("move over an outside change: %v, tag at %s; want drift refused", err, reg.digest)
	}
	// The failed move released the tag: the next run does not wait out
	// a lease, and the ledger still says where the pipeline left it.
	last, err := l.Last(ctx, "reg.example/app:dev")
	if err != nil || last.RunID != a.RunID {
		t.Errorf("last move %+v, %v; want %s's", last, err, a.RunID)
	}
}

// A mover that dies mid-move holds the tag until its lease runs out; the
// next run then takes it over, knowing the dead move may have landed.
func TestDeadMoversLeaseIsTakenOver(t *testing.T) {
	l, ctx := open(t)
	l = l.WithLease(300 * time.Millisecond)
	reg := &registryTag{}
	a, b := request(1, time.Now()), request(2, time.Now().Add(time.Second))
	dead := make(chan struct{})
	go func() {
		defer close(dead)
		_, _ = l.Move(ctx, "reg.example/app:dev", a, func(ctx context.Context, known []string) (string, error) {
			reg.digest = a.Digest
			runtime.Goexit() // the pusher is killed after its PUT
			return "", nil
		})
	}()
	<-dead
	var known []string
	m, err := l.Move(ctx, "reg.example/app:dev", b, func(ctx context.Context, k []string) (string, error) {
		known = k
		return reg.move(b.Digest)(ctx, k)
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(known, a.Digest) || m.From != a.Digest || reg.digest != b.Digest {
		t.Errorf("took over with known %v, moved from %s, tag at %s; want the dead move's %s known and moved from", known, m.From, reg.digest, a.Digest)
	}
}

// A run's build moved the tag (ship to the environment's own tag); its
// promotion is that move, recorded as one, while another run's move in
// progress stays in progress. The promotions chain in the order they
// landed.
func TestAPromotionOfTheBuildsOwnMoveKeepsAnotherRunsMove(t *testing.T) {
	l, ctx := open(t)
	reg := &registryTag{}
	a, c := request(1, time.Now()), request(2, time.Now().Add(time.Second))
	if _, err := l.Move(ctx, "reg.example/app:dev", a, reg.move(a.Digest)); err != nil {
		t.Fatal(err)
	}
	inMove, release := make(chan struct{}), make(chan struct{})
	moved := make(chan error, 1)
	go func() {
		c.Promotes = true
		_, err := l.Move(ctx, "reg.example/app:dev", c, func(ctx context.Context, known []string) (string, error) {
			close(inMove)
			<-release
			return reg.move(c.Digest)(ctx, known)
		})
		moved <- err
	}()
	<-inMove
	a.Promotes = true
	m, err := l.Move(ctx, "reg.example/app:dev", a, func(context.Context, []string) (string, error) {
		t.Error("the build's move was made again for its promotion")
		return "", nil
	})
	if err != nil || !m.Promotes || m.Held != "" {
		t.Fatalf("promotion of the build's move: %+v, %v", m, err)
	}
	close(release)
	if err := <-moved; err != nil {
		t.Fatalf("the move in progress failed: %v", err)
	}
	last, err := l.Last(ctx, "reg.example/app:dev")
	if err != nil || last.RunID != c.RunID || last.Held != a.Digest {
		t.Errorf("last move %+v, %v; want %s's, after the promotion of %s", last, err, c.RunID, a.Digest)
	}
}

// In an environment that takes every digest in turn, a request waits for
// the older ones queued before it: each moves the tag, oldest first, and
// none is superseded. A run that ends without moving (its build failed)
// leaves the queue, and the ones after it go on.
func TestQueuedRequestsEachMoveInTurn(t *testing.T) {
	l, ctx := open(t)
	reg := &registryTag{}
	const tag = "reg.example/app:prod"
	t0 := time.Now()
	failed, a, b := request(0, t0), request(1, t0.Add(time.Millisecond)), request(2, t0.Add(2*time.Millisecond))
	for _, r := range []tags.Request{failed, a, b} {
		if err := l.Enqueue(ctx, tag, r); err != nil {
			t.Fatal(err)
		}
	}
	var order []string
	var mu sync.Mutex
	moveAs := func(r tags.Request) error {
		r.Promotes = true
		_, err := l.Move(ctx, tag, r, func(ctx context.Context, known []string) (string, error) {
			mu.Lock()
			order = append(order, r.RunID)
			mu.Unlock()
			return reg.move(r.Digest)(ctx, known)
		})
		return err
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	wg.Go(func() { errs[1] = moveAs(b) }) // the newer one arrives first
	time.Sleep(100 * time.Millisecond)
	wg.Go(func() { errs[0] = moveAs(a) })
	time.Sleep(100 * time.Millisecond)
	mu.Lock()
	if len(order) != 0 {
		t.Errorf("%v moved while an older request was queued", order)
	}
	mu.Unlock()
	if err := l.Dequeue(ctx, failed.RunID); err != nil { // its build failed
		t.Fatal(err)
	}
	wg.Wait()
	if errs[0] != nil || errs[1] != nil {
		t.Fatalf("moves: %v", errs)
	}
	if !slices.Equal(order, []string{a.RunID, b.RunID}) || reg.digest != b.Digest {
		t.Errorf("moved in order %v, tag at %s; want %s then %s", order, reg.digest, a.RunID, b.RunID)
	}
	last, err := l.Last(ctx, tag)
	if err != nil || last.Held != a.Digest {
		t.Errorf("last move %+v, %v: want it to follow %s's promotion", last, err, a.RunID)
	}
}

// A promotion whose move landed, redelivered after a newer one moved the
// tag on (its pusher died once the tag had moved, before it said so), is
// given its move again, not superseded: it held the tag in its turn, and
// the newer promotion's Held names it.
func TestAPromotionRedeliveredAfterNewerMovesGetsItsMoveAgain(t *testing.T) {
	l, ctx := open(t)
	reg := &registryTag{}
	a, b := request(1, time.Now()), request(2, time.Now().Add(time.Second))
	a.Promotes, b.Promotes = true, true
	first, err := l.Move(ctx, "reg.example/app:dev", a, reg.move(a.Digest))
	if err != nil {
		t.Fatal(err)
	}
	newer, err := l.Move(ctx, "reg.example/app:dev", b, reg.move(b.Digest))
	if err != nil || newer.Held != a.Digest {
		t.Fatalf("the newer promotion: %+v, %v; want it to follow %s", newer, err, a.Digest)
	}
	again, err := l.Move(ctx, "reg.example/app:dev", a, func(context.Context, []string) (string, error) {
		t.Error("a promotion that landed was moved again")
		return "", nil
	})
	if err != nil || again != first {
		t.Fatalf("the promotion redelivered after a newer one: %+v, %v; want its move %+v", again, err, first)
	}
	// An older request that never moved is superseded, as before.
	c := request(0, time.Now().Add(-time.Second))
	if _, err := l.Move(ctx, "reg.example/app:dev", c, reg.move(c.Digest)); !errors.As(err, new(*tags.SupersededError)) {
		t.Fatalf("an older request that never moved: %v, want superseded", err)
	}
}
