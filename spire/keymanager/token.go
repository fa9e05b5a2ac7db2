package keymanager

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"os"
	"strings"
	"sync"

	"github.com/miekg/pkcs11"
)

// The PKCS#11 side: one loaded module per path in the process (C_Initialize once, C_Finalize
// when the last user leaves), one token, a pool of sessions so that concurrent signatures run
// concurrently, and the object operations the key manager needs.

type module struct {
	path     string
	ctx      *pkcs11.Ctx
	refs     int
	finalize bool // we initialised it, so we finalise it
}

var (
	modulesMu sync.Mutex
	modules   = map[string]*module{}
)

func openModule(path string) (*module, error) {
	modulesMu.Lock()
	defer modulesMu.Unlock()
	if m := modules[path]; m != nil {
		m.refs++
		return m, nil
	}
	if st, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("module_path %q: %v", path, err)
	} else if st.IsDir() {
		return nil, fmt.Errorf("module_path %q is a directory", path)
	}
	ctx := pkcs11.New(path)
	if ctx == nil {
		return nil, fmt.Errorf("module_path %q: cannot load it as a PKCS#11 module (dlopen or C_GetFunctionList failed)", path)
	}
	m := &module{path: path, ctx: ctx, refs: 1, finalize: true}
	if err := ctx.Initialize(); err != nil {
		if !isRV(err, pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
			ctx.Destroy()
			return nil, fmt.Errorf("C_Initialize of %q: %w", path, err)
		}
		m.finalize = false // someone else in this process owns it
	}
	modules[path] = m
	return m, nil
}

func (m *module) close() {
	modulesMu.Lock()
	defer modulesMu.Unlock()
	m.refs--
	if m.refs > 0 {
		return
	}
	delete(modules, m.path)
	if m.finalize {
		_ = m.ctx.Finalize()
	}
	m.ctx.Destroy()
}

func isRV(err error, rv uint) bool {
	var e pkcs11.Error
	return errors.As(err, &e) && uint(e) == rv
}

func rvOf(err error) uint {
	var e pkcs11.Error
	if errors.As(err, &e) {
		return uint(e)
	}
	return 0
}

type tokenConfig struct {
	modulePath string
	tokenLabel string
	slot       *uint
	tokenURI   *pkcs11URI
	pin        []byte // nil: no C_Login
	maxSess    int
}

type token struct {
	mod   *module
	ctx   *pkcs11.Ctx
	slot  uint
	label string
	pin   []byte

	loginMu sync.Mutex
	anchor  pkcs11.SessionHandle // open for the token's lifetime: keeps the login

	sem  chan struct{} // one unit per session in use
	mu   sync.Mutex
	idle []pkcs11.SessionHandle
}

func openToken(cfg *tokenConfig) (*token, error) {
	m, err := openModule(cfg.modulePath)
	if err != nil {
		return nil, err
	}
	t := &token{mod: m, ctx: m.ctx, sem: make(chan struct{}, cfg.maxSess)}
	if err := t.open(cfg); err != nil {
		t.close()
		return nil, err
	}
	return t, nil
}

func (t *token) open(cfg *tokenConfig) error {
	var err error
	if t.slot, t.label, err = findSlot(t.ctx, cfg); err != nil {
		return err
	}
	info, err := t.ctx.GetTokenInfo(t.slot)
	if err != nil {
		return fmt.Errorf("C_GetTokenInfo(slot %d): %w", t.slot, err)
	}
	if info.Flags&pkcs11.CKF_LOGIN_REQUIRED != 0 && cfg.pin == nil {
		return fmt.Errorf("token %q requires a login: set pin, pin_file or pin_env", t.label)
	}
	s, err := t.ctx.OpenSession(t.slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		return fmt.Errorf("C_OpenSession(slot %d): %w", t.slot, err)
	}
	t.anchor = s
	if cfg.pin != nil {
		t.pin = append([]byte(nil), cfg.pin...)
		return t.login()
	}
	return nil
}

