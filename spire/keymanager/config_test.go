package keymanager

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Configuration errors name the field; what the configuration names is read as it says.

func TestConfigErrorsNameTheField(t *testing.T) {
	dir := t.TempDir()
	mod := "module_path = \"/usr/lib/softhsm/libsofthsm2.so\"\n"
	tok := "token_label = \"t\"\n"
	id := "key_identifier_value = \"a\"\n"
	pinFile := filepath.Join(dir, "pin")
	os.WriteFile(pinFile, []byte("\n"), 0o600)
	for _, c := range []struct{ hcl, want string }{
		{tok + id, "module_path is required"},
		{"module_path = \"lib.so\"\n" + tok + id, "module_path \"lib.so\" must be an absolute path"},
		{mod + id, "one of token_label, slot or token_uri is required"},
		{mod + tok + "slot = 1\n" + id, "token_label, slot and token_uri are mutually exclusive"},
		{mod + "slot = -1\n" + id, "slot -1 is out of range"},
		{mod + "token_uri = \"token=x\"\n" + id, "does not start with \"pkcs11:\""},
		{mod + "token_uri = \"pkcs11:object=x\"\n" + id, "attribute \"object\" does not name a token"},
		{mod + "token_uri = \"pkcs11:token=x?pin-value=1\"\n" + id, "query attributes"},
		{mod + tok, "one of key_identifier_value or key_identifier_file is required"},
		{mod + tok + id + "key_identifier_file = \"/x\"\n", "key_identifier_value and key_identifier_file are mutually exclusive"},
		{mod + tok + "key_identifier_value = \"a.b\"\n", "key_identifier_value: \"a.b\": use only"},
		{mod + tok + "key_identifier_value = \"" + strings.Repeat("a", 65) + "\"\n", "key_identifier_value: is longer than 64"},
		{mod + tok + id + "key_prefix = \"spire.\"\n", "key_prefix \"spire.\""},
		{mod + tok + id + "pin = \"1\"\npin_env = \"X\"\n", "pin, pin_file and pin_env are mutually exclusive"},
		{mod + tok + id + "pin_env = \"SKM_TEST_NO_SUCH_VAR\"\n", "pin_env: the environment variable \"SKM_TEST_NO_SUCH_VAR\" is not set"},
		{mod + tok + id + "pin_file = \"" + pinFile + "\"\n", "pin_file \"" + pinFile + "\" holds no PIN"},
		{mod + tok + id + "pin_file = \"" + dir + "/none\"\n", "pin_file: open"},
		{mod + tok + id + "max_sessions = 0\n", "max_sessions must be between 1 and 1024"},
		{mod + tok + id + "disposal_grace_period = \"two days\"\n", "disposal_grace_period \"two days\" is not a duration"},
		{mod + tok + id + "key_identifer_value = \"b\"\n", "unknown plugin_data field(s): key_identifer_value"},
		{mod + tok + id + "slot = [", "unable to decode plugin_data"},
	} {
		_, err := parseConfig(c.hcl, true)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("config %q: got error %v, want one containing %q", c.hcl, err, c.want)
		}
	}
}

