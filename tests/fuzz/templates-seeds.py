#!/usr/bin/env python3
"""Writes the seed corpus of fuzz-templates (tests/fuzz/corpus/templates/) in the byte format
tests/fuzz/fuzz-templates.c decodes: python3 tests/fuzz/templates-seeds.py [DIR]. Keep the
tables below in the order of the harness's (fuzz_attr_types in fuzz.h, ulongs, ec_params)."""
import os
import struct
import sys

TYPES = ["CLASS", "TOKEN", "PRIVATE", "LABEL", "APPLICATION", "VALUE", "OBJECT_ID",
         "CERTIFICATE_TYPE", "ISSUER", "SERIAL_NUMBER", "TRUSTED", "CERTIFICATE_CATEGORY",
         "JAVA_MIDP_SECURITY_DOMAIN", "URL", "HASH_OF_SUBJECT_PUBLIC_KEY",
         "HASH_OF_ISSUER_PUBLIC_KEY", "CHECK_VALUE", "KEY_TYPE", "SUBJECT", "ID", "SENSITIVE",
         "ENCRYPT", "DECRYPT", "WRAP", "UNWRAP", "SIGN", "SIGN_RECOVER", "VERIFY",
         "VERIFY_RECOVER", "DERIVE", "START_DATE", "END_DATE", "MODULUS", "MODULUS_BITS",
         "PUBLIC_EXPONENT", "PRIVATE_EXPONENT", "PRIME_1", "PRIME_2", "EXPONENT_1", "EXPONENT_2",
         "COEFFICIENT", "PUBLIC_KEY_INFO", "VALUE_LEN", "EXTRACTABLE", "LOCAL",
         "NEVER_EXTRACTABLE", "ALWAYS_SENSITIVE", "KEY_GEN_MECHANISM", "MODIFIABLE", "COPYABLE",
         "DESTROYABLE", "EC_PARAMS", "EC_POINT", "ALWAYS_AUTHENTICATE", "WRAP_WITH_TRUSTED",
         "ALLOWED_MECHANISMS", "VENDOR_DEFINED", "0x7fffffff", "-1"]
ULONGS = ["CKO_DATA", "CKO_CERTIFICATE", "CKO_PUBLIC_KEY", "CKO_PRIVATE_KEY", "CKO_SECRET_KEY",
          "CKK_RSA", "CKK_EC", "CKK_EC_EDWARDS", "CKK_AES", "CKC_X_509"]
EC = {"P-256": 0, "P-384": 1, "P-521": 2, "Ed25519": 3, "prime256v1": 4, "ed25519-name": 5,
      "secp256k1": 6}
OPS = {"generate": 0, "create": 1, "find": 2, "get": 3, "attrs": 4, "set": 5, "destroy": 6,
       "misc": 7, "reinit": 8}
MECH = {"EC": 0, "EDWARDS": 1, "RSA": 2, "EC_WITH_PARAM": 4}
SESSION = {"kv": 0, "kv-ro": 1, "plain": 2, "bad": 255}


def t(name):
    return bytes([TYPES.index(name)])


def boolean(v):
    return bytes([0, 1 if v else 0])


def ulong(name):
    return bytes([1, ULONGS.index(name)])


def raw(b):
    return bytes([2, len(b)]) + b


def null(n=0):
    return bytes([3, n])


def ec(name):
    return bytes([4, EC[name]])


def cert(which=0, cut=None):
    return bytes([5, which if cut is None else 192 + 2 * cut + which])


def rsa_bits(bits):
    return bytes([6, {2048: 0, 3072: 2, 4096: 4, 1024: 6}[bits]])


def f4():
    return bytes([6, 1])


def seen(i=0):
    return bytes([7, i])


TEXTS = ["existing", "p-existing", "encoded-lookalike", "p11-name", "ete", "surrogate",
         "U+10FFFF", "above-U+10FFFF", "overlong", "overlong-NUL", "NUL-inside", "empty"]


