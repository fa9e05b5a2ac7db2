// Command vtp-crypto11 drives a PKCS#11 module through github.com/ThalesIgnite/crypto11 the way
// Go PKCS#11 programs do, and checks every signature with Go's own crypto.
// Built offline in GOPATH mode from Debian's golang-github-thalesignite-crypto11-dev by
// tests/clients/crypto11.sh; each step runs in its own process:
//
//	vtp-crypto11 -module M -token T -pin P -state FILE -tag TAG gen      KEY...
//	vtp-crypto11 ... sign    KEY...  find by CKA_ID, sign and verify
//	vtp-crypto11 ... regen   KEY...  replace a key: destroy and generate with the same ID
//	vtp-crypto11 ... destroy KEY...  destroy, then make sure nothing is found
//
// KEY is one of ec-p256, ec-p384, rsa-2048, rsa-4096 (the key types SPIRE uses). CKA_ID and
// CKA_LABEL are both the key's name "vtp-c11-KEY-TAG". FILE keeps each key's public key
// (PKIX DER) between processes.
package main

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/ioutil"
	"os"
	"time"

	"github.com/ThalesIgnite/crypto11"
)

var (
	module = flag.String("module", "", "PKCS#11 module")
	token  = flag.String("token", "", "token label")
	pin    = flag.String("pin", "1234", "user PIN")
	state  = flag.String("state", "", "state file (JSON)")
	tag    = flag.String("tag", "", "suffix of key ids")

	failures int
)

type keySpec struct {
	curve elliptic.Curve
	bits  int
}

var specs = map[string]keySpec{
	"ec-p256":  {curve: elliptic.P256()},
	"ec-p384":  {curve: elliptic.P384()},
	"rsa-2048": {bits: 2048},
	"rsa-4096": {bits: 4096},
}

func ok(format string, a ...interface{}) {
	fmt.Printf("crypto11: ok: "+format+"\n", a...)
}

func fail(format string, a ...interface{}) {
	failures++
	fmt.Printf("crypto11: FAIL: "+format+"\n", a...)
}

func keyID(name string) []byte { return []byte("vtp-c11-" + name + "-" + *tag) }

func loadState() map[string][]byte {
	m := map[string][]byte{}
	b, err := ioutil.ReadFile(*state)
	if err == nil {
		if err := json.Unmarshal(b, &m); err != nil {
			fmt.Fprintf(os.Stderr, "crypto11: bad state file %s: %v\n", *state, err)
			os.Exit(99)
		}
	}
	return m
}

func saveState(m map[string][]byte) {
	b, _ := json.Marshal(m)
	if err := ioutil.WriteFile(*state, b, 0o600); err != nil {
		fmt.Fprintf(os.Stderr, "crypto11: cannot write %s: %v\n", *state, err)
		os.Exit(99)
	}
}

func generate(ctx *crypto11.Context, name string) (crypto11.Signer, error) {
	s, known := specs[name]
	if !known {
		return nil, fmt.Errorf("unknown key %q", name)
	}
	id := keyID(name)
	if s.curve != nil {
		return ctx.GenerateECDSAKeyPairWithLabel(id, id, s.curve)
	}
	return ctx.GenerateRSAKeyPairWithLabel(id, id, s.bits)
}

func pkix(s crypto11.Signer) []byte {
	der, err := x509.MarshalPKIXPublicKey(s.Public())
	if err != nil {
		return nil
	}
	return der
}

func describe(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA-%d e=%d", k.N.BitLen(), k.E)
	}
	return fmt.Sprintf("%T", pub)
}

func cmdGen(ctx *crypto11.Context, names []string) {
	st := loadState()
	for _, name := range names {
		t0 := time.Now()
		s, err := generate(ctx, name)
		if err != nil {
			fail("%s: generate with CKA_ID and label %q: %v", name, keyID(name), err)
			continue
		}
		der := pkix(s)
		if der == nil {
			fail("%s: the generated key's public half does not marshal", name)
			continue
		}
		st[name] = der
		ok("%s: generated %s with CKA_ID = CKA_LABEL = %q (%v)", name, describe(s.Public()),
			keyID(name), time.Since(t0).Round(time.Millisecond))
		checkType(name, s.Public())
	}
	saveState(st)
}

