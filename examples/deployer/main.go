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
// after it is deployed and reported. Its first start deploys the newest
// promotion of each environment and repository the stream holds, not
// every one in turn.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"slices"
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
	deploy := flag.String("deploy", "", "command to deploy with, given ENV and REPOSITORY@DIGEST after its own arguments: exit status 0 reports ok (default: print and report ok)")
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
// of output is the report's detail. A command with spaces in it (a
// program and its first arguments, `kubectl-deploy --namespace shop`) is
// run by sh, ENV and REF after it, as git runs its editor.
func Command(command string) func(context.Context, events.Promotion) (string, error) {
	return func(ctx context.Context, p events.Promotion) (string, error) {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, command, p.Environment, p.Ref())
		if strings.ContainsAny(command, " \t") {
			cmd = exec.CommandContext(ctx, "sh", "-c", command+` "$@"`, "deploy", p.Environment, p.Ref())
		}
		out, err := cmd.CombinedOutput()
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		return lines[len(lines)-1], err
	}
}

// Follow deploys every promotion to d.Env until ctx ends, printing
//
//	deploy prod 127.0.0.1:5000/team/app@sha256:… (previous sha256:…, run …): ok
//
// and reporting it with deployment.reported. A deployer's first start (no
// consumer of its name yet) deploys the newest promotion of each
// environment and repository the stream holds, and follows the ones after
// them: not every promotion in the stream one after the other, which would
// take each environment through all of its past versions.
func (d Deployer) Follow(ctx context.Context, js jetstream.JetStream) error {
	b := bus.NewBus(js, "/digestline/examples/deployer/"+d.Name)
	cons, err := js.Consumer(ctx, events.StreamName, d.Name)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		cons, err = d.firstStart(ctx, js, b)
	}
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
		if d.Env != "" && p.Environment != d.Env {
			_ = msg.Ack()
			return
		}
		// A deployment under way is finished and reported when the
		// deployer is asked to stop (Drain waits for it), within a bound.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), deployBound)
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

// firstStart deploys what each environment and repository was promoted
// to last, as the stream holds it, and creates the deployer's consumer
// from the promotion after the newest it read. A deployer stopped before
// its consumer exists does it again when it starts: a deployment by
// digest is the same the second time, and its report the same event.
func (d Deployer) firstStart(ctx context.Context, js jetstream.JetStream, b *bus.Bus) (jetstream.Consumer, error) {
	current, last, err := d.newest(ctx, js)
	if err != nil {
		return nil, err
	}
	// A deployment under way is finished and reported, and the consumer
	// made, when the deployer is asked to stop, as Follow's handler does.
	for _, n := range current {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), deployBound)
		err := d.deploy(dctx, b, n.promoted, n.p, n.i)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("report the deployment of %s: %w", n.p.Ref(), err)
		}
	}
	cfg := jetstream.ConsumerConfig{Durable: d.Name, FilterSubject: events.Promoted.Filter(), AckPolicy: jetstream.AckExplicitPolicy}
	if last > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, last+1
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	return js.CreateConsumer(cctx, events.StreamName, cfg)
}

// promotedImage is the i-th image of a promoted event.
type promotedImage struct {
	promoted cloudevents.Event
	p        events.Promotion
	i        int
}

// newest reads every promoted event the stream holds, and returns the
// newest promotion of each environment (d.Env's only, when set) and
// repository, oldest first, and the stream sequence of the last event
// read (0: none).
func (d Deployer) newest(ctx context.Context, js jetstream.JetStream) ([]promotedImage, uint64, error) {
	backlog, err := js.OrderedConsumer(ctx, events.StreamName, jetstream.OrderedConsumerConfig{FilterSubjects: []string{events.Promoted.Filter()}})
	if err != nil {
		return nil, 0, err
	}
	var order []string // environment and place, in the order of their newest promotion
	latest := map[string]promotedImage{}
	var last uint64
	for pending := true; pending; {
		batch, err := backlog.FetchNoWait(256)
		if err != nil {
			return nil, 0, err
		}
		pending = false
		for msg := range batch.Messages() {
			meta, err := msg.Metadata()
			if err != nil {
				return nil, 0, err
			}
			last, pending = meta.Sequence.Stream, meta.NumPending > 0
			ev, _, err := events.Parse(msg.Data())
			if err != nil {
				continue // not a promoted event this example understands
			}
			p, err := events.Decode[events.Promotion](ev)
			if err != nil {
				continue
			}
			for i, im := range images(p) {
				if d.Env == "" || im.Environment == d.Env {
					key := im.Environment + " " + im.Place()
					order = append(slices.DeleteFunc(order, func(k string) bool { return k == key }), key)
					latest[key] = promotedImage{ev, im, i}
				}
			}
		}
		if err := batch.Error(); err != nil {
			return nil, 0, err
		}
	}
	out := make([]promotedImage, len(order))
	for i, key := range order {
		out[i] = latest[key]
	}
	return out, last, nil
}

// deployBound bounds a deployment and its report, which go on when the
// deployer is asked to stop.
const deployBound = 15 * time.Minute

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
