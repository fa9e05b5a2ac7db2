/* test-config.c - configuration parsing (src/config.c): defaults, every option, environment
 * precedence, validation, locate() and the permission check on files holding secrets. */
#include "common.h"
#include "cfg.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

static const char *const vault_env[] = {
    "VAULT_ADDR",
    "VAULT_TOKEN",
    "VAULT_CACERT",
    "VAULT_CAPATH",
    "VAULT_CLIENT_CERT",
    "VAULT_CLIENT_KEY",
    "VAULT_NAMESPACE",
    "VAULT_SKIP_VERIFY",
    "VAULT_TLS_SERVER_NAME",
    "VAULT_TRANSIT_PKCS11_CONFIG",
    "VAULT_TRANSIT_PKCS11_DEBUG",
};

/* Tests may run under tests/lib/run-test, which exports VAULT_ADDR and VAULT_TOKEN. */
static int clear_env(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < VTP_ARRAY_SIZE(vault_env); i++)
        unsetenv(vault_env[i]);
    vtp_log_reset();
    return 0;
}

static struct vtp_config *parse_ok(const char *text, bool apply_env)
{
    struct vtp_config *cfg = NULL;

    assert_int_equal(vtp_config_parse_string(text, apply_env, &cfg), CKR_OK);
    assert_non_null(cfg);
    return cfg;
}

static void parse_fails(const char *text, CK_RV want)
{
    struct vtp_config *cfg = (struct vtp_config *)0x1;

    assert_int_equal(vtp_config_parse_string(text, false, &cfg), want);
    assert_ptr_equal(cfg, (struct vtp_config *)0x1); /* not written on failure */
}

static void test_defaults(void **state)
{
    struct vtp_config *cfg;
    const struct vtp_slot_conf *s;

    (void)state;
    cfg = parse_ok("", true);
    assert_null(cfg->path);
    assert_int_equal(cfg->vault.n_addresses, 1);
    assert_string_equal(cfg->vault.addresses[0], "https://127.0.0.1:8200");
    assert_int_equal(cfg->vault.auth, VTP_AUTH_TOKEN);
    assert_null(cfg->vault.token);
    assert_null(cfg->vault.namespace_);
    assert_null(cfg->vault.ca_cert);
    assert_false(cfg->vault.skip_verify);
    assert_int_equal(cfg->vault.timeout_ms, 30000);
    assert_int_equal(cfg->vault.connect_timeout_ms, 5000);
    assert_null(cfg->log_errors);
    assert_int_equal(cfg->n_slots, 1);
    s = &cfg->slots[0];
    assert_string_equal(s->name, "default");
    assert_string_equal(s->mount, "transit");
    assert_string_equal(s->key_prefix, "");
    /* no [slot]: KV v2 secret/ when the token can use it (kv_mount = auto) */
    assert_string_equal(s->kv_mount, "secret");
    assert_true(s->kv_auto);
    assert_string_equal(s->kv_prefix, "vault-transit-pkcs11");
    assert_string_equal(s->label, "Vault Transit transit");
    assert_null(s->namespace_);
    assert_true(s->allow_destroy);
    assert_int_equal(s->cache_ttl_ms, 60000);
    assert_true(cfg->batching);
    assert_int_equal(cfg->batch_max_items, 200);
    assert_int_equal(cfg->batch_concurrency, 2);
    assert_true(cfg->batch_rsa);
    vtp_config_free(cfg);

    /* Comments, blank lines, CRLF, a BOM, an empty [vault]. */
    cfg = parse_ok("\xEF\xBB\xBF; comment\r\n# another\r\n\r\n[vault]\r\n", false);
    assert_int_equal(cfg->n_slots, 1);
    vtp_config_free(cfg);
}

static const char full_file[] =
    "[vault]\n"
    "address = https://vault-a:8200/, https://vault-b:8200 ,http://10.0.0.3:8200//  ; order\n"
    "ca_cert = /etc/vault/ca.pem\n"
    "ca_path = /etc/vault/ca.d\n"
    "client_cert = /etc/vault/client.pem\n"
    "client_key = /etc/vault/client.key\n"
    "tls_server_name = vault.internal\n"
    "skip_verify = no\n"
    "namespace = team-a/\n"
    "auth = approle\n"
    "auth_mount = approle-pkcs11\n"
    "role_id = 1234-abcd\n"
    "secret_id_file = /run/secrets/secret-id\n"
    "timeout = 45\n"
    "connect_timeout = 1500ms\n"
    "\n"
    "[module]\n"
    "log_errors = syslog\n"
    "\n"
    "[slot spire]\n"
    "    mount = transit/\n"
    "    key_prefix = spire-\n"
    "    kv_mount = secret\n"
    "    kv_prefix = pkcs11/spire\n"
    "    label = SPIRE CA\n"
    "    namespace = team-a/spire\n"
    "    allow_destroy = false\n"
    "    cache_ttl = 2m\n"
    "\n"
    "[slot  other ]\n"
    "mount = pki/transit\n";