func checkType(name string, pub crypto.PublicKey) {
	spec := specs[name]
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if spec.curve == nil || k.Curve.Params().Name != spec.curve.Params().Name {
			fail("%s: public key is %s", name, describe(pub))
		}
	case *rsa.PublicKey:
		if k.N.BitLen() != spec.bits || k.E != 65537 {
			fail("%s: public key is %s", name, describe(pub))
		}
	default:
		fail("%s: public key of type %T", name, pub)
	}
}

// find locates the key pair by CKA_ID only (as a program that keeps only the ID does), and
// checks that the label finds the same key.
func find(ctx *crypto11.Context, name string) crypto11.Signer {
	id := keyID(name)
	s, err := ctx.FindKeyPair(id, nil)
	if err != nil || s == nil {
		fail("%s: FindKeyPair by CKA_ID %q: %v (found %v)", name, id, err, s != nil)
		return nil
	}
	ok("%s: FindKeyPair by CKA_ID finds %s", name, describe(s.Public()))
	byLabel, err := ctx.FindKeyPair(nil, id)
	if err != nil || byLabel == nil || !bytes.Equal(pkix(byLabel), pkix(s)) {
		fail("%s: FindKeyPair by CKA_LABEL: %v (found %v)", name, err, byLabel != nil)
	} else {
		ok("%s: FindKeyPair by CKA_LABEL finds the same key", name)
	}
	return s
}

func digest(h crypto.Hash, msg []byte) []byte {
	switch h {
	case crypto.SHA256:
		d := sha256.Sum256(msg)
		return d[:]
	case crypto.SHA384:
		d := sha512.Sum384(msg)
		return d[:]
	}
	panic("hash")
}

// signVerify signs a digest of msg with opts and verifies it with Go's crypto against pub;
// then checks the signature fails over another message.
func signVerify(name, what string, s crypto11.Signer, h crypto.Hash, opts crypto.SignerOpts) {
	msg := make([]byte, 64)
	if _, err := rand.Read(msg); err != nil {
		panic(err)
	}
	d := digest(h, msg)
	t0 := time.Now()
	sig, err := s.Sign(rand.Reader, d, opts)
	if err != nil {
		fail("%s: %s %v: Sign: %v", name, what, h, err)
		return
	}
	el := time.Since(t0).Round(time.Millisecond)
	other := digest(h, append(msg, 'x'))
	verify := func(dg []byte) error {
		switch pub := s.Public().(type) {
		case *ecdsa.PublicKey:
			if !ecdsa.VerifyASN1(pub, dg, sig) {
				return errors.New("ecdsa.VerifyASN1 says no")
			}
			return nil
		case *rsa.PublicKey:
			if _, isPSS := opts.(*rsa.PSSOptions); isPSS {
				// The salt must be exactly the hash length: say so, do not auto-detect.
				return rsa.VerifyPSS(pub, h, dg, sig, &rsa.PSSOptions{SaltLength: h.Size(), Hash: h})
			}
			return rsa.VerifyPKCS1v15(pub, h, dg, sig)
		}
		return fmt.Errorf("public key of type %T", s.Public())
	}
	if err := verify(d); err != nil {
		fail("%s: %s %v: Go's crypto rejects the signature: %v", name, what, h, err)
		return
	}
	if verify(other) == nil {
		fail("%s: %s %v: the signature also verifies over another digest", name, what, h)
		return
	}
	ok("%s: %s over a %v digest: Go's crypto verifies it, rejects another digest (%v)",
		name, what, h, el)
}