def text(name):
    return bytes([8, TEXTS.index(name)])


def long_text(n):
    return bytes([8, 240 + n - 250])


def tmpl(*attrs):
    return bytes([len(attrs)]) + b"".join(attrs)


def op(name, *args):
    return bytes([OPS[name]]) + b"".join(args)


def s(name):
    return bytes([SESSION[name]])


def h(i):
    return bytes([i])


def reinit(compare=True):
    return op("reinit", bytes([1 if compare else 0]))


def generate(sess, mech, pub, priv):
    return op("generate", s(sess), bytes([MECH[mech]]), pub, priv)


def get(sess, handle, *entries):
    # entries: (size index, type name); size index 200+ = NULL
    return op("get", s(sess), h(handle), bytes([len(entries)]),
              b"".join(bytes([size]) + t(name) for size, name in entries))


LABEL, ID = b"web server", b"\x0a\x0b"
pkcs11_tool_pub = tmpl(t("TOKEN") + boolean(1), t("EC_PARAMS") + ec("P-256"),
                       t("VERIFY") + boolean(1), t("LABEL") + raw(LABEL), t("ID") + raw(ID))
pkcs11_tool_priv = tmpl(t("TOKEN") + boolean(1), t("PRIVATE") + boolean(1),
                        t("SENSITIVE") + boolean(1), t("SIGN") + boolean(1),
                        t("DERIVE") + boolean(1), t("LABEL") + raw(LABEL), t("ID") + raw(ID))