static void test_full_file(void **state)
{
    struct vtp_config *cfg;
    const struct vtp_vault_conf *v;
    const struct vtp_slot_conf *s;

    (void)state;
    cfg = parse_ok(full_file, false);
    v = &cfg->vault;
    assert_int_equal(v->n_addresses, 3);
    assert_string_equal(v->addresses[0], "https://vault-a:8200");
    assert_string_equal(v->addresses[1], "https://vault-b:8200");
    assert_string_equal(v->addresses[2], "http://10.0.0.3:8200");
    assert_string_equal(v->ca_cert, "/etc/vault/ca.pem");
    assert_string_equal(v->ca_path, "/etc/vault/ca.d");
    assert_string_equal(v->client_cert, "/etc/vault/client.pem");
    assert_string_equal(v->client_key, "/etc/vault/client.key");
    assert_string_equal(v->tls_server_name, "vault.internal");
    assert_false(v->skip_verify);
    assert_string_equal(v->namespace_, "team-a");
    assert_int_equal(v->auth, VTP_AUTH_APPROLE);
    assert_string_equal(v->auth_mount, "approle-pkcs11");
    assert_string_equal(v->role_id, "1234-abcd");
    assert_null(v->secret_id);
    assert_string_equal(v->secret_id_file, "/run/secrets/secret-id");
    assert_int_equal(v->timeout_ms, 45000);
    assert_int_equal(v->connect_timeout_ms, 1500);
    assert_string_equal(cfg->log_errors, "syslog");

    assert_int_equal(cfg->n_slots, 2);
    s = &cfg->slots[0];
    assert_string_equal(s->name, "spire");
    assert_string_equal(s->mount, "transit");
    assert_string_equal(s->key_prefix, "spire-");
    assert_string_equal(s->kv_mount, "secret");
    assert_string_equal(s->kv_prefix, "pkcs11/spire");
    assert_string_equal(s->label, "SPIRE CA");
    assert_string_equal(s->namespace_, "team-a/spire");
    assert_false(s->allow_destroy);
    assert_int_equal(s->cache_ttl_ms, 120000);
    s = &cfg->slots[1];
    assert_string_equal(s->name, "other");
    assert_string_equal(s->mount, "pki/transit");
    /* the default label comes from the slot name, not the mount */
    assert_string_equal(s->label, "Vault Transit other");
    assert_true(s->allow_destroy);
    vtp_config_free(cfg);
}

