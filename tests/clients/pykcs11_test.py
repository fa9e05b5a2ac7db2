#!/usr/bin/env python3
"""PyKCS11 against a PKCS#11 module (run by tests/clients/pykcs11.sh).

    pykcs11_test.py MODULE --token LABEL [--pin PIN] [--strict]

Generates EC P-256/P-384/P-521, RSA-2048/3072 and Ed25519 key pairs from standard templates
(no vendor attribute), finds them back by CKA_ID in a new session, checks their attributes,
signs with every signature mechanism the module offers (single- and multi-part) and verifies
each signature with python3-cryptography (an independent implementation) and with the token's
C_Verify; checks C_GetMechanismInfo, the refusals the spec asks for, RSA-OAEP, digests,
C_GenerateRandom, certificate objects, C_SetAttributeValue and C_DestroyObject.

Every check runs even when an earlier one failed; the summary lists each failure and the exit
status is 1 when there is any. --strict (our module) makes a mechanism the token does not list
a failure, and checks the sizes and refusals we promise; without it (softhsm2) such a
mechanism is reported as n/a.
"""

import argparse
import datetime
import hashlib
import os
import struct
import subprocess
import sys
import traceback

import PyKCS11 as P
from PyKCS11 import ckbytelist
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils
from cryptography.x509.oid import NameOID

CKR_ACTION_PROHIBITED = 0x1B

HASHES = {
    # name: (hashlib name, cryptography class, CKM digest, CKG MGF1, DigestInfo prefix)
    "sha1": ("sha1", hashes.SHA1, P.CKM_SHA_1, P.CKG_MGF1_SHA1,
             "3021300906052b0e03021a05000414"),
    "sha224": ("sha224", hashes.SHA224, P.CKM_SHA224, P.CKG_MGF1_SHA224,
               "302d300d06096086480165030402040500041c"),
    "sha256": ("sha256", hashes.SHA256, P.CKM_SHA256, P.CKG_MGF1_SHA256,
               "3031300d060960864801650304020105000420"),
    "sha384": ("sha384", hashes.SHA384, P.CKM_SHA384, P.CKG_MGF1_SHA384,
               "3041300d060960864801650304020205000430"),
    "sha512": ("sha512", hashes.SHA512, P.CKM_SHA512, P.CKG_MGF1_SHA512,
               "3051300d060960864801650304020305000440"),
}
HASH_ORDER = ["sha1", "sha224", "sha256", "sha384", "sha512"]
ECDSA_HASH_MECH = {"sha1": P.CKM_ECDSA_SHA1, "sha224": P.CKM_ECDSA_SHA224,
                   "sha256": P.CKM_ECDSA_SHA256, "sha384": P.CKM_ECDSA_SHA384,
                   "sha512": P.CKM_ECDSA_SHA512}
RSA_HASH_MECH = {"sha1": P.CKM_SHA1_RSA_PKCS, "sha224": P.CKM_SHA224_RSA_PKCS,
                 "sha256": P.CKM_SHA256_RSA_PKCS, "sha384": P.CKM_SHA384_RSA_PKCS,
                 "sha512": P.CKM_SHA512_RSA_PKCS}
PSS_HASH_MECH = {"sha1": P.CKM_SHA1_RSA_PKCS_PSS, "sha224": P.CKM_SHA224_RSA_PKCS_PSS,
                 "sha256": P.CKM_SHA256_RSA_PKCS_PSS, "sha384": P.CKM_SHA384_RSA_PKCS_PSS,
                 "sha512": P.CKM_SHA512_RSA_PKCS_PSS}

# Curve OIDs (DER) and the cryptography curve.
CURVES = {
    "p256": ("06082a8648ce3d030107", ec.SECP256R1(), 256),
    "p384": ("06052b81040022", ec.SECP384R1(), 384),
    "p521": ("06052b81040023", ec.SECP521R1(), 521),
}
ED25519_OID = "06032b6570"


def printable(name):
    b = name.encode()
    return bytes([0x13, len(b)]) + b


def mname(m):
    return P.CKM[m] if m in P.CKM else hex(m)


def rvname(rv):
    return P.CKR[rv] if rv in P.CKR else hex(rv)


class Report:
    def __init__(self, name):
        self.name = name
        self.failures = []
        self.oks = 0
        self.nas = []

    def ok(self, desc):
        self.oks += 1
        print(f"{self.name}: ok: {desc}", flush=True)

    def fail(self, desc, detail=""):
        self.failures.append(desc)
        print(f"{self.name}: FAIL: {desc}", flush=True)
        if detail:
            for line in str(detail).rstrip().splitlines():
                print(f"  | {line}")

    def na(self, desc):
        self.nas.append(desc)
        print(f"{self.name}: n/a: {desc}", flush=True)

    def check(self, cond, desc, detail=""):
        if cond:
            self.ok(desc)
        else:
            self.fail(desc, detail)
        return cond


def rv_of(fn, *args, **kw):
    """Run fn; return (CKR_OK, result) or (rv, None) for a PyKCS11Error."""
    try:
        return P.CKR_OK, fn(*args, **kw)
    except P.PyKCS11Error as e:
        return e.value, None


