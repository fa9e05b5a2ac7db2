// Package keymanager is a SPIRE server KeyManager (plugin SDK keymanager v1) over any PKCS#11
// module: vault-transit-pkcs11 (keys in Vault or OpenBao Transit), SoftHSM2 or a hardware HSM.
package keymanager

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/miekg/pkcs11"
	keymanagerv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/keymanager/v1"
	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Name is the plugin's name in SPIRE's configuration.
const Name = "pkcs11"

type keyType struct {
	pb       keymanagerv1.KeyType
	rsaBits  int
	curveOID asn1.ObjectIdentifier
}

var keyTypes = map[keymanagerv1.KeyType]keyType{
	keymanagerv1.KeyType_EC_P256:  {pb: keymanagerv1.KeyType_EC_P256, curveOID: oidP256},
	keymanagerv1.KeyType_EC_P384:  {pb: keymanagerv1.KeyType_EC_P384, curveOID: oidP384},
	keymanagerv1.KeyType_RSA_2048: {pb: keymanagerv1.KeyType_RSA_2048, rsaBits: 2048},
	keymanagerv1.KeyType_RSA_4096: {pb: keymanagerv1.KeyType_RSA_4096, rsaBits: 4096},
}

// keyEntry is one SPIRE key: the newest generation of its id in this server's namespace.
type keyEntry struct {
	id     string
	label  string
	gen    string
	priv   pkcs11.ObjectHandle
	public crypto.PublicKey
	pb     *keymanagerv1.PublicKey
}

// state is what Configure builds; a new Configure replaces it whole.
type state struct {
	set     *settings
	tok     *token
	entries map[string]*keyEntry
	cancel  context.CancelFunc
	done    chan struct{}
	calls   sync.WaitGroup // calls using tok: a replaced state closes it after they leave
	// mutate: a key generation and a disposal pass never run at once on the token. SoftHSM2's
	// file object store fails key generation at random (CKR_GENERAL_ERROR) while another
	// session of the process reads or deletes objects (SoftHSMv2 issue 573; seen once in the
	// SPIRE conformance suite, the generation racing the first disposal pass after Configure).
	mutate sync.Mutex
}

// Plugin implements the KeyManager and Config services.
type Plugin struct {
	keymanagerv1.UnsafeKeyManagerServer
	configv1.UnsafeConfigServer

	log hclog.Logger

	mu    sync.RWMutex
	st    *state
	genMu sync.Mutex // one GenerateKey at a time: replacing keys is rare and must not interleave

	// Hooks for tests.
	now             func() time.Time
	disposeInterval time.Duration
	disposed        func(labels []string, err error)
}

// New returns an unconfigured plugin.
func New() *Plugin {
	return &Plugin{log: hclog.NewNullLogger(), now: time.Now, disposeInterval: time.Hour}
}

// SetLogger is called by the SDK with a logger whose lines show in SPIRE's log.
func (p *Plugin) SetLogger(log hclog.Logger) {
	p.log = log
	moduleLogTo(log)
}

// Configure checks plugin_data, opens the token and loads this server's keys from it.
func (p *Plugin) Configure(ctx context.Context, req *configv1.ConfigureRequest) (*configv1.ConfigureResponse, error) {
	start := time.Now()
	set, err := parseConfig(req.HclConfiguration, true)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	captureModuleLog(p.log)
	for _, w := range set.warnings {
		p.log.Warn(w)
	}
	tok, err := openToken(&set.token)
	if err != nil {
		set.wipe()
		return nil, p.moduleError(codes.Internal, start, "cannot open the PKCS#11 token", err)
	}
	// No GenerateKey may finish between the load and the swap: its key would be missing from
	// the new state (and the key it replaced still in it).
	p.genMu.Lock()
	defer p.genMu.Unlock()
	entries, err := p.loadEntries(ctx, tok, set)
	if err != nil {
		tok.close()
		set.wipe()
		return nil, p.moduleError(codes.Internal, start, "cannot read this server's keys from the token", err)
	}
	wipe(set.token.pin) // the token keeps its own copy for logging in again
	st := &state{set: set, tok: tok, entries: entries, done: make(chan struct{})}
	var dctx context.Context
	dctx, st.cancel = context.WithCancel(context.Background())

	p.swapLocked(st)
	p.log.Info("PKCS#11 token opened", "module", set.token.modulePath, "token", tok.label,
		"slot", tok.slot, "key_namespace", set.namespace, "keys", len(entries))
	go p.disposeLoop(dctx, st)
	return &configv1.ConfigureResponse{}, nil
}

