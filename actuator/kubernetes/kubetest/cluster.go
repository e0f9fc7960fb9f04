package kubetest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// EnvBinDir is the environment variable naming the folder that holds the etcd and
// kube-apiserver binaries (the folder scripts/kubebin.sh prints).
const EnvBinDir = "AUTOSCALELUA_KUBEBIN"

// DefaultStartTimeout bounds [Start] when the context has no deadline: the API server
// is usually ready in 4–6 s, far slower on a loaded machine.
const DefaultStartTimeout = 2 * time.Minute

// ErrNoBinaries is returned by [Start] when the folder lacks etcd or kube-apiserver.
var ErrNoBinaries = errors.New("kubetest: etcd or kube-apiserver binary not found")

// BinDir returns the folder named by [EnvBinDir], or "" when the variable is unset.
func BinDir() string { return os.Getenv(EnvBinDir) }

// HowToGetBinaries says how to provide the binaries, for skip and failure messages.
const HowToGetBinaries = "build etcd and kube-apiserver with ./scripts/kubebin.sh and export " +
	EnvBinDir + "=<the folder it prints>"

// Cluster is a running etcd and kube-apiserver pair. Its methods are safe for
// concurrent use; [Cluster.Stop] is idempotent.
type Cluster struct {
	dir        string
	host       string
	caData     []byte
	adminToken string

	etcd, apiserver *process

	stopOnce sync.Once
	stopErr  error
}

// process is a child process and the goroutine that waits for it.
type process struct {
	name string
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{}
	err  error // valid once done is closed
}

func startProcess(name string, log *os.File, bin string, args ...string) (*process, error) {
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	setPdeathsig(cmd)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("kubetest: start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, log: log, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// stop sends SIGTERM (SIGKILL after grace) and waits for the process to end.
func (p *process) stop(grace time.Duration) {
	if p == nil {
		return
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	_ = p.log.Close()
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Start starts etcd and kube-apiserver from binDir on free loopback ports, with RBAC
// authorization, a static token file holding an administrator token (group
// system:masters), service account token signing (so TokenRequest works), and no
// endpoint reconciler. It returns once /readyz answers 200, or fails when ctx ends
// (or [DefaultStartTimeout] passes, when ctx has no deadline) or a process exits;
// the error then quotes the end of the process's log. The caller must call
// [Cluster.Stop].
func Start(ctx context.Context, binDir string) (*Cluster, error) {
	etcdBin, apiBin := filepath.Join(binDir, "etcd"), filepath.Join(binDir, "kube-apiserver")
	for _, b := range []string{etcdBin, apiBin} {
		if st, err := os.Stat(b); err != nil || st.IsDir() {
			return nil, fmt.Errorf("%w: %s", ErrNoBinaries, b)
		}
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultStartTimeout)
		defer cancel()
	}
	dir, err := os.MkdirTemp("", "kubetest-")
	if err != nil {
		return nil, fmt.Errorf("kubetest: %w", err)
	}
	c := &Cluster{dir: dir}
	ok := false
	defer func() {
		if !ok {
			c.Stop()
		}
	}()
	if err := c.start(ctx, etcdBin, apiBin); err != nil {
		return nil, err
	}
	ok = true
	return c, nil
}

func (c *Cluster) start(ctx context.Context, etcdBin, apiBin string) error {
	ports, err := freePorts(3)
	if err != nil {
		return err
	}
	clientURL := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peerURL := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	c.host = "https://127.0.0.1:" + strconv.Itoa(ports[2])

	tok := make([]byte, 16)
	_, _ = rand.Read(tok)
	c.adminToken = hex.EncodeToString(tok)
	tokens := filepath.Join(c.dir, "tokens.csv")
	if err := os.WriteFile(tokens, []byte(c.adminToken+`,admin,admin-uid,"system:masters"`+"\n"), 0o600); err != nil {
		return fmt.Errorf("kubetest: %w", err)
	}
	saKey := filepath.Join(c.dir, "sa.key")
	if err := writeECKey(saKey); err != nil {
		return err
	}

	etcdLog, err := os.Create(filepath.Join(c.dir, "etcd.log"))
	if err != nil {
		return fmt.Errorf("kubetest: %w", err)
	}
	c.etcd, err = startProcess("etcd", etcdLog, etcdBin,
		"--name=default",
		"--data-dir="+filepath.Join(c.dir, "etcd"),
		"--listen-client-urls="+clientURL,
		"--advertise-client-urls="+clientURL,
		"--listen-peer-urls="+peerURL,
		"--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=default="+peerURL,
		"--unsafe-no-fsync",
		"--log-level=warn",
	)
	if err != nil {
		_ = etcdLog.Close()
		return err
	}

	apiLog, err := os.Create(filepath.Join(c.dir, "kube-apiserver.log"))
	if err != nil {
		return fmt.Errorf("kubetest: %w", err)
	}
	certDir := filepath.Join(c.dir, "certs")
	c.apiserver, err = startProcess("kube-apiserver", apiLog, apiBin,
		"--etcd-servers="+clientURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(ports[2]),
		"--cert-dir="+certDir,
		"--service-cluster-ip-range=10.0.0.0/24",
		"--endpoint-reconciler-type=none",
		"--authorization-mode=RBAC",
		"--token-auth-file="+tokens,
		"--service-account-key-file="+saKey,
		"--service-account-signing-key-file="+saKey,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--enable-priority-and-fairness=false",
		"--profiling=false",
		"--v=0",
	)
	if err != nil {
		_ = apiLog.Close()
		return err
	}
	return c.waitReady(ctx, certDir)
}

// waitReady polls /readyz until it answers 200.
func (c *Cluster) waitReady(ctx context.Context, certDir string) error {
	client := &http.Client{
		Timeout:   2 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, // the cert is not written yet
	}
	defer client.CloseIdleConnections()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last string
	for {
		for _, p := range []*process{c.etcd, c.apiserver} {
			if p.exited() {
				return fmt.Errorf("kubetest: %s exited (%v); log:\n%s", p.name, p.err, c.tail(p.name))
			}
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.host+"/readyz", nil)
		if err != nil {
			return fmt.Errorf("kubetest: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+c.adminToken)
		if resp, err := client.Do(req); err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				ca, err := os.ReadFile(filepath.Join(certDir, "apiserver.crt"))
				if err != nil {
					return fmt.Errorf("kubetest: serving certificate: %w", err)
				}
				c.caData = ca
				return nil
			}
			last = fmt.Sprintf("status %d: %s", resp.StatusCode, body)
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kubetest: kube-apiserver not ready (%s): %w; log:\n%s", last, ctx.Err(), c.tail("kube-apiserver"))
		case <-tick.C:
		}
	}
}

// tail returns the last lines of a process's log.
func (c *Cluster) tail(name string) string {
	b, err := os.ReadFile(filepath.Join(c.dir, name+".log"))
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-30):], "\n")
}

