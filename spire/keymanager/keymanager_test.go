package keymanager

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/pkcs11"
	keymanagerv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/keymanager/v1"
	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"vault-transit-pkcs11/spire/internal/testtoken"
)

// The tests drive the plugin against real tokens (internal/testtoken): SoftHSM2 and
// vault-transit-pkcs11 over the Vault the environment names.

var ctx = context.Background()

type backend = testtoken.Backend

func backends(t *testing.T, fn func(t *testing.T, b *backend)) { testtoken.Each(t, fn) }

func newIdent() string { return testtoken.NewIdent() }

// load configures a plugin; the keys of its namespace are destroyed at the end of the test.
func load(t *testing.T, hcl string) *Plugin {
	t.Helper()
	p := New()
	if _, err := p.Configure(ctx, &configv1.ConfigureRequest{HclConfiguration: hcl,
		CoreConfiguration: &configv1.CoreConfiguration{TrustDomain: "example.org"}}); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	t.Cleanup(func() {
		if st, err := p.state(); err == nil {
			for _, o := range namespaceObjects(t, p, pkcs11.CKO_PRIVATE_KEY) {
				_ = st.tok.destroy(ctx, o)
			}
			for _, o := range namespaceObjects(t, p, pkcs11.CKO_PUBLIC_KEY) {
				_ = st.tok.destroy(ctx, o)
			}
		}
		p.Close()
	})
	return p
}

// namespaceObjects lists the labels of the plugin's namespace on the token, of one class.
func namespaceObjects(t *testing.T, p *Plugin, class uint) []string {
	t.Helper()
	st, err := p.state()
	if err != nil {
		t.Fatal(err)
	}
	objs, err := st.tok.findObjects(ctx, classTemplate(class, ""))
	if err != nil {
		t.Fatalf("listing objects: %v", err)
	}
	seen := map[string]bool{}
	var out []string
	for _, o := range objs {
		if strings.HasPrefix(o.label, st.set.namespace) && !seen[o.label] {
			seen[o.label] = true
			out = append(out, o.label)
		}
	}
	return out
}

func generate(t *testing.T, p *Plugin, id string, kt keymanagerv1.KeyType) *keymanagerv1.PublicKey {
	t.Helper()
	resp, err := p.GenerateKey(ctx, &keymanagerv1.GenerateKeyRequest{KeyId: id, KeyType: kt})
	if err != nil {
		t.Fatalf("GenerateKey(%s, %s): %v", id, kt, err)
	}
	pk := resp.PublicKey
	if pk.Id != id || pk.Type != kt || len(pk.PkixData) == 0 {
		t.Fatalf("GenerateKey(%s, %s) returned id %q type %s", id, kt, pk.Id, pk.Type)
	}
	sum := sha256.Sum256(pk.PkixData)
	if pk.Fingerprint != hex.EncodeToString(sum[:]) {
		t.Fatalf("fingerprint %q is not the SHA-256 of the PKIX data", pk.Fingerprint)
	}
	return pk
}

type signCase struct {
	hash crypto.Hash
	alg  keymanagerv1.HashAlgorithm
	pss  bool
	salt int32 // for PSS: as SPIRE sends it (-1 equals hash, 0 auto)
}

func digest(h crypto.Hash, msg string) []byte {
	switch h {
	case crypto.SHA384:
		d := sha512.Sum384([]byte(msg))
		return d[:]
	case crypto.SHA512:
		d := sha512.Sum512([]byte(msg))
		return d[:]
	}
	d := sha256.Sum256([]byte(msg))
	return d[:]
}

