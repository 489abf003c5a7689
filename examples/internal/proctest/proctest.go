// Package proctest builds an example command and runs it as a child process for
// the examples' tests.
package proctest

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Build compiles the package in the current directory into t.TempDir() and
// returns the binary's path.
func Build(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the example; skipped with -short")
	}
	bin := filepath.Join(t.TempDir(), "example")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// Start runs bin with args and env and waits until its stdout has printed a line
// starting with each of prefixes. It returns the rest of each such line, by
// prefix. The process gets SIGTERM when the test ends.
func Start(t *testing.T, bin string, env []string, args []string, prefixes ...string) map[string]string {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	found := make(chan map[string]string, 1)
	go func() {
		defer close(done)
		got := make(map[string]string)
		sent := false
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			for _, p := range prefixes {
				if v, ok := strings.CutPrefix(sc.Text(), p); ok {
					got[p] = strings.TrimSpace(v)
				}
			}
			if !sent && len(got) == len(prefixes) {
				found <- got
				sent = true
			}
		}
		_ = cmd.Wait()
	}()
	select {
	case got := <-found:
		return got
	case <-done:
		t.Fatalf("%s exited before printing %q", filepath.Base(bin), prefixes)
	case <-time.After(60 * time.Second):
		t.Fatalf("%s printed no %q within 60 s", filepath.Base(bin), prefixes)
	}
	return nil
}

// Run runs bin with args and env to completion and returns its stdout, trimmed.
func Run(t *testing.T, bin string, env []string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %v: %v", filepath.Base(bin), args, err)
	}
	return strings.TrimSpace(string(out))
}