static void test_auth_methods(void **state)
{
    struct vtp_config *cfg;

    (void)state;
    cfg = parse_ok("[vault]\nauth = token\ntoken = s.abc\n", false);
    assert_int_equal(cfg->vault.auth, VTP_AUTH_TOKEN);
    assert_string_equal(cfg->vault.token, "s.abc");
    vtp_config_free(cfg);

    /* auth = token without a token is fine at load time. */
    cfg = parse_ok("[vault]\nauth = token\n", false);
    assert_null(cfg->vault.token);
    vtp_config_free(cfg);

    cfg = parse_ok("[vault]\nauth = token_file\ntoken_file = /run/token\n", false);
    assert_int_equal(cfg->vault.auth, VTP_AUTH_TOKEN_FILE);
    vtp_config_free(cfg);
    parse_fails("[vault]\nauth = token_file\n", CKR_ARGUMENTS_BAD);

    cfg = parse_ok("[vault]\nauth = pin\n", false);
    assert_int_equal(cfg->vault.auth, VTP_AUTH_PIN);
    vtp_config_free(cfg);

    cfg = parse_ok("[vault]\nauth = approle\nrole_id = r\nsecret_id = s\n", false);
    assert_string_equal(cfg->vault.auth_mount, "approle");
    assert_string_equal(cfg->vault.secret_id, "s");
    vtp_config_free(cfg);
    parse_fails("[vault]\nauth = approle\nsecret_id = s\n", CKR_ARGUMENTS_BAD);
    parse_fails("[vault]\nauth = approle\nrole_id = r\nsecret_id = s\nsecret_id_file = /f\n",
                CKR_ARGUMENTS_BAD);

    cfg = parse_ok("[vault]\nauth = kubernetes\nrole = pkcs11\n", false);
    assert_int_equal(cfg->vault.auth, VTP_AUTH_KUBERNETES);
    assert_string_equal(cfg->vault.auth_mount, "kubernetes");
    assert_string_equal(cfg->vault.jwt_file, "/var/run/secrets/kubernetes.io/serviceaccount/token");
    vtp_config_free(cfg);
    cfg = parse_ok("[vault]\nauth = kubernetes\nrole = r\njwt_file = /t\nauth_mount = k8s/a\n",
                   false);
    assert_string_equal(cfg->vault.jwt_file, "/t");
    assert_string_equal(cfg->vault.auth_mount, "k8s/a");
    vtp_config_free(cfg);
    parse_fails("[vault]\nauth = kubernetes\n", CKR_ARGUMENTS_BAD);

    cfg = parse_ok("[vault]\nauth = cert\nclient_cert = /c\nclient_key = /k\nrole = web\n", false);
    assert_int_equal(cfg->vault.auth, VTP_AUTH_CERT);
    assert_string_equal(cfg->vault.auth_mount, "cert");
    assert_string_equal(cfg->vault.role, "web");
    vtp_config_free(cfg);
    parse_fails("[vault]\nauth = cert\nclient_cert = /c\n", CKR_ARGUMENTS_BAD);

    parse_fails("[vault]\nauth = ldap\n", CKR_ARGUMENTS_BAD);
    parse_fails("[vault]\nauth = Token\n", CKR_ARGUMENTS_BAD);
}

static void test_env_override(void **state)
{
    struct vtp_config *cfg;
    const struct vtp_vault_conf *v;

    (void)state;
    setenv("VAULT_ADDR", "https://env-vault:8200/", 1);
    setenv("VAULT_TOKEN", "s.from-env", 1);
    setenv("VAULT_CACERT", "/env/ca.pem", 1);
    setenv("VAULT_CAPATH", "/env/ca.d", 1);
    setenv("VAULT_CLIENT_CERT", "/env/c.pem", 1);
    setenv("VAULT_CLIENT_KEY", "/env/c.key", 1);
    setenv("VAULT_NAMESPACE", "env-ns", 1);
    setenv("VAULT_SKIP_VERIFY", "true", 1);
    setenv("VAULT_TLS_SERVER_NAME", "env.example", 1);

    /* The environment wins over the file's [vault] section. */
    cfg = parse_ok(full_file, true);
    v = &cfg->vault;
    assert_int_equal(v->n_addresses, 1);
    assert_string_equal(v->addresses[0], "https://env-vault:8200");
    assert_null(v->addresses[1]);
    assert_string_equal(v->token, "s.from-env");
    assert_int_equal(v->auth, VTP_AUTH_APPROLE); /* auth was set in the file: kept */
    assert_string_equal(v->ca_cert, "/env/ca.pem");
    assert_string_equal(v->ca_path, "/env/ca.d");
    assert_string_equal(v->client_cert, "/env/c.pem");
    assert_string_equal(v->client_key, "/env/c.key");
    assert_string_equal(v->namespace_, "env-ns");
    assert_true(v->skip_verify);
    assert_string_equal(v->tls_server_name, "env.example");
    /* Slots are not touched by VAULT_NAMESPACE. */
    assert_string_equal(cfg->slots[0].namespace_, "team-a/spire");
    assert_null(cfg->slots[1].namespace_);
    vtp_config_free(cfg);

    /* Without auth in the file, VAULT_TOKEN means token auth. */
    cfg = parse_ok("[vault]\ntoken = s.from-file\n", true);
    assert_int_equal(cfg->vault.auth, VTP_AUTH_TOKEN);
    assert_string_equal(cfg->vault.token, "s.from-env");
    vtp_config_free(cfg);

    /* Environment alone. */
    cfg = parse_ok("", true);
    assert_string_equal(cfg->vault.addresses[0], "https://env-vault:8200");
    assert_string_equal(cfg->vault.token, "s.from-env");
    vtp_config_free(cfg);

    /* apply_env = false ignores it. */
    cfg = parse_ok("[vault]\naddress = https://file:8200\n", false);
    assert_string_equal(cfg->vault.addresses[0], "https://file:8200");
    assert_null(cfg->vault.token);
    assert_false(cfg->vault.skip_verify);
    vtp_config_free(cfg);

    /* Empty variables are ignored, as the Vault CLI does. */
    setenv("VAULT_ADDR", "", 1);
    setenv("VAULT_SKIP_VERIFY", "", 1);
    cfg = parse_ok("[vault]\naddress = https://file:8200\nskip_verify = yes\n", true);
    assert_string_equal(cfg->vault.addresses[0], "https://file:8200");
    assert_true(cfg->vault.skip_verify);
    vtp_config_free(cfg);

    setenv("VAULT_SKIP_VERIFY", "0", 1);
    cfg = parse_ok("[vault]\nskip_verify = yes\n", true);
    assert_false(cfg->vault.skip_verify);
    vtp_config_free(cfg);

    setenv("VAULT_SKIP_VERIFY", "maybe", 1);
    assert_int_equal(vtp_config_parse_string("", true, &cfg), CKR_ARGUMENTS_BAD);
    unsetenv("VAULT_SKIP_VERIFY");
    setenv("VAULT_ADDR", "vault:8200", 1);
    assert_int_equal(vtp_config_parse_string("", true, &cfg), CKR_ARGUMENTS_BAD);
    clear_env(NULL);
}