// signAndVerify signs with the plugin and verifies with Go's crypto against the PKIX key the
// plugin returned.
func signAndVerify(t *testing.T, p *Plugin, pk *keymanagerv1.PublicKey, c signCase) {
	t.Helper()
	d := digest(c.hash, "spire "+pk.Id)
	req := &keymanagerv1.SignDataRequest{KeyId: pk.Id, Data: d}
	if c.pss {
		req.SignerOpts = &keymanagerv1.SignDataRequest_PssOptions{PssOptions: &keymanagerv1.SignDataRequest_PSSOptions{
			SaltLength: c.salt, HashAlgorithm: c.alg}}
	} else {
		req.SignerOpts = &keymanagerv1.SignDataRequest_HashAlgorithm{HashAlgorithm: c.alg}
	}
	resp, err := p.SignData(ctx, req)
	if err != nil {
		t.Fatalf("SignData(%s, %v): %v", pk.Id, c, err)
	}
	if resp.KeyFingerprint != pk.Fingerprint {
		t.Fatalf("SignData fingerprint %q, want %q", resp.KeyFingerprint, pk.Fingerprint)
	}
	pub, err := x509.ParsePKIXPublicKey(pk.PkixData)
	if err != nil {
		t.Fatal(err)
	}
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(k, d, resp.Signature) {
			t.Fatalf("ECDSA signature does not verify (%v)", c)
		}
	case *rsa.PublicKey:
		if c.pss {
			salt := int(c.salt)
			want := salt
			switch salt {
			case -1:
				want = c.hash.Size()
			case 0:
				want = (k.N.BitLen()-1+7)/8 - 2 - c.hash.Size()
			}
			// An explicit salt length: the signature must have exactly what SPIRE asked for.
			if err := rsa.VerifyPSS(k, c.hash, d, resp.Signature, &rsa.PSSOptions{SaltLength: want, Hash: c.hash}); err != nil {
				t.Fatalf("PSS signature (salt %d) does not verify with salt length %d: %v", c.salt, want, err)
			}
		} else if err := rsa.VerifyPKCS1v15(k, c.hash, d, resp.Signature); err != nil {
			t.Fatalf("PKCS#1 v1.5 signature does not verify: %v", err)
		}
	default:
		t.Fatalf("unexpected key %T", pub)
	}
}

var hashCases = []signCase{
	{hash: crypto.SHA256, alg: keymanagerv1.HashAlgorithm_SHA256},
	{hash: crypto.SHA384, alg: keymanagerv1.HashAlgorithm_SHA384},
	{hash: crypto.SHA512, alg: keymanagerv1.HashAlgorithm_SHA512},
}

func TestKeyTypesAndSignatures(t *testing.T) {
	backends(t, func(t *testing.T, b *backend) {
		p := load(t, b.HCL(newIdent()))
		for _, kt := range []keymanagerv1.KeyType{keymanagerv1.KeyType_EC_P256, keymanagerv1.KeyType_EC_P384,
			keymanagerv1.KeyType_RSA_2048, keymanagerv1.KeyType_RSA_4096} {
			t.Run(kt.String(), func(t *testing.T) {
				pk := generate(t, p, "key-"+kt.String(), kt)
				got, err := p.GetPublicKey(ctx, &keymanagerv1.GetPublicKeyRequest{KeyId: pk.Id})
				if err != nil || got.PublicKey == nil || got.PublicKey.Fingerprint != pk.Fingerprint {
					t.Fatalf("GetPublicKey: %v %v", got, err)
				}
				cases := hashCases
				if kt == keymanagerv1.KeyType_RSA_2048 || kt == keymanagerv1.KeyType_RSA_4096 {
					for _, h := range hashCases {
						for _, salt := range []int32{-1, 0, 20} {
							cases = append(cases, signCase{hash: h.hash, alg: h.alg, pss: true, salt: salt})
						}
					}
				}
				for _, c := range cases {
					signAndVerify(t, p, pk, c)
				}
			})
		}
	})
}

