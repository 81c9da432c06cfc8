package testenv_test

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sidemix/sidemix/internal/testenv"
)

// ping sends a PING in the inline protocol and returns the reply line.
func ping(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

func TestRedisStopAndRestart(t *testing.T) {
	r := testenv.StartRedis(t)
	if got, err := ping(r.Addr()); err != nil || got != "+PONG" {
		t.Fatalf("PING = %q, %v", got, err)
	}
	r.Pause()
	c, err := net.DialTimeout("tcp", r.Addr(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(200 * time.Millisecond))
	c.Write([]byte("PING\r\n"))
	if _, err := c.Read(make([]byte, 16)); err == nil {
		t.Error("a paused server answered")
	}
	c.Close()
	r.Resume()
	if got, err := ping(r.Addr()); err != nil || got != "+PONG" {
		t.Fatalf("PING after Resume = %q, %v", got, err)
	}
	r.Kill()
	if _, err := ping(r.Addr()); err == nil {
		t.Fatal("PING answered after Kill")
	}
	r.Restart()
	if got, err := ping(r.Addr()); err != nil || got != "+PONG" {
		t.Fatalf("PING after Restart = %q, %v", got, err)
	}
	r.Stop()
	if _, err := ping(r.Addr()); err == nil {
		t.Fatal("PING answered after Stop")
	}
}