static void test_multiple_slots(void **state)
{
    struct vtp_config *cfg;
    char *text, name[32];
    size_t i, len = 0;

    (void)state;
    text = malloc(VTP_MAX_SLOTS * 64 + 64);
    assert_non_null(text);
    text[0] = '\0';
    for (i = 0; i < VTP_MAX_SLOTS; i++)
        len += (size_t)sprintf(text + len, "[slot s%zu]\nmount = m%zu\n", i, i);
    cfg = parse_ok(text, false);
    assert_int_equal(cfg->n_slots, VTP_MAX_SLOTS);
    for (i = 0; i < VTP_MAX_SLOTS; i++) {
        snprintf(name, sizeof(name), "s%zu", i);
        assert_string_equal(cfg->slots[i].name, name);
    }
    vtp_config_free(cfg);

    /* One more is too many; an empty section still makes a slot. */
    strcpy(text + len, "[slot one-too-many]\n");
    parse_fails(text, CKR_ARGUMENTS_BAD);
    free(text);

    cfg = parse_ok("[slot a]\n[slot b]\nmount = b\n", false);
    assert_int_equal(cfg->n_slots, 2);
    assert_string_equal(cfg->slots[0].mount, "transit");
    assert_string_equal(cfg->slots[1].mount, "b");
    vtp_config_free(cfg);

    parse_fails("[slot a]\n[slot a]\n", CKR_ARGUMENTS_BAD);
    parse_fails("[slot]\nmount = x\n", CKR_ARGUMENTS_BAD);
    parse_fails("[slot a/b]\n", CKR_ARGUMENTS_BAD);
    parse_fails("[slot a b]\n", CKR_ARGUMENTS_BAD);
    parse_fails("[slot 012345678901234567890123456789012]\n", CKR_ARGUMENTS_BAD);
}

static void test_unknown_rejected(void **state)
{
    (void)state;
    parse_fails("[vault]\ntokne = s.x\n", CKR_ARGUMENTS_BAD);
    parse_fails("[vaults]\naddress = https://a\n", CKR_ARGUMENTS_BAD);
    parse_fails("[vault ]\n", CKR_ARGUMENTS_BAD);
    parse_fails("[Vault]\n", CKR_ARGUMENTS_BAD);
    parse_fails("[other]\n", CKR_ARGUMENTS_BAD);
    parse_fails("address = https://a\n", CKR_ARGUMENTS_BAD);
    parse_fails("[slot a]\naddress = https://a\n", CKR_ARGUMENTS_BAD);
    parse_fails("[module]\nmount = x\n", CKR_ARGUMENTS_BAD);
    parse_fails("[vault]\nnot a key value line\n", CKR_ARGUMENTS_BAD);
    parse_fails("[vault\n", CKR_ARGUMENTS_BAD);
    parse_fails("[vault] junk\n", CKR_ARGUMENTS_BAD);
    parse_fails("[vault]\n[vault]\n", CKR_ARGUMENTS_BAD);
    parse_fails("[vault]\ntimeout = 1\ntimeout = 2\n", CKR_ARGUMENTS_BAD);
    parse_fails("[module]\nlog_errors = file\n", CKR_ARGUMENTS_BAD);
    parse_fails("[vault]\nskip_verify = sure\n", CKR_ARGUMENTS_BAD);
}

