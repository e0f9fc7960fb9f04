package balancer_test

import (
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"

	"github.com/autoscalelua/autoscalelua/balancer"
)

// BenchmarkProxy compares balancer.Proxy with a bare httputil.ReverseProxy (Rewrite
// with SetURL and SetXForwarded, and a BufferPool) on loopback, client, proxy and
// backend in one process, in the same run. internal/proxyload is the longer harness.
func BenchmarkProxy(b *testing.B) {
	body := strings.Repeat("x", 1024)
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, body)
	}))
	defer be.Close()
	target, _ := url.Parse(be.URL)
	quiet := log.New(io.Discard, "", 0)
	newTransport := func() *http.Transport {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = 256
		return t
	}

	bareTr := newTransport()
	bare := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.SetXForwarded()
		},
		Transport:  bareTr,
		BufferPool: balancer.NewBufferPool(),
		ErrorLog:   quiet,
	}
	pool, err := balancer.New()
	if err != nil {
		b.Fatal(err)
	}
	if err := pool.Update([]balancer.Endpoint{{ID: "be", URL: be.URL}}); err != nil {
		b.Fatal(err)
	}
	px, err := balancer.NewProxy(pool, balancer.WithTransport(newTransport()), balancer.WithErrorLog(quiet))
	if err != nil {
		b.Fatal(err)
	}
	defer px.CloseIdleConnections()
	defer bareTr.CloseIdleConnections()

	for _, tt := range []struct {
		name string
		h    http.Handler
	}{{"bare", bare}, {"balancer", px}} {
		b.Run(tt.name, func(b *testing.B) {
			front := httptest.NewServer(tt.h)
			defer front.Close()
			client := &http.Client{Transport: newTransport()}
			defer client.CloseIdleConnections()
			b.ReportAllocs()
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					res, err := client.Get(front.URL + "/x")
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, res.Body)
					res.Body.Close()
					if res.StatusCode != 200 {
						b.Errorf("status %d", res.StatusCode)
						return
					}
				}
			})
		})
	}
}

// cannedTransport answers every request with the same small response, without I/O.
type cannedTransport struct{ body string }

func (c cannedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{
		StatusCode:    200,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        http.Header{"Content-Type": {"application/octet-stream"}},
		Body:          io.NopCloser(strings.NewReader(c.body)),
		ContentLength: int64(len(c.body)),
		Request:       r,
	}, nil
}

// discardWriter is a ResponseWriter that throws the response away.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardWriter) WriteHeader(int)             {}

// BenchmarkProxyHandler isolates the handlers' own CPU cost: the same request through
// a bare httputil.ReverseProxy and through balancer.Proxy, to a transport that answers
// from memory, so that sockets, the kernel and the scheduler are out of the figure.
func BenchmarkProxyHandler(b *testing.B) {
	tr := cannedTransport{body: strings.Repeat("x", 1024)}
	target, _ := url.Parse("http://10.0.0.1:8080")
	bare := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.SetXForwarded()
		},
		Transport:  tr,
		BufferPool: balancer.NewBufferPool(),
	}
	pool, err := balancer.New()
	if err != nil {
		b.Fatal(err)
	}
	if err := pool.Update([]balancer.Endpoint{{ID: "be", URL: target.String()}}); err != nil {
		b.Fatal(err)
	}
	px, err := balancer.NewProxy(pool, balancer.WithTransport(tr))
	if err != nil {
		b.Fatal(err)
	}
	// "balancer+hook" has a ProxyHook that does nothing, the price of the log phase
	// before any script runs: the counting writer comes from a pool.
	var seen int
	hooked, err := balancer.NewProxy(pool, balancer.WithTransport(tr),
		balancer.WithProxyHook(func(_ *http.Request, res balancer.ProxyResponse) { seen += res.Status }))
	if err != nil {
		b.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		h    http.Handler
	}{{"bare", bare}, {"balancer", px}, {"balancer+hook", hooked}} {
		b.Run(tt.name, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, "http://front.example/x", nil)
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				tt.h.ServeHTTP(w, req)
			}
		})
	}
}
