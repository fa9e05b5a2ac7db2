#!/usr/bin/env python3
"""python-pkcs11 (PyPI) against a PKCS#11 module (run by tests/clients/python-pkcs11.sh).

    python_pkcs11_test.py MODULE --token LABEL --pin PIN --state FILE --tag TAG STEP

Each STEP runs in its own process, as a user's separate programs would:

  generate  EC P-256, RSA-2048 and Ed25519 pairs with store=True, a label (TAG + kind) and a
            random CKA_ID; the labels and IDs go to the JSON file FILE
  use       a new process: get_key by label and by ID returns exactly one private and one
            public key (python-pkcs11 raises MultipleObjectsReturned otherwise); sign with
            ECDSA-SHA256, ECDSA over a digest, SHA256_RSA_PKCS, RSA-PSS (SHA256_RSA_PKCS_PSS and
            RSA_PKCS_PSS over a digest) and EdDSA; each signature is verified by the openssl CLI
            against the public key the module exposes (CKA_EC_POINT/CKA_MODULUS), and by the
            token's own C_Verify; RSA-OAEP: openssl encrypts to that public key, the token
            decrypts
  destroy   a new process: C_DestroyObject on each private and public key; a search finds
            nothing afterwards
  templates python-pkcs11's default capabilities (CKA_DERIVE for EC, CKA_WRAP/CKA_UNWRAP for
            RSA) and an encrypt-only RSA pair (CKA_SIGN/CKA_VERIFY FALSE): refused, or the
            objects show what was asked and a CKA_SIGN=FALSE key cannot sign
  session   store=False (CKA_TOKEN=FALSE on both halves), CKA_TOKEN absent, and a public half
            with CKA_TOKEN=FALSE: each C_GenerateKeyPair must be refused with
            CKR_TEMPLATE_INCONSISTENT (the module makes token keys only). The shell script
            checks through Vault's API that no Transit key was made.

Every check of a step runs even when an earlier one failed; the step exits 1 when any failed.
Ed25519 is skipped (n/a) when the token does not list CKM_EC_EDWARDS_KEY_PAIR_GEN.
"""

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import traceback

import pkcs11
from asn1crypto.core import OctetString
from asn1crypto.keys import PublicKeyInfo, RSAPublicKey
from pkcs11 import MGF, Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.attributes import AttributeMapper
from pkcs11.defaults import DEFAULT_KEY_CAPABILITIES
from pkcs11 import MechanismFlag as F
from pkcs11.exceptions import MultipleObjectsReturned, NoSuchKey, PKCS11Error
from pkcs11.util.ec import (encode_ec_public_key, encode_ecdsa_signature,
                             encode_named_curve_parameters)

NAME = "python-pkcs11"
ED25519_PARAMS = bytes.fromhex("06032b6570")  # OID 1.3.101.112
DATA = b"python-pkcs11 conformance data\n" * 5

# kind: (key type, capabilities) -- explicit capabilities: the defaults of python-pkcs11 also
# ask for CKA_DERIVE (EC) and CKA_WRAP/CKA_UNWRAP (RSA), which Transit keys cannot do.
KINDS = {
    "ec": (KeyType.EC, F.SIGN | F.VERIFY),
    "rsa": (KeyType.RSA, F.SIGN | F.VERIFY | F.ENCRYPT | F.DECRYPT),
    "ed25519": (KeyType.EC_EDWARDS, F.SIGN | F.VERIFY),
}