/* The log line names file, line and key, and never the value of a secret. */
static void test_error_log_line(void **state)
{
    char dir[] = "/tmp/vtp-test-cfg-XXXXXX", path[64], env[128], buf[4096];
    FILE *f;
    size_t n;

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/log", dir);
    snprintf(env, sizeof(env), "level:1,file:%s", path);
    setenv("VAULT_TRANSIT_PKCS11_DEBUG", env, 1);
    vtp_log_reset();

    parse_fails("[vault]\n; comment\n  tokne = s.TOPSECRET\n", CKR_ARGUMENTS_BAD);
    f = fopen(path, "r");
    assert_non_null(f);
    n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    assert_non_null(strstr(buf, "<string>:3: unknown key 'tokne' in [vault]"));
    assert_null(strstr(buf, "TOPSECRET"));

    unsetenv("VAULT_TRANSIT_PKCS11_DEBUG");
    vtp_log_reset();
    unlink(path);
    rmdir(dir);
}

static void test_indented_is_not_continuation(void **state)
{
    struct vtp_config *cfg;

    (void)state;
    /* libinih would take an indented line for the continuation of the previous value. */
    cfg = parse_ok("[vault]\n  address = https://a:8200\n  namespace = ns\n", false);
    assert_string_equal(cfg->vault.addresses[0], "https://a:8200");
    assert_string_equal(cfg->vault.namespace_, "ns");
    vtp_config_free(cfg);
}

static void test_durations(void **state)
{
    long ms = -1;
    bool b = false;

    (void)state;
    assert_true(vtp_config_parse_duration_ms("30", &ms));
    assert_int_equal(ms, 30000);
    assert_true(vtp_config_parse_duration_ms("30s", &ms));
    assert_int_equal(ms, 30000);
    assert_true(vtp_config_parse_duration_ms("500ms", &ms));
    assert_int_equal(ms, 500);
    assert_true(vtp_config_parse_duration_ms("2m", &ms));
    assert_int_equal(ms, 120000);
    assert_true(vtp_config_parse_duration_ms("1h", &ms));
    assert_int_equal(ms, 3600000);
    assert_true(vtp_config_parse_duration_ms("0", &ms));
    assert_int_equal(ms, 0);

    ms = 7;
    assert_false(vtp_config_parse_duration_ms("", &ms));
    assert_false(vtp_config_parse_duration_ms("-1", &ms));
    assert_false(vtp_config_parse_duration_ms("+1", &ms));
    assert_false(vtp_config_parse_duration_ms("1.5s", &ms));
    assert_false(vtp_config_parse_duration_ms("5x", &ms));
    assert_false(vtp_config_parse_duration_ms("5 s", &ms));
    assert_false(vtp_config_parse_duration_ms("s", &ms));
    assert_false(vtp_config_parse_duration_ms("10d", &ms));
    assert_false(vtp_config_parse_duration_ms("99999999999999999999", &ms));
    assert_false(vtp_config_parse_duration_ms("9223372036854775807h", &ms));
    assert_int_equal(ms, 7);

    parse_fails("[vault]\ntimeout = 0\n", CKR_ARGUMENTS_BAD);
    parse_fails("[vault]\ntimeout = 0ms\n", CKR_ARGUMENTS_BAD);
    parse_fails("[vault]\ntimeout = -5\n", CKR_ARGUMENTS_BAD);
    parse_fails("[vault]\ntimeout = 5 seconds\n", CKR_ARGUMENTS_BAD);
    parse_fails("[vault]\ntimeout =\n", CKR_ARGUMENTS_BAD);
    parse_fails("[vault]\nconnect_timeout = 0\n", CKR_ARGUMENTS_BAD);
    parse_fails("[slot a]\ncache_ttl = soon\n", CKR_ARGUMENTS_BAD);
    parse_fails("[slot a]\ncache_ttl = 0s\n", CKR_ARGUMENTS_BAD);

    assert_true(vtp_config_parse_bool("Yes", &b));
    assert_true(b);
    assert_true(vtp_config_parse_bool("off", &b));
    assert_false(b);
    assert_true(vtp_config_parse_bool("TRUE", &b));
    assert_true(b);
    assert_true(vtp_config_parse_bool("0", &b));
    assert_false(b);
    assert_false(vtp_config_parse_bool("", &b));
    assert_false(vtp_config_parse_bool("2", &b));
}

