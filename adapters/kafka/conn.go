package kafka

import (
	"context"
	"encoding/binary"
	"net"
)

// requestConn is a broker connection that writes each Kafka request with
// one write. kafka-go encodes a request into 64 kB pages and writes them
// one by one: 16 write syscalls for a produce request of 1 MiB. On a
// server with one P (GOMAXPROCS=1, as a sidecar-sized container gets),
// every write that lasts longer than the runtime's monitor's 20 µs tick
// has its P retaken, which keeps the monitor waking every 20 µs; one write
// per request keeps those retakes rare enough for it to back off.
//
// A request that comes whole in one Write (one of at most a page) is
// written from it as it is. On a TCP connection the pages of a larger one
// are gathered by reference, not copied, and written with one writev by
// the Write that completes the request. That holds a page past the Write
// that handed it over, which io.Writer's contract does not allow, but
// kafka-go's protocol.WriteRequest writes a request's page buffer with
// one WriteTo and releases its pages only after that returns, by when the
// request was written. (A kafka-go release that wrote through a buffer it
// reuses between Writes would corrupt requests of several pages, which
// TestPooledRecordValuesIntact writes and checks.) Small pieces
// (the size prefix, pieces of a caller writing a few bytes at a time), and
// every piece on other connections, are copied into the connection's
// buffer.
//
// It relies on Kafka's framing: every request is a 4-byte big-endian size
// and that many bytes. A request above maxGathered bytes is written as it
// comes. Only plaintext connections are wrapped (kafka-go puts TLS on top
// of the dialed connection, which would hand this one TLS records).
type requestConn struct {
	net.Conn
	refs   bool     // large pieces are gathered by reference (c is a *net.TCPConn)
	buf    []byte   // the request's copied pieces, its size prefix first
	parts  []piece  // the request's pieces, in order
	got    int      // bytes of the request gathered
	want   int      // its full length once the prefix is known, else 0
	direct int      // bytes of a large request still to write as they come
	iov    [][]byte // scratch of flush
}

// piece is part of a gathered request: ref, or buf[from:to] when ref is
// nil.
type piece struct {
	ref      []byte
	from, to int
}

// minReferenced is the smallest piece gathered by reference.
const minReferenced = 4 << 10

// maxGathered bounds the requests gathered into one write.
const maxGathered = 4 << 20

// dialRequestConns wraps dial's connections in requestConns.
func dialRequestConns(dial func(context.Context, string, string) (net.Conn, error)) func(context.Context, string, string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return newRequestConn(c), nil
	}
}

func newRequestConn(c net.Conn) *requestConn {
	_, tcp := c.(*net.TCPConn)
	return &requestConn{Conn: c, refs: tcp}
}

// Write gathers b into the current request and writes the request once it
// is complete. An error of that write is returned by the Write that
// completed the request (kafka-go then closes the connection).
func (c *requestConn) Write(b []byte) (int, error) {
	n := len(b)
	for len(b) > 0 {
		if c.direct > 0 {
			k := min(c.direct, len(b))
			if _, err := c.Conn.Write(b[:k]); err != nil {
				return n - len(b), err
			}
			c.direct -= k
			b = b[k:]
			continue
		}
		if c.got == 0 && len(b) >= 4 {
			if size := int(binary.BigEndian.Uint32(b)); size <= len(b)-4 {
				// A whole request: no need to gather it.
				if _, err := c.Conn.Write(b[:4+size]); err != nil {
					return n - len(b), err
				}
				b = b[4+size:]
				continue
			}
		}
		if c.want == 0 {
			k := min(4-c.got, len(b))
			c.gather(b[:k]) // copied: the prefix is buf[:4]
			b = b[k:]
			if c.got < 4 {
				break
			}
			size := int(binary.BigEndian.Uint32(c.buf))
			if size > maxGathered-4 {
				// Too large to gather: the prefix now, the rest as it comes.
				_, err := c.Conn.Write(c.buf[:4])
				c.reset()
				if err != nil {
					return n - len(b), err
				}
				c.direct = size
				continue
			}
			c.want = 4 + size
		}
		k := min(c.want-c.got, len(b))
		c.gather(b[:k])
		b = b[k:]
		if c.got == c.want {
			if err := c.flush(); err != nil {
				return n - len(b), err
			}
		}
	}
	return n, nil
}

// gather appends p to the request: by reference when it is large and c
// gathers so, else as a copy.
func (c *requestConn) gather(p []byte) {
	c.got += len(p)
	if c.refs && len(p) >= minReferenced {
		c.parts = append(c.parts, piece{ref: p})
		return
	}
	if last := len(c.parts) - 1; last >= 0 && c.parts[last].ref == nil {
		c.parts[last].to += len(p) // buf's pieces are contiguous
	} else {
		c.parts = append(c.parts, piece{from: len(c.buf), to: len(c.buf) + len(p)})
	}
	c.buf = append(c.buf, p...)
}

// flush writes the gathered request with one write (writev) and starts the
// next.
func (c *requestConn) flush() error {
	iov := c.iov[:0]
	for _, p := range c.parts {
		if p.ref != nil {
			iov = append(iov, p.ref)
		} else {
			iov = append(iov, c.buf[p.from:p.to])
		}
	}
	var err error
	if len(iov) == 1 {
		_, err = c.Conn.Write(iov[0])
	} else {
		bufs := net.Buffers(iov)
		_, err = bufs.WriteTo(c.Conn)
	}
	clear(iov) // keep no page of kafka-go's
	c.iov = iov[:0]
	c.reset()
	return err
}

// reset forgets the gathered request.
func (c *requestConn) reset() {
	clear(c.parts)
	c.parts, c.buf, c.got, c.want = c.parts[:0], c.buf[:0], 0, 0
}
