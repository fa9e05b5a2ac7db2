package keymanager

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/hcl"
	hcltoken "github.com/hashicorp/hcl/hcl/token"
)

// Config is plugin_data.
type Config struct {
	ModulePath          string `hcl:"module_path"`
	TokenLabel          string `hcl:"token_label"`
	Slot                *int64 `hcl:"slot"`
	TokenURI            string `hcl:"token_uri"`
	Pin                 string `hcl:"pin"`
	PinFile             string `hcl:"pin_file"`
	PinEnv              string `hcl:"pin_env"`
	KeyIdentifierValue  string `hcl:"key_identifier_value"`
	KeyIdentifierFile   string `hcl:"key_identifier_file"`
	KeyPrefix           string `hcl:"key_prefix"`
	DisposalGracePeriod string `hcl:"disposal_grace_period"`
	MaxSessions         *int   `hcl:"max_sessions"`

	Unused map[string][]hcltoken.Pos `hcl:",unusedKeyPositions"`
}

const (
	defaultGrace       = 48 * time.Hour
	defaultMaxSessions = 32
	maxIdentifierLen   = 64
	maxPinLen          = 4096
)

// settings is a checked configuration.
type settings struct {
	token     tokenConfig
	namespace string // key_prefix + key identifier + "."
	ident     string
	grace     time.Duration
	warnings  []string // for the log: what is accepted but should be fixed
}

func (s *settings) wipe() { wipe(s.token.pin) }

func configError(format string, args ...any) error {
	return fmt.Errorf(format, args...)
}

// parseConfig checks plugin_data and reads what it names (PIN, key identifier); with create it
// creates a missing key_identifier_file.
func parseConfig(hclText string, create bool) (*settings, error) {
	var c Config
	if err := hcl.Decode(&c, hclText); err != nil {
		return nil, configError("unable to decode plugin_data: %v", err)
	}
	if len(c.Unused) > 0 {
		var names []string
		for k := range c.Unused {
			names = append(names, k)
		}
		sort.Strings(names)
		return nil, configError("unknown plugin_data field(s): %s", strings.Join(names, ", "))
	}
	s := &settings{grace: defaultGrace}
	if c.ModulePath == "" {
		return nil, configError("module_path is required: the path of the PKCS#11 module (.so)")
	}
	if !filepath.IsAbs(c.ModulePath) {
		return nil, configError("module_path %q must be an absolute path", c.ModulePath)
	}
	s.token.modulePath = c.ModulePath

	n := 0
	if c.TokenLabel != "" {
		n++
		s.token.tokenLabel = c.TokenLabel
	}
	if c.Slot != nil {
		n++
		if *c.Slot < 0 || *c.Slot > 1<<32-1 {
			return nil, configError("slot %d is out of range", *c.Slot)
		}
		v := uint(*c.Slot)
		s.token.slot = &v
	}
	if c.TokenURI != "" {
		n++
		u, err := parsePKCS11URI(c.TokenURI)
		if err != nil {
			return nil, configError("%v", err)
		}
		s.token.tokenURI = u
	}
	switch n {
	case 0:
		return nil, configError("one of token_label, slot or token_uri is required")
	case 1:
	default:
		return nil, configError("token_label, slot and token_uri are mutually exclusive: give one")
	}

	pin, warn, err := readPin(&c)
	if err != nil {
		return nil, err
	}
	s.token.pin = pin
	if warn != "" {
		s.warnings = append(s.warnings, warn)
	}

	s.token.maxSess = defaultMaxSessions
	if c.MaxSessions != nil {
		if *c.MaxSessions < 1 || *c.MaxSessions > 1024 {
			s.wipe()
			return nil, configError("max_sessions must be between 1 and 1024, not %d", *c.MaxSessions)
		}
		s.token.maxSess = *c.MaxSessions
	}
	if c.DisposalGracePeriod != "" {
		d, err := time.ParseDuration(c.DisposalGracePeriod)
		if err != nil || d < 0 {
			s.wipe()
			return nil, configError("disposal_grace_period %q is not a duration such as \"48h\"", c.DisposalGracePeriod)
		}
		s.grace = d
	}
	if !validName(c.KeyPrefix) || len(c.KeyPrefix) > 64 {
		s.wipe()
		return nil, configError("key_prefix %q: use at most 64 of A-Z a-z 0-9 _ -", c.KeyPrefix)
	}
	ident, err := keyIdentifier(&c, create)
	if err != nil {
		s.wipe()
		return nil, err
	}
	s.ident = ident
	s.namespace = c.KeyPrefix + ident + "."
	return s, nil
}

