package keymanager

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Object names. Each SPIRE key is one PKCS#11 key pair whose CKA_LABEL and CKA_ID are both
//
//	<namespace><encoded SPIRE key id>.<generation>
//
// where the namespace is key_prefix + key identifier + "." (neither may contain a dot, so no
// namespace is a prefix of another one), the SPIRE key id keeps [A-Za-z0-9-] and writes every
// other byte as _xx, and the generation is 16 hex digits: 12 of the creation time in
// milliseconds since the epoch and 4 random. Every character is one that vault-transit-pkcs11
// keeps when it turns a label into a Transit key name, so the label, the CKA_ID and the Transit
// key name agree with or without a KV mount, and a key is found again after a restart by its
// label alone.

const genLen = 16

func idChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-'
}

// nameChar: characters allowed in key_prefix and key identifiers.
func nameChar(c byte) bool {
	return idChar(c) || c == '_'
}

func encodeKeyID(id string) string {
	var b strings.Builder
	for i := 0; i < len(id); i++ {
		c := id[i]
		if idChar(c) {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "_%02x", c)
		}
	}
	return b.String()
}

func decodeKeyID(s string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case idChar(c):
			b.WriteByte(c)
		case c == '_' && i+2 < len(s):
			v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
			if err != nil || idChar(byte(v)) {
				return "", false // not what encodeKeyID writes
			}
			b.WriteByte(byte(v))
			i += 2
		default:
			return "", false
		}
	}
	return b.String(), b.Len() > 0
}

// newGeneration returns a generation for a key created at t.
func newGeneration(t time.Time) (string, error) {
	var r [2]byte
	if _, err := rand.Read(r[:]); err != nil {
		return "", err
	}
	ms := t.UnixMilli()
	if ms < 0 {
		ms = 0
	}
	return fmt.Sprintf("%012x%s", ms&0xffffffffffff, hex.EncodeToString(r[:])), nil
}

func generationTime(gen string) time.Time {
	ms, err := strconv.ParseInt(gen[:12], 16, 64)
	if err != nil {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

func objectLabel(namespace, keyID, gen string) string {
	return namespace + encodeKeyID(keyID) + "." + gen
}

// parseLabel splits a label of the namespace into the SPIRE key id and the generation; ok is
// false for labels of other namespaces and for anything this plugin did not write.
func parseLabel(namespace, label string) (keyID, gen string, ok bool) {
	rest, found := strings.CutPrefix(label, namespace)
	if !found {
		return "", "", false
	}
	enc, gen, found := strings.Cut(rest, ".")
	if !found || len(gen) != genLen || strings.Trim(gen, "0123456789abcdef") != "" {
		return "", "", false
	}
	keyID, ok = decodeKeyID(enc)
	return keyID, gen, ok
}

func validName(s string) bool {
	for i := 0; i < len(s); i++ {
		if !nameChar(s[i]) {
			return false
		}
	}
	return true
}