func TestConfigValues(t *testing.T) {
	dir := t.TempDir()
	pinFile := filepath.Join(dir, "pin")
	os.WriteFile(pinFile, []byte("s3cret\n"), 0o600)
	t.Setenv("SKM_TEST_PIN", "from-env")
	base := "module_path = \"/m.so\"\ntoken_uri = \"pkcs11:token=SPIRE%20CA;slot-id=3\"\n"

	s, err := parseConfig(base+"key_identifier_value = \"srv-1\"\nkey_prefix = \"spire-\"\npin_file = \""+pinFile+"\"\n", true)
	if err != nil {
		t.Fatal(err)
	}
	if s.namespace != "spire-srv-1." || string(s.token.pin) != "s3cret" || s.grace != 48*time.Hour ||
		s.token.maxSess != 32 || s.token.tokenURI.attrs["token"] != "SPIRE CA" || s.token.tokenURI.attrs["slot-id"] != "3" {
		t.Fatalf("unexpected settings %+v", s)
	}
	if len(s.warnings) != 0 {
		t.Fatalf("warnings for a 0600 pin_file: %v", s.warnings)
	}

	// pin_file writable by group or others: refused; readable by others: a warning.
	for _, c := range []struct {
		mode    os.FileMode
		refused bool
		warned  bool
	}{{0o620, true, false}, {0o602, true, false}, {0o666, true, false}, {0o644, false, true}, {0o640, false, false}, {0o400, false, false}} {
		if err := os.Chmod(pinFile, c.mode); err != nil {
			t.Fatal(err)
		}
		s, err := parseConfig(base+"key_identifier_value = \"a\"\npin_file = \""+pinFile+"\"\n", false)
		if c.refused {
			if err == nil || !strings.Contains(err.Error(), "writable by group or others") ||
				!strings.Contains(err.Error(), pinFile) {
				t.Fatalf("pin_file mode %04o: error %v, want it refused as writable", c.mode, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("pin_file mode %04o: %v", c.mode, err)
		}
		warned := len(s.warnings) == 1 && strings.Contains(s.warnings[0], "readable by others")
		if warned != c.warned || (!c.warned && len(s.warnings) != 0) {
			t.Fatalf("pin_file mode %04o: warnings %v", c.mode, s.warnings)
		}
		s.wipe()
	}
	os.Chmod(pinFile, 0o600)
	s, err = parseConfig(base+"key_identifier_value = \"a\"\npin_env = \"SKM_TEST_PIN\"\ndisposal_grace_period = \"1h\"\nmax_sessions = 4\n", true)
	if err != nil || string(s.token.pin) != "from-env" || s.grace != time.Hour || s.token.maxSess != 4 || s.namespace != "a." {
		t.Fatalf("settings %+v, %v", s, err)
	}

	// key_identifier_file: Validate does not create it; Configure creates it once (0600, a
	// UUID) and every later start reads the same identifier.
	idFile := filepath.Join(dir, "key-id")
	hcl := base + "key_identifier_file = \"" + idFile + "\"\n"
	p := New()
	if _, err := parseConfig(hcl, false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(idFile); !os.IsNotExist(err) {
		t.Fatalf("validation created the identifier file (%v)", err)
	}
	_ = p
	s1, err := parseConfig(hcl, true)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(idFile)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("identifier file: %v, mode %v", err, st.Mode())
	}
	if !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(s1.ident) {
		t.Fatalf("identifier %q is not a random UUID", s1.ident)
	}
	s2, err := parseConfig(hcl, true)
	if err != nil || s2.ident != s1.ident {
		t.Fatalf("second start: identifier %q (%v), want %q", s2.ident, err, s1.ident)
	}
	os.WriteFile(idFile, []byte("bad.value\n"), 0o600)
	if _, err := parseConfig(hcl, true); err == nil || !strings.Contains(err.Error(), "key_identifier_file") {
		t.Fatalf("a bad identifier file gave %v", err)
	}
}

func TestLabels(t *testing.T) {
	for _, id := range []string{"x509-CA-A", "JWT-Signer-B", "a.b+c/d_e f", "_", "ü"} {
		gen, err := newGeneration(time.UnixMilli(1700000000123))
		if err != nil {
			t.Fatal(err)
		}
		label := objectLabel("spire-srv.", id, gen)
		if !regexp.MustCompile(`^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[0-9a-f]{16}$`).MatchString(label) {
			t.Errorf("label %q has characters a Transit key name cannot keep", label)
		}
		gotID, gotGen, ok := parseLabel("spire-srv.", label)
		if !ok || gotID != id || gotGen != gen || generationTime(gen).UnixMilli() != 1700000000123 {
			t.Errorf("parseLabel(%q) = %q %q %v", label, gotID, gotGen, ok)
		}
		// Other namespaces, including one that starts with the same characters, do not match.
		for _, ns := range []string{"spire-sr.", "spire-srv-x.", "spire-", "other."} {
			if _, _, ok := parseLabel(ns, label); ok {
				t.Errorf("label %q parsed in namespace %q", label, ns)
			}
		}
	}
	for _, bad := range []string{"spire-srv.x509.123", "spire-srv.x509", "spire-srv..0123456789abcdef",
		"spire-srv.x_zz.0123456789abcdef", "spire-srv.x_41.0123456789abcdef", "spire-srv.a.b.0123456789abcdef",
		"spire-srv.x509.0123456789ABCDEF"} {
		if id, _, ok := parseLabel("spire-srv.", bad); ok {
			t.Errorf("parseLabel(%q) accepted it as %q", bad, id)
		}
	}
}
