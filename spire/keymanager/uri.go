package keymanager

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/miekg/pkcs11"
)

// pkcs11URI is the token part of an RFC 7512 PKCS#11 URI: the path attributes that name a
// library, a slot or a token. Attributes that name objects (object, id, type) or that carry a
// PIN have no meaning for token selection and are refused, so that a URI copied from
// elsewhere does not silently select less than it says.
type pkcs11URI struct {
	raw   string
	attrs map[string]string
}

var uriTokenAttrs = map[string]bool{
	"token": true, "manufacturer": true, "serial": true, "model": true,
	"slot-id": true, "slot-description": true, "slot-manufacturer": true,
	"library-manufacturer": true, "library-description": true, "library-version": true,
}

func parsePKCS11URI(s string) (*pkcs11URI, error) {
	rest, ok := strings.CutPrefix(s, "pkcs11:")
	if !ok {
		return nil, fmt.Errorf("token_uri %q does not start with \"pkcs11:\"", s)
	}
	if i := strings.IndexByte(rest, '?'); i >= 0 {
		return nil, fmt.Errorf("token_uri: query attributes (%q) are not used: give the PIN with pin, pin_file or pin_env", rest[i:])
	}
	u := &pkcs11URI{raw: s, attrs: map[string]string{}}
	if rest == "" {
		return u, nil // matches every token
	}
	for _, part := range strings.Split(rest, ";") {
		name, val, ok := strings.Cut(part, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("token_uri: %q is not name=value", part)
		}
		if !uriTokenAttrs[name] {
			return nil, fmt.Errorf("token_uri: attribute %q does not name a token (use token, manufacturer, serial, model, slot-id, slot-description, slot-manufacturer or library-*)", name)
		}
		if _, dup := u.attrs[name]; dup {
			return nil, fmt.Errorf("token_uri: attribute %q given twice", name)
		}
		v, err := url.PathUnescape(val)
		if err != nil {
			return nil, fmt.Errorf("token_uri: attribute %q: %v", name, err)
		}
		if name == "slot-id" {
			if _, err := strconv.ParseUint(v, 10, 64); err != nil {
				return nil, fmt.Errorf("token_uri: slot-id %q is not a number", v)
			}
		}
		u.attrs[name] = v
	}
	return u, nil
}

func (u *pkcs11URI) needsLibrary() bool {
	for name := range u.attrs {
		if strings.HasPrefix(name, "library-") {
			return true
		}
	}
	return false
}

func trimField(s string) string { return strings.TrimRight(s, " \x00") }

func (u *pkcs11URI) matches(slot uint, lib *pkcs11.Info, si *pkcs11.SlotInfo, ti *pkcs11.TokenInfo) bool {
	for name, want := range u.attrs {
		var have string
		switch name {
		case "token":
			have = trimField(ti.Label)
		case "manufacturer":
			have = trimField(ti.ManufacturerID)
		case "serial":
			have = trimField(ti.SerialNumber)
		case "model":
			have = trimField(ti.Model)
		case "slot-id":
			have = strconv.FormatUint(uint64(slot), 10)
		case "slot-description":
			have = trimField(si.SlotDescription)
		case "slot-manufacturer":
			have = trimField(si.ManufacturerID)
		case "library-manufacturer":
			have = trimField(lib.ManufacturerID)
		case "library-description":
			have = trimField(lib.LibraryDescription)
		case "library-version":
			have = fmt.Sprintf("%d.%d", lib.LibraryVersion.Major, lib.LibraryVersion.Minor)
			if !strings.Contains(want, ".") {
				have = strconv.Itoa(int(lib.LibraryVersion.Major))
			}
		}
		if have != want {
			return false
		}
	}
	return true
}