func TestBadRequests(t *testing.T) {
	backends(t, func(t *testing.T, b *backend) {
		p := load(t, b.HCL(newIdent()))
		ec := generate(t, p, "ec", keymanagerv1.KeyType_EC_P256)
		rsaKey := generate(t, p, "rsa", keymanagerv1.KeyType_RSA_2048)
		d := digest(crypto.SHA256, "x")
		for _, c := range []struct {
			name string
			err  error
			code codes.Code
			msg  string
		}{
			{"empty id", p2e(p.GenerateKey(ctx, &keymanagerv1.GenerateKeyRequest{KeyType: keymanagerv1.KeyType_EC_P256})), codes.InvalidArgument, "key id is required"},
			{"no type", p2e(p.GenerateKey(ctx, &keymanagerv1.GenerateKeyRequest{KeyId: "x"})), codes.InvalidArgument, "key type is required"},
			{"unknown key", p2e(p.SignData(ctx, &keymanagerv1.SignDataRequest{KeyId: "nope", Data: d,
				SignerOpts: &keymanagerv1.SignDataRequest_HashAlgorithm{HashAlgorithm: keymanagerv1.HashAlgorithm_SHA256}})), codes.NotFound, `key "nope" not found`},
			{"no opts", p2e(p.SignData(ctx, &keymanagerv1.SignDataRequest{KeyId: ec.Id, Data: d})), codes.InvalidArgument, "signer opts are required"},
			{"wrong digest length", p2e(p.SignData(ctx, &keymanagerv1.SignDataRequest{KeyId: ec.Id, Data: d[:20],
				SignerOpts: &keymanagerv1.SignDataRequest_HashAlgorithm{HashAlgorithm: keymanagerv1.HashAlgorithm_SHA256}})), codes.InvalidArgument, "not a SHA256 digest"},
			{"sha3", p2e(p.SignData(ctx, &keymanagerv1.SignDataRequest{KeyId: ec.Id, Data: d,
				SignerOpts: &keymanagerv1.SignDataRequest_HashAlgorithm{HashAlgorithm: keymanagerv1.HashAlgorithm_SHA3_256}})), codes.InvalidArgument, "not supported"},
			{"pss on ec", p2e(p.SignData(ctx, &keymanagerv1.SignDataRequest{KeyId: ec.Id, Data: d,
				SignerOpts: &keymanagerv1.SignDataRequest_PssOptions{PssOptions: &keymanagerv1.SignDataRequest_PSSOptions{HashAlgorithm: keymanagerv1.HashAlgorithm_SHA256}}})), codes.InvalidArgument, "PSS does not apply"},
			{"salt too long", p2e(p.SignData(ctx, &keymanagerv1.SignDataRequest{KeyId: rsaKey.Id, Data: d,
				SignerOpts: &keymanagerv1.SignDataRequest_PssOptions{PssOptions: &keymanagerv1.SignDataRequest_PSSOptions{SaltLength: 300, HashAlgorithm: keymanagerv1.HashAlgorithm_SHA256}}})), codes.InvalidArgument, "out of range"},
		} {
			st, _ := status.FromError(c.err)
			if c.err == nil || st.Code() != c.code || !strings.Contains(st.Message(), c.msg) {
				t.Errorf("%s: got %v, want %s containing %q", c.name, c.err, c.code, c.msg)
			}
		}
		got, err := p.GetPublicKey(ctx, &keymanagerv1.GetPublicKeyRequest{KeyId: "nope"})
		if err != nil || got.PublicKey != nil {
			t.Errorf("GetPublicKey(nope) = %v, %v; want an empty response", got, err)
		}
	})
}

func p2e[T any](_ T, err error) error { return err }

func signReq(id, msg string) *keymanagerv1.SignDataRequest {
	return &keymanagerv1.SignDataRequest{KeyId: id, Data: digest(crypto.SHA256, msg),
		SignerOpts: &keymanagerv1.SignDataRequest_HashAlgorithm{HashAlgorithm: keymanagerv1.HashAlgorithm_SHA256}}
}

// A replaced key: the new pair exists and the old one is gone; signing by id uses the new one.
func TestReplaceAndRestart(t *testing.T) {
	backends(t, func(t *testing.T, b *backend) {
		ident := newIdent()
		p := load(t, b.HCL(ident))
		old := generate(t, p, "x509-CA-A", keymanagerv1.KeyType_EC_P256)
		generate(t, p, "JWT-Signer-A", keymanagerv1.KeyType_EC_P384)
		oldLabels := namespaceObjects(t, p, pkcs11.CKO_PRIVATE_KEY)
		if len(oldLabels) != 2 {
			t.Fatalf("after two GenerateKey: %d private keys in the namespace (%v), want 2", len(oldLabels), oldLabels)
		}
		for _, l := range oldLabels {
			if !strings.HasPrefix(l, ident+".") {
				t.Fatalf("label %q is not in namespace %q", l, ident)
			}
		}
		nw := generate(t, p, "x509-CA-A", keymanagerv1.KeyType_RSA_2048)
		if nw.Fingerprint == old.Fingerprint {
			t.Fatal("the replaced key has the same fingerprint")
		}
		priv := namespaceObjects(t, p, pkcs11.CKO_PRIVATE_KEY)
		pub := namespaceObjects(t, p, pkcs11.CKO_PUBLIC_KEY)
		if len(priv) != 2 || len(pub) != 2 {
			t.Fatalf("after replacing: private %v public %v, want two of each", priv, pub)
		}
		signAndVerify(t, p, nw, signCase{hash: crypto.SHA256, alg: keymanagerv1.HashAlgorithm_SHA256})

		// A second server process with the same identifier: the same keys, none created.
		before := strings.Join(priv, ",")
		q := New()
		if _, err := q.Configure(ctx, &configv1.ConfigureRequest{HclConfiguration: b.HCL(ident)}); err != nil {
			t.Fatal(err)
		}
		defer q.Close()
		keys, err := q.GetPublicKeys(ctx, &keymanagerv1.GetPublicKeysRequest{})
		if err != nil || len(keys.PublicKeys) != 2 {
			t.Fatalf("GetPublicKeys after a restart: %v, %v", keys, err)
		}
		for _, k := range keys.PublicKeys {
			if k.Id == "x509-CA-A" && k.Fingerprint != nw.Fingerprint {
				t.Fatalf("after a restart x509-CA-A has fingerprint %s, want %s", k.Fingerprint, nw.Fingerprint)
			}
		}
		signAndVerify(t, q, nw, signCase{hash: crypto.SHA384, alg: keymanagerv1.HashAlgorithm_SHA384, pss: true, salt: -1})
		if after := strings.Join(namespaceObjects(t, p, pkcs11.CKO_PRIVATE_KEY), ","); after != before {
			t.Fatalf("a restart changed the keys: %s -> %s", before, after)
		}
	})
}