static void test_values_validated(void **state)
{
    struct vtp_config *cfg;
    char text[512];
    size_t i;

    (void)state;
    /* Label: 32 characters at most. */
    cfg = parse_ok("[slot a]\nlabel = 01234567890123456789012345678901\n", false);
    assert_string_equal(cfg->slots[0].label, "01234567890123456789012345678901");
    vtp_config_free(cfg);
    parse_fails("[slot a]\nlabel = 012345678901234567890123456789012\n", CKR_ARGUMENTS_BAD);
    parse_fails("[slot a]\nlabel =\n", CKR_ARGUMENTS_BAD);
    /* Default labels: one per slot, even on one mount (pkcs11:token= must tell them apart);
     * a slot name too long for "Vault Transit NAME" is the label alone, never cut. */
    cfg = parse_ok("[slot a]\nmount = a-rather-long-transit-mount\n"
                   "[slot b]\nmount = a-rather-long-transit-mount\n"
                   "[slot transit]\n"
                   "[slot name-of-eighteen-c]\n"
                   "[slot name-of-nineteen-ch]\n"
                   "[slot slot-name-of-exactly-thirty-two-]\n",
                   false);
    assert_int_equal(cfg->n_slots, 6);
    assert_string_equal(cfg->slots[0].label, "Vault Transit a");
    assert_string_equal(cfg->slots[1].label, "Vault Transit b");
    assert_string_equal(cfg->slots[2].label, "Vault Transit transit");
    assert_string_equal(cfg->slots[3].label, "Vault Transit name-of-eighteen-c");
    assert_string_equal(cfg->slots[4].label, "name-of-nineteen-ch");
    assert_string_equal(cfg->slots[5].label, "slot-name-of-exactly-thirty-two-");
    vtp_config_free(cfg);

    /* A batch must fit OpenBao's default JSON limit of 1000 strings: 240 items at most. */
    cfg = parse_ok("[module]\nbatch_max_items = 240\n", false);
    assert_int_equal(cfg->batch_max_items, 240);
    vtp_config_free(cfg);
    parse_fails("[module]\nbatch_max_items = 241\n", CKR_ARGUMENTS_BAD);
    parse_fails("[module]\nbatch_max_items = 0\n", CKR_ARGUMENTS_BAD);
    cfg = parse_ok("[module]\nbatch_rsa = no\nbatch_concurrency = 8\n", false);
    assert_false(cfg->batch_rsa);
    assert_int_equal(cfg->batch_concurrency, 8);
    vtp_config_free(cfg);
    parse_fails("[module]\nbatch_rsa = sometimes\n", CKR_ARGUMENTS_BAD);

    parse_fails("[slot a]\nmount = a b\n", CKR_ARGUMENTS_BAD);
    parse_fails("[slot a]\nmount = ../sys\n", CKR_ARGUMENTS_BAD);
    parse_fails("[slot a]\nmount = a//b\n", CKR_ARGUMENTS_BAD);
    parse_fails("[slot a]\nmount = /transit\n", CKR_ARGUMENTS_BAD);
    parse_fails("[slot a]\nmount =\n", CKR_ARGUMENTS_BAD);
    parse_fails("[slot a]\nmount = tr?nsit\n", CKR_ARGUMENTS_BAD);
    parse_fails("[slot a]\nkey_prefix = a/b\n", CKR_ARGUMENTS_BAD);
    parse_fails("[slot a]\nkv_prefix = a/../b\n", CKR_ARGUMENTS_BAD);
    parse_fails("[slot a]\nnamespace = a b\n", CKR_ARGUMENTS_BAD);
    parse_fails("[vault]\nnamespace = ns%\n", CKR_ARGUMENTS_BAD);
    parse_fails("[vault]\ntls_server_name = a b\n", CKR_ARGUMENTS_BAD);

    cfg = parse_ok("[slot a]\nkey_prefix = team@a.b-\nkv_mount =\nkv_prefix =\n", false);
    assert_string_equal(cfg->slots[0].key_prefix, "team@a.b-");
    assert_null(cfg->slots[0].kv_mount);
    assert_false(cfg->slots[0].kv_auto);
    assert_string_equal(cfg->slots[0].kv_prefix, "");
    vtp_config_free(cfg);
    cfg = parse_ok("[slot a]\nkv_mount = auto\n[slot b]\nkv_mount = kv\n", false);
    assert_string_equal(cfg->slots[0].kv_mount, "secret");
    assert_true(cfg->slots[0].kv_auto);
    assert_string_equal(cfg->slots[1].kv_mount, "kv");
    assert_false(cfg->slots[1].kv_auto);
    vtp_config_free(cfg);

    /* Addresses: URLs only, at most VTP_MAX_ADDRESSES. */
    parse_fails("[vault]\naddress = vault:8200\n", CKR_ARGUMENTS_BAD);
    parse_fails("[vault]\naddress = https://a:8200,,https://b:8200\n", CKR_ARGUMENTS_BAD);
    parse_fails("[vault]\naddress = https://\n", CKR_ARGUMENTS_BAD);
    parse_fails("[vault]\naddress =\n", CKR_ARGUMENTS_BAD);
    parse_fails("[vault]\naddress = ftp://a\n", CKR_ARGUMENTS_BAD);
    strcpy(text, "[vault]\naddress = https://a0:8200");
    for (i = 1; i < VTP_MAX_ADDRESSES; i++)
        sprintf(text + strlen(text), ",https://a%zu", i);
    strcat(text, "\n");
    cfg = parse_ok(text, false);
    assert_int_equal(cfg->vault.n_addresses, VTP_MAX_ADDRESSES);
    assert_string_equal(cfg->vault.addresses[VTP_MAX_ADDRESSES - 1], "https://a7");
    vtp_config_free(cfg);
    strcpy(text + strlen(text) - 1, ",https://one-more\n");
    parse_fails(text, CKR_ARGUMENTS_BAD);

    /* Lines too long for libinih are refused rather than cut. */
    memset(text, 0, sizeof(text));
    strcpy(text, "[slot a]\nkv_prefix = ");
    memset(text + strlen(text), 'p', 300);
    strcat(text, "\n");
    parse_fails(text, CKR_ARGUMENTS_BAD);

    /* Inline comments need a blank before ';'. */
    cfg = parse_ok("[module]\nlog_errors = stderr ; to the terminal\n", false);
    assert_string_equal(cfg->log_errors, "stderr");
    vtp_config_free(cfg);
    cfg = parse_ok("[module]\nlog_errors = none\n", false);
    assert_null(cfg->log_errors);
    vtp_config_free(cfg);
}

