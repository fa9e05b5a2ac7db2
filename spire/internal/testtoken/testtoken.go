// Package testtoken gives the plugin's tests real PKCS#11 tokens: SoftHSM2 (a token made in a
// temporary directory with softhsm2-util) and vault-transit-pkcs11 (SKM_VTP_MODULE names the
// module, SKM_VTP_TOKEN its token label; the module's config and the Vault come from
// VAULT_TRANSIT_PKCS11_CONFIG, VAULT_ADDR and VAULT_TOKEN, as tests/spire/plugin-go.sh sets
// them up). A backend that is missing is skipped, except under CI=true or
// SKM_REQUIRE_BACKENDS=1, where it fails the test.
package testtoken

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/pkcs11"
)

// Backend is one token.
type Backend struct {
	Name   string
	Module string
	Token  string
	Pin    string
}

func requireOrSkip(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" || os.Getenv("SKM_REQUIRE_BACKENDS") == "1" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

var softhsmOnce struct {
	sync.Once
	b   *Backend
	err error
}

// SoftHSM returns a SoftHSM2 token of this test process.
func SoftHSM(t *testing.T) *Backend {
	t.Helper()
	softhsmOnce.Do(func() { softhsmOnce.b, softhsmOnce.err = makeSoftHSM() })
	if softhsmOnce.err != nil {
		requireOrSkip(t, "no SoftHSM2 token: %v", softhsmOnce.err)
	}
	return softhsmOnce.b
}

func makeSoftHSM() (*Backend, error) {
	module := os.Getenv("SKM_SOFTHSM_MODULE")
	if module == "" {
		module = "/usr/lib/softhsm/libsofthsm2.so"
	}
	if _, err := os.Stat(module); err != nil {
		return nil, fmt.Errorf("SoftHSM2 module: %v", err)
	}
	dir, err := os.MkdirTemp("", "skm-softhsm")
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "tokens"), 0o700); err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	text := "directories.tokendir = " + dir + "/tokens\nobjectstore.backend = file\nlog.level = ERROR\n"
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		return nil, err
	}
	os.Setenv("SOFTHSM2_CONF", conf)
	out, err := exec.Command("softhsm2-util", "--init-token", "--free", "--label", "skm-softhsm",
		"--pin", "1234", "--so-pin", "5678").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("softhsm2-util: %v: %s", err, out)
	}
	return &Backend{Name: "softhsm2", Module: module, Token: "skm-softhsm", Pin: "1234"}, nil
}

// VTP returns the vault-transit-pkcs11 token the environment names.
func VTP(t *testing.T) *Backend {
	t.Helper()
	module := os.Getenv("SKM_VTP_MODULE")
	if module == "" || os.Getenv("VAULT_ADDR") == "" {
		requireOrSkip(t, "SKM_VTP_MODULE and VAULT_ADDR are not set (run tests/spire/plugin-go.sh)")
	}
	token := os.Getenv("SKM_VTP_TOKEN")
	if token == "" {
		token = "vtp-test"
	}
	return &Backend{Name: "vault-transit-pkcs11", Module: module, Token: token, Pin: os.Getenv("SKM_VTP_PIN")}
}

// Each runs fn as a subtest per backend.
func Each(t *testing.T, fn func(t *testing.T, b *Backend)) {
	t.Run("softhsm2", func(t *testing.T) { fn(t, SoftHSM(t)) })
	t.Run("vault-transit-pkcs11", func(t *testing.T) { fn(t, VTP(t)) })
}

// HCL is plugin_data for this token with the key identifier ident and extra lines.
func (b *Backend) HCL(ident string, extra ...string) string {
	lines := []string{
		fmt.Sprintf("module_path = %q", b.Module),
		fmt.Sprintf("token_label = %q", b.Token),
		fmt.Sprintf("key_identifier_value = %q", ident),
	}
	if b.Pin != "" {
		lines = append(lines, fmt.Sprintf("pin = %q", b.Pin))
	}
	return strings.Join(append(lines, extra...), "\n")
}

// NewIdent returns a fresh key identifier.
func NewIdent() string {
	var r [6]byte
	rand.Read(r[:])
	return "test-" + hex.EncodeToString(r[:])
}

// DestroyPrefix destroys every key object whose label starts with prefix, through a second
// use of the module in this process (its C_Initialize answers CKR_CRYPTOKI_ALREADY_INITIALIZED
// while the plugin holds it; then it is not finalised here).
func (b *Backend) DestroyPrefix(t *testing.T, prefix string) {
	t.Helper()
	ctx := pkcs11.New(b.Module)
	if ctx == nil {
		t.Errorf("cleanup: cannot load %s", b.Module)
		return
	}
	defer ctx.Destroy()
	err := ctx.Initialize()
	if err == nil {
		defer ctx.Finalize()
	} else if e, ok := err.(pkcs11.Error); !ok || e != pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED {
		t.Errorf("cleanup: C_Initialize: %v", err)
		return
	}
	slots, err := ctx.GetSlotList(true)
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	for _, slot := range slots {
		ti, err := ctx.GetTokenInfo(slot)
		if err != nil || strings.TrimRight(ti.Label, " \x00") != b.Token {
			continue
		}
		s, err := ctx.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
		if err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
		defer ctx.CloseSession(s)
		if b.Pin != "" {
			_ = ctx.Login(s, pkcs11.CKU_USER, b.Pin)
		}
		for _, class := range []uint{pkcs11.CKO_PRIVATE_KEY, pkcs11.CKO_PUBLIC_KEY} {
			if err := ctx.FindObjectsInit(s, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, class)}); err != nil {
				t.Errorf("cleanup: %v", err)
				return
			}
			var hs []pkcs11.ObjectHandle
			for {
				more, _, err := ctx.FindObjects(s, 256)
				if err != nil || len(more) == 0 {
					break
				}
				hs = append(hs, more...)
			}
			_ = ctx.FindObjectsFinal(s)
			for _, h := range hs {
				a, err := ctx.GetAttributeValue(s, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, nil)})
				if err == nil && strings.HasPrefix(string(a[0].Value), prefix) {
					_ = ctx.DestroyObject(s, h)
				}
			}
		}
	}
}
