package kafka

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
)

// writesConn records each Write it is given; failAt makes that write fail.
type writesConn struct {
	net.Conn
	writes [][]byte
	failAt int
}

var errWrite = errors.New("write failed")

func (c *writesConn) Write(b []byte) (int, error) {
	c.writes = append(c.writes, append([]byte(nil), b...))
	if len(c.writes) == c.failAt {
		return 0, errWrite
	}
	return len(b), nil
}

// request is a Kafka-framed request of n bytes after its size.
func request(n int, fill byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(n))
	return append(b, bytes.Repeat([]byte{fill}, n)...)
}

// TestRequestConnWritesEachRequestOnce: however a request's bytes are cut
// into writes (the size prefix too), it reaches the connection in one
// write, as it was; one too large to gather passes through as it comes.
func TestRequestConnWritesEachRequestOnce(t *testing.T) {
	a, b, c := request(100_000, 'a'), request(3, 'b'), request(70_000, 'c')
	stream := append(append(append([]byte(nil), a...), b...), c...)
	for _, chunk := range []int{1, 3, 5, 4096, 65536, len(stream)} {
		under := &writesConn{}
		rc := newRequestConn(under)
		for rest := stream; len(rest) > 0; {
			k := min(chunk, len(rest))
			if n, err := rc.Write(rest[:k]); n != k || err != nil {
				t.Fatalf("chunk %d: Write = %d, %v", chunk, n, err)
			}
			rest = rest[k:]
		}
		if len(under.writes) != 3 || !bytes.Equal(under.writes[0], a) || !bytes.Equal(under.writes[1], b) || !bytes.Equal(under.writes[2], c) {
			t.Fatalf("chunk %d: %d writes, want the 3 requests one write each", chunk, len(under.writes))
		}
		if chunk == len(stream) && cap(rc.buf) != 0 {
			t.Errorf("requests that came whole were copied into a %d-byte buffer", cap(rc.buf))
		}
	}

	big := request(maxGathered, 'x') // 4 bytes over the bound with its prefix
	under := &writesConn{}
	rc := newRequestConn(under)
	for rest := append(append([]byte(nil), big...), b...); len(rest) > 0; {
		k := min(1<<20, len(rest))
		if _, err := rc.Write(rest[:k]); err != nil {
			t.Fatal(err)
		}
		rest = rest[k:]
	}
	if got := bytes.Join(under.writes, nil); !bytes.Equal(got, append(append([]byte(nil), big...), b...)) {
		t.Fatal("a large request and the next one did not pass through intact")
	}
	if last := under.writes[len(under.writes)-1]; !bytes.Equal(last, b) {
		t.Fatal("the request after a large one was not gathered into one write")
	}
}

// TestRequestConnWriteError: a failed write of a gathered request is the
// error of the Write that completed it.
func TestRequestConnWriteError(t *testing.T) {
	under := &writesConn{failAt: 1}
	rc := newRequestConn(under)
	r := request(10, 'e')
	if n, err := rc.Write(r[:6]); n != 6 || err != nil {
		t.Fatalf("first part: %d, %v", n, err)
	}
	if _, err := rc.Write(r[6:]); !errors.Is(err, errWrite) {
		t.Fatalf("Write completing the request = %v, want the connection's error", err)
	}
}

// TestRequestConnTCPGathersPagesByReference: on a TCP connection the
// large pieces of a request are not copied, and the requests arrive intact
// however they were cut.
func TestRequestConnTCPGathersPagesByReference(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, b, c := request(100_000, 'a'), request(3, 'b'), request(70_000, 'c')
	stream := append(append(append([]byte(nil), a...), b...), c...)
	for _, chunk := range []int{1, 3, 4096, 65536, len(stream)} {
		conn, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		server, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		got := make(chan []byte)
		go func() {
			all, _ := io.ReadAll(server)
			got <- all
		}()
		rc := newRequestConn(conn)
		if !rc.refs {
			t.Fatal("a TCP connection does not gather by reference")
		}
		for rest := stream; len(rest) > 0; {
			k := min(chunk, len(rest))
			if n, err := rc.Write(rest[:k]); n != k || err != nil {
				t.Fatalf("chunk %d: Write = %d, %v", chunk, n, err)
			}
			rest = rest[k:]
		}
		if chunk == 65536 && cap(rc.buf) >= minReferenced { // kafka-go's pages
			t.Errorf("chunk %d: pages were copied into a %d-byte buffer", chunk, cap(rc.buf))
		}
		conn.Close()
		if all := <-got; !bytes.Equal(all, stream) {
			t.Errorf("chunk %d: %d bytes arrived, not the %d written", chunk, len(all), len(stream))
		}
		server.Close()
	}
}