func (t *token) login() error {
	if t.pin == nil {
		return nil
	}
	t.loginMu.Lock()
	defer t.loginMu.Unlock()
	err := t.ctx.Login(t.anchor, pkcs11.CKU_USER, string(t.pin))
	if rv := rvOf(err); rv == pkcs11.CKR_SESSION_HANDLE_INVALID || rv == pkcs11.CKR_SESSION_CLOSED {
		// The module dropped every session (a reset, C_CloseAllSessions): a new anchor.
		s, oerr := t.ctx.OpenSession(t.slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
		if oerr != nil {
			return fmt.Errorf("C_OpenSession(slot %d): %w", t.slot, oerr)
		}
		t.anchor = s
		err = t.ctx.Login(t.anchor, pkcs11.CKU_USER, string(t.pin))
	}
	if err != nil && !isRV(err, pkcs11.CKR_USER_ALREADY_LOGGED_IN) {
		return fmt.Errorf("C_Login on token %q: %w", t.label, err)
	}
	return nil
}

// loggedIn says whether the token still holds this application's login.
func (t *token) loggedIn() bool {
	t.loginMu.Lock()
	defer t.loginMu.Unlock()
	info, err := t.ctx.GetSessionInfo(t.anchor)
	return err == nil && (info.State == pkcs11.CKS_RO_USER_FUNCTIONS || info.State == pkcs11.CKS_RW_USER_FUNCTIONS)
}

func (t *token) close() {
	if t.ctx != nil {
		t.mu.Lock()
		for _, s := range t.idle {
			_ = t.ctx.CloseSession(s)
		}
		t.idle = nil
		t.mu.Unlock()
		if t.anchor != 0 {
			_ = t.ctx.CloseSession(t.anchor)
			t.anchor = 0
		}
	}
	wipe(t.pin)
	t.pin = nil
	if t.mod != nil {
		t.mod.close()
		t.mod = nil
	}
}

func wipe(b []byte) {
	for i := range b {
		b[i] = 0
	}
}

// session takes a session from the pool, waiting while max_sessions are in use.
func (t *token) session(ctx context.Context) (pkcs11.SessionHandle, error) {
	select {
	case t.sem <- struct{}{}:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	t.mu.Lock()
	if n := len(t.idle); n > 0 {
		s := t.idle[n-1]
		t.idle = t.idle[:n-1]
		t.mu.Unlock()
		return s, nil
	}
	t.mu.Unlock()
	s, err := t.ctx.OpenSession(t.slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		<-t.sem
		return 0, fmt.Errorf("C_OpenSession: %w", err)
	}
	return s, nil
}

// release gives a session back. After an error that may have left an operation active or the
// session unusable, the session is closed instead (a new one is opened when needed).
func (t *token) release(s pkcs11.SessionHandle, err error) {
	keep := err == nil
	switch rvOf(err) {
	case pkcs11.CKR_KEY_HANDLE_INVALID, pkcs11.CKR_OBJECT_HANDLE_INVALID, pkcs11.CKR_ARGUMENTS_BAD,
		pkcs11.CKR_MECHANISM_INVALID, pkcs11.CKR_MECHANISM_PARAM_INVALID,
		pkcs11.CKR_KEY_TYPE_INCONSISTENT, pkcs11.CKR_KEY_FUNCTION_NOT_PERMITTED,
		pkcs11.CKR_USER_NOT_LOGGED_IN, pkcs11.CKR_DATA_LEN_RANGE:
		keep = true // refused before any operation started
	}
	if keep {
		t.mu.Lock()
		t.idle = append(t.idle, s)
		t.mu.Unlock()
	} else {
		_ = t.ctx.CloseSession(s)
	}
	<-t.sem
}

// flushIdle closes the idle sessions (the module lost one: it may have lost them all).
func (t *token) flushIdle() {
	t.mu.Lock()
	idle := t.idle
	t.idle = nil
	t.mu.Unlock()
	for _, s := range idle {
		_ = t.ctx.CloseSession(s)
	}
}

// retryable says whether an operation failed in a way a second try can mend, and mends what it
// can first: lost sessions (all of them are dropped and the login renewed), a lost login (a
// module that hides private objects from a logged-out session answers with an invalid handle).
func (t *token) retryable(err error) bool {
	switch rvOf(err) {
	case pkcs11.CKR_SESSION_HANDLE_INVALID, pkcs11.CKR_SESSION_CLOSED:
		t.flushIdle()
		if t.pin != nil {
			_ = t.login()
		}
		return true
	case pkcs11.CKR_USER_NOT_LOGGED_IN:
		return t.pin != nil && t.login() == nil
	case pkcs11.CKR_KEY_HANDLE_INVALID, pkcs11.CKR_OBJECT_HANDLE_INVALID:
		return t.pin != nil && !t.loggedIn() && t.login() == nil
	}
	return false
}

// do runs fn on a pooled session, once more on a fresh session (after a new login if needed)
// when the module lost the session or the login.
func (t *token) do(ctx context.Context, fn func(s pkcs11.SessionHandle) error) error {
	var err error
	for try := 0; try < 2; try++ {
		var s pkcs11.SessionHandle
		if s, err = t.session(ctx); err != nil {
			return err
		}
		err = fn(s)
		t.release(s, err)
		if err == nil || try == 1 || !t.retryable(err) {
			return err
		}
	}
	return err
}

type object struct {
	handle pkcs11.ObjectHandle
	label  string
}

// findObjects returns the objects matching tmpl, with their labels.
func (t *token) findObjects(ctx context.Context, tmpl []*pkcs11.Attribute) ([]object, error) {
	var out []object
	err := t.do(ctx, func(s pkcs11.SessionHandle) error {
		out = out[:0]
		if err := t.ctx.FindObjectsInit(s, tmpl); err != nil {
			return fmt.Errorf("C_FindObjectsInit: %w", err)
		}
		var handles []pkcs11.ObjectHandle
		for {
			hs, _, err := t.ctx.FindObjects(s, 256)
			if err != nil {
				_ = t.ctx.FindObjectsFinal(s)
				return fmt.Errorf("C_FindObjects: %w", err)
			}
			if len(hs) == 0 {
				break
			}
			handles = append(handles, hs...)
		}
		if err := t.ctx.FindObjectsFinal(s); err != nil {
			return fmt.Errorf("C_FindObjectsFinal: %w", err)
		}
		for _, h := range handles {
			attrs, err := t.ctx.GetAttributeValue(s, h, []*pkcs11.Attribute{
				pkcs11.NewAttribute(pkcs11.CKA_LABEL, nil)})
			if err != nil {
				if isRV(err, pkcs11.CKR_OBJECT_HANDLE_INVALID) {
					continue // destroyed meanwhile
				}
				return fmt.Errorf("C_GetAttributeValue(CKA_LABEL): %w", err)
			}
			out = append(out, object{handle: h, label: string(attrs[0].Value)})
		}
		return nil
	})
	return out, err
}

func classTemplate(class uint, label string) []*pkcs11.Attribute {
	tmpl := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, class),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
	}
	if label != "" {
		tmpl = append(tmpl, pkcs11.NewAttribute(pkcs11.CKA_LABEL, label))
	}
	return tmpl
}