static void test_locate(void **state)
{
    char *p;

    (void)state;
    p = vtp_config_locate(NULL);
    assert_non_null(p);
    assert_string_equal(p, VTP_DEFAULT_CONFIG_PATH);
    free(p);
    assert_non_null(
        strstr(VTP_DEFAULT_CONFIG_PATH, "/vault-transit-pkcs11/vault-transit-pkcs11.conf"));

    setenv("VAULT_TRANSIT_PKCS11_CONFIG", "/from/env.conf", 1);
    p = vtp_config_locate(NULL);
    assert_string_equal(p, "/from/env.conf");
    free(p);
    p = vtp_config_locate("");
    assert_string_equal(p, "/from/env.conf");
    free(p);
    p = vtp_config_locate("something else");
    assert_string_equal(p, "/from/env.conf");
    free(p);

    /* pReserved wins. */
    p = vtp_config_locate("config=/from/reserved.conf");
    assert_string_equal(p, "/from/reserved.conf");
    free(p);
    p = vtp_config_locate("foo=bar config=/a.conf other");
    assert_string_equal(p, "/a.conf");
    free(p);
    p = vtp_config_locate("foo,config=/b.conf,bar");
    assert_string_equal(p, "/b.conf");
    free(p);
    p = vtp_config_locate("xconfig=/no.conf config=");
    assert_string_equal(p, "/from/env.conf");
    free(p);

    setenv("VAULT_TRANSIT_PKCS11_CONFIG", "", 1);
    p = vtp_config_locate("xconfig=/no.conf");
    assert_string_equal(p, VTP_DEFAULT_CONFIG_PATH);
    free(p);
    unsetenv("VAULT_TRANSIT_PKCS11_CONFIG");
}

static void write_file(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(path, mode), 0);
}