// checkPinFileMode refuses a PIN file that group or others may write (whoever can write it
// chooses the PIN the plugin logs in with, and can lock the token's user out) and warns about
// one others may read, as the module does for its token and secret_id files.
func checkPinFileMode(path string, mode os.FileMode) (warning string, err error) {
	mode = mode.Perm()
	if mode&0o022 != 0 {
		return "", configError("pin_file %q is writable by group or others (mode %04o): it holds "+
			"the token's PIN; make it writable by its owner only (chmod go-w)", path, mode)
	}
	if mode&0o004 != 0 {
		return fmt.Sprintf("pin_file %q is readable by others (mode %04o): it holds the token's "+
			"PIN; chmod o-r it", path, mode), nil
	}
	return "", nil
}

// readPinFile reads the file it checked (opened once: the mode is the read file's).
func readPinFile(path string) ([]byte, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, "", configError("pin_file: %v", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, "", configError("pin_file: %v", err)
	}
	warning, err := checkPinFileMode(path, st.Mode())
	if err != nil {
		return nil, "", err
	}
	b, err := io.ReadAll(io.LimitReader(f, maxPinLen+3))
	if err != nil {
		wipe(b)
		return nil, "", configError("pin_file: %v", err)
	}
	return b, warning, nil
}

func readPin(c *Config) (pin []byte, warning string, err error) {
	n := 0
	for _, v := range []string{c.Pin, c.PinFile, c.PinEnv} {
		if v != "" {
			n++
		}
	}
	if n > 1 {
		return nil, "", configError("pin, pin_file and pin_env are mutually exclusive: give one")
	}
	switch {
	case c.Pin != "":
		return []byte(c.Pin), "", nil
	case c.PinFile != "":
		b, warning, err := readPinFile(c.PinFile)
		if err != nil {
			return nil, "", err
		}
		pin := bytes.TrimRight(b, "\r\n")
		if len(pin) == 0 || len(pin) > maxPinLen {
			wipe(b)
			return nil, "", configError("pin_file %q holds no PIN (or one over %d bytes)", c.PinFile, maxPinLen)
		}
		out := append([]byte(nil), pin...)
		wipe(b)
		return out, warning, nil
	case c.PinEnv != "":
		v, ok := os.LookupEnv(c.PinEnv)
		if !ok || v == "" {
			return nil, "", configError("pin_env: the environment variable %q is not set in spire-server's environment", c.PinEnv)
		}
		return []byte(v), "", nil
	}
	return nil, "", nil
}

func keyIdentifier(c *Config, create bool) (string, error) {
	switch {
	case c.KeyIdentifierValue != "" && c.KeyIdentifierFile != "":
		return "", configError("key_identifier_value and key_identifier_file are mutually exclusive: give one")
	case c.KeyIdentifierValue != "":
		if err := checkIdentifier(c.KeyIdentifierValue); err != nil {
			return "", configError("key_identifier_value: %v", err)
		}
		return c.KeyIdentifierValue, nil
	case c.KeyIdentifierFile != "":
		b, err := os.ReadFile(c.KeyIdentifierFile)
		switch {
		case err == nil:
			id := strings.TrimSpace(string(b))
			if err := checkIdentifier(id); err != nil {
				return "", configError("key_identifier_file %q: %v", c.KeyIdentifierFile, err)
			}
			return id, nil
		case errors.Is(err, os.ErrNotExist) && create:
			return createIdentifier(c.KeyIdentifierFile)
		case errors.Is(err, os.ErrNotExist):
			return "", nil // Validate: Configure creates it
		default:
			return "", configError("key_identifier_file: %v", err)
		}
	}
	return "", configError("one of key_identifier_value or key_identifier_file is required: it keeps this server's keys apart from other servers'")
}

func checkIdentifier(id string) error {
	switch {
	case id == "":
		return errors.New("is empty")
	case len(id) > maxIdentifierLen:
		return fmt.Errorf("is longer than %d characters", maxIdentifierLen)
	case !validName(id):
		return fmt.Errorf("%q: use only A-Z a-z 0-9 _ -", id)
	}
	return nil
}

// createIdentifier writes a new random identifier (a UUID, version 4) to path, failing if
// another process created the file first.
func createIdentifier(path string) (string, error) {
	var u [16]byte
	if _, err := rand.Read(u[:]); err != nil {
		return "", err
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	id := fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			b, rerr := os.ReadFile(path)
			if rerr == nil && checkIdentifier(strings.TrimSpace(string(b))) == nil {
				return strings.TrimSpace(string(b)), nil
			}
		}
		return "", configError("key_identifier_file: cannot create %q: %v", path, err)
	}
	if _, err := f.WriteString(id + "\n"); err != nil {
		f.Close()
		os.Remove(path)
		return "", configError("key_identifier_file: cannot write %q: %v", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return "", configError("key_identifier_file: cannot write %q: %v", path, err)
	}
	return id, nil
}
