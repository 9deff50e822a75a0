// Command deployer is an example of what a deployer does with digestline:
// it follows `promoted` events with a durable consumer of its own and prints
// the digest to deploy — repository@digest, never a tag.
//
//	go run ./examples/deployer --nats nats://127.0.0.1:4222 --env prod
//
// Each promotion is printed once per consumer name, even across restarts:
// the consumer is durable and a message is acknowledged after it is handled.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/digestline/digestline/pkg/events"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func main() {
	url := flag.String("nats", "nats://127.0.0.1:4222", "NATS server URL")
	env := flag.String("env", "", "only this environment (default: every one)")
	durable := flag.String("name", "example-deployer", "durable consumer name: one per deployer")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	nc, err := nats.Connect(*url, nats.Name(*durable))
	if err != nil {
		log.Fatalf("connect to %s: %v", *url, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		log.Fatal(err)
	}
	if err := Follow(ctx, js, *durable, *env, os.Stdout); err != nil && ctx.Err() == nil {
		log.Fatal(err)
	}
}

// Follow prints one line per promotion to env ("" = any) until ctx ends:
//
//	deploy prod 127.0.0.1:5000/team/app@sha256:… (previous sha256:…, run …)
func Follow(ctx context.Context, js jetstream.JetStream, durable, env string, out io.Writer) error {
	cons, err := js.CreateOrUpdateConsumer(ctx, events.StreamName, jetstream.ConsumerConfig{
		Durable:       durable,
		FilterSubject: events.Promoted.Filter(),
		AckPolicy:     jetstream.AckExplicitPolicy,
	})
	if err != nil {
		return fmt.Errorf("follow %s (is digestline running?): %w", events.Promoted.Filter(), err)
	}
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		ev, name, err := events.Parse(msg.Data())
		if err != nil || name != events.Promoted {
			_ = msg.Term() // not a promoted event this example understands
			return
		}
		p, err := events.Decode[events.Promotion](ev)
		if err != nil {
			_ = msg.Term()
			return
		}
		if env == "" || p.Environment == env {
			previous := p.PreviousDigest
			if previous == "" {
				previous = "none"
			}
			// Deploy here, by digest; ack only once the deploy is done.
			fmt.Fprintf(out, "deploy %s %s (previous %s, run %s)\n", p.Environment, p.Ref(), previous, p.RunID)
		}
		_ = msg.Ack()
	})
	if err != nil {
		return err
	}
	<-ctx.Done()
	cc.Drain()
	<-cc.Closed()
	return nil
}
