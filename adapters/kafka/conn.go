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
// per request keeps those retakes rare enough for it to back off. The cost
// is one copy of each request of more than one page into the connection's
// buffer; a request that comes whole in one Write (one of at most a page,
// 64 kB) is written from it as it is.
//
// It relies on Kafka's framing: every request is a 4-byte big-endian size
// and that many bytes. A request above maxGathered bytes is written as it
// comes. Only plaintext connections are wrapped (kafka-go puts TLS on top
// of the dialed connection, which would hand this one TLS records).
type requestConn struct {
	net.Conn
	buf    []byte // the request being gathered, size prefix first
	want   int    // its full length once the prefix is known, else 0
	direct int    // bytes of a large request still to write as they come
}

// maxGathered bounds the requests gathered into one write (and the
// buffer a connection keeps).
const maxGathered = 4 << 20

// dialRequestConns wraps dial's connections in requestConns.
func dialRequestConns(dial func(context.Context, string, string) (net.Conn, error)) func(context.Context, string, string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &requestConn{Conn: c}, nil
	}
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
		if c.want == 0 && len(c.buf) == 0 && len(b) >= 4 {
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
			k := min(4-len(c.buf), len(b))
			c.buf = append(c.buf, b[:k]...)
			b = b[k:]
			if len(c.buf) < 4 {
				break
			}
			size := int(binary.BigEndian.Uint32(c.buf))
			if size > maxGathered-4 {
				// Too large to gather: the prefix now, the rest as it comes.
				_, err := c.Conn.Write(c.buf)
				c.buf = c.buf[:0]
				if err != nil {
					return n - len(b), err
				}
				c.direct = size
				continue
			}
			c.want = 4 + size
		}
		k := min(c.want-len(c.buf), len(b))
		c.buf = append(c.buf, b[:k]...)
		b = b[k:]
		if len(c.buf) == c.want {
			_, err := c.Conn.Write(c.buf)
			c.buf, c.want = c.buf[:0], 0
			if err != nil {
				return n - len(b), err
			}
		}
	}
	return n, nil
}
