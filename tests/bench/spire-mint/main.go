// spire-mint: how many X509-SVIDs per second a running spire-server mints through its server
// API (svid/v1 MintX509SVID), with N concurrent callers on its Unix socket.
//
//	spire-mint -socket /path/api.sock -trust-domain example.org -callers 16 -seconds 10
//
// SPIRE authorizes MintX509SVID for admins and for local callers (pkg/server/authpolicy in
// SPIRE v1.13.3: allow_local), and every caller on the server's socket_path is local, so no
// admin entry or SVID is needed. The call has no rate limit and reads no registration entry:
// what it measures is the server's CSR handling and its CA signing through the KeyManager.
//
// Each caller has its own gRPC connection and loops: a fresh P-256 key and a CSR for
// spiffe://<td>/spire-mint/<caller>/<n>, then MintX509SVID. The CSR is made before the call is
// timed: the latency is the RPC alone, while the rate counts the whole loop. After -warmup
// seconds the next -seconds are measured: a mint counts when it succeeds and finishes inside
// that window. Every caller's first SVID and every -verify'th after it are checked: the leaf
// holds the CSR's public key and the requested SPIFFE ID, and the chain verifies against the
// X.509 authorities of the server's bundle (bundle/v1 GetBundle).
//
// Prints one JSON object: the counts, svids_per_sec, latency_ms (min, mean, p50, p90, p99,
// max), minted (every success, warm-up included) and client_cpu_sec (this program's CPU time,
// to tell how much of the machine the callers took). Exit status: 0 when every call
// succeeded, at least one SVID was minted in the window and every checked SVID verified; 1
// otherwise; 2 on bad arguments.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"time"

	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	svidv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/svid/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

type options struct {
	socket      string
	trustDomain string
	callers     int
	seconds     float64
	warmup      float64
	verifyEvery int
	ttl         int
	timeout     time.Duration
}

// caller is one concurrent client: its own connection, its own counters.
type caller struct {
	id        int
	svid      svidv1.SVIDClient
	latencies []time.Duration // of the mints counted in the window
	minted    int             // every successful mint, warm-up included
	errors    int
	firstErr  string
	verified  int
	wrong     int
	wrongWhy  string
	issuers   map[string]bool // SHA-256 of the SubjectPublicKeyInfo of each verified SVID's issuer
}

type latencyMs struct {
	Min  float64 `json:"min"`
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
}

type result struct {
	Callers     int       `json:"callers"`
	Seconds     float64   `json:"seconds"`
	Warmup      float64   `json:"warmup"`
	SVIDs       int       `json:"svids"`
	SVIDsPerSec float64   `json:"svids_per_sec"`
	Minted      int       `json:"minted"`
	ClientCPU   float64   `json:"client_cpu_sec"`
	Errors      int       `json:"errors"`
	FirstError  string    `json:"first_error,omitempty"`
	Verified    int       `json:"verified"`
	Wrong       int       `json:"wrong"`
	WrongWhy    string    `json:"wrong_reason,omitempty"`
	IssuerSPKI  []string  `json:"issuer_spki_sha256"`
	LatencyMs   latencyMs `json:"latency_ms"`
}

func main() {
	var o options
	flag.StringVar(&o.socket, "socket", "", "spire-server's API socket (server socket_path)")
	flag.StringVar(&o.trustDomain, "trust-domain", "example.org", "the server's trust domain")
	flag.IntVar(&o.callers, "callers", 1, "concurrent callers, each with its own connection")
	flag.Float64Var(&o.seconds, "seconds", 10, "measured seconds")
	flag.Float64Var(&o.warmup, "warmup", 2, "seconds of minting before the measurement")
	flag.IntVar(&o.verifyEvery, "verify", 50, "check each caller's first SVID and every Nth after it")
	flag.IntVar(&o.ttl, "ttl", 600, "requested X509-SVID TTL in seconds (0: the server's default)")
	flag.DurationVar(&o.timeout, "timeout", 30*time.Second, "deadline of one call")
	flag.Parse()
	if o.socket == "" || o.callers < 1 || o.seconds <= 0 || o.warmup < 0 || o.verifyEvery < 1 ||
		flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: spire-mint -socket PATH [-trust-domain TD] [-callers N] "+
			"[-seconds S] [-warmup S] [-verify N] [-ttl S] [-timeout D]")
		os.Exit(2)
	}
	res, err := run(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "spire-mint:", err)
		os.Exit(1)
	}
	out, _ := json.Marshal(res)
	fmt.Println(string(out))
	if res.Errors > 0 || res.Wrong > 0 || res.SVIDs == 0 || res.Verified == 0 {
		fmt.Fprintf(os.Stderr, "spire-mint: %d errors (%s), %d wrong (%s), %d SVIDs, %d verified\n",
			res.Errors, res.FirstError, res.Wrong, res.WrongWhy, res.SVIDs, res.Verified)
		os.Exit(1)
	}
}

