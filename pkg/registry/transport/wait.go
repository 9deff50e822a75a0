package transport

import (
	"context"
	"net/http"
	"time"
)

// Wait is a registry request not answered yet: which registry, what was
// asked, in which push stage, and for how long so far.
type Wait struct {
	Host, Method, Path, Stage string
	Waited                    time.Duration
}

type stageKey struct{}

// WithStage names the push stage ctx's requests belong to, for Wait.
func WithStage(ctx context.Context, stage string) context.Context {
	return context.WithValue(ctx, stageKey{}, stage)
}

// NoticeWaits makes next tell notice of every request left unanswered for
// after, and again every every after that, until it is answered or fails:
// a person at a terminal sees at once that a registry is silent, and on
// what. Each request's watch ends with the request.
func NoticeWaits(next http.RoundTripper, after, every time.Duration, notice func(Wait)) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		stage, _ := req.Context().Value(stageKey{}).(string)
		start, done := time.Now(), make(chan struct{})
		go func() {
			t := time.NewTimer(after)
			defer t.Stop()
			for {
				select {
				case <-done:
					return
				case <-t.C:
					notice(Wait{Host: req.URL.Host, Method: req.Method, Path: req.URL.Path, Stage: stage, Waited: time.Since(start)})
					t.Reset(every)
				}
			}
		}()
		defer close(done)
		return next.RoundTrip(req)
	})
}