class Tester:
    def __init__(self, args):
        self.args = args
        self.r = Report("pykcs11")
        self.lib = P.PyKCS11Lib()
        self.lib.load(args.module)
        self.slot = self.find_slot()
        self.session = None
        self.mechs = set(self.lib.getMechanismList(self.slot))
        self.mechs = {m if isinstance(m, int) else P.CKM[m] for m in self.mechs}
        self.keys = {}  # name -> dict(kind, id, label, pub: cryptography key, ...)
        self.tag = os.urandom(3).hex()

    # ---------- plumbing ----------
    def find_slot(self):
        for s in self.lib.getSlotList(tokenPresent=True):
            if self.lib.getTokenInfo(s).label.strip() == self.args.token:
                return s
        raise SystemExit(f"pykcs11: no token labelled {self.args.token!r}")

    def new_session(self):
        if self.session is not None:
            self.lib.closeAllSessions(self.slot)
        self.session = self.lib.openSession(self.slot, P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION)
        try:
            self.session.login(self.args.pin)
        except P.PyKCS11Error as e:
            if e.value != P.CKR_USER_ALREADY_LOGGED_IN:
                raise
        return self.session

    def has(self, mech, desc):
        if mech in self.mechs:
            return True
        if self.args.strict:
            self.r.fail(f"{desc}: the token does not list {mname(mech)}")
        else:
            self.r.na(f"{desc}: the token does not list {mname(mech)}")
        return False

    def section(self, title, fn, *a):
        print(f"pykcs11: --- {title}", flush=True)
        try:
            fn(*a)
        except Exception as e:  # one broken section must not hide the others
            self.r.fail(f"{title}: {type(e).__name__}: {e}", traceback.format_exc())

    def attrs(self, obj, types, binary=False):
        return self.session.getAttributeValue(obj, types, allAsBinary=binary)

    def find(self, template):
        return self.session.findObjects(template)

    # ---------- mechanism info ----------
    def mechanism_info(self):
        want = {
            P.CKM_EC_KEY_PAIR_GEN: (256, 521, P.CKF_GENERATE_KEY_PAIR),
            P.CKM_RSA_PKCS_KEY_PAIR_GEN: (2048, 4096, P.CKF_GENERATE_KEY_PAIR),
            P.CKM_EC_EDWARDS_KEY_PAIR_GEN: (255, 256, P.CKF_GENERATE_KEY_PAIR),
            P.CKM_ECDSA: (256, 521, P.CKF_SIGN | P.CKF_VERIFY),
            P.CKM_RSA_PKCS: (2048, 4096, P.CKF_SIGN | P.CKF_VERIFY),
            P.CKM_RSA_PKCS_PSS: (2048, 4096, P.CKF_SIGN | P.CKF_VERIFY),
            P.CKM_EDDSA: (255, 256, P.CKF_SIGN | P.CKF_VERIFY),
            P.CKM_RSA_PKCS_OAEP: (2048, 4096, P.CKF_ENCRYPT | P.CKF_DECRYPT),
        }
        for h in HASH_ORDER:
            want[ECDSA_HASH_MECH[h]] = (256, 521, P.CKF_SIGN | P.CKF_VERIFY)
            want[RSA_HASH_MECH[h]] = (2048, 4096, P.CKF_SIGN | P.CKF_VERIFY)
            want[PSS_HASH_MECH[h]] = (2048, 4096, P.CKF_SIGN | P.CKF_VERIFY)
        for m in (P.CKM_SHA_1, P.CKM_SHA256, P.CKM_SHA384, P.CKM_SHA512):
            want[m] = (0, 0, P.CKF_DIGEST)
        for m, (lo, hi, flags) in want.items():
            if not self.has(m, "mechanism list"):
                continue
            info = self.lib.getMechanismInfo(self.slot, mname(m))
            got = f"min {info.ulMinKeySize} max {info.ulMaxKeySize} flags {info.flags:#x}"
            self.r.check(info.flags & flags == flags,
                         f"{mname(m)} has flags {flags:#x} ({got})")
            if not self.args.strict or flags == P.CKF_DIGEST:
                continue
            if m in (P.CKM_EC_EDWARDS_KEY_PAIR_GEN, P.CKM_EDDSA):
                ok = lo <= info.ulMinKeySize <= info.ulMaxKeySize <= hi
                self.r.check(ok, f"{mname(m)} key size is Ed25519's ({got})")
            else:
                self.r.check((info.ulMinKeySize, info.ulMaxKeySize) == (lo, hi),
                             f"{mname(m)} key sizes are {lo}..{hi} bits ({got})")
        if not self.args.strict:
            return
        rv, _ = rv_of(self.lib.getMechanismInfo, self.slot, "CKM_DSA")
        self.r.check(rv == P.CKR_MECHANISM_INVALID,
                     f"C_GetMechanismInfo(CKM_DSA) gives CKR_MECHANISM_INVALID ({rvname(rv)})")

    # ---------- key generation ----------
    def templates(self, kind, label, kid, extra_pub=(), extra_priv=()):
        ktype = {"ec": P.CKK_EC, "rsa": P.CKK_RSA, "ed": P.CKK_EC_EDWARDS}[kind]
        pub = [(P.CKA_CLASS, P.CKO_PUBLIC_KEY), (P.CKA_KEY_TYPE, ktype), (P.CKA_TOKEN, True),
               (P.CKA_VERIFY, True), (P.CKA_LABEL, label), (P.CKA_ID, kid)]
        priv = [(P.CKA_CLASS, P.CKO_PRIVATE_KEY), (P.CKA_KEY_TYPE, ktype), (P.CKA_TOKEN, True),
                (P.CKA_PRIVATE, True), (P.CKA_SENSITIVE, True), (P.CKA_EXTRACTABLE, False),
                (P.CKA_SIGN, True), (P.CKA_LABEL, label), (P.CKA_ID, kid)]
        if kind == "rsa":
            pub.append((P.CKA_ENCRYPT, True))
            priv.append((P.CKA_DECRYPT, True))
        return pub + list(extra_pub), priv + list(extra_priv)

    def generate(self, name, kind, params, mech):
        label = f"pykcs11-{name}-{self.tag}"
        kid = os.urandom(8)
        if not self.has(mech, f"generate {name}"):
            return
        pub_t, priv_t = self.templates(kind, label, kid, params)
        self.new_session()
        rv, handles = rv_of(self.session.generateKeyPair, pub_t, priv_t, P.Mechanism(mech))
        if not self.r.check(rv == P.CKR_OK, f"C_GenerateKeyPair {name} ({rvname(rv)})"):
            return
        self.keys[name] = {"kind": kind, "label": label, "id": kid}

    def keygen_all(self):
        ec_gen, rsa_gen = P.CKM_EC_KEY_PAIR_GEN, P.CKM_RSA_PKCS_KEY_PAIR_GEN
        ed_gen = P.CKM_EC_EDWARDS_KEY_PAIR_GEN
        self.generate("p256", "ec", [(P.CKA_EC_PARAMS, bytes.fromhex(CURVES["p256"][0]))], ec_gen)
        # P-384 by its printable curve name, as the spec allows.
        if self.args.strict:
            self.generate("p384", "ec", [(P.CKA_EC_PARAMS, printable("secp384r1"))], ec_gen)
        else:
            self.generate("p384", "ec", [(P.CKA_EC_PARAMS, bytes.fromhex(CURVES["p384"][0]))],
                          ec_gen)
        self.generate("p521", "ec", [(P.CKA_EC_PARAMS, bytes.fromhex(CURVES["p521"][0]))], ec_gen)
        e = bytes([1, 0, 1])
        self.generate("rsa2048", "rsa", [(P.CKA_MODULUS_BITS, 2048),
                                         (P.CKA_PUBLIC_EXPONENT, e)], rsa_gen)
        self.generate("rsa3072", "rsa", [(P.CKA_MODULUS_BITS, 3072),
                                         (P.CKA_PUBLIC_EXPONENT, e)], rsa_gen)
        self.generate("ed25519", "ed", [(P.CKA_EC_PARAMS, printable("edwards25519"))], ed_gen)
        # The same Ed25519 generation by OID (RFC 8410 id-Ed25519).
        self.generate("ed25519oid", "ed", [(P.CKA_EC_PARAMS, bytes.fromhex(ED25519_OID))],
                      ed_gen)

    # ---------- find again and read the public keys ----------
    def find_again(self):
        self.new_session()  # a new session: the handles from keygen are not reused
        for name, k in self.keys.items():
            privs = self.find([(P.CKA_CLASS, P.CKO_PRIVATE_KEY), (P.CKA_ID, k["id"])])
            pubs = self.find([(P.CKA_CLASS, P.CKO_PUBLIC_KEY), (P.CKA_ID, k["id"])])
            if not self.r.check(len(privs) == 1 and len(pubs) == 1,
                                f"{name}: one private and one public key with its CKA_ID "
                                f"({len(privs)}, {len(pubs)})"):
                continue
            k["priv"], k["pubobj"] = privs[0], pubs[0]
            both = self.find([(P.CKA_ID, k["id"]), (P.CKA_LABEL, k["label"])])
            self.r.check(len(both) == 2, f"{name}: CKA_ID + CKA_LABEL finds both halves")
            try:
                self.check_key_attrs(name, k)
            except Exception as e:
                self.r.fail(f"{name}: attributes: {type(e).__name__}: {e}", traceback.format_exc())

    def check_key_attrs(self, name, k):
        priv, pub = k["priv"], k["pubobj"]
        label, kid, token, local = self.attrs(priv, [P.CKA_LABEL, P.CKA_ID, P.CKA_TOKEN,
                                                     P.CKA_LOCAL])
        self.r.check(label == k["label"] and bytes(kid) == k["id"] and token,
                     f"{name}: private key keeps CKA_LABEL, CKA_ID, CKA_TOKEN")
        sens, asens, nextr, extr, sign = self.attrs(priv, [
            P.CKA_SENSITIVE, P.CKA_ALWAYS_SENSITIVE, P.CKA_NEVER_EXTRACTABLE,
            P.CKA_EXTRACTABLE, P.CKA_SIGN])
        self.r.check(sens and asens and nextr and not extr and sign,
                     f"{name}: private key is sensitive, never extractable, can sign "
                     f"({sens}, {asens}, {nextr}, {extr}, {sign})")
        if self.args.strict:
            self.r.check(local, f"{name}: CKA_LOCAL is true")
        if k["kind"] == "rsa":
            mod, exp = self.attrs(pub, [P.CKA_MODULUS, P.CKA_PUBLIC_EXPONENT], True)
            pmod, pexp = self.attrs(priv, [P.CKA_MODULUS, P.CKA_PUBLIC_EXPONENT], True)
            n, e = int.from_bytes(bytes(mod), "big"), int.from_bytes(bytes(exp), "big")
            self.r.check(bytes(mod) == bytes(pmod) and bytes(exp) == bytes(pexp),
                         f"{name}: CKA_MODULUS/CKA_PUBLIC_EXPONENT equal on both halves")
            bits = int(name[3:])
            self.r.check(n.bit_length() == bits and e == 65537,
                         f"{name}: {bits}-bit modulus, exponent 65537 "
                         f"({n.bit_length()}, {e})")
            k["pub"] = rsa.RSAPublicNumbers(e, n).public_key()
            k["bytes"] = bits // 8
        else:
            params, point = self.attrs(pub, [P.CKA_EC_PARAMS, P.CKA_EC_POINT], True)
            pparams = self.attrs(priv, [P.CKA_EC_PARAMS], True)[0]
            params, point = bytes(params), bytes(point)
            if self.args.strict:
                self.r.check(params == bytes(pparams),
                             f"{name}: CKA_EC_PARAMS equal on both halves")
            # CKA_EC_POINT is a DER OCTET STRING around the point.
            raw = None
            if len(point) > 2 and point[0] == 0x04:
                ln, off = point[1], 2
                if ln & 0x80:
                    nb = ln & 0x7F
                    ln, off = int.from_bytes(point[2:2 + nb], "big"), 2 + nb
                if off + ln == len(point):
                    raw = point[off:]
            self.r.check(raw is not None, f"{name}: CKA_EC_POINT is a DER OCTET STRING",
                         point.hex())
            if k["kind"] == "ec":
                oid, curve, bits = CURVES[name]
                self.r.check(params == bytes.fromhex(oid),
                             f"{name}: CKA_EC_PARAMS is the curve OID ({params.hex()})")
                k["pub"] = ec.EllipticCurvePublicKey.from_encoded_point(curve, raw)
                k["bytes"] = 2 * ((bits + 7) // 8)
            else:
                ok = params in (bytes.fromhex(ED25519_OID), printable("edwards25519"))
                self.r.check(ok, f"{name}: CKA_EC_PARAMS names Ed25519 ({params.hex()})")
                k["pub"] = ed25519.Ed25519PublicKey.from_public_bytes(raw)
                k["bytes"] = 64
        spki = self.attrs(pub, [P.CKA_PUBLIC_KEY_INFO], True)[0]
        want = k["pub"].public_bytes(serialization.Encoding.DER,
                                     serialization.PublicFormat.SubjectPublicKeyInfo)
        if self.args.strict or (spki is not None and len(spki)):  # softhsm2 2.6 leaves it empty
            self.r.check(spki is not None and bytes(spki) == want,
                         f"{name}: CKA_PUBLIC_KEY_INFO is the SPKI of the public components")
        allowed = self.attrs(priv, [P.CKA_ALLOWED_MECHANISMS], True)[0]
        if allowed is not None and len(allowed):
            b = bytes(allowed)
            ms = set(struct.unpack(f"{len(b) // struct.calcsize('L')}L", b))
            want_m = {"ec": P.CKM_ECDSA, "rsa": P.CKM_RSA_PKCS_PSS, "ed": P.CKM_EDDSA}[k["kind"]]
            self.r.check(want_m in ms, f"{name}: CKA_ALLOWED_MECHANISMS has {mname(want_m)}")
        elif self.args.strict:
            self.r.fail(f"{name}: CKA_ALLOWED_MECHANISMS is missing or empty")

    # ---------- signing ----------
    def sign_one(self, name, mech, data, verify, desc, multipart=False, refusable=None):
        """Sign data with mech; verify(sig, data) raises on a bad signature. A token may
        refuse the mechanism with the CK_RV refusable instead (a parameter it cannot honour)."""
        k = self.keys.get(name)
        if k is None or "priv" not in k:
            self.r.fail(f"{name} {desc}: no key")
            return
        s = self.session
        try:
            if multipart:
                sig = self.sign_multipart(k["priv"], mech, data)
            else:
                sig = bytes(s.sign(k["priv"], data, mech))
        except P.PyKCS11Error as e:
            if refusable is not None and e.value == refusable:
                self.r.ok(f"{name} {desc}: refused with {rvname(e.value)}")
            else:
                self.r.fail(f"{name} {desc}: C_Sign failed: {rvname(e.value)}")
            return
        if len(sig) != k["bytes"]:
            self.r.fail(f"{name} {desc}: signature is {len(sig)} bytes, want {k['bytes']}")
            return
        try:
            verify(k["pub"], sig, data)
        except InvalidSignature:
            self.r.fail(f"{name} {desc}: python3-cryptography rejects the signature",
                        sig.hex())
            return
        bad = bytearray(data)
        bad[0] ^= 1  # ECDSA uses the leftmost bits of a long digest
        bad[-1] ^= 2  # the digest at the end of a DigestInfo
        try:
            verify(k["pub"], sig, bytes(bad))
            self.r.fail(f"{name} {desc}: the signature verifies over tampered data")
            return
        except InvalidSignature:
            pass
        rv, good = rv_of(s.verify, k["pubobj"], data, sig, mech)
        rv2, bad_ok = rv_of(s.verify, k["pubobj"], bytes(bad), sig, mech)
        if rv != P.CKR_OK or not good or rv2 != P.CKR_OK or bad_ok:
            self.r.fail(f"{name} {desc}: the token's C_Verify says {good} ({rvname(rv)}) "
                        f"and {bad_ok} over tampered data ({rvname(rv2)})")
            return
        self.r.ok(f"{name} {desc}: signature verified (cryptography + C_Verify), "
                  f"tampered data rejected")

    def sign_multipart(self, key, mech, data):
        lib, h = self.session.lib, self.session.session
        rv = lib.C_SignInit(h, mech.to_native(), key)
        if rv != P.CKR_OK:
            raise P.PyKCS11Error(rv)
        for i in range(0, len(data), 7):
            rv = lib.C_SignUpdate(h, ckbytelist(data[i:i + 7]))
            if rv != P.CKR_OK:
                raise P.PyKCS11Error(rv)
        sig = ckbytelist()
        rv = lib.C_SignFinal(h, sig)  # length query
        if rv != P.CKR_OK:
            raise P.PyKCS11Error(rv)
        rv = lib.C_SignFinal(h, sig)
        if rv != P.CKR_OK:
            raise P.PyKCS11Error(rv)
        return bytes(sig)

    def sign_ec(self, name):
        def v_pre(h):
            def f(pub, sig, data):
                half = len(sig) // 2
                der = utils.encode_dss_signature(int.from_bytes(sig[:half], "big"),
                                                 int.from_bytes(sig[half:], "big"))
                pub.verify(der, data, ec.ECDSA(utils.Prehashed(h())))
            return f

        def v_msg(h):
            def f(pub, sig, data):
                half = len(sig) // 2
                der = utils.encode_dss_signature(int.from_bytes(sig[:half], "big"),
                                                 int.from_bytes(sig[half:], "big"))
                pub.verify(der, data, ec.ECDSA(h()))
            return f

        msg = os.urandom(100)
        if self.has(P.CKM_ECDSA, f"{name} CKM_ECDSA"):
            for h in HASH_ORDER:
                hl, hc = HASHES[h][0], HASHES[h][1]
                dig = hashlib.new(hl, msg).digest()
                self.sign_one(name, P.Mechanism(P.CKM_ECDSA), dig, v_pre(hc),
                              f"CKM_ECDSA over a {h} digest")
        for h in HASH_ORDER:
            m = ECDSA_HASH_MECH[h]
            if self.has(m, f"{name} {mname(m)}"):
                self.sign_one(name, P.Mechanism(m), msg, v_msg(HASHES[h][1]), mname(m))
                self.sign_one(name, P.Mechanism(m), msg, v_msg(HASHES[h][1]),
                              f"{mname(m)} multi-part", multipart=True)

    def sign_rsa(self, name):
        msg = os.urandom(100)

        def v_pkcs1_pre(h):
            return lambda pub, sig, data: pub.verify(sig, data[-h.digest_size:],
                                                     padding.PKCS1v15(), utils.Prehashed(h))

        def v_pkcs1_msg(h):
            return lambda pub, sig, data: pub.verify(sig, data, padding.PKCS1v15(), h)

        def v_pss(h, slen, prehashed):
            def f(pub, sig, data):
                alg = utils.Prehashed(h) if prehashed else h
                pub.verify(sig, data, padding.PSS(mgf=padding.MGF1(h), salt_length=slen), alg)
            return f

        if self.has(P.CKM_RSA_PKCS, f"{name} CKM_RSA_PKCS"):
            for h in HASH_ORDER:
                hl, hc, _, _, prefix = HASHES[h]
                di = bytes.fromhex(prefix) + hashlib.new(hl, msg).digest()
                # A tampered DigestInfo changes its first byte: still rejected.
                self.sign_one(name, P.Mechanism(P.CKM_RSA_PKCS), di, v_pkcs1_pre(hc()),
                              f"CKM_RSA_PKCS over a {h} DigestInfo")
        for h in HASH_ORDER:
            m = RSA_HASH_MECH[h]
            if self.has(m, f"{name} {mname(m)}"):
                self.sign_one(name, P.Mechanism(m), msg, v_pkcs1_msg(HASHES[h][1]()), mname(m))
                self.sign_one(name, P.Mechanism(m), msg, v_pkcs1_msg(HASHES[h][1]()),
                              f"{mname(m)} multi-part", multipart=True)
        if self.has(P.CKM_RSA_PKCS_PSS, f"{name} CKM_RSA_PKCS_PSS"):
            for h in HASH_ORDER:
                hl, hc, ckm, mgf, _ = HASHES[h]
                dig = hashlib.new(hl, msg).digest()
                hlen = len(dig)
                salts = [hlen]
                if h == "sha256":
                    salts += [0, self.keys[name]["bytes"] - hlen - 2]  # none, maximum
                for slen in salts:
                    mech = P.RSA_PSS_Mechanism(P.CKM_RSA_PKCS_PSS, ckm, mgf, slen)
                    # Transit (Go's crypto/rsa) reads salt length 0 as "auto": a token on
                    # Transit may refuse an empty salt, but must never sign with another one.
                    self.sign_one(name, mech, dig, v_pss(hc(), slen, True),
                                  f"CKM_RSA_PKCS_PSS {h} salt {slen}",
                                  refusable=P.CKR_MECHANISM_PARAM_INVALID if slen == 0 else None)
        for h in HASH_ORDER:
            m = PSS_HASH_MECH[h]
            hl, hc, ckm, mgf, _ = HASHES[h]
            hlen = hc.digest_size
            if self.has(m, f"{name} {mname(m)}"):
                mech = P.RSA_PSS_Mechanism(m, ckm, mgf, hlen)
                self.sign_one(name, mech, msg, v_pss(hc(), hlen, False), f"{mname(m)} salt {hlen}")
                self.sign_one(name, mech, msg, v_pss(hc(), hlen, False),
                              f"{mname(m)} multi-part", multipart=True)

    def sign_ed(self, name):
        if self.has(P.CKM_EDDSA, f"{name} CKM_EDDSA"):
            for n in (1, 100, 1000):
                self.sign_one(name, P.Mechanism(P.CKM_EDDSA), os.urandom(n),
                              lambda pub, sig, data: pub.verify(sig, data),
                              f"CKM_EDDSA over {n} bytes")

    def sign_all(self):
        self.new_session()
        self.find_again_quiet()
        for name, k in self.keys.items():
            print(f"pykcs11: --- sign with {name}", flush=True)
            try:
                {"ec": self.sign_ec, "rsa": self.sign_rsa, "ed": self.sign_ed}[k["kind"]](name)
            except Exception as e:
                self.r.fail(f"{name}: {type(e).__name__}: {e}", traceback.format_exc())

    def find_again_quiet(self):
        for k in self.keys.values():
            privs = self.find([(P.CKA_CLASS, P.CKO_PRIVATE_KEY), (P.CKA_ID, k["id"])])
            pubs = self.find([(P.CKA_CLASS, P.CKO_PUBLIC_KEY), (P.CKA_ID, k["id"])])
            if len(privs) == 1 and len(pubs) == 1:
                k["priv"], k["pubobj"] = privs[0], pubs[0]

    # ---------- refusals ----------
    def expect_init_rv(self, name, mech, want, desc, sign=True):
        self.new_session()  # no operation left over from the last check
        self.find_again_quiet()
        k = self.keys.get(name)
        if k is None or "priv" not in k:
            self.r.fail(f"{desc}: no {name} key")
            return
        s = self.session
        rv = s.lib.C_SignInit(s.session, mech.to_native(), k["priv"])
        where = "C_SignInit"
        if rv == P.CKR_OK:
            # Some tokens check parameters at C_Sign; that must fail the same way.
            sig = ckbytelist()
            rv = s.lib.C_Sign(s.session, ckbytelist(b"\x00" * 32), sig)
            where = "C_Sign"
            if rv == P.CKR_OK:  # that was the length query
                rv = s.lib.C_Sign(s.session, ckbytelist(b"\x00" * 32), sig)
        if rv != want and not self.args.strict:
            # Other tokens differ (softhsm2 2.6.1 says CKR_ARGUMENTS_BAD for bad PSS
            # parameters, and "signs" with a mechanism of another key type, giving 0 bytes).
            self.r.na(f"{desc}: {where} gives {rvname(rv)}, not {rvname(want)}")
            return
        self.r.check(rv == want, f"{desc}: {where} gives {rvname(rv)}, want {rvname(want)}")

    def refusals(self):
        self.new_session()
        self.find_again_quiet()
        M = P.Mechanism
        self.expect_init_rv("p256", M(P.CKM_SHA256_RSA_PKCS), P.CKR_KEY_TYPE_INCONSISTENT,
                            "EC key with CKM_SHA256_RSA_PKCS")
        self.expect_init_rv("p256", M(P.CKM_RSA_PKCS), P.CKR_KEY_TYPE_INCONSISTENT,
                            "EC key with CKM_RSA_PKCS")
        self.expect_init_rv("rsa2048", M(P.CKM_ECDSA), P.CKR_KEY_TYPE_INCONSISTENT,
                            "RSA key with CKM_ECDSA")
        self.expect_init_rv("rsa2048", M(P.CKM_EDDSA), P.CKR_KEY_TYPE_INCONSISTENT,
                            "RSA key with CKM_EDDSA")
        if "ed25519" in self.keys:
            self.expect_init_rv("ed25519", M(P.CKM_ECDSA), P.CKR_KEY_TYPE_INCONSISTENT,
                                "Ed25519 key with CKM_ECDSA")
            self.expect_init_rv("p256", M(P.CKM_EDDSA), P.CKR_KEY_TYPE_INCONSISTENT,
                                "EC key with CKM_EDDSA")
        PSS = P.RSA_PSS_Mechanism
        self.expect_init_rv("rsa2048", PSS(P.CKM_SHA256_RSA_PKCS_PSS, P.CKM_SHA256,
                                           P.CKG_MGF1_SHA1, 32),
                            P.CKR_MECHANISM_PARAM_INVALID, "PSS with MGF1-SHA1 for SHA-256")
        self.expect_init_rv("rsa2048", PSS(P.CKM_SHA256_RSA_PKCS_PSS, P.CKM_SHA384,
                                           P.CKG_MGF1_SHA384, 48),
                            P.CKR_MECHANISM_PARAM_INVALID,
                            "CKM_SHA256_RSA_PKCS_PSS with hashAlg SHA-384")
        self.expect_init_rv("rsa2048", PSS(P.CKM_RSA_PKCS_PSS, P.CKM_SHA256,
                                           P.CKG_MGF1_SHA512, 32),
                            P.CKR_MECHANISM_PARAM_INVALID, "CKM_RSA_PKCS_PSS, MGF1-SHA512 "
                            "for SHA-256")
        self.expect_init_rv("rsa2048", M(P.CKM_RSA_PKCS_PSS), P.CKR_MECHANISM_PARAM_INVALID,
                            "CKM_RSA_PKCS_PSS without parameters")
        if self.args.strict:
            self.expect_init_rv("rsa2048", PSS(P.CKM_SHA256_RSA_PKCS_PSS, P.CKM_SHA256,
                                               P.CKG_MGF1_SHA256, 256 - 32 - 1),
                                P.CKR_MECHANISM_PARAM_INVALID, "PSS salt longer than the "
                                "modulus allows")
        # Refused key generation templates.
        e = bytes([1, 0, 1])
        bad = [
            ("RSA CKA_MODULUS_BITS=1024", "rsa", [(P.CKA_MODULUS_BITS, 1024),
                                                 (P.CKA_PUBLIC_EXPONENT, e)],
             P.CKM_RSA_PKCS_KEY_PAIR_GEN, (P.CKR_ATTRIBUTE_VALUE_INVALID,)),
            ("RSA CKA_MODULUS_BITS=2049", "rsa", [(P.CKA_MODULUS_BITS, 2049),
                                                 (P.CKA_PUBLIC_EXPONENT, e)],
             P.CKM_RSA_PKCS_KEY_PAIR_GEN, (P.CKR_ATTRIBUTE_VALUE_INVALID,)),
            ("RSA exponent 3", "rsa", [(P.CKA_MODULUS_BITS, 2048),
                                       (P.CKA_PUBLIC_EXPONENT, bytes([3]))],
             P.CKM_RSA_PKCS_KEY_PAIR_GEN, (P.CKR_ATTRIBUTE_VALUE_INVALID,)),
            ("EC curve secp256k1", "ec", [(P.CKA_EC_PARAMS, bytes.fromhex("06052b8104000a"))],
             P.CKM_EC_KEY_PAIR_GEN, (P.CKR_CURVE_NOT_SUPPORTED, P.CKR_ATTRIBUTE_VALUE_INVALID)),
            ("RSA without CKA_MODULUS_BITS", "rsa", [(P.CKA_PUBLIC_EXPONENT, e)],
             P.CKM_RSA_PKCS_KEY_PAIR_GEN, (P.CKR_TEMPLATE_INCOMPLETE,)),
            ("EC key type in an RSA template", "ec", [(P.CKA_MODULUS_BITS, 2048)],
             P.CKM_RSA_PKCS_KEY_PAIR_GEN, (P.CKR_TEMPLATE_INCONSISTENT,)),
        ]
        if not self.args.strict:
            print("pykcs11: (not --strict: the key generation refusals are ours, not checked)")
            return
        for desc, kind, params, mech, want in bad:
            label = f"pykcs11-bad-{self.tag}"
            pub_t, priv_t = self.templates(kind, label, os.urandom(4), params)
            rv, _ = rv_of(self.session.generateKeyPair, pub_t, priv_t, P.Mechanism(mech))
            self.r.check(rv in want, f"C_GenerateKeyPair with {desc} gives {rvname(rv)}, "
                         f"want {' or '.join(rvname(w) for w in want)}")
        left = self.find([(P.CKA_LABEL, f"pykcs11-bad-{self.tag}")])
        self.r.check(not left, "no object was left by a refused key generation")

    # ---------- RSA-OAEP ----------
    def oaep(self):
        if not self.has(P.CKM_RSA_PKCS_OAEP, "RSA-OAEP"):
            return
        self.new_session()
        self.find_again_quiet()
        k = self.keys.get("rsa2048")
        if k is None or "priv" not in k:
            self.r.fail("RSA-OAEP: no rsa2048 key")
            return
        mech = P.RSAOAEPMechanism(P.CKM_SHA256, P.CKG_MGF1_SHA256)
        secret = os.urandom(48)
        ct = k["pub"].encrypt(secret, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()),
                                                   algorithm=hashes.SHA256(), label=None))
        rv, pt = rv_of(self.session.decrypt, k["priv"], ct, mech)
        if rv != P.CKR_OK and not self.args.strict:
            self.r.na(f"OAEP with SHA-256 is refused ({rvname(rv)})")
            return
        self.r.check(rv == P.CKR_OK and pt is not None and bytes(pt) == secret,
                     f"C_Decrypt OAEP-SHA256 of python3-cryptography's ciphertext ({rvname(rv)})")
        rv, ct2 = rv_of(self.session.encrypt, k["pubobj"], secret, mech)
        ok = rv == P.CKR_OK and ct2 is not None and len(ct2) == 256
        self.r.check(ok, f"C_Encrypt OAEP-SHA256 with the public key ({rvname(rv)})")
        if ok:
            rv, pt2 = rv_of(self.session.decrypt, k["priv"], bytes(ct2), mech)
            self.r.check(rv == P.CKR_OK and pt2 is not None and bytes(pt2) == secret,
                         f"C_Decrypt gives back what C_Encrypt encrypted ({rvname(rv)})")
        if self.args.strict:
            for desc, m in (("SHA-1", P.RSAOAEPMechanism(P.CKM_SHA_1, P.CKG_MGF1_SHA1)),
                            ("MGF1-SHA1", P.RSAOAEPMechanism(P.CKM_SHA256, P.CKG_MGF1_SHA1)),
                            ("a label", P.RSAOAEPMechanism(P.CKM_SHA256, P.CKG_MGF1_SHA256,
                                                           b"label"))):
                rv, _ = rv_of(self.session.decrypt, k["priv"], ct, m)
                self.r.check(rv == P.CKR_MECHANISM_PARAM_INVALID,
                             f"OAEP with {desc} gives {rvname(rv)}, "
                             f"want CKR_MECHANISM_PARAM_INVALID")

    # ---------- digests and random ----------
    def digests(self):
        self.new_session()
        data = os.urandom(1000)
        for ckm, hl in ((P.CKM_SHA_1, "sha1"), (P.CKM_SHA256, "sha256"),
                        (P.CKM_SHA384, "sha384"), (P.CKM_SHA512, "sha512")):
            if not self.has(ckm, f"digest {hl}"):
                continue
            want = hashlib.new(hl, data).digest()
            rv, got = rv_of(self.session.digest, data, P.Mechanism(ckm))
            self.r.check(rv == P.CKR_OK and got is not None and bytes(got) == want,
                         f"C_Digest {mname(ckm)} ({rvname(rv)})")
            try:
                ds = self.session.digestSession(P.Mechanism(ckm))
                for i in range(0, len(data), 300):
                    ds.update(data[i:i + 300])
                got = bytes(ds.final())
                self.r.check(got == want, f"C_DigestUpdate/C_DigestFinal {mname(ckm)}")
            except P.PyKCS11Error as e:
                self.r.fail(f"multi-part digest {mname(ckm)}: {rvname(e.value)}")

    def random(self):
        self.new_session()
        rv, a = rv_of(self.session.generateRandom, 32)
        rv2, b = rv_of(self.session.generateRandom, 32)
        self.r.check(rv == P.CKR_OK and rv2 == P.CKR_OK and len(a) == 32 and len(b) == 32
                     and bytes(a) != bytes(b),
                     f"C_GenerateRandom gives 32 fresh bytes twice ({rvname(rv)}, {rvname(rv2)})")

    # ---------- certificates ----------
    def certificates(self):
        self.new_session()
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"pykcs11 {self.tag}")])
        now = datetime.datetime.utcnow()
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(key.public_key()).serial_number(0x1234567)
                .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
                .sign(key, hashes.SHA256()))
        der = cert.public_bytes(serialization.Encoding.DER)
        cid, label = os.urandom(6), f"pykcs11-cert-{self.tag}"
        serial_der = bytes([0x02, 4]) + (0x1234567).to_bytes(4, "big")
        t = [(P.CKA_CLASS, P.CKO_CERTIFICATE), (P.CKA_CERTIFICATE_TYPE, P.CKC_X_509),
             (P.CKA_TOKEN, True), (P.CKA_VALUE, der), (P.CKA_ID, cid), (P.CKA_LABEL, label),
             (P.CKA_SUBJECT, name.public_bytes()), (P.CKA_ISSUER, name.public_bytes()),
             (P.CKA_SERIAL_NUMBER, serial_der)]
        rv, h = rv_of(self.session.createObject, t)
        if not self.r.check(rv == P.CKR_OK, f"C_CreateObject of an X.509 certificate "
                            f"({rvname(rv)})"):
            return
        self.new_session()
        found = self.find([(P.CKA_CLASS, P.CKO_CERTIFICATE), (P.CKA_ID, cid)])
        if not self.r.check(len(found) == 1, f"the certificate is found by CKA_ID in a new "
                            f"session ({len(found)})"):
            return
        value, subj, ser = self.attrs(found[0], [P.CKA_VALUE, P.CKA_SUBJECT,
                                                 P.CKA_SERIAL_NUMBER], True)
        lab = self.attrs(found[0], [P.CKA_LABEL])[0]
        self.r.check(bytes(value) == der and bytes(subj) == name.public_bytes()
                     and bytes(ser) == serial_der and lab == label,
                     "the certificate reads back with its CKA_VALUE, CKA_SUBJECT, "
                     "CKA_SERIAL_NUMBER, CKA_LABEL")
        by_label = self.find([(P.CKA_CLASS, P.CKO_CERTIFICATE), (P.CKA_LABEL, label)])
        self.r.check(len(by_label) == 1, "the certificate is found by CKA_LABEL")
        rv, _ = rv_of(self.session.destroyObject, found[0])
        self.r.check(rv == P.CKR_OK, f"C_DestroyObject of the certificate ({rvname(rv)})")
        self.new_session()
        self.r.check(not self.find([(P.CKA_CLASS, P.CKO_CERTIFICATE), (P.CKA_ID, cid)]),
                     "the destroyed certificate is gone")

    # ---------- C_SetAttributeValue ----------
    def set_label(self):
        self.new_session()
        self.find_again_quiet()
        k = self.keys.get("p256")
        if k is None or "priv" not in k:
            self.r.fail("C_SetAttributeValue: no p256 key")
            return
        new = f"pykcs11-renamed-{self.tag}"
        rv, _ = rv_of(self.session.setAttributeValue, k["priv"], [(P.CKA_LABEL, new)])
        if not self.r.check(rv == P.CKR_OK, f"C_SetAttributeValue CKA_LABEL ({rvname(rv)})"):
            return
        got = self.attrs(k["priv"], [P.CKA_LABEL])[0]
        self.r.check(got == new, f"the private key now has CKA_LABEL {got!r}")
        # A fresh process (a new C_Initialize) sees the new label.
        out = subprocess.run([sys.executable, os.path.abspath(__file__), self.args.module,
                              "--token", self.args.token, "--pin", self.args.pin,
                              "--label-of", k["id"].hex()], capture_output=True, text=True)
        self.r.check(out.returncode == 0 and out.stdout.strip() == new,
                     f"a new process reads CKA_LABEL {out.stdout.strip()!r}",
                     out.stderr)
        k["label"] = new

    # ---------- destroy ----------
    def destroy(self):
        self.new_session()
        self.find_again_quiet()
        for name, k in self.keys.items():
            if "priv" not in k:
                continue
            rv, _ = rv_of(self.session.destroyObject, k["priv"])
            if not self.r.check(rv == P.CKR_OK, f"{name}: C_DestroyObject of the private key "
                                f"({rvname(rv)})"):
                continue
            # A Transit key is one pair: destroying the private half removes both. A token
            # that keeps the public half (softhsm2) gets it destroyed too.
            pubs = self.find([(P.CKA_CLASS, P.CKO_PUBLIC_KEY), (P.CKA_ID, k["id"])])
            if self.args.strict:
                self.r.check(not pubs, f"{name}: the public half went with it")
            for p in pubs:
                self.session.destroyObject(p)
        self.new_session()
        for name, k in self.keys.items():
            self.r.check(not self.find([(P.CKA_ID, k["id"])]),
                         f"{name}: no object with its CKA_ID is left (new session)")

    def run(self):
        print(f"pykcs11: module {self.args.module}, token {self.args.token}, "
              f"PyKCS11 {P.__version__ if hasattr(P, '__version__') else '?'}, "
              f"{len(self.mechs)} mechanisms", flush=True)
        self.section("C_GetMechanismInfo", self.mechanism_info)
        self.section("key generation", self.keygen_all)
        self.section("find by CKA_ID in a new session, attributes", self.find_again)
        self.section("signatures", self.sign_all)
        self.section("refusals", self.refusals)
        self.section("RSA-OAEP", self.oaep)
        self.section("digests", self.digests)
        self.section("C_GenerateRandom", self.random)
        self.section("certificate objects", self.certificates)
        self.section("C_SetAttributeValue", self.set_label)
        self.section("C_DestroyObject", self.destroy)
        self.lib.closeAllSessions(self.slot)
        r = self.r
        print(f"pykcs11: {r.oks} checks passed, {len(r.failures)} failed, {len(r.nas)} n/a")
        for f in r.failures:
            print(f"pykcs11: failed: {f}")
        return 1 if r.failures else 0


def label_of(args):
    """--label-of ID: print the private key's CKA_LABEL (run in a fresh process)."""
    lib = P.PyKCS11Lib()
    lib.load(args.module)
    slot = [s for s in lib.getSlotList(tokenPresent=True)
            if lib.getTokenInfo(s).label.strip() == args.token][0]
    s = lib.openSession(slot, P.CKF_SERIAL_SESSION)
    try:
        s.login(args.pin)
    except P.PyKCS11Error as e:
        if e.value != P.CKR_USER_ALREADY_LOGGED_IN:
            raise
    objs = s.findObjects([(P.CKA_CLASS, P.CKO_PRIVATE_KEY),
                          (P.CKA_ID, bytes.fromhex(args.label_of))])
    if len(objs) != 1:
        print(f"{len(objs)} private keys with that ID", file=sys.stderr)
        return 1
    print(s.getAttributeValue(objs[0], [P.CKA_LABEL])[0])
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("module")
    ap.add_argument("--token", required=True)
    ap.add_argument("--pin", default="1234")
    ap.add_argument("--strict", action="store_true")
    ap.add_argument("--label-of", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.label_of:
        return label_of(args)
    return Tester(args).run()


if __name__ == "__main__":
    sys.exit(main())
