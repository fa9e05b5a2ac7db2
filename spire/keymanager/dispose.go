package keymanager

import (
	"context"
	"sort"
	"time"

	"github.com/miekg/pkcs11"
)

// Disposal of keys SPIRE no longer uses. GenerateKey destroys the pair it replaces at once;
// what can be left behind is a replaced pair whose destruction failed (Vault unreachable at
// that moment, a policy without delete) or a pair made just before a crash. Such a key, of
// this server's namespace only, older generation of an id whose current generation has
// existed for disposal_grace_period, is destroyed. Keys of other namespaces, keys newer than
// the current generation (another process with the same identifier) and keys whose label this
// plugin did not write are never touched.

func (p *Plugin) disposeLoop(ctx context.Context, st *state) {
	defer close(st.done)
	for {
		labels, err := p.dispose(ctx, st)
		if p.disposed != nil {
			p.disposed(labels, err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(p.disposeInterval):
		}
	}
}

func (p *Plugin) dispose(ctx context.Context, st *state) ([]string, error) {
	st.mutate.Lock()
	defer st.mutate.Unlock()
	var stale []string
	seen := map[string]bool{}
	for _, class := range []uint{pkcs11.CKO_PRIVATE_KEY, pkcs11.CKO_PUBLIC_KEY} {
		objs, err := st.tok.findObjects(ctx, classTemplate(class, ""))
		if err != nil {
			return nil, err
		}
		for _, o := range objs {
			if seen[o.label] {
				continue
			}
			seen[o.label] = true
			if p.isStale(st, o.label) {
				stale = append(stale, o.label)
			}
		}
	}
	sort.Strings(stale)
	var errs []error
	var done []string
	for _, label := range stale {
		if ctx.Err() != nil {
			break
		}
		if err := st.tok.destroy(ctx, label); err != nil {
			p.log.Warn("Could not dispose of a replaced key", "label", label, "reason", err)
			errs = append(errs, err)
			continue
		}
		p.log.Info("Disposed of a replaced key", "label", label)
		done = append(done, label)
	}
	return done, joinErrors(errs)
}

func (p *Plugin) isStale(st *state, label string) bool {
	id, gen, ok := parseLabel(st.set.namespace, label)
	if !ok {
		return false
	}
	p.mu.RLock()
	cur := st.entries[id]
	p.mu.RUnlock()
	if cur == nil || gen >= cur.gen {
		return false
	}
	return p.now().Sub(generationTime(cur.gen)) >= st.set.grace
}
