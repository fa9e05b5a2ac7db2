package keymanager

import (
	"context"

	agentv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/agent/keymanager/v1"
	keymanagerv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/keymanager/v1"
)

// Agent serves spire-agent's KeyManager interface (agent keymanager v1) with the same
// implementation: the agent's SVID keys live in the token under the agent's own key
// identifier. The two interfaces have the same messages and enum values; Agent only converts.
type Agent struct {
	agentv1.UnsafeKeyManagerServer
	p *Plugin
}

// NewAgent returns the agent interface of p (p also serves the Config service).
func NewAgent(p *Plugin) *Agent { return &Agent{p: p} }

func agentPublicKey(pk *keymanagerv1.PublicKey) *agentv1.PublicKey {
	if pk == nil {
		return nil
	}
	return &agentv1.PublicKey{Id: pk.Id, Type: agentv1.KeyType(pk.Type), PkixData: pk.PkixData, Fingerprint: pk.Fingerprint}
}

// GenerateKey implements the agent KeyManager's GenerateKey.
func (a *Agent) GenerateKey(ctx context.Context, req *agentv1.GenerateKeyRequest) (*agentv1.GenerateKeyResponse, error) {
	resp, err := a.p.GenerateKey(ctx, &keymanagerv1.GenerateKeyRequest{KeyId: req.KeyId, KeyType: keymanagerv1.KeyType(req.KeyType)})
	if err != nil {
		return nil, err
	}
	return &agentv1.GenerateKeyResponse{PublicKey: agentPublicKey(resp.PublicKey)}, nil
}

// GetPublicKey implements the agent KeyManager's GetPublicKey.
func (a *Agent) GetPublicKey(ctx context.Context, req *agentv1.GetPublicKeyRequest) (*agentv1.GetPublicKeyResponse, error) {
	resp, err := a.p.GetPublicKey(ctx, &keymanagerv1.GetPublicKeyRequest{KeyId: req.KeyId})
	if err != nil {
		return nil, err
	}
	return &agentv1.GetPublicKeyResponse{PublicKey: agentPublicKey(resp.PublicKey)}, nil
}

// GetPublicKeys implements the agent KeyManager's GetPublicKeys.
func (a *Agent) GetPublicKeys(ctx context.Context, _ *agentv1.GetPublicKeysRequest) (*agentv1.GetPublicKeysResponse, error) {
	resp, err := a.p.GetPublicKeys(ctx, &keymanagerv1.GetPublicKeysRequest{})
	if err != nil {
		return nil, err
	}
	out := &agentv1.GetPublicKeysResponse{}
	for _, pk := range resp.PublicKeys {
		out.PublicKeys = append(out.PublicKeys, agentPublicKey(pk))
	}
	return out, nil
}

// SignData implements the agent KeyManager's SignData.
func (a *Agent) SignData(ctx context.Context, req *agentv1.SignDataRequest) (*agentv1.SignDataResponse, error) {
	sreq := &keymanagerv1.SignDataRequest{KeyId: req.KeyId, Data: req.Data}
	switch opts := req.SignerOpts.(type) {
	case *agentv1.SignDataRequest_HashAlgorithm:
		sreq.SignerOpts = &keymanagerv1.SignDataRequest_HashAlgorithm{HashAlgorithm: keymanagerv1.HashAlgorithm(opts.HashAlgorithm)}
	case *agentv1.SignDataRequest_PssOptions:
		if opts.PssOptions != nil {
			sreq.SignerOpts = &keymanagerv1.SignDataRequest_PssOptions{PssOptions: &keymanagerv1.SignDataRequest_PSSOptions{
				SaltLength: opts.PssOptions.SaltLength, HashAlgorithm: keymanagerv1.HashAlgorithm(opts.PssOptions.HashAlgorithm)}}
		} else {
			sreq.SignerOpts = &keymanagerv1.SignDataRequest_PssOptions{}
		}
	}
	resp, err := a.p.SignData(ctx, sreq)
	if err != nil {
		return nil, err
	}
	return &agentv1.SignDataResponse{Signature: resp.Signature, KeyFingerprint: resp.KeyFingerprint}, nil
}
