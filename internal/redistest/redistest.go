// Package redistest starts a real redis-server for a test: on a free loopback port,
// with its files in the test's temporary folder, stopped when the test ends. It also
// injects faults into it (SIGKILL, SIGSTOP and SIGCONT, restart on the same port), for
// the tests of the Redis integrations (middleware/redislimit, metrics/redisshare,
// actuator/redisstate). Without a redis-server on PATH a test skips, or fails under
// AUTOSCALELUA_INTEGRATION=1 (see internal/testenv).
package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/autoscalelua/autoscalelua/internal/testenv"
)

// Server is a redis-server process owned by one test. Its methods are safe for
// concurrent use.
type Server struct {
	t    testing.TB
	bin  string
	dir  string
	port int

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited and been reaped
}

// Start starts a redis-server for t, or skips t (fails it under
// AUTOSCALELUA_INTEGRATION=1) when none is installed. The server is killed and its
// folder removed when t ends.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		testenv.Missing(t, "redis-server", "install it with `apt-get install -y redis-server`")
	}
	s := &Server{t: t, bin: bin, dir: t.TempDir(), port: freePort(t)}
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Kill() })
	return s
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("redistest: no free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// Client returns a new client of the server, closed when the test ends. Its dial,
// read and write timeouts are short (a second), so that a test against a stopped server
// fails fast instead of hanging.
func (s *Server) Client() *redis.Client {
	c := redis.NewClient(&redis.Options{
		Addr: s.Addr(), DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second,
		MaxRetries: -1, // the integrations decide on retries themselves
	})
	s.t.Cleanup(func() { c.Close() })
	return c
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cmd := exec.Command(s.bin,
		"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--dir", s.dir, "--save", "", "--appendonly", "no",
		"--logfile", filepath.Join(s.dir, "redis.log"))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("redistest: start redis-server: %w", err)
	}
	done := make(chan struct{})
	s.cmd, s.done = cmd, done
	go func() { cmd.Wait(); close(done) }() // reaps the process whichever way it ends
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), DialTimeout: 100 * time.Millisecond, MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-done:
			log, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
			return fmt.Errorf("redistest: redis-server exited at start: %s", log)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redistest: redis-server not answering on %s: %w", s.Addr(), err)
		}
		time.Sleep(10 * time.Millisecond) // polling a process we started, not a correctness wait
	}
}

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Signal(sig)
	}
}

// Kill ends the server with SIGKILL, as a crash would: its data is lost (nothing is
// saved). Killing a killed server does nothing.
func (s *Server) Kill() {
	s.signal(syscall.SIGCONT) // a stopped process dies of SIGKILL too, but waits on nothing
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd != nil {
		cmd.Process.Kill()
		<-done
	}
}

// Pause stops the server with SIGSTOP: it keeps its connections open and answers
// nothing, as a server that hangs does, until [Server.Resume].
func (s *Server) Pause() { s.signal(syscall.SIGSTOP) }

// Resume continues a paused server with SIGCONT.
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

// Restart starts a new, empty server on the same port after a [Server.Kill].
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	if err := s.start(); err != nil {
		s.t.Fatal(err)
	}
}
