/*
 * Signs with token keys through Java's SunPKCS11 provider and verifies each signature with the
 * certificate's public key in a software provider (run by tests/clients/java.sh):
 *
 *   java VtpSign CONFIG PIN OUTDIR ALIAS...
 *
 * Loads the PKCS11 KeyStore of the provider configured by CONFIG, and for each ALIAS: checks
 * that it is a PrivateKeyEntry with a certificate and that the key stays on the token, then
 * signs with SHA256withECDSA (EC keys) or SHA256withRSA, RSASSA-PSS and SHA256withRSASSA-PSS
 * (SHA-256, MGF1-SHA-256, salt 32; RSA keys, the PSS ones when the provider offers them) and
 * verifies with SunEC / SunRsaSign. Writes
 * OUTDIR/ALIAS.data, OUTDIR/ALIAS.ALG.sig and OUTDIR/ALIAS.pem (the certificate) so that the
 * script can check the signatures with OpenSSL too. One line per check; exit 1 when any failed.
 */

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.security.KeyStore;
import java.security.PrivateKey;
import java.security.Provider;
import java.security.PublicKey;
import java.security.Security;
import java.security.Signature;
import java.security.cert.X509Certificate;
import java.security.spec.MGF1ParameterSpec;
import java.security.spec.PSSParameterSpec;
import java.util.Base64;
import java.util.Collections;
import java.util.List;

public final class VtpSign {
    private static int failures = 0;

    private static void ok(String what) {
        System.out.println("java: ok: " + what);
    }

    private static void fail(String what, Throwable e) {
        failures++;
        System.out.println("java: FAIL: " + what + (e == null ? "" : ": " + e));
        if (e != null) {
            for (Throwable c = e.getCause(); c != null; c = c.getCause()) {
                System.out.println("  | caused by " + c);
            }
        }
    }

    private static void check(boolean cond, String what) {
        if (cond) {
            ok(what);
        } else {
            fail(what, null);
        }
    }

    private static void writePem(Path out, X509Certificate cert) throws Exception {
        String b64 = Base64.getMimeEncoder(64, "\n".getBytes(StandardCharsets.US_ASCII))
                .encodeToString(cert.getEncoded());
        Files.writeString(out, "-----BEGIN CERTIFICATE-----\n" + b64
                + "\n-----END CERTIFICATE-----\n");
    }

    private static void signAndVerify(Provider p11, String alias, PrivateKey key,
            PublicKey pub, String alg, PSSParameterSpec pss, String verifier, byte[] data,
            Path outdir) {
        String what = alias + ": " + alg + " by " + p11.getName();
        try {
            Signature s = Signature.getInstance(alg, p11);
            if (pss != null) {
                s.setParameter(pss);
            }
            s.initSign(key);
            s.update(data);
            byte[] sig = s.sign();
            ok(what + " (" + sig.length + " bytes)");
            Files.write(outdir.resolve(alias + "." + alg + ".sig"), sig);

            /* SunRsaSign names PSS with any hash "RSASSA-PSS": the parameters say the hash */
            Signature v = Signature.getInstance(alg.endsWith("RSASSA-PSS") ? "RSASSA-PSS" : alg,
                    verifier);
            if (pss != null) {
                v.setParameter(pss);
            }
            v.initVerify(pub);
            v.update(data);
            check(v.verify(sig),
                    what + ": " + verifier + " verifies it with the certificate's key");
        } catch (Exception e) {
            fail(what, e);
        }
    }

    public static void main(String[] args) throws Exception {
        if (args.length < 4) {
            System.err.println("usage: java VtpSign CONFIG PIN OUTDIR ALIAS...");
            System.exit(2);
        }
        Provider p11 = Security.getProvider("SunPKCS11").configure(args[0]);
        Security.addProvider(p11);
        Path outdir = Paths.get(args[2]);
        KeyStore ks = KeyStore.getInstance("PKCS11", p11);
        ks.load(null, args[1].toCharArray());
        List<String> aliases = Collections.list(ks.aliases());
        System.out.println("java: " + p11.getName() + " keystore aliases: " + aliases);
        PSSParameterSpec pss = new PSSParameterSpec("SHA-256", "MGF1", MGF1ParameterSpec.SHA256,
                32, PSSParameterSpec.TRAILER_FIELD_BC);

        for (int i = 3; i < args.length; i++) {
            String alias = args[i];
            try {
                if (!ks.isKeyEntry(alias)) {
                    fail(alias + ": no key entry in the keystore", null);
                    continue;
                }
                PrivateKey key = (PrivateKey) ks.getKey(alias, null);
                X509Certificate cert = (X509Certificate) ks.getCertificate(alias);
                if (cert == null) {
                    fail(alias + ": the entry has no certificate", null);
                    continue;
                }
                ok(alias + ": " + key.getAlgorithm() + " key entry with certificate "
                        + cert.getSubjectX500Principal());
                /* P11Key.toString says where the key lives: "token object" or "session object" */
                check(key.toString().contains("token object"),
                        alias + ": the private key is a token object (" + key + ")");
                writePem(outdir.resolve(alias + ".pem"), cert);
                byte[] data = ("signed by " + alias + " through SunPKCS11\n")
                        .getBytes(StandardCharsets.UTF_8);
                Files.write(outdir.resolve(alias + ".data"), data);
                PublicKey pub = cert.getPublicKey();
                if (key.getAlgorithm().equals("EC")) {
                    signAndVerify(p11, alias, key, pub, "SHA256withECDSA", null, "SunEC", data,
                            outdir);
                } else if (key.getAlgorithm().equals("RSA")) {
                    signAndVerify(p11, alias, key, pub, "SHA256withRSA", null, "SunRsaSign", data,
                            outdir);
                    for (String alg : new String[] {"RSASSA-PSS", "SHA256withRSASSA-PSS"}) {
                        if (p11.getService("Signature", alg) != null) {
                            signAndVerify(p11, alias, key, pub, alg, pss, "SunRsaSign", data,
                                    outdir);
                        } else {
                            System.out.println("java: n/a: " + p11.getName() + " offers no "
                                    + alg);
                        }
                    }
                } else {
                    fail(alias + ": unexpected key algorithm " + key.getAlgorithm(), null);
                }
            } catch (Exception e) {
                fail(alias, e);
            }
        }
        System.out.println("java: " + (failures == 0 ? "all checks passed"
                : failures + " check(s) failed"));
        System.exit(failures == 0 ? 0 : 1);
    }
}