static void test_load_file(void **state)
{
    char dir[] = "/tmp/vtp-test-cfg-XXXXXX", path[64], missing[64];
    struct vtp_config *cfg = NULL;

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/vtp.conf", dir);
    snprintf(missing, sizeof(missing), "%s/missing.conf", dir);

    /* A missing file: defaults and environment. */
    setenv("VAULT_ADDR", "http://127.0.0.1:18200", 1);
    assert_int_equal(vtp_config_load(missing, &cfg), CKR_OK);
    assert_null(cfg->path);
    assert_string_equal(cfg->vault.addresses[0], "http://127.0.0.1:18200");
    assert_int_equal(cfg->n_slots, 1);
    vtp_config_free(cfg);
    assert_int_equal(vtp_config_load(NULL, &cfg), CKR_OK);
    vtp_config_free(cfg);
    unsetenv("VAULT_ADDR");

    /* A file; the environment is applied on top. */
    write_file(path, "[vault]\naddress = https://file:8200\n[slot x]\nmount = t\n", 0644);
    assert_int_equal(vtp_config_load(path, &cfg), CKR_OK);
    assert_string_equal(cfg->path, path);
    assert_string_equal(cfg->vault.addresses[0], "https://file:8200");
    assert_string_equal(cfg->slots[0].name, "x");
    vtp_config_free(cfg);
    setenv("VAULT_ADDR", "https://env:8200", 1);
    assert_int_equal(vtp_config_load(path, &cfg), CKR_OK);
    assert_string_equal(cfg->vault.addresses[0], "https://env:8200");
    vtp_config_free(cfg);
    unsetenv("VAULT_ADDR");

    /* Group- or world-writable is fine without secrets... */
    write_file(path, "[vault]\naddress = https://file:8200\n", 0666);
    assert_int_equal(vtp_config_load(path, &cfg), CKR_OK);
    vtp_config_free(cfg);

    /* ...but refused with a token or a secret_id in it. */
    write_file(path, "[vault]\ntoken = s.secret\n", 0620);
    cfg = NULL;
    assert_int_equal(vtp_config_load(path, &cfg), CKR_GENERAL_ERROR);
    assert_null(cfg);
    write_file(path, "[vault]\nauth = approle\nrole_id = r\nsecret_id = s\n", 0602);
    assert_int_equal(vtp_config_load(path, &cfg), CKR_GENERAL_ERROR);
    write_file(path, "[vault]\ntoken = s.secret\n", 0600);
    assert_int_equal(vtp_config_load(path, &cfg), CKR_OK);
    assert_string_equal(cfg->vault.token, "s.secret");
    vtp_config_free(cfg);

    /* The same rule for token_file, secret_id_file and jwt_file (src/vault/auth.c). */
    assert_int_equal(vtp_config_check_secret_mode(path, S_IFREG | 0600, "a token"), CKR_OK);
    assert_int_equal(vtp_config_check_secret_mode(path, S_IFREG | 0644, "a token"), CKR_OK);
    assert_int_equal(vtp_config_check_secret_mode(path, S_IFREG | 0620, "a token"),
                     CKR_GENERAL_ERROR);
    assert_int_equal(vtp_config_check_secret_mode(path, S_IFREG | 0602, "a token"),
                     CKR_GENERAL_ERROR);

    /* Errors in a file. */
    write_file(path, "[vault]\ntimeout = never\n", 0600);
    cfg = NULL;
    assert_int_equal(vtp_config_load(path, &cfg), CKR_ARGUMENTS_BAD);
    assert_null(cfg);
    /* An existing path that cannot be read as a file. */
    assert_int_equal(vtp_config_load(dir, &cfg), CKR_GENERAL_ERROR);
    if (geteuid() != 0) {
        write_file(path, "[vault]\n", 0000);
        assert_int_equal(vtp_config_load(path, &cfg), CKR_GENERAL_ERROR);
    }
    assert_null(cfg);

    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_defaults, clear_env),
        cmocka_unit_test_setup(test_full_file, clear_env),
        cmocka_unit_test_setup(test_auth_methods, clear_env),
        cmocka_unit_test_setup(test_env_override, clear_env),
        cmocka_unit_test_setup(test_multiple_slots, clear_env),
        cmocka_unit_test_setup(test_unknown_rejected, clear_env),
        cmocka_unit_test_setup(test_error_log_line, clear_env),
        cmocka_unit_test_setup(test_indented_is_not_continuation, clear_env),
        cmocka_unit_test_setup(test_durations, clear_env),
        cmocka_unit_test_setup(test_values_validated, clear_env),
        cmocka_unit_test_setup(test_locate, clear_env),
        cmocka_unit_test_setup(test_load_file, clear_env),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