func dial(socket string) (*grpc.ClientConn, error) {
	abs, err := filepath.Abs(socket)
	if err != nil {
		return nil, err
	}
	return grpc.NewClient("unix://"+abs, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

// authorities: the server bundle's X.509 authorities as a pool.
func authorities(ctx context.Context, conn *grpc.ClientConn) (*x509.CertPool, error) {
	b, err := bundlev1.NewBundleClient(conn).GetBundle(ctx, &bundlev1.GetBundleRequest{})
	if err != nil {
		return nil, fmt.Errorf("GetBundle: %w", err)
	}
	pool := x509.NewCertPool()
	for _, a := range b.X509Authorities {
		c, err := x509.ParseCertificate(a.Asn1)
		if err != nil {
			return nil, fmt.Errorf("bundle authority: %w", err)
		}
		pool.AddCert(c)
	}
	if len(b.X509Authorities) == 0 {
		return nil, errors.New("the bundle has no X.509 authority")
	}
	return pool, nil
}

func run(o options) (*result, error) {
	ctx := context.Background()
	conns := make([]*grpc.ClientConn, o.callers)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	callers := make([]*caller, o.callers)
	for i := range callers {
		conn, err := dial(o.socket)
		if err != nil {
			return nil, err
		}
		conns[i] = conn
		callers[i] = &caller{id: i, svid: svidv1.NewSVIDClient(conn), issuers: map[string]bool{}}
	}
	bctx, cancel := context.WithTimeout(ctx, o.timeout)
	roots, err := authorities(bctx, conns[0])
	cancel()
	if err != nil {
		return nil, err
	}
	var rootsMu sync.Mutex // roots is replaced when the server's bundle changes under us

	start := time.Now()
	from := start.Add(seconds(o.warmup))
	until := from.Add(seconds(o.seconds))
	var wg sync.WaitGroup
	for _, c := range callers {
		wg.Add(1)
		go func(c *caller) {
			defer wg.Done()
			for n := 0; time.Now().Before(until); n++ {
				id := fmt.Sprintf("spiffe://%s/spire-mint/%d/%d", o.trustDomain, c.id, n)
				key, csr, err := newCSR(id)
				if err != nil {
					c.fail(err)
					continue
				}
				cctx, cancel := context.WithTimeout(ctx, o.timeout)
				t0 := time.Now()
				resp, err := c.svid.MintX509SVID(cctx, &svidv1.MintX509SVIDRequest{
					Csr: csr, Ttl: int32(o.ttl)})
				t1 := time.Now()
				cancel()
				if err != nil {
					c.fail(err)
					continue
				}
				c.minted++
				if !t1.Before(from) && !t1.After(until) {
					c.latencies = append(c.latencies, t1.Sub(t0))
				}
				if n%o.verifyEvery != 0 {
					continue
				}
				rootsMu.Lock()
				pool := roots
				rootsMu.Unlock()
				issuer, err := check(resp.GetSvid().GetCertChain(), id, &key.PublicKey, pool)
				if err != nil {
					// a CA rotation since the bundle was read: read it again, check once more
					rctx, rcancel := context.WithTimeout(ctx, o.timeout)
					if p, berr := authorities(rctx, conns[c.id]); berr == nil {
						rootsMu.Lock()
						roots = p
						rootsMu.Unlock()
						issuer, err = check(resp.GetSvid().GetCertChain(), id, &key.PublicKey, p)
					}
					rcancel()
				}
				if err != nil {
					c.wrong++
					if c.wrongWhy == "" {
						c.wrongWhy = err.Error()
					}
					continue
				}
				c.verified++
				c.issuers[issuer] = true
			}
		}(c)
	}
	wg.Wait()
	return summarize(o, callers), nil
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func (c *caller) fail(err error) {
	c.errors++
	if c.firstErr == "" {
		if st, ok := status.FromError(err); ok {
			c.firstErr = st.Code().String() + ": " + st.Message()
		} else {
			c.firstErr = err.Error()
		}
	}
}

// newCSR: a fresh P-256 key and a DER CSR for that SPIFFE ID (its only URI SAN)
func newCSR(id string) (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	u, err := url.Parse(id)
	if err != nil {
		return nil, nil, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader,
		&x509.CertificateRequest{URIs: []*url.URL{u}}, key)
	return key, csr, err
}

// check: the chain's leaf is an X509-SVID for id holding pub, and the chain verifies against
// roots. Returns the SHA-256 (hex) of the issuer's SubjectPublicKeyInfo.
func check(chain [][]byte, id string, pub *ecdsa.PublicKey, roots *x509.CertPool) (string, error) {
	if len(chain) == 0 {
		return "", errors.New("empty certificate chain")
	}
	certs := make([]*x509.Certificate, len(chain))
	for i, der := range chain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return "", fmt.Errorf("certificate %d: %w", i, err)
		}
		certs[i] = c
	}
	leaf := certs[0]
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != id {
		return "", fmt.Errorf("leaf URI SANs %v, want %s", leaf.URIs, id)
	}
	if got, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || !got.Equal(pub) {
		return "", errors.New("leaf public key is not the CSR's")
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	paths, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		return "", err
	}
	if len(paths[0]) < 2 {
		return "", errors.New("leaf verified as its own root")
	}
	sum := sha256.Sum256(paths[0][1].RawSubjectPublicKeyInfo)
	return hex.EncodeToString(sum[:]), nil
}

func summarize(o options, callers []*caller) *result {
	r := &result{Callers: o.callers, Seconds: o.seconds, Warmup: o.warmup, IssuerSPKI: []string{}}
	var all []time.Duration
	issuers := map[string]bool{}
	for _, c := range callers {
		all = append(all, c.latencies...)
		r.Errors += c.errors
		r.Minted += c.minted
		r.Verified += c.verified
		r.Wrong += c.wrong
		if r.FirstError == "" {
			r.FirstError = c.firstErr
		}
		if r.WrongWhy == "" {
			r.WrongWhy = c.wrongWhy
		}
		for k := range c.issuers {
			issuers[k] = true
		}
	}
	for k := range issuers {
		r.IssuerSPKI = append(r.IssuerSPKI, k)
	}
	sort.Strings(r.IssuerSPKI)
	r.ClientCPU = round(cpuSeconds(), 3)
	r.SVIDs = len(all)
	r.SVIDsPerSec = round(float64(len(all))/o.seconds, 1)
	if len(all) == 0 {
		return r
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	ms := func(d time.Duration) float64 { return round(float64(d)/float64(time.Millisecond), 3) }
	pct := func(p float64) float64 {
		i := int(math.Ceil(p/100*float64(len(all)))) - 1
		return ms(all[max(i, 0)])
	}
	var sum time.Duration
	for _, d := range all {
		sum += d
	}
	r.LatencyMs = latencyMs{Min: ms(all[0]), Mean: ms(sum / time.Duration(len(all))),
		P50: pct(50), P90: pct(90), P99: pct(99), Max: ms(all[len(all)-1])}
	return r
}

// cpuSeconds: user and system CPU time of this process so far
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}

func round(v float64, places int) float64 {
	f := math.Pow(10, float64(places))
	return math.Round(v*f) / f
}