// Validate checks plugin_data without opening anything.
func (p *Plugin) Validate(_ context.Context, req *configv1.ValidateRequest) (*configv1.ValidateResponse, error) {
	set, err := parseConfig(req.HclConfiguration, false)
	if err != nil {
		return &configv1.ValidateResponse{Valid: false, Notes: []string{err.Error()}}, nil
	}
	set.wipe()
	return &configv1.ValidateResponse{Valid: true, Notes: set.warnings}, nil
}

// Close releases the token (used by tests and at exit).
func (p *Plugin) Close() error {
	p.genMu.Lock()
	defer p.genMu.Unlock()
	p.swapLocked(nil)
	return nil
}

// swapLocked makes st (nil: none) the current state and stops the one it replaces, once the
// calls using that one have left. The caller holds genMu: no GenerateKey is under way.
func (p *Plugin) swapLocked(st *state) {
	p.mu.Lock()
	old := p.st
	p.st = st
	p.mu.Unlock()
	if old != nil {
		old.stop()
	}
}

func (st *state) stop() {
	st.cancel()
	<-st.done
	st.calls.Wait()
	st.tok.close()
}

// acquire returns the current state for one call, which must release it. A state is replaced
// under p.mu, so no call acquires it after stop has begun waiting.
func (p *Plugin) acquire() (*state, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.st == nil {
		return nil, status.Error(codes.FailedPrecondition, "not configured")
	}
	p.st.calls.Add(1)
	return p.st, nil
}

func (st *state) release() { st.calls.Done() }

// moduleError wraps a PKCS#11 failure of an operation that started at since, adding what the
// module logged about it (vault-transit-pkcs11 says which server and what went wrong).
func (p *Plugin) moduleError(code codes.Code, since time.Time, what string, err error) error {
	msg := fmt.Sprintf("%s: %v", what, err)
	if lines := moduleLinesSince(since); lines != "" {
		msg += " (module: " + lines + ")"
	}
	return status.Error(code, msg)
}

func (p *Plugin) loadEntries(ctx context.Context, tok *token, set *settings) (map[string]*keyEntry, error) {
	objs, err := tok.findObjects(ctx, classTemplate(pkcs11.CKO_PRIVATE_KEY, ""))
	if err != nil {
		return nil, err
	}
	newest := map[string]object{}
	gens := map[string]string{}
	for _, o := range objs {
		id, gen, ok := parseLabel(set.namespace, o.label)
		if !ok {
			continue
		}
		if g, seen := gens[id]; !seen || gen > g {
			gens[id] = gen
			newest[id] = o
		}
	}
	entries := map[string]*keyEntry{}
	for id, o := range newest {
		e, err := p.makeEntry(ctx, tok, id, gens[id], o.label, o.handle, 0)
		if errors.Is(err, errUnusable) {
			p.log.Warn("Key of this server's namespace is not usable; SPIRE will generate another",
				"label", o.label, "reason", err)
			continue
		}
		if err != nil {
			// a token or Vault that failed now: fail the start rather than let SPIRE replace
			// a key it still has
			return nil, fmt.Errorf("reading key %s: %w", o.label, err)
		}
		entries[id] = e
	}
	return entries, nil
}

// makeEntry reads the public key of a key pair: from its public-key object when there is one,
// else from the private-key object (modules such as vault-transit-pkcs11 show it there).
func (p *Plugin) makeEntry(ctx context.Context, tok *token, id, gen, label string, priv, pub pkcs11.ObjectHandle) (*keyEntry, error) {
	if pub == 0 {
		h, err := tok.findKey(ctx, pkcs11.CKO_PUBLIC_KEY, label)
		switch {
		case err == nil:
			pub = h
		case errors.Is(err, errNoObject):
			pub = priv
		default:
			return nil, err
		}
	}
	public, err := tok.publicKey(ctx, pub)
	if err != nil {
		return nil, err
	}
	kt, err := keyTypeOf(public)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errUnusable, err)
	}
	pkix, err := pkixFromPublic(public)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errUnusable, err)
	}
	sum := sha256.Sum256(pkix)
	return &keyEntry{
		id: id, label: label, gen: gen, priv: priv, public: public,
		pb: &keymanagerv1.PublicKey{Id: id, Type: kt, PkixData: pkix, Fingerprint: hex.EncodeToString(sum[:])},
	}, nil
}

