package keymanager

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"errors"
	"fmt"

	"github.com/miekg/pkcs11"
	keymanagerv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/keymanager/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// How SPIRE's requests become PKCS#11 mechanisms, the same way Go's crypto.Signer contract
// and crypto11 do it: ECDSA (CKM_ECDSA) over the digest, RSA PKCS#1 v1.5 (CKM_RSA_PKCS) over
// DigestInfo || digest, RSA-PSS (CKM_RSA_PKCS_PSS) with MGF1 of the same hash and the salt
// length SPIRE asks for: rsa.PSSSaltLengthEqualsHash (-1) is the hash length, and
// rsa.PSSSaltLengthAuto (0) is the largest the key allows, as Go's rsa.SignPSS makes it.

type hashInfo struct {
	hash     crypto.Hash
	ckm      uint
	mgf      uint
	digestIn []byte // DER prefix of DigestInfo
}

var hashes = map[keymanagerv1.HashAlgorithm]hashInfo{
	keymanagerv1.HashAlgorithm_SHA224: {crypto.SHA224, pkcs11.CKM_SHA224, pkcs11.CKG_MGF1_SHA224,
		[]byte{0x30, 0x2d, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x04, 0x05, 0x00, 0x04, 0x1c}},
	keymanagerv1.HashAlgorithm_SHA256: {crypto.SHA256, pkcs11.CKM_SHA256, pkcs11.CKG_MGF1_SHA256,
		[]byte{0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20}},
	keymanagerv1.HashAlgorithm_SHA384: {crypto.SHA384, pkcs11.CKM_SHA384, pkcs11.CKG_MGF1_SHA384,
		[]byte{0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30}},
	keymanagerv1.HashAlgorithm_SHA512: {crypto.SHA512, pkcs11.CKM_SHA512, pkcs11.CKG_MGF1_SHA512,
		[]byte{0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40}},
}

type signOp struct {
	mech   *pkcs11.Mechanism
	input  []byte
	digest []byte
	hash   crypto.Hash
	pss    *rsa.PSSOptions
}

func newSignOp(e *keyEntry, req *keymanagerv1.SignDataRequest) (*signOp, error) {
	var alg keymanagerv1.HashAlgorithm
	var pss *keymanagerv1.SignDataRequest_PSSOptions
	switch opts := req.SignerOpts.(type) {
	case *keymanagerv1.SignDataRequest_HashAlgorithm:
		alg = opts.HashAlgorithm
	case *keymanagerv1.SignDataRequest_PssOptions:
		if opts.PssOptions == nil {
			return nil, status.Error(codes.InvalidArgument, "PSS options are required")
		}
		pss = opts.PssOptions
		alg = pss.HashAlgorithm
	default:
		return nil, status.Error(codes.InvalidArgument, "signer opts are required")
	}
	if alg == keymanagerv1.HashAlgorithm_UNSPECIFIED_HASH_ALGORITHM {
		return nil, status.Error(codes.InvalidArgument, "hash algorithm is required")
	}
	h, ok := hashes[alg]
	if !ok {
		return nil, status.Errorf(codes.InvalidArgument, "hash algorithm %s is not supported (SHA-224, SHA-256, SHA-384 and SHA-512 are)", alg)
	}
	if len(req.Data) != h.hash.Size() {
		return nil, status.Errorf(codes.InvalidArgument, "data is %d bytes, not a %s digest (%d bytes)", len(req.Data), alg, h.hash.Size())
	}
	op := &signOp{digest: req.Data, hash: h.hash}
	switch pub := e.public.(type) {
	case *ecdsa.PublicKey:
		if pss != nil {
			return nil, status.Errorf(codes.InvalidArgument, "key %q is an EC key: PSS does not apply", e.id)
		}
		op.mech = pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil)
		op.input = req.Data
	case *rsa.PublicKey:
		if pss == nil {
			op.mech = pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS, nil)
			op.input = append(append([]byte(nil), h.digestIn...), req.Data...)
			break
		}
		maxSalt := (pub.N.BitLen()-1+7)/8 - 2 - h.hash.Size()
		salt := int(pss.SaltLength)
		switch {
		case salt == rsa.PSSSaltLengthEqualsHash:
			salt = h.hash.Size()
		case salt == rsa.PSSSaltLengthAuto:
			salt = maxSalt
		case salt < 0 || salt > maxSalt:
			return nil, status.Errorf(codes.InvalidArgument, "PSS salt length %d is out of range for key %q (0 to %d)", pss.SaltLength, e.id, maxSalt)
		}
		op.mech = pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_PSS, pkcs11.NewPSSParams(h.ckm, h.mgf, uint(salt)))
		op.input = req.Data
		op.pss = &rsa.PSSOptions{SaltLength: salt, Hash: h.hash}
	default:
		return nil, status.Errorf(codes.Internal, "key %q has an unexpected type %T", e.id, e.public)
	}
	return op, nil
}

// finish brings the token's signature into the form SPIRE expects and checks it against the
// public key SPIRE was given: a signature that would not verify is never returned.
func (op *signOp) finish(public any, sig []byte) ([]byte, error) {
	switch pub := public.(type) {
	case *ecdsa.PublicKey:
		der, err := ecdsaDER(sig)
		if err != nil {
			return nil, err
		}
		if !ecdsa.VerifyASN1(pub, op.digest, der) {
			return nil, errors.New("the token's ECDSA signature does not verify with the key's public key")
		}
		return der, nil
	case *rsa.PublicKey:
		var err error
		if op.pss != nil {
			err = rsa.VerifyPSS(pub, op.hash, op.digest, sig, op.pss)
		} else {
			err = rsa.VerifyPKCS1v15(pub, op.hash, op.digest, sig)
		}
		if err != nil {
			return nil, fmt.Errorf("the token's RSA signature does not verify with the key's public key: %v", err)
		}
		return sig, nil
	}
	return nil, fmt.Errorf("unexpected key type %T", public)
}