// Two servers with different identifiers on one token: neither sees, replaces nor disposes of
// the other's keys; disposal removes only superseded keys of its own namespace.
func TestNamespacesAndDisposal(t *testing.T) {
	backends(t, func(t *testing.T, b *backend) {
		identA, identB := newIdent(), newIdent()
		a := load(t, b.HCL(identA))
		bb := load(t, b.HCL(identB))
		// A namespace whose identifier starts with A's: still another namespace.
		c := load(t, b.HCL(identA+"-x"))
		ka := generate(t, a, "x509-CA-A", keymanagerv1.KeyType_EC_P256)
		kb := generate(t, bb, "x509-CA-A", keymanagerv1.KeyType_EC_P256)
		generate(t, c, "x509-CA-A", keymanagerv1.KeyType_EC_P256)
		if ka.Fingerprint == kb.Fingerprint {
			t.Fatal("two servers got the same key")
		}
		stA, _ := a.state()
		// A superseded generation of A's x509-CA-A, left as a crash would leave it: older than
		// the current one.
		cur := stA.entries["x509-CA-A"]
		oldGen := fmt.Sprintf("%012x%s", generationTime(cur.gen).Add(-time.Hour).UnixMilli(), "0000")
		staleLabel := objectLabel(stA.set.namespace, "x509-CA-A", oldGen)
		if _, _, err := stA.tok.generate(ctx, keyTypes[keymanagerv1.KeyType_EC_P256], staleLabel); err != nil {
			t.Fatal(err)
		}
		// A newer one (another process with the same identifier would make it): never disposed.
		newGen := fmt.Sprintf("%012x%s", generationTime(cur.gen).Add(time.Hour).UnixMilli(), "0000")
		newerLabel := objectLabel(stA.set.namespace, "x509-CA-A", newGen)
		if _, _, err := stA.tok.generate(ctx, keyTypes[keymanagerv1.KeyType_EC_P256], newerLabel); err != nil {
			t.Fatal(err)
		}
		// Within the grace period nothing goes.
		a.now = func() time.Time { return generationTime(cur.gen).Add(47 * time.Hour) }
		if gone, err := a.dispose(ctx, stA); err != nil || len(gone) != 0 {
			t.Fatalf("dispose within the grace period removed %v (%v)", gone, err)
		}
		a.now = func() time.Time { return generationTime(cur.gen).Add(49 * time.Hour) }
		gone, err := a.dispose(ctx, stA)
		if err != nil || len(gone) != 1 || gone[0] != staleLabel {
			t.Fatalf("dispose removed %v (%v), want only %s", gone, err, staleLabel)
		}
		objs := strings.Join(namespaceObjects(t, a, pkcs11.CKO_PRIVATE_KEY), ",")
		if strings.Contains(objs, staleLabel) || !strings.Contains(objs, cur.label) || !strings.Contains(objs, newerLabel) {
			t.Fatalf("after disposal A's namespace holds %s", objs)
		}
		for _, q := range []*Plugin{bb, c} {
			if n := len(namespaceObjects(t, q, pkcs11.CKO_PRIVATE_KEY)); n != 1 {
				t.Fatalf("another namespace lost or gained keys: %d", n)
			}
			keys, _ := q.GetPublicKeys(ctx, &keymanagerv1.GetPublicKeysRequest{})
			if len(keys.PublicKeys) != 1 || keys.PublicKeys[0].Fingerprint == ka.Fingerprint {
				t.Fatalf("another namespace sees %v", keys.PublicKeys)
			}
		}
		// B replaces its key: A's keys stay.
		generate(t, bb, "x509-CA-A", keymanagerv1.KeyType_EC_P256)
		if got := strings.Join(namespaceObjects(t, a, pkcs11.CKO_PRIVATE_KEY), ","); got != objs {
			t.Fatalf("B's rotation changed A's keys: %s -> %s", objs, got)
		}
	})
}

