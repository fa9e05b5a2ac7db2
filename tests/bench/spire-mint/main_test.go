package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"math/big"
	"testing"
	"time"
)

// testCA: a self-signed P-256 CA and a pool holding it
func testCA(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ca"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return ca, key, pool
}

// testLeaf: what the server does with the CSR: a leaf for its URI SAN and key, signed by ca
func testLeaf(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, csrDER []byte) []byte {
	t.Helper()
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), URIs: csr.URIs,
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, csr.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestCheck(t *testing.T) {
	const id = "spiffe://example.org/spire-mint/0/0"
	ca, caKey, pool := testCA(t)
	key, csr, err := newCSR(id)
	if err != nil {
		t.Fatal(err)
	}
	leaf := testLeaf(t, ca, caKey, csr)

	issuer, err := check([][]byte{leaf}, id, &key.PublicKey, pool)
	if err != nil {
		t.Fatalf("a good SVID: %v", err)
	}
	sum := sha256.Sum256(ca.RawSubjectPublicKeyInfo)
	if issuer != hex.EncodeToString(sum[:]) {
		t.Errorf("issuer %s, not the CA's key", issuer)
	}

	_, _, otherPool := testCA(t)
	otherKey, _, err := newCSR(id)
	if err != nil {
		t.Fatal(err)
	}
	bad := map[string]func() error{
		"empty chain": func() error { _, err := check(nil, id, &key.PublicKey, pool); return err },
		"another CA":  func() error { _, err := check([][]byte{leaf}, id, &key.PublicKey, otherPool); return err },
		"another ID": func() error {
			_, err := check([][]byte{leaf}, id+"x", &key.PublicKey, pool)
			return err
		},
		"another key": func() error {
			_, err := check([][]byte{leaf}, id, &otherKey.PublicKey, pool)
			return err
		},
		"garbage": func() error { _, err := check([][]byte{{1, 2, 3}}, id, &key.PublicKey, pool); return err },
	}
	for name, f := range bad {
		if f() == nil {
			t.Errorf("%s: check accepted it", name)
		}
	}
}

func TestSummarize(t *testing.T) {
	c := &caller{issuers: map[string]bool{"b": true, "a": true}, verified: 3}
	for i := 1; i <= 100; i++ {
		c.latencies = append(c.latencies, time.Duration(i)*time.Millisecond)
	}
	r := summarize(options{callers: 1, seconds: 2}, []*caller{c})
	if r.SVIDs != 100 || r.SVIDsPerSec != 50 || r.LatencyMs.P50 != 50 || r.LatencyMs.P99 != 99 ||
		r.LatencyMs.Min != 1 || r.LatencyMs.Max != 100 || r.LatencyMs.Mean != 50.5 {
		t.Errorf("summary %+v", r)
	}
	if len(r.IssuerSPKI) != 2 || r.IssuerSPKI[0] != "a" || r.Verified != 3 {
		t.Errorf("issuers %v, verified %d", r.IssuerSPKI, r.Verified)
	}
}