// findKey returns the one object of the class with this exact label (a module may list one key
// twice; any handle of it will do).
func (t *token) findKey(ctx context.Context, class uint, label string) (pkcs11.ObjectHandle, error) {
	objs, err := t.findObjects(ctx, classTemplate(class, label))
	if err != nil {
		return 0, err
	}
	for _, o := range objs {
		if o.label == label {
			return o.handle, nil
		}
	}
	return 0, errNoObject
}

var errNoObject = errors.New("no such object")

var (
	oidP256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}
	oidP384 = asn1.ObjectIdentifier{1, 3, 132, 0, 34}
)

// publicKey reads the public key of an object (a public-key object, or a private-key object of
// a module that shows the public components on it).
func (t *token) publicKey(ctx context.Context, h pkcs11.ObjectHandle) (any, error) {
	var pub any
	err := t.do(ctx, func(s pkcs11.SessionHandle) error {
		attrs, err := t.ctx.GetAttributeValue(s, h, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, nil)})
		if err != nil {
			return fmt.Errorf("C_GetAttributeValue(CKA_KEY_TYPE): %w", err)
		}
		switch kt := bytesToUint(attrs[0].Value); kt {
		case pkcs11.CKK_EC:
			pub, err = t.ecPublicKey(s, h)
		case pkcs11.CKK_RSA:
			pub, err = t.rsaPublicKey(s, h)
		default:
			err = fmt.Errorf("key type 0x%x is neither EC nor RSA", kt)
		}
		return err
	})
	return pub, err
}