// Concurrent SignData calls all verify; each takes its own session from a pool bounded by
// max_sessions (that they then run side by side in the module is what plugin-go.sh checks in
// the module's batch statistics).
func TestConcurrentSign(t *testing.T) {
	backends(t, func(t *testing.T, b *backend) {
		p := load(t, b.HCL(newIdent(), "max_sessions = 8"))
		pk := generate(t, p, "x509-CA-A", keymanagerv1.KeyType_EC_P256)
		st, _ := p.state()
		var wg sync.WaitGroup
		var maxInUse int
		var mu sync.Mutex
		errs := make(chan error, 64)
		for i := 0; i < 64; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				d := digest(crypto.SHA256, fmt.Sprint("msg ", i))
				resp, err := p.SignData(ctx, &keymanagerv1.SignDataRequest{KeyId: pk.Id, Data: d,
					SignerOpts: &keymanagerv1.SignDataRequest_HashAlgorithm{HashAlgorithm: keymanagerv1.HashAlgorithm_SHA256}})
				mu.Lock()
				if n := len(st.tok.sem); n > maxInUse {
					maxInUse = n
				}
				mu.Unlock()
				if err != nil {
					errs <- err
					return
				}
				pub, _ := x509.ParsePKIXPublicKey(pk.PkixData)
				if !ecdsa.VerifyASN1(pub.(*ecdsa.PublicKey), d, resp.Signature) {
					errs <- fmt.Errorf("signature %d does not verify", i)
				}
			}(i)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		st.tok.mu.Lock()
		idle := len(st.tok.idle)
		st.tok.mu.Unlock()
		if idle < 1 || idle > 8 {
			t.Errorf("%d sessions in the pool after 64 concurrent signatures, want 1..8 (max_sessions 8)", idle)
		}
		t.Logf("sessions opened: %d, most in use seen: %d", idle, maxInUse)

		// Each SignData takes a session of its own from the pool, up to max_sessions: with 7 of
		// 8 in use a signature still goes through; with all 8 in use it waits (here: until its
		// context ends), and goes through as soon as one is given back.
		var held []pkcs11.SessionHandle
		for i := 0; i < 8; i++ {
			sh, err := st.tok.session(ctx)
			if err != nil {
				t.Fatal(err)
			}
			held = append(held, sh)
			if i == 6 {
				if _, err := p.SignData(ctx, signReq(pk.Id, "7 of 8")); err != nil {
					t.Fatalf("SignData with 7 of 8 sessions in use: %v", err)
				}
			}
		}
		short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		_, err := p.SignData(short, signReq(pk.Id, "8 of 8"))
		cancel()
		if err == nil {
			t.Fatal("SignData with all 8 sessions in use did not wait for one")
		}
		st.tok.release(held[0], nil)
		if _, err := p.SignData(ctx, signReq(pk.Id, "one back")); err != nil {
			t.Fatalf("SignData after a session was given back: %v", err)
		}
		for _, sh := range held[1:] {
			st.tok.release(sh, nil)
		}
	})
}

