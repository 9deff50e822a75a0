// Command deployer is an example of what a deployer does with digestline:
// it follows `promoted` events with a durable consumer of its own, deploys
// the digest — repository@digest, never a tag — and reports how that went
// with a `deployment.reported` event in the same run, which the reporter
// records (and, where the policy says rollbackOn: failed, rolls a failed
// deployment back).
//
//	go run ./examples/deployer --nats nats://127.0.0.1:4222 --env prod --deploy ./deploy.sh
//
// --deploy runs a command with the environment and the reference as its
// arguments: exit status 0 reports ok, anything else failed, with the
// last line it printed. Without it, the deployer prints the reference and
// reports ok. Each promotion is deployed once per consumer name, even
// across restarts: the consumer is durable and a message is acknowledged
// after it is deployed and reported.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/digestline/digestline/pkg/bus"
	"github.com/digestline/digestline/pkg/events"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func main() {
	url := flag.String("nats", "nats://127.0.0.1:4222", "NATS server URL")
	env := flag.String("env", "", "only this environment (default: every one)")
	durable := flag.String("name", "example-deployer", "durable consumer name, and the deployer's name in its reports: one per deployer")
	deploy := flag.String("deploy", "", "command to deploy with, given ENV and REPOSITORY@DIGEST: exit status 0 reports ok (default: print and report ok)")
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
	d := Deployer{Name: *durable, Env: *env, Out: os.Stdout}
	if *deploy != "" {
		d.Deploy = Command(*deploy)
	}
	if err := d.Follow(ctx, js); err != nil && ctx.Err() == nil {
		log.Fatal(err)
	}
}

// Deployer deploys each promotion to Env ("" = any) with Deploy, and
// reports how it went.
type Deployer struct {
	Name, Env string
	// Deploy deploys p.Ref() and says how it went (nil: print it, ok).
	Deploy func(ctx context.Context, p events.Promotion) (detail string, err error)
	Out    io.Writer
}

// Command deploys with a command run as `command ENV REF`: its last line
// of output is the report's detail.
func Command(command string) func(context.Context, events.Promotion) (string, error) {
	return func(ctx context.Context, p events.Promotion) (string, error) {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, command, p.Environment, p.Ref()).CombinedOutput()
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		return lines[len(lines)-1], err
	}
}

// Follow deploys every promotion to d.Env until ctx ends, printing
//
//	deploy prod 127.0.0.1:5000/team/app@sha256:… (previous sha256:…, run …): ok
//
// and reporting it with deployment.reported.
func (d Deployer) Follow(ctx context.Context, js jetstream.JetStream) error {
	cons, err := js.CreateOrUpdateConsumer(ctx, events.StreamName, jetstream.ConsumerConfig{
		Durable:       d.Name,
		FilterSubject: events.Promoted.Filter(),
		AckPolicy:     jetstream.AckExplicitPolicy,
	})
	if err != nil {
		return fmt.Errorf("follow %s (is digestline running?): %w", events.Promoted.Filter(), err)
	}
	b := bus.NewBus(js, "/digestline/examples/deployer/"+d.Name)
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
		if d.Env != "" && p.Environment != d.Env {
			_ = msg.Ack()
			return
		}
		// A deployment under way is finished and reported when the
		// deployer is asked to stop (Drain waits for it), within a bound.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Minute)
		defer cancel()
		// A release deploys each of its images, in its order, each
		// reported on its own (naming the release).
		for i, im := range images(p) {
			if err := d.deploy(dctx, b, ev, im, i); err != nil {
				log.Printf("report the deployment of %s: %v (it is delivered again)", im.Ref(), err)
				_ = msg.Nak()
				return
			}
		}
		_ = msg.Ack() // only once it is deployed and reported
	})
	if err != nil {
		return err
	}
	<-ctx.Done()
	cc.Drain()
	<-cc.Closed()
	return nil
}

// images are what a promoted event asks to deploy: its digest, or each
// image of a release.
func images(p events.Promotion) []events.Promotion {
	if p.Release != nil && p.Digest == "" {
		return p.Release.Images
	}
	return []events.Promotion{p}
}

// deploy deploys p, the i-th image of its promoted event, prints it and
// reports it in the promoted run.
func (d Deployer) deploy(ctx context.Context, b *bus.Bus, promoted cloudevents.Event, p events.Promotion, i int) error {
	detail, err := "printed", error(nil)
	if d.Deploy != nil {
		detail, err = d.Deploy(ctx, p)
	}
	rep := events.DeploymentReport{Environment: p.Environment, Repository: p.Repository, Digest: p.Digest, Deployer: d.Name, Status: events.DeployOK, Detail: detail}
	if p.Release != nil {
		rep.Release = p.Release.Name
	}
	if err != nil {
		rep.Status, rep.Detail = events.DeployFailed, strings.TrimSpace(detail+" ("+err.Error()+")")
	}
	var line bytes.Buffer
	previous := p.PreviousDigest
	if previous == "" {
		previous = "none"
	}
	fmt.Fprintf(&line, "deploy %s %s (previous %s, run %s): %s\n", p.Environment, p.Ref(), previous, p.RunID, rep.Status)
	_, _ = d.Out.Write(line.Bytes())
	// Keyed by the deployer and the status: reporting the same deployment
	// again sends the same event, which the bus stores once.
	key := d.Name + "/" + rep.Status
	if i > 0 { // a release's later images
		key += "/" + strconv.Itoa(i)
	}
	_, err = b.Emit(ctx, promoted, events.DeploymentReported, key, rep)
	return err
}