func cmdSign(ctx *crypto11.Context, names []string) {
	st := loadState()
	for _, name := range names {
		s := find(ctx, name)
		if s == nil {
			continue
		}
		if want, known := st[name]; !known || !bytes.Equal(want, pkix(s)) {
			fail("%s: the key found is not the one generated (public keys differ)", name)
			continue
		}
		ok("%s: the key found has the public key seen at generation", name)
		for _, h := range []crypto.Hash{crypto.SHA256, crypto.SHA384} {
			switch s.Public().(type) {
			case *ecdsa.PublicKey:
				signVerify(name, "ECDSA", s, h, h)
			case *rsa.PublicKey:
				signVerify(name, "RSA PKCS#1 v1.5", s, h, h)
				signVerify(name, "RSA-PSS salt=hash", s, h,
					&rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: h})
			}
		}
	}
}

// cmdRegen replaces the key pair of an id that exists: destroy the old pair, make a new one
// with the same CKA_ID and label (what the old third-party SPIRE HSM plugin did in GenerateKey;
// spire-keymanager-pkcs11 makes the new pair first, under a new label); afterwards only the
// new key is found.
func cmdRegen(ctx *crypto11.Context, names []string) {
	st := loadState()
	for _, name := range names {
		old := find(ctx, name)
		if old == nil {
			continue
		}
		if err := old.Delete(); err != nil {
			fail("%s: Delete before regenerating: %v", name, err)
			continue
		}
		ok("%s: deleted the old key pair", name)
		s, err := generate(ctx, name)
		if err != nil {
			fail("%s: generate again with the same CKA_ID: %v", name, err)
			continue
		}
		if bytes.Equal(pkix(s), st[name]) {
			fail("%s: the new key has the old public key", name)
			continue
		}
		st[name] = pkix(s)
		all, err := ctx.FindKeyPairs(keyID(name), nil)
		if err != nil || len(all) != 1 || !bytes.Equal(pkix(all[0]), st[name]) {
			fail("%s: after regenerating, FindKeyPairs gives %d key pairs (%v)", name, len(all), err)
			continue
		}
		ok("%s: regenerated; only the new key pair has the CKA_ID", name)
	}
	saveState(st)
}

func cmdDestroy(ctx *crypto11.Context, names []string) {
	for _, name := range names {
		s := find(ctx, name)
		if s == nil {
			continue
		}
		if err := s.Delete(); err != nil {
			fail("%s: Delete: %v", name, err)
			continue
		}
		again, err := ctx.FindKeyPairs(keyID(name), nil)
		if err != nil || len(again) != 0 {
			fail("%s: after Delete FindKeyPairs gives %d key pairs (%v)", name, len(again), err)
			continue
		}
		ok("%s: deleted; FindKeyPairs finds nothing", name)
	}
}

func main() {
	flag.Parse()
	args := flag.Args()
	if *module == "" || *token == "" || *state == "" || *tag == "" || len(args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: vtp-crypto11 -module M -token T [-pin P] -state FILE "+
			"-tag TAG gen|sign|regen|destroy KEY...")
		os.Exit(99)
	}
	ctx, err := crypto11.Configure(&crypto11.Config{Path: *module, TokenLabel: *token, Pin: *pin})
	if err != nil {
		fmt.Printf("crypto11: FAIL: Configure(module %s, token %s): %v\n", *module, *token, err)
		os.Exit(1)
	}
	fmt.Printf("crypto11: %s %v (pid %d)\n", args[0], args[1:], os.Getpid())
	switch args[0] {
	case "gen":
		cmdGen(ctx, args[1:])
	case "sign":
		cmdSign(ctx, args[1:])
	case "regen":
		cmdRegen(ctx, args[1:])
	case "destroy":
		cmdDestroy(ctx, args[1:])
	default:
		fmt.Fprintf(os.Stderr, "crypto11: unknown command %q\n", args[0])
		os.Exit(99)
	}
	if err := ctx.Close(); err != nil {
		fail("Close: %v", err)
	}
	if failures > 0 {
		fmt.Printf("crypto11: %d failure(s)\n", failures)
		os.Exit(1)
	}
}