// With Vault unreachable at start, Configure fails within the module's operation deadline
// (timeout = 3 here) and the error carries the module's own explanation. The module reads its
// configuration once per process, so this runs in a child process of the test binary.
func TestVaultUnreachableAtStart(t *testing.T) {
	if os.Getenv("SKM_CHILD_UNREACHABLE") == "1" {
		b := testtoken.VTP(t)
		p := New()
		start := time.Now()
		_, err := p.Configure(ctx, &configv1.ConfigureRequest{HclConfiguration: b.HCL(newIdent())})
		fmt.Printf("CONFIGURE-RESULT %.1fs %v\n", time.Since(start).Seconds(), err)
		return
	}
	b := testtoken.VTP(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := "http://" + l.Addr().String()
	l.Close() // nothing listens there now
	conf := filepath.Join(t.TempDir(), "unreachable.conf")
	text := "[vault]\naddress = " + addr + "\ntimeout = 3\n[slot s]\nmount = transit\nlabel = " + b.Token + "\n"
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestVaultUnreachableAtStart$", "-test.v")
	env := []string{"SKM_CHILD_UNREACHABLE=1", "VAULT_TRANSIT_PKCS11_CONFIG=" + conf, "VAULT_ADDR=" + addr,
		"VAULT_TOKEN=unused-token"}
	for _, kv := range os.Environ() {
		switch strings.SplitN(kv, "=", 2)[0] {
		case "VAULT_ADDR", "VAULT_TOKEN", "VAULT_TRANSIT_PKCS11_CONFIG", "VAULT_TRANSIT_PKCS11_DEBUG":
		default:
			env = append(env, kv)
		}
	}
	cmd.Env = env
	start := time.Now()
	out, err := cmd.CombinedOutput()
	took := time.Since(start)
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	var line string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "CONFIGURE-RESULT ") {
			line = l
		}
	}
	t.Logf("%s (child ran %.1fs)", line, took.Seconds())
	switch {
	case line == "":
		t.Fatalf("child printed no result:\n%s", out)
	case strings.HasSuffix(line, " <nil>"):
		t.Fatal("Configure succeeded with Vault unreachable")
	case took > 20*time.Second:
		t.Fatalf("Configure took %v with a 3 s module timeout", took)
	case !strings.Contains(line, "(module: ") || !strings.Contains(line, l.Addr().String()):
		t.Fatalf("the error does not carry the module's explanation naming %s: %s", addr, line)
	}
}

// state returns the current state without holding it (tests only).
func (p *Plugin) state() (*state, error) {
	st, err := p.acquire()
	if err == nil {
		st.release()
	}
	return st, err
}

// Close (and a new Configure) while SignData calls are in flight: the token is closed only
// after they leave, so each call either signs or is refused as not configured, never fails
// on a session closed under it.
func TestCloseWhileSigning(t *testing.T) {
	backends(t, func(t *testing.T, b *backend) {
		ident := newIdent()
		p := load(t, b.HCL(ident))
		pk := generate(t, p, "x509-CA-A", keymanagerv1.KeyType_EC_P256)
		d := digest(crypto.SHA256, "close")
		req := &keymanagerv1.SignDataRequest{KeyId: pk.Id, Data: d,
			SignerOpts: &keymanagerv1.SignDataRequest_HashAlgorithm{HashAlgorithm: keymanagerv1.HashAlgorithm_SHA256}}
		var wg sync.WaitGroup
		var mu sync.Mutex
		signed, refused := 0, 0
		for i := 0; i < 16; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					_, err := p.SignData(ctx, req)
					mu.Lock()
					switch {
					case err == nil:
						signed++
					case status.Code(err) == codes.FailedPrecondition:
						refused++
					default:
						t.Errorf("SignData during Configure/Close: %v", err)
					}
					mu.Unlock()
					if err != nil {
						return
					}
				}
			}()
		}
		time.Sleep(100 * time.Millisecond)
		// A second Configure replaces the token under the callers, then Close ends it.
		if _, err := p.Configure(ctx, &configv1.ConfigureRequest{HclConfiguration: b.HCL(ident)}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
		p.Close()
		wg.Wait()
		if signed == 0 || refused != 16 {
			t.Fatalf("%d signatures, %d refusals; want some signatures and 16 refusals", signed, refused)
		}
		t.Logf("%d signatures before Close", signed)
		// Reopen for the cleanup of load().
		if _, err := p.Configure(ctx, &configv1.ConfigureRequest{HclConfiguration: b.HCL(ident)}); err != nil {
			t.Fatal(err)
		}
	})
}

