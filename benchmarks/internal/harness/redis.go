package harness

import (
	"bufio"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"time"
)

// Redis is a redis-server the harness started.
type Redis struct {
	*Proc
	Addr string
}

// StartRedis starts Debian's redis-server (found on PATH or at
// /usr/bin/redis-server) on a free loopback port, without persistence,
// pinned to cpus when set.
func StartRedis(cpus string) (*Redis, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		bin = "/usr/bin/redis-server"
	}
	addr, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	p, err := Start(Spec{
		Name: "redis-server",
		Path: bin,
		Args: []string{"--bind", "127.0.0.1", "--port", Port(addr), "--save", "", "--appendonly", "no",
			"--protected-mode", "yes", "--loglevel", "warning"},
		CPUs: cpus,
		Dir:  "/tmp",
	})
	if err != nil {
		return nil, err
	}
	r := &Redis{Proc: p, Addr: addr}
	if err := p.WaitReady(10*time.Second, func() error { _, err := r.Do("PING"); return err }); err != nil {
		_ = p.Stop(time.Second)
		return nil, err
	}
	return r, nil
}

// Do sends one command and returns its reply line (simple strings,
// integers and errors; enough for PING, FLUSHALL and DBSIZE).
func (r *Redis) Do(args ...string) (string, error) {
	c, err := net.DialTimeout("tcp", r.Addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if strings.HasPrefix(line, "-") {
		return "", fmt.Errorf("redis %s: %s", args[0], line[1:])
	}
	return line[min(1, len(line)):], nil
}
