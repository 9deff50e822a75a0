package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"time"
)

// IdleDialer dials connections that fail once nothing has moved on them for
// idle: every read and write pushes both deadlines on, so a long upload or
// download lives as long as bytes flow, and a silent peer ends it.
func IdleDialer(idle time.Duration) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &idleConn{Conn: conn, idle: idle}, nil
	}
}

type idleConn struct {
	net.Conn
	idle     time.Duration
	timedOut atomic.Bool
}

func (c *idleConn) extend() { _ = c.Conn.SetDeadline(time.Now().Add(c.idle)) }

func (c *idleConn) Read(p []byte) (int, error) {
	c.extend()
	n, err := c.Conn.Read(p)
	return n, c.check(err)
}

func (c *idleConn) Write(p []byte) (int, error) {
	c.extend()
	n, err := c.Conn.Write(p)
	return n, c.check(err)
}

// check makes every error of a connection that went silent a timeout: the
// transport closes the connection when its reader times out, and the
// writer of a stalled upload then sees only "use of closed network
// connection".
func (c *idleConn) check(err error) error {
	var ne net.Error
	if err == nil || (!c.timedOut.Load() && !(errors.As(err, &ne) && ne.Timeout())) {
		return err
	}
	c.timedOut.Store(true)
	return &idleError{err: err, idle: c.idle}
}

// idleError is a connection that moved no byte for idle.
type idleError struct {
	err  error
	idle time.Duration
}

func (e *idleError) Error() string   { return fmt.Sprintf("no byte moved for %s: %v", e.idle, e.err) }
func (e *idleError) Unwrap() error   { return e.err }
func (e *idleError) Timeout() bool   { return true }
func (e *idleError) Temporary() bool { return true }

// sendChunk is how much of a body goes to the kernel per deadline push.
const sendChunk = 8 << 20

// ReadFrom keeps the kernel's sendfile for blob files (the connection's own
// ReadFrom takes a file behind an io.LimitedReader), a chunk at a time so
// the deadline moves with the bytes.
func (c *idleConn) ReadFrom(r io.Reader) (int64, error) {
	rf, ok := c.Conn.(io.ReaderFrom)
	if !ok {
		return io.Copy(struct{ io.Writer }{c}, r)
	}
	var total int64
	for {
		c.extend()
		n, err := rf.ReadFrom(io.LimitReader(r, sendChunk))
		total += n
		if err != nil || n < sendChunk {
			return total, c.check(err)
		}
	}
}