// Configure with a token that cannot be used fails with a message that says why, and leaves
// the plugin unconfigured (it once panicked closing a token it had not opened).
func TestConfigureFailures(t *testing.T) {
	backends(t, func(t *testing.T, b *backend) {
		cases := []struct {
			hcl, want string
		}{
			{strings.Replace(b.HCL(newIdent()), `token_label = "`+b.Token+`"`, `token_label = "no-such-token"`, 1),
				`token_label "no-such-token" matches no token (the module shows slot`},
			{strings.Replace(b.HCL(newIdent()), `token_label = "`+b.Token+`"`, `slot = 4000000000`, 1),
				"slot 4000000000 matches no token"},
			{strings.Replace(b.HCL(newIdent()), `token_label = "`+b.Token+`"`, `token_uri = "pkcs11:token=`+b.Token+`;serial=nope"`, 1),
				"matches no token"},
			{strings.Replace(b.HCL(newIdent()), `module_path = "`+b.Module+`"`, `module_path = "/etc/passwd"`, 1),
				`module_path "/etc/passwd": cannot load it as a PKCS#11 module`},
		}
		if b.Pin != "" { // a token that wants a login
			cases = append(cases,
				struct{ hcl, want string }{strings.Replace(b.HCL(newIdent()), `pin = "`+b.Pin+`"`, "", 1),
					"requires a login: set pin, pin_file or pin_env"},
				struct{ hcl, want string }{strings.Replace(b.HCL(newIdent()), `pin = "`+b.Pin+`"`, `pin = "wrong"`, 1),
					"CKR_PIN_INCORRECT"})
		}
		for _, c := range cases {
			p := New()
			_, err := p.Configure(ctx, &configv1.ConfigureRequest{HclConfiguration: c.hcl})
			if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("Configure(%q): %v; want one line containing %q", c.hcl, err, c.want)
			}
			if _, err := p.GetPublicKeys(ctx, &keymanagerv1.GetPublicKeysRequest{}); status.Code(err) != codes.FailedPrecondition {
				t.Errorf("after a failed Configure: GetPublicKeys gave %v, want FailedPrecondition", err)
			}
		}
	})
}

// The module drops every session (a token reset, C_CloseAllSessions): the plugin opens new
// ones, logs in again where the token wants it, and signs on.
func TestSessionLossRecovery(t *testing.T) {
	backends(t, func(t *testing.T, b *backend) {
		p := load(t, b.HCL(newIdent()))
		pk := generate(t, p, "x509-CA-A", keymanagerv1.KeyType_EC_P256)
		signAndVerify(t, p, pk, signCase{hash: crypto.SHA256, alg: keymanagerv1.HashAlgorithm_SHA256})
		st, _ := p.state()
		if err := st.tok.ctx.CloseAllSessions(st.tok.slot); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 3; i++ {
			signAndVerify(t, p, pk, signCase{hash: crypto.SHA256, alg: keymanagerv1.HashAlgorithm_SHA256})
		}
		// and a key can still be made
		generate(t, p, "x509-CA-B", keymanagerv1.KeyType_EC_P256)
	})
}

// A GenerateKey whose caller gives up leaves no key behind: a key SPIRE never saw must not
// become the current one at the next start.
func TestGenerateKeyCallerGivesUp(t *testing.T) {
	backends(t, func(t *testing.T, b *backend) {
		p := load(t, b.HCL(newIdent()))
		generate(t, p, "x509-CA-A", keymanagerv1.KeyType_EC_P256)
		before := strings.Join(namespaceObjects(t, p, pkcs11.CKO_PRIVATE_KEY), ",")
		done, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := p.GenerateKey(done, &keymanagerv1.GenerateKeyRequest{KeyId: "x509-CA-A",
			KeyType: keymanagerv1.KeyType_RSA_2048}); err == nil {
			t.Fatal("GenerateKey with a canceled context succeeded")
		}
		// a deadline shorter than an RSA-4096 generation: the key is made, then removed
		short, cancel2 := context.WithTimeout(ctx, 20*time.Millisecond)
		defer cancel2()
		if _, err := p.GenerateKey(short, &keymanagerv1.GenerateKeyRequest{KeyId: "x509-CA-A",
			KeyType: keymanagerv1.KeyType_RSA_4096}); err == nil {
			t.Log("the RSA-4096 generation beat a 20 ms deadline: nothing to check there")
		}
		if after := strings.Join(namespaceObjects(t, p, pkcs11.CKO_PRIVATE_KEY), ","); after != before {
			t.Fatalf("a GenerateKey whose caller gave up changed the keys: %s -> %s", before, after)
		}
		keys, _ := p.GetPublicKeys(ctx, &keymanagerv1.GetPublicKeysRequest{})
		if len(keys.PublicKeys) != 1 || keys.PublicKeys[0].Type != keymanagerv1.KeyType_EC_P256 {
			t.Fatalf("after the failed GenerateKey: %v", keys.PublicKeys)
		}
	})
}