func (t *token) ecPublicKey(s pkcs11.SessionHandle, h pkcs11.ObjectHandle) (any, error) {
	attrs, err := t.ctx.GetAttributeValue(s, h, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, nil),
		pkcs11.NewAttribute(pkcs11.CKA_EC_POINT, nil),
	})
	if err != nil {
		return nil, fmt.Errorf("C_GetAttributeValue(CKA_EC_PARAMS, CKA_EC_POINT): %w", err)
	}
	var oid asn1.ObjectIdentifier
	if rest, err := asn1.Unmarshal(attrs[0].Value, &oid); err != nil || len(rest) != 0 {
		return nil, errors.New("CKA_EC_PARAMS is not a named curve")
	}
	var curve elliptic.Curve
	switch {
	case oid.Equal(oidP256):
		curve = elliptic.P256()
	case oid.Equal(oidP384):
		curve = elliptic.P384()
	default:
		return nil, fmt.Errorf("curve %v is not P-256 or P-384", oid)
	}
	point := attrs[1].Value
	var octets []byte // CKA_EC_POINT is a DER OCTET STRING; some modules give the raw point
	if rest, err := asn1.Unmarshal(point, &octets); err == nil && len(rest) == 0 {
		point = octets
	}
	x, y := elliptic.Unmarshal(curve, point) //nolint:staticcheck // the uncompressed form is what PKCS#11 gives
	if x == nil {
		return nil, errors.New("CKA_EC_POINT is not a point on the curve")
	}
	return &ecdsa.PublicKey{Curve: curve, X: x, Y: y}, nil
}

func (t *token) rsaPublicKey(s pkcs11.SessionHandle, h pkcs11.ObjectHandle) (any, error) {
	attrs, err := t.ctx.GetAttributeValue(s, h, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_MODULUS, nil),
		pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, nil),
	})
	if err != nil {
		return nil, fmt.Errorf("C_GetAttributeValue(CKA_MODULUS, CKA_PUBLIC_EXPONENT): %w", err)
	}
	e := new(big.Int).SetBytes(attrs[1].Value)
	if !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31-1 {
		return nil, errors.New("CKA_PUBLIC_EXPONENT is out of range")
	}
	return &rsa.PublicKey{N: new(big.Int).SetBytes(attrs[0].Value), E: int(e.Int64())}, nil
}

func bytesToUint(b []byte) uint {
	// CK_ULONG in the module's byte order, which is the host's (miekg/pkcs11 uses the same).
	var v uint
	for i := len(b) - 1; i >= 0; i-- {
		v = v<<8 | uint(b[i])
	}
	return v
}

// generate creates a key pair with this label (also its CKA_ID) and returns its handles.
func (t *token) generate(ctx context.Context, kt keyType, label string) (priv, pub pkcs11.ObjectHandle, err error) {
	id := []byte(label)
	pubTmpl := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true),
		pkcs11.NewAttribute(pkcs11.CKA_ID, id),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
	}
	privTmpl := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, true),
		pkcs11.NewAttribute(pkcs11.CKA_ID, id),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
	}
	var mech uint
	if kt.rsaBits > 0 {
		mech = pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN
		pubTmpl = append(pubTmpl,
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA),
			pkcs11.NewAttribute(pkcs11.CKA_MODULUS_BITS, kt.rsaBits),
			pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, []byte{1, 0, 1}))
		privTmpl = append(privTmpl, pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA))
	} else {
		mech = pkcs11.CKM_EC_KEY_PAIR_GEN
		params, err := asn1.Marshal(kt.curveOID)
		if err != nil {
			return 0, 0, err
		}
		pubTmpl = append(pubTmpl,
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_EC),
			pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, params))
		privTmpl = append(privTmpl, pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_EC))
	}
	err = t.do(ctx, func(s pkcs11.SessionHandle) error {
		var err error
		pub, priv, err = t.ctx.GenerateKeyPair(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(mech, nil)},
			pubTmpl, privTmpl)
		if err != nil {
			return fmt.Errorf("C_GenerateKeyPair: %w", err)
		}
		return nil
	})
	return priv, pub, err
}