SEEDS = {
    "ec-keygen-find-reinit": generate("kv", "EC", pkcs11_tool_pub, pkcs11_tool_priv)
    + op("attrs", s("kv"), h(0)) + op("attrs", s("kv"), h(1))
    + op("find", s("kv"), b"\x02", tmpl(t("ID") + seen(0)))
    + op("set", s("kv"), h(1), tmpl(t("LABEL") + raw(b"renamed"), t("ID") + raw(b"\x01")))
    + reinit()
    + op("find", s("kv"), b"\x04", tmpl(t("LABEL") + raw(LABEL))),
    "rsa-keygen": generate("kv", "RSA", tmpl(t("MODULUS_BITS") + rsa_bits(2048),
                                             t("PUBLIC_EXPONENT") + f4(), t("ENCRYPT") + boolean(1)),
                           tmpl(t("TOKEN") + boolean(1), t("DECRYPT") + boolean(1),
                                t("LABEL") + raw(b"rsa")))
    + get("kv", 0, (0, "MODULUS"), (200, "MODULUS"), (9, "PUBLIC_EXPONENT"), (5, "LABEL"))
    + op("find", s("kv"), b"\x00", tmpl(t("CLASS") + ulong("CKO_PUBLIC_KEY"))),
    "ed25519-plain-destroy": generate("plain", "EDWARDS", tmpl(t("EC_PARAMS") + ec("Ed25519")),
                                      tmpl(t("TOKEN") + boolean(1), t("ID") + raw(b"\x99")))
    + op("destroy", s("plain"), h(1)) + op("destroy", s("kv"), h(0)) + op("destroy", s("kv"), h(1)),
    "cert-create-set-destroy": op("create", s("kv"), tmpl(t("CLASS") + ulong("CKO_CERTIFICATE"),
                                                          t("CERTIFICATE_TYPE") + ulong("CKC_X_509"),
                                                          t("VALUE") + cert(0),
                                                          t("LABEL") + raw(b"my cert"),
                                                          t("ID") + raw(ID), t("TOKEN") + boolean(1)))
    + op("attrs", s("kv"), h(0))
    + op("set", s("kv"), h(0), tmpl(t("LABEL") + raw(b"other")))
    + op("find", s("kv"), b"\x01", tmpl(t("CLASS") + ulong("CKO_CERTIFICATE")))
    + reinit() + op("find", s("kv"), b"\x01", tmpl(t("ID") + raw(ID)))
    + op("destroy", s("kv"), h(0)),
    "cert-ro-and-cut": op("create", s("kv-ro"), tmpl(t("CLASS") + ulong("CKO_CERTIFICATE"),
                                                      t("VALUE") + cert(1), t("TOKEN") + boolean(1)))
    + op("create", s("kv"), tmpl(t("CLASS") + ulong("CKO_CERTIFICATE"), t("VALUE") + cert(1, 20),
                                 t("TOKEN") + boolean(1)))
    + op("create", s("plain"), tmpl(t("CLASS") + ulong("CKO_CERTIFICATE"), t("VALUE") + cert(0),
                                    t("TOKEN") + boolean(1)))
    + op("create", s("kv"), tmpl(t("CLASS") + ulong("CKO_CERTIFICATE"), t("VALUE") + cert(0))),
    "label-texts": generate("kv", "EC", tmpl(t("EC_PARAMS") + ec("P-256"), t("LABEL") + text("ete")),
                            tmpl(t("TOKEN") + boolean(1), t("ID") + raw(b"\x01")))
    + generate("plain", "EC", tmpl(t("EC_PARAMS") + ec("P-256"), t("LABEL") + text("p11-name")),
               tmpl(t("TOKEN") + boolean(1)))
    + op("set", s("kv"), h(0), tmpl(t("LABEL") + text("existing")))
    + op("find", s("kv"), b"\x02", tmpl(t("LABEL") + text("existing")))
    + op("find", s("plain"), b"\x02", tmpl(t("ID") + text("p11-name")))
    + reinit() + op("find", s("kv"), b"\x02", tmpl(t("LABEL") + text("ete"))),
    "find-all": op("find", s("kv"), b"\x03", tmpl()) + op("attrs", s("kv"), h(0))
    + op("attrs", s("kv"), h(1)) + op("find", s("plain"), b"\x03", tmpl())
    + op("attrs", s("plain"), h(2)) + op("misc", s("kv"), h(0), tmpl()),
    "usage-false": generate("kv", "EC", tmpl(t("EC_PARAMS") + ec("P-384"), t("VERIFY") + boolean(0)),
                            tmpl(t("TOKEN") + boolean(1), t("SIGN") + boolean(0),
                                 t("EXTRACTABLE") + boolean(0)))
    + op("attrs", s("kv"), h(1)),
    "bad-templates": generate("kv", "EC", tmpl(t("EC_PARAMS") + ec("secp256k1")), tmpl())
    + generate("kv", "EC", tmpl(t("EC_PARAMS") + null(5)), tmpl())
    + generate("kv", "EC_WITH_PARAM", tmpl(t("EC_PARAMS") + ec("P-256")), tmpl())
    + generate("kv", "EC", tmpl(t("EC_PARAMS") + ec("prime256v1"), t("LABEL") + null(0)),
               tmpl(t("LABEL") + raw(b"\xc3")))
    + generate("kv", "RSA", tmpl(t("MODULUS_BITS") + rsa_bits(1024)), tmpl())
    + generate("kv-ro", "EC", tmpl(t("EC_PARAMS") + ec("P-521")), tmpl(t("TOKEN") + boolean(0))),
    "label-id-searches": generate("kv", "EC", tmpl(t("EC_PARAMS") + ec("P-256"), t("LABEL") + raw(b"existing")),
                                  tmpl(t("TOKEN") + boolean(1), t("ID") + raw(b"existing")))
    + op("find", s("kv"), b"\x01", tmpl(t("LABEL") + raw(b"existing")))
    + op("find", s("kv"), b"\x01", tmpl(t("ID") + raw(b"existing")))
    + reinit()
    + op("find", s("kv"), b"\x01", tmpl(t("LABEL") + raw(b"existing")))
    + op("find", s("plain"), b"\x01", tmpl(t("LABEL") + raw(b"existing"))),
}


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus",
                                                             "templates")
    os.makedirs(out, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