// errUnusable marks a key that is not one SPIRE can use (its type or public key), as opposed to
// a token that failed while reading it.
var errUnusable = errors.New("not a usable key")

func keyTypeOf(pub crypto.PublicKey) (keymanagerv1.KeyType, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve.Params().BitSize {
		case 256:
			return keymanagerv1.KeyType_EC_P256, nil
		case 384:
			return keymanagerv1.KeyType_EC_P384, nil
		}
	case *rsa.PublicKey:
		switch k.N.BitLen() {
		case 2048:
			return keymanagerv1.KeyType_RSA_2048, nil
		case 4096:
			return keymanagerv1.KeyType_RSA_4096, nil
		}
	}
	return 0, errors.New("not a key type SPIRE uses (EC P-256/P-384, RSA 2048/4096)")
}

// GenerateKey creates a key pair for the id, then destroys the pair it replaces: SPIRE is never
// left without a key for the id, even when the new one cannot be made.
func (p *Plugin) GenerateKey(ctx context.Context, req *keymanagerv1.GenerateKeyRequest) (*keymanagerv1.GenerateKeyResponse, error) {
	if req.KeyId == "" {
		return nil, status.Error(codes.InvalidArgument, "key id is required")
	}
	kt, ok := keyTypes[req.KeyType]
	if !ok {
		if req.KeyType == keymanagerv1.KeyType_UNSPECIFIED_KEY_TYPE {
			return nil, status.Error(codes.InvalidArgument, "key type is required")
		}
		return nil, status.Errorf(codes.InvalidArgument, "unsupported key type %q", req.KeyType)
	}
	start := time.Now()
	p.genMu.Lock()
	defer p.genMu.Unlock()
	st, err := p.acquire()
	if err != nil {
		return nil, err
	}
	defer st.release()
	st.mutate.Lock()
	defer st.mutate.Unlock()
	gen, err := newGeneration(p.now())
	if err != nil {
		return nil, status.Errorf(codes.Internal, "random: %v", err)
	}
	p.mu.RLock()
	old := st.entries[req.KeyId]
	p.mu.RUnlock()
	if old != nil && gen <= old.gen {
		// The clock went back: keep generations ordered so the newest is the current one.
		gen, err = nextGeneration(old.gen)
		if err != nil {
			return nil, status.Errorf(codes.Internal, "random: %v", err)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, status.FromContextError(err).Err()
	}
	label := objectLabel(st.set.namespace, req.KeyId, gen)
	priv, pub, err := st.tok.generate(ctx, kt, label)
	if err != nil {
		return nil, p.moduleError(codes.Internal, start, fmt.Sprintf("failed to generate key %q", req.KeyId), err)
	}
	// C_GenerateKeyPair cannot be interrupted: the caller may have given up meanwhile. What
	// follows must finish either way (a new key left behind would be the newest generation,
	// and current after a restart, though SPIRE never saw it).
	fin, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	e, err := p.makeEntry(fin, st.tok, req.KeyId, gen, label, priv, pub)
	if err == nil && e.pb.Type != kt.pb {
		err = fmt.Errorf("the token made a %s key, not %s", e.pb.Type, kt.pb)
	}
	if err == nil && ctx.Err() != nil {
		err = fmt.Errorf("the caller gave up (%v) before the key could be returned", ctx.Err())
	}
	if err != nil {
		if derr := st.tok.destroy(fin, label); derr != nil {
			p.log.Warn("Could not remove a key that failed its checks", "label", label, "reason", derr)
		}
		return nil, p.moduleError(codes.Internal, start, fmt.Sprintf("failed to read generated key %q", req.KeyId), err)
	}
	p.mu.Lock()
	st.entries[req.KeyId] = e
	p.mu.Unlock()
	if old != nil {
		if err := st.tok.destroy(fin, old.label); err != nil {
			p.log.Warn("Replaced key could not be destroyed; it will be disposed of later",
				"label", old.label, "reason", err)
		} else {
			p.log.Debug("Replaced key destroyed", "label", old.label)
		}
	}
	p.log.Debug("Key generated", "key_id", req.KeyId, "label", label, "type", kt.pb)
	return &keymanagerv1.GenerateKeyResponse{PublicKey: e.pb}, nil
}

// nextGeneration returns a generation that sorts after g.
func nextGeneration(g string) (string, error) {
	t := generationTime(g).Add(time.Millisecond)
	return newGeneration(t)
}

// GetPublicKey returns the key with this id; an unknown id gives an empty response.
func (p *Plugin) GetPublicKey(_ context.Context, req *keymanagerv1.GetPublicKeyRequest) (*keymanagerv1.GetPublicKeyResponse, error) {
	if req.KeyId == "" {
		return nil, status.Error(codes.InvalidArgument, "key id is required")
	}
	st, err := p.acquire()
	if err != nil {
		return nil, err
	}
	defer st.release()
	p.mu.RLock()
	defer p.mu.RUnlock()
	if e := st.entries[req.KeyId]; e != nil {
		return &keymanagerv1.GetPublicKeyResponse{PublicKey: e.pb}, nil
	}
	return &keymanagerv1.GetPublicKeyResponse{}, nil
}

// GetPublicKeys returns every key of this server.
func (p *Plugin) GetPublicKeys(context.Context, *keymanagerv1.GetPublicKeysRequest) (*keymanagerv1.GetPublicKeysResponse, error) {
	st, err := p.acquire()
	if err != nil {
		return nil, err
	}
	defer st.release()
	p.mu.RLock()
	defer p.mu.RUnlock()
	resp := &keymanagerv1.GetPublicKeysResponse{}
	for _, e := range st.entries {
		resp.PublicKeys = append(resp.PublicKeys, e.pb)
	}
	sort.Slice(resp.PublicKeys, func(i, j int) bool { return resp.PublicKeys[i].Id < resp.PublicKeys[j].Id })
	return resp, nil
}

// SignData signs a digest with the key's current generation.
func (p *Plugin) SignData(ctx context.Context, req *keymanagerv1.SignDataRequest) (*keymanagerv1.SignDataResponse, error) {
	if req.KeyId == "" {
		return nil, status.Error(codes.InvalidArgument, "key id is required")
	}
	start := time.Now()
	st, err := p.acquire()
	if err != nil {
		return nil, err
	}
	defer st.release()
	p.mu.RLock()
	e := st.entries[req.KeyId]
	var priv pkcs11.ObjectHandle
	if e != nil {
		priv = e.priv
	}
	p.mu.RUnlock()
	if e == nil {
		return nil, status.Errorf(codes.NotFound, "key %q not found", req.KeyId)
	}
	op, err := newSignOp(e, req)
	if err != nil {
		return nil, err
	}
	sig, err := st.tok.sign(ctx, priv, op.mech, op.input)
	if rv := rvOf(err); rv == pkcs11.CKR_KEY_HANDLE_INVALID || rv == pkcs11.CKR_OBJECT_HANDLE_INVALID {
		// The module forgot the handle (a restart of its cache, say): find the key again.
		h, ferr := st.tok.findKey(ctx, pkcs11.CKO_PRIVATE_KEY, e.label)
		if ferr != nil {
			return nil, p.moduleError(codes.Internal, start, fmt.Sprintf("key %q is gone from the token", req.KeyId), ferr)
		}
		p.mu.Lock()
		e.priv = h
		p.mu.Unlock()
		sig, err = st.tok.sign(ctx, h, op.mech, op.input)
	}
	if err != nil {
		return nil, p.moduleError(codes.Internal, start, fmt.Sprintf("failed to sign with key %q", req.KeyId), err)
	}
	if sig, err = op.finish(e.public, sig); err != nil {
		return nil, status.Errorf(codes.Internal, "signature of key %q: %v", req.KeyId, err)
	}
	return &keymanagerv1.SignDataResponse{Signature: sig, KeyFingerprint: e.pb.Fingerprint}, nil
}

// ecdsaDER turns PKCS#11's r||s into the ASN.1 form Go and X.509 use.
func ecdsaDER(raw []byte) ([]byte, error) {
	if len(raw) == 0 || len(raw)%2 != 0 {
		return nil, fmt.Errorf("ECDSA signature of %d bytes", len(raw))
	}
	n := len(raw) / 2
	return asn1.Marshal(struct{ R, S *big.Int }{
		new(big.Int).SetBytes(raw[:n]), new(big.Int).SetBytes(raw[n:]),
	})
}
