package e2e

import (
	"bytes"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sidemix/sidemix/internal/testenv"
)

// TestTCPMetrics: a sidecar's TCP listener passes a connection through to a
// real TCP server, and the mixer loaded with examples/default turns its
// reports into Istio's TCP metrics and one access log line.
func TestTCPMetrics(t *testing.T) {
	cfg := newConfig(t, nil)
	m := startMixer(t, cfg, "", "")
	a := newApp(t)

	// A TCP server that answers "pong:" and echoes what it reads until EOF.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.WriteString(c, "pong:")
				io.Copy(c, c)
			}()
		}
	}()
	tcpAddr := testenv.FreeAddr(t)
	px := startProxy(t, m.grpc, a.addr(), "--tcp-outbound", tcpAddr+"=db.data",
		"--upstreams", "db.data="+ln.Addr().String(), "--outbound", testenv.FreeAddr(t))
	// No probe of tcpAddr: it would be a connection too. The proxy opens
	// every listener before its admin answers.

	c, err := net.DialTimeout("tcp", tcpAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	payload := bytes.Repeat([]byte("abcdefghij"), 300) // 3000 bytes
	if _, err := c.Write(payload); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "pong:"+string(payload) {
		t.Fatalf("through the TCP listener: %d bytes, %v; want pong: and the 3000 bytes back", len(got), err)
	}

	labels := map[string]string{
		"reporter":                      "source",
		"source_workload":               "web",
		"destination_service_name":      "db",
		"destination_service_namespace": "data",
		"request_protocol":              "tcp",
		"response_flags":                "-",
	}
	waitMetric(t, cfg.metricsAddr, "istio_tcp_connections_opened_total", labels, 1, 10*time.Second)
	waitMetric(t, cfg.metricsAddr, "istio_tcp_connections_closed_total", labels, 1, 10*time.Second)
	waitMetric(t, cfg.metricsAddr, "istio_tcp_received_bytes_total", labels, 3000, 10*time.Second)
	waitMetric(t, cfg.metricsAddr, "istio_tcp_sent_bytes_total", labels, 3005, 10*time.Second)
	// TCP reports are not HTTP requests.
	text, err := scrape(cfg.metricsAddr)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(grepLines(text, "istio_requests_total{"), `request_protocol="tcp"`) {
		t.Errorf("a TCP connection counted as a request:\n%s", grepLines(text, "istio_requests_total{"))
	}
	m.WaitOutput(t, `"protocol":"tcp"`, 5*time.Second)

	if err := px.Stop(15 * time.Second); err != nil {
		t.Errorf("proxy did not stop cleanly on SIGTERM: %v", err)
	}
}