// Stop stops kube-apiserver and etcd, waits for them to exit and removes their
// files. It is idempotent and returns the error of removing the files, if any.
func (c *Cluster) Stop() error {
	c.stopOnce.Do(func() {
		c.apiserver.stop(10 * time.Second)
		c.etcd.stop(10 * time.Second)
		c.stopErr = os.RemoveAll(c.dir)
	})
	return c.stopErr
}

// Host returns the API server's URL, https://127.0.0.1:<port>.
func (c *Cluster) Host() string { return c.host }

// Config returns a new client configuration for an administrator (group
// system:masters), trusting the server's self-signed certificate.
func (c *Cluster) Config() *rest.Config { return c.ConfigForToken(c.adminToken) }

// ConfigForToken returns a new client configuration that authenticates with a bearer
// token, for example a service account's token from the TokenRequest API.
func (c *Cluster) ConfigForToken(token string) *rest.Config {
	return &rest.Config{
		Host:            c.host,
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAData: append([]byte(nil), c.caData...)},
		QPS:             -1, // no client-side rate limiting in tests
	}
}

// WriteKubeconfig writes a kubeconfig file at path whose only context, "kubetest",
// reaches the server with token (the administrator's when token is "").
func (c *Cluster) WriteKubeconfig(path, token string) error {
	if token == "" {
		token = c.adminToken
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["kubetest"] = &clientcmdapi.Cluster{Server: c.host, CertificateAuthorityData: c.caData}
	cfg.AuthInfos["kubetest"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["kubetest"] = &clientcmdapi.Context{Cluster: "kubetest", AuthInfo: "kubetest", Namespace: "default"}
	cfg.CurrentContext = "kubetest"
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("kubetest: %w", err)
	}
	return nil
}

// freePorts returns n distinct free TCP ports on 127.0.0.1. They are free when
// returned; another process could take one before it is used.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			_ = l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("kubetest: free port: %w", err)
		}
		lns = append(lns, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// writeECKey writes a new P-256 private key in PEM at path, the service account
// signing key (ES256).
func writeECKey(path string) error {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("kubetest: %w", err)
	}
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return fmt.Errorf("kubetest: %w", err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return fmt.Errorf("kubetest: %w", err)
	}
	return nil
}