class Report:
    def __init__(self, step):
        self.step = step
        self.failures = []

    def say(self, kind, desc):
        print(f"{NAME}: {self.step}: {kind}: {desc}", flush=True)

    def ok(self, desc):
        self.say("ok", desc)

    def na(self, desc):
        self.say("n/a", desc)

    def fail(self, desc, detail=""):
        self.failures.append(desc)
        self.say("FAIL", desc)
        for line in str(detail).rstrip().splitlines():
            print(f"  | {line}", flush=True)

    def check(self, cond, desc, detail=""):
        if cond:
            self.ok(desc)
        else:
            self.fail(desc, detail)
        return cond

    def run(self, desc, fn, *args, **kw):
        """Run fn; a Python exception is a failure of desc. Returns fn's result or None."""
        try:
            return fn(*args, **kw)
        except Exception as e:  # noqa: BLE001 -- every failure is reported, then we go on
            self.fail(f"{desc}: {type(e).__name__}: {e}", traceback.format_exc())
            return None


def openssl(*args, stdin=None):
    """Run the openssl CLI; return (ok, output)."""
    p = subprocess.run(["openssl", *args], input=stdin, capture_output=True)
    return p.returncode == 0, (p.stdout + p.stderr).decode(errors="replace")


class Tester:
    def __init__(self, args):
        self.args = args
        self.r = Report(args.step)
        self.lib = pkcs11.lib(args.module)
        self.token = self.lib.get_token(token_label=args.token)
        self.mechs = set(self.token.slot.get_mechanisms())
        self.tmp = tempfile.mkdtemp(prefix="python-pkcs11.", dir=os.environ.get("VTP_TMP"))

    def session(self):
        return self.token.open(user_pin=self.args.pin, rw=True)

    def kinds(self):
        for kind, (kt, caps) in KINDS.items():
            if kt is KeyType.EC_EDWARDS and Mechanism.EC_EDWARDS_KEY_PAIR_GEN not in self.mechs:
                self.r.na(f"{kind}: the token does not list CKM_EC_EDWARDS_KEY_PAIR_GEN")
                continue
            yield kind, kt, caps

    def keypair(self, s, kind, kt, caps, **kw):
        """C_GenerateKeyPair of one kind through python-pkcs11's own API."""
        if kt is KeyType.RSA:
            return s.generate_keypair(KeyType.RSA, 2048, capabilities=caps, **kw)
        params = (encode_named_curve_parameters("secp256r1") if kt is KeyType.EC
                  else ED25519_PARAMS)
        dp = s.create_domain_parameters(kt, {Attribute.EC_PARAMS: params}, local=True)
        return dp.generate_keypair(capabilities=caps, **kw)

    def path(self, name):
        return os.path.join(self.tmp, name)

    def write(self, name, data):
        with open(self.path(name), "wb") as f:
            f.write(data)
        return self.path(name)

    # ---------- steps ----------
    def generate(self):
        state = {}
        with self.session() as s:
            for kind, kt, caps in self.kinds():
                label = f"{self.args.tag}{kind}"
                key_id = os.urandom(8)
                pair = self.r.run(f"{kind}: generate_keypair(store=True, label, id)",
                                  self.keypair, s, kind, kt, caps, store=True, label=label,
                                  id=key_id)
                if pair is None:
                    continue
                pub, priv = pair
                state[kind] = {"label": label, "id": key_id.hex()}
                self.r.check(priv[Attribute.TOKEN] is True and pub[Attribute.TOKEN] is True,
                             f"{kind}: both halves are token objects (CKA_TOKEN=TRUE)")
                self.r.check(priv.label == label and pub.label == label
                             and priv.id == key_id and pub.id == key_id,
                             f"{kind}: both halves show the label {label} and ID "
                             f"{key_id.hex()}")
                self.find_one(s, kind, label, key_id, "in the generating process")
        with open(self.args.state, "w") as f:
            json.dump(state, f)

    def find_one(self, s, kind, label, key_id, where):
        """get_key by label and by ID: exactly one private and one public key each."""
        found = {}
        for how, attr, val in (("label", Attribute.LABEL, label), ("ID", Attribute.ID, key_id)):
            for oc in (ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY):
                desc = f"{kind}: get_key({oc.name}, {how}) finds exactly one object {where}"
                try:
                    k = s.get_key(object_class=oc, **{"label" if how == "label" else "id": val})
                except MultipleObjectsReturned as e:
                    n = len(list(s.get_objects({Attribute.CLASS: oc, attr: val})))
                    self.r.fail(desc, f"MultipleObjectsReturned: {e} ({n} objects)")
                    continue
                except (NoSuchKey, PKCS11Error) as e:
                    self.r.fail(desc, f"{type(e).__name__}: {e}")
                    continue
                if self.r.check(k.label == label and k.id == key_id, desc,
                                f"found label {k.label!r} ID {k.id.hex()}"):
                    found[(how, oc)] = k
        # Without a class: the pair, nothing more (no duplicate loaded through another path).
        for how, attr, val in (("label", Attribute.LABEL, label), ("ID", Attribute.ID, key_id)):
            objs = self.r.run(f"{kind}: get_objects by {how}", lambda: list(
                s.get_objects({attr: val})))
            if objs is not None:
                classes = sorted(o.object_class.name for o in objs)
                self.r.check(classes == ["PRIVATE_KEY", "PUBLIC_KEY"],
                             f"{kind}: get_objects by {how} returns one private and one public "
                             f"key {where}", f"got {classes}")
        return found

    def use(self):
        with open(self.args.state) as f:
            state = json.load(f)
        expected = {k for k, _, _ in self.kinds()}
        self.r.check(set(state) == expected, "every kind was generated",
                     f"generated {sorted(state)}, expected {sorted(expected)}")
        with self.session() as s:
            for kind, st in state.items():
                found = self.find_one(s, kind, st["label"], bytes.fromhex(st["id"]),
                                      "in a new process")
                priv = found.get(("label", ObjectClass.PRIVATE_KEY)) or found.get(
                    ("ID", ObjectClass.PRIVATE_KEY))
                pub = found.get(("label", ObjectClass.PUBLIC_KEY)) or found.get(
                    ("ID", ObjectClass.PUBLIC_KEY))
                if priv is None or pub is None:
                    self.r.fail(f"{kind}: no key pair to sign with")
                    continue
                pem = self.r.run(f"{kind}: export the public key", self.public_pem, kind, pub)
                if pem is None:
                    continue
                getattr(self, f"use_{kind}")(kind, priv, pub, pem)

    def public_pem(self, kind, pub):
        """The public key the module shows, as a PEM file that openssl has parsed."""
        if kind == "ec":
            der = encode_ec_public_key(pub)
        elif kind == "rsa":
            der = PublicKeyInfo({
                "algorithm": {"algorithm": "rsa"},
                "public_key": RSAPublicKey({
                    "modulus": int.from_bytes(pub[Attribute.MODULUS], "big"),
                    "public_exponent": int.from_bytes(pub[Attribute.PUBLIC_EXPONENT], "big"),
                }),
            }).dump()
        else:
            self.r.check(pub[Attribute.EC_PARAMS] in (ED25519_PARAMS,
                                                      b"\x13\x0cedwards25519"),
                         f"{kind}: CKA_EC_PARAMS names Ed25519",
                         pub[Attribute.EC_PARAMS].hex())
            point = pub[Attribute.EC_POINT]
            if len(point) == 34 and point[:2] == b"\x04\x20":
                point = bytes(OctetString.load(point))
            der = PublicKeyInfo({"algorithm": {"algorithm": "ed25519"},
                                 "public_key": point}).dump()
        derfile = self.write(f"{kind}-pub.der", der)
        ok, out = openssl("pkey", "-pubin", "-inform", "DER", "-in", derfile, "-out",
                          self.path(f"{kind}-pub.pem"))
        if not self.r.check(ok, f"{kind}: openssl parses the public key the module shows", out):
            raise RuntimeError("no usable public key")
        return self.path(f"{kind}-pub.pem")

    def verify_dgst(self, desc, pem, sig, *sigopts):
        datafile = self.write("data", DATA)
        sigfile = self.write("sig", sig)
        ok, out = openssl("dgst", "-sha256", "-verify", pem, "-signature", sigfile,
                          *sigopts, datafile)
        self.r.check(ok and "Verified OK" in out, f"{desc}: openssl verifies the signature", out)

    def token_verify(self, desc, pub, data, sig, **kw):
        ok = self.r.run(f"{desc}: C_Verify", pub.verify, data, sig, **kw)
        if ok is not None:
            self.r.check(ok is True, f"{desc}: the token's C_Verify accepts the signature")

    def use_ec(self, kind, priv, pub, pem):
        desc = f"{kind}: CKM_ECDSA_SHA256"
        sig = self.r.run(desc, priv.sign, DATA, mechanism=Mechanism.ECDSA_SHA256)
        if sig is not None:
            self.r.check(len(sig) == 64, f"{desc}: raw r||s of 64 bytes", f"{len(sig)} bytes")
            self.verify_dgst(desc, pem, encode_ecdsa_signature(sig))
            self.token_verify(desc, pub, DATA, sig, mechanism=Mechanism.ECDSA_SHA256)
        desc = f"{kind}: CKM_ECDSA over a SHA-256 digest"
        sig = self.r.run(desc, priv.sign, hashlib.sha256(DATA).digest(),
                         mechanism=Mechanism.ECDSA)
        if sig is not None:
            self.verify_dgst(desc, pem, encode_ecdsa_signature(sig))

    def use_rsa(self, kind, priv, pub, pem):
        desc = f"{kind}: CKM_SHA256_RSA_PKCS"
        sig = self.r.run(desc, priv.sign, DATA, mechanism=Mechanism.SHA256_RSA_PKCS)
        if sig is not None:
            self.verify_dgst(desc, pem, sig)
            self.token_verify(desc, pub, DATA, sig, mechanism=Mechanism.SHA256_RSA_PKCS)
        pss = ["-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:32",
               "-sigopt", "rsa_mgf1_md:sha256"]
        param = (Mechanism.SHA256, MGF.SHA256, 32)
        desc = f"{kind}: CKM_SHA256_RSA_PKCS_PSS (SHA-256, MGF1-SHA-256, sLen 32)"
        sig = self.r.run(desc, priv.sign, DATA, mechanism=Mechanism.SHA256_RSA_PKCS_PSS,
                         mechanism_param=param)
        if sig is not None:
            self.verify_dgst(desc, pem, sig, *pss)
            self.token_verify(desc, pub, DATA, sig, mechanism=Mechanism.SHA256_RSA_PKCS_PSS,
                              mechanism_param=param)
        desc = f"{kind}: CKM_RSA_PKCS_PSS over a SHA-256 digest (sLen 32)"
        sig = self.r.run(desc, priv.sign, hashlib.sha256(DATA).digest(),
                         mechanism=Mechanism.RSA_PKCS_PSS, mechanism_param=param)
        if sig is not None:
            self.verify_dgst(desc, pem, sig, *pss)
        # OAEP: an independent encryption (openssl) to the public key the module shows
        desc = f"{kind}: CKM_RSA_PKCS_OAEP (SHA-256, MGF1-SHA-256) decrypt"
        secret = os.urandom(32)
        ok, out = openssl("pkeyutl", "-encrypt", "-pubin", "-inkey", pem,
                          "-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:sha256",
                          "-pkeyopt", "rsa_mgf1_md:sha256", "-in", self.write("secret", secret),
                          "-out", self.path("secret.enc"))
        if self.r.check(ok, f"{desc}: openssl encrypts to the module's public key", out):
            with open(self.path("secret.enc"), "rb") as f:
                ct = f.read()
            oaep = (Mechanism.SHA256, MGF.SHA256, None)
            pt = self.r.run(desc, priv.decrypt, ct, mechanism=Mechanism.RSA_PKCS_OAEP,
                            mechanism_param=oaep)
            if pt is not None:
                self.r.check(pt == secret, f"{desc}: the token returns the plaintext")

    def use_ed25519(self, kind, priv, pub, pem):
        desc = f"{kind}: CKM_EDDSA"
        sig = self.r.run(desc, priv.sign, DATA, mechanism=Mechanism.EDDSA)
        if sig is None:
            return
        self.r.check(len(sig) == 64, f"{desc}: 64-byte signature", f"{len(sig)} bytes")
        ok, out = openssl("pkeyutl", "-verify", "-pubin", "-inkey", pem, "-rawin",
                          "-in", self.write("data", DATA), "-sigfile", self.write("sig", sig))
        self.r.check(ok and "Signature Verified Successfully" in out,
                     f"{desc}: openssl verifies the signature", out)
        self.token_verify(desc, pub, DATA, sig, mechanism=Mechanism.EDDSA)

    def destroy(self):
        with open(self.args.state) as f:
            state = json.load(f)
        with self.session() as s:
            for kind, st in state.items():
                for oc in (ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY):
                    objs = self.r.run(f"{kind}: find {oc.name} by label", lambda: list(
                        s.get_objects({Attribute.CLASS: oc, Attribute.LABEL: st["label"]})))
                    for o in objs or []:
                        self.r.run(f"{kind}: C_DestroyObject({oc.name})", o.destroy)
                left = self.r.run(f"{kind}: search after destroy", lambda: list(
                    s.get_objects({Attribute.LABEL: st["label"]})))
                if left is not None:
                    self.r.check(left == [], f"{kind}: nothing is found by label after "
                                 "C_DestroyObject", f"left: {left}")

    def session_keys(self):
        """Session objects (CKA_TOKEN absent or FALSE) must be refused: the module makes only
        token keys, and a key Transit made for a session would outlive it."""
        cases = (
            ("store=False (CKA_TOKEN=FALSE on both halves)", {"store": False}),
            ("CKA_TOKEN absent from both templates", {
                "public_template": {Attribute.TOKEN: pkcs11.DEFAULT},
                "private_template": {Attribute.TOKEN: pkcs11.DEFAULT}}),
            ("CKA_TOKEN=TRUE on the private half, FALSE on the public half", {
                "store": True, "public_template": {Attribute.TOKEN: False}}),
        )
        with self.session() as s:
            for kind, kt, caps in self.kinds():
                for i, (what, kw) in enumerate(cases):
                    desc = f"{kind}: {what}: C_GenerateKeyPair returns CKR_TEMPLATE_INCONSISTENT"
                    label = f"{self.args.tag}session-{kind}-{i}"
                    try:
                        pair = self.keypair(s, kind, kt, caps, label=label,
                                            id=os.urandom(8), **kw)
                    except pkcs11.exceptions.TemplateInconsistent:
                        self.r.ok(desc)
                        continue
                    except PKCS11Error as e:
                        self.r.fail(desc, f"refused with {type(e).__name__} instead")
                        continue
                    self.r.fail(desc, f"the key pair was made: {pair}; "
                                f"CKA_TOKEN private={pair[1][Attribute.TOKEN]} "
                                f"public={pair[0][Attribute.TOKEN]}")
                    for o in pair:
                        self.r.run(f"{kind}: destroy the session key pair", o.destroy)

    def templates(self):
        """Usage attributes are honoured or the template is refused, never silently changed
        (issue 10): python-pkcs11's default capabilities ask for CKA_DERIVE (EC) and
        CKA_WRAP/CKA_UNWRAP (RSA); an encrypt-only RSA pair asks for CKA_SIGN/CKA_VERIFY FALSE.
        Either C_GenerateKeyPair refuses (CKR_TEMPLATE_INCONSISTENT or
        CKR_ATTRIBUTE_VALUE_INVALID) or the objects show what was asked, and a key made with
        CKA_SIGN=FALSE cannot sign."""
        usage = {
            "private": (Attribute.SIGN, Attribute.DECRYPT, Attribute.UNWRAP, Attribute.DERIVE),
            "public": (Attribute.VERIFY, Attribute.ENCRYPT, Attribute.WRAP),
        }
        cases = (
            ("ec", "python-pkcs11's default capabilities (CKA_DERIVE=TRUE)", None),
            ("rsa", "python-pkcs11's default capabilities (CKA_WRAP/CKA_UNWRAP=TRUE)", None),
            ("rsa", "encrypt-only (CKA_SIGN/CKA_VERIFY=FALSE)", F.ENCRYPT | F.DECRYPT),
        )
        with self.session() as s:
            for i, (kind, what, caps) in enumerate(cases):
                kt = KINDS[kind][0]
                desc = f"{kind}: {what}"
                label = f"{self.args.tag}tmpl-{kind}-{i}"
                # the templates python-pkcs11 builds, to compare with what the objects show
                mapper = AttributeMapper()  # the one each session uses by default
                c = DEFAULT_KEY_CAPABILITIES[kt] if caps is None else caps
                asked = {
                    "private": mapper.private_key_template(capabilities=c, id_=None, label=None,
                                                           store=True),
                    "public": mapper.public_key_template(capabilities=c, id_=None, label=None,
                                                         store=True),
                }
                try:
                    pub, priv = self.keypair(s, kind, kt, caps, store=True, label=label,
                                             id=os.urandom(8))
                except (pkcs11.exceptions.TemplateInconsistent,
                        pkcs11.exceptions.AttributeValueInvalid) as e:
                    self.r.ok(f"{desc}: refused ({type(e).__name__})")
                    continue
                except PKCS11Error as e:
                    self.r.fail(f"{desc}: refused with {type(e).__name__}, not "
                                "CKR_TEMPLATE_INCONSISTENT or CKR_ATTRIBUTE_VALUE_INVALID")
                    continue
                for half, obj in (("private", priv), ("public", pub)):
                    for attr in usage[half]:
                        want = bool(asked[half].get(attr, False))
                        try:
                            shown = obj[attr]
                        except PKCS11Error as e:
                            shown = type(e).__name__
                        self.r.check(shown == want, f"{desc}: made; the {half} key shows "
                                     f"CKA_{attr.name} as asked ({want})",
                                     f"asked {attr.name}={want}, the object shows {shown}")
                if not asked["private"].get(Attribute.SIGN, False):
                    try:
                        priv.sign(DATA, mechanism=Mechanism.SHA256_RSA_PKCS)
                        self.r.fail(f"{desc}: a key made with CKA_SIGN=FALSE signs")
                    except (PKCS11Error, AttributeError) as e:
                        # python-pkcs11 gives a key shown with CKA_SIGN=FALSE no sign() at all
                        self.r.ok(f"{desc}: a key made with CKA_SIGN=FALSE cannot sign "
                                  f"({type(e).__name__})")
                self.r.run(f"{desc}: destroy", priv.destroy)

    def main(self):
        step = {"generate": self.generate, "use": self.use, "destroy": self.destroy,
                "session": self.session_keys, "templates": self.templates}[self.args.step]
        self.r.run(self.args.step, step)
        if self.r.failures:
            print(f"{NAME}: {self.args.step}: {len(self.r.failures)} failed:")
            for f in self.r.failures:
                print(f"  - {f}")
            return 1
        return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("module")
    ap.add_argument("--token", required=True)
    ap.add_argument("--pin", default="1234")
    ap.add_argument("--state", required=True)
    ap.add_argument("--tag", required=True, help="label prefix of this run's keys")
    ap.add_argument("step", choices=["generate", "use", "destroy", "session", "templates"])
    return Tester(ap.parse_args()).main()


if __name__ == "__main__":
    sys.exit(main())