// destroy destroys the key pair with this label: both halves, whichever handles are still
// valid (destroying one half may take the other with it, as a Transit key is one key).
func (t *token) destroy(ctx context.Context, label string) error {
	var errs []error
	for _, class := range []uint{pkcs11.CKO_PRIVATE_KEY, pkcs11.CKO_PUBLIC_KEY} {
		objs, err := t.findObjects(ctx, classTemplate(class, label))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, o := range objs {
			if o.label != label {
				continue
			}
			err := t.do(ctx, func(s pkcs11.SessionHandle) error {
				return t.ctx.DestroyObject(s, o.handle)
			})
			if err != nil && !isRV(err, pkcs11.CKR_OBJECT_HANDLE_INVALID) {
				errs = append(errs, fmt.Errorf("C_DestroyObject: %w", err))
			}
		}
	}
	return joinErrors(errs)
}

// sign makes one signature with the private key h.
func (t *token) sign(ctx context.Context, h pkcs11.ObjectHandle, mech *pkcs11.Mechanism, data []byte) ([]byte, error) {
	var sig []byte
	err := t.do(ctx, func(s pkcs11.SessionHandle) error {
		if err := t.ctx.SignInit(s, []*pkcs11.Mechanism{mech}, h); err != nil {
			return fmt.Errorf("C_SignInit: %w", err)
		}
		var err error
		if sig, err = t.ctx.Sign(s, data); err != nil {
			return fmt.Errorf("C_Sign: %w", err)
		}
		return nil
	})
	return sig, err
}

// findSlot picks the slot the configuration names.
func findSlot(ctx *pkcs11.Ctx, cfg *tokenConfig) (uint, string, error) {
	slots, err := ctx.GetSlotList(true)
	if err != nil {
		return 0, "", fmt.Errorf("C_GetSlotList: %w", err)
	}
	var lib *pkcs11.Info
	if cfg.tokenURI != nil && cfg.tokenURI.needsLibrary() {
		info, err := ctx.GetInfo()
		if err != nil {
			return 0, "", fmt.Errorf("C_GetInfo: %w", err)
		}
		lib = &info
	}
	var found []uint
	var labels []string
	for _, id := range slots {
		if cfg.slot != nil && id != *cfg.slot {
			continue
		}
		ti, err := ctx.GetTokenInfo(id)
		if err != nil {
			continue // a slot whose token went away: not a match
		}
		label := strings.TrimRight(ti.Label, " \x00")
		switch {
		case cfg.tokenLabel != "" && label != cfg.tokenLabel:
			continue
		case cfg.tokenURI != nil:
			si, err := ctx.GetSlotInfo(id)
			if err != nil || !cfg.tokenURI.matches(id, lib, &si, &ti) {
				continue
			}
		}
		found = append(found, id)
		labels = append(labels, label)
	}
	what := "the configured token"
	switch {
	case cfg.tokenLabel != "":
		what = fmt.Sprintf("token_label %q", cfg.tokenLabel)
	case cfg.slot != nil:
		what = fmt.Sprintf("slot %d", *cfg.slot)
	case cfg.tokenURI != nil:
		what = fmt.Sprintf("token_uri %q", cfg.tokenURI.raw)
	}
	switch len(found) {
	case 0:
		var have []string
		for _, id := range slots {
			if ti, err := ctx.GetTokenInfo(id); err == nil {
				have = append(have, fmt.Sprintf("slot %d %q", id, strings.TrimRight(ti.Label, " \x00")))
			}
		}
		if len(have) == 0 {
			return 0, "", fmt.Errorf("%s: the module shows no token", what)
		}
		return 0, "", fmt.Errorf("%s matches no token (the module shows %s)", what, strings.Join(have, ", "))
	case 1:
		return found[0], labels[0], nil
	default:
		return 0, "", fmt.Errorf("%s matches %d tokens (slots %v): name one with slot or token_uri", what, len(found), found)
	}
}

// pkixFromPublic returns the PKIX DER of a public key.
func pkixFromPublic(pub any) ([]byte, error) {
	return x509.MarshalPKIXPublicKey(pub)
}

// joinErrors joins errors on one line (errors.Join puts newlines into log lines).
func joinErrors(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
	}
	return errors.New(strings.Join(msgs, "; "))
}
