/* test-scale.c - searches by CKA_LABEL / CKA_ID cost a constant number of requests however
 * many keys the slot has, and what memory a loaded key takes.
 *
 * Makes VTP_SCALE_KEYS (default 300) ecdsa-p256 keys directly in Transit under the run's key
 * prefix (as another tool would), then counts the module's HTTP requests for searches by label
 * and by id of keys at the start, middle and end of the list, and for a search that must load
 * every key. tests/bench/scale.sh runs it with 10,000 keys. Runs under tests/lib/run-test.
 */
#include "config.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <curl/curl.h>

#include "p11test.h"
#include "module.h"
#include "vault/http.h"

static CK_FUNCTION_LIST_PTR f;

static size_t discard(char *p, size_t size, size_t n, void *u)
{
    (void)p;
    (void)u;
    return size * n;
}

struct maker {
    int from, to, ok;
    const char *prefix, *mount;
};

/* Creates keys prefix k<from>..k<to-1> over one keep-alive connection. */
static void *make_keys(void *arg)
{
    struct maker *m = arg;
    const char *addr = getenv("VAULT_ADDR"), *token = getenv("VAULT_TOKEN");
    char url[1024], hdr[1024];
    struct curl_slist *h = NULL;
    CURL *c = curl_easy_init();

    snprintf(hdr, sizeof(hdr), "X-Vault-Token: %s", token);
    h = curl_slist_append(h, hdr);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, "{\"type\":\"ecdsa-p256\"}");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    for (int i = m->from; i < m->to; i++) {
        long status = 0;
        snprintf(url, sizeof(url), "%s/v1/%s/keys/%sk%d", addr, m->mount, m->prefix, i);
        curl_easy_setopt(c, CURLOPT_URL, url);
        if (curl_easy_perform(c) == CURLE_OK &&
            curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status) == CURLE_OK &&
            (status == 200 || status == 204))
            m->ok++;
    }
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return NULL;
}

static unsigned long requests(void)
{
    struct vtp_http_stats st;
    return vtp_module_http_stats(&st) == CKR_OK ? st.requests : 0;
}

static long rss_kb(void)
{
    FILE *fp = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;

    while (fp != NULL && fgets(line, sizeof(line), fp) != NULL)
        if (sscanf(line, "VmRSS: %ld", &kb) == 1)
            break;
    if (fp != NULL)
        fclose(fp);
    return kb;
}

static CK_ULONG count_found(CK_SESSION_HANDLE s, CK_ATTRIBUTE *t, CK_ULONG n)
{
    CK_OBJECT_HANDLE h[64];
    CK_ULONG got = 0, total = 0;

    CHECK_RV(f->C_FindObjectsInit(s, t, n), CKR_OK);
    do {
        CHECK_RV(f->C_FindObjects(s, h, 64, &got), CKR_OK);
        total += got;
    } while (got > 0);
    CHECK_RV(f->C_FindObjectsFinal(s), CKR_OK);
    return total;
}

int main(void)
{
    const char *prefix = getenv("VTP_TEST_PREFIX");
    const char *mount = getenv("VTP_TEST_MOUNT") ? getenv("VTP_TEST_MOUNT") : "transit";
    int n = getenv("VTP_SCALE_KEYS") ? atoi(getenv("VTP_SCALE_KEYS")) : 300;
    struct maker mk[4];
    pthread_t th[4];
    CK_SESSION_HANDLE s;
    CK_SLOT_ID slot;
    CK_ULONG ns = 1;
    int made = 0;
    unsigned long worst = 0;
    long rss0, rss1;

    if (prefix == NULL || getenv("VAULT_ADDR") == NULL || n < 10) {
        fprintf(stderr, "run under tests/lib/run-test (VTP_TEST_PREFIX, VAULT_ADDR)\n");
        return 99;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    for (int i = 0; i < 4; i++) {
        mk[i] = (struct maker){i * n / 4, (i + 1) * n / 4, 0, prefix, mount};
        pthread_create(&th[i], NULL, make_keys, &mk[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        made += mk[i].ok;
    }
    REQUIRE_RV(made == n ? CKR_OK : CKR_DEVICE_ERROR, CKR_OK);
    printf("made %d keys under %s\n", n, prefix);

    REQUIRE_RV(C_GetFunctionList(&f), CKR_OK);
    REQUIRE_RV(f->C_Initialize(NULL), CKR_OK);
    REQUIRE_RV(f->C_GetSlotList(CK_TRUE, &slot, &ns), CKR_OK);
    REQUIRE_RV(f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s), CKR_OK);

    /* searches by label and by id (a key without metadata: label = name without prefix,
     * id = the same bytes) at the start, middle and end of the list */
    for (int which = 0; which < 3; which++) {
        char label[32];
        int k = which == 0 ? 0 : which == 1 ? n / 2 : n - 1;
        CK_OBJECT_CLASS pc = CKO_PRIVATE_KEY;
        unsigned long r0, r1, r2;
        snprintf(label, sizeof(label), "k%d", k);
        CK_ATTRIBUTE bl[] = {{CKA_LABEL, label, strlen(label)}};
        CK_ATTRIBUTE bi[] = {{CKA_CLASS, &pc, sizeof(pc)}, {CKA_ID, label, strlen(label)}};
        r0 = requests();
        CHECK(count_found(s, bl, 1) == 2, "key %s found by label", label);
        r1 = requests();
        CHECK(count_found(s, bi, 2) == 1, "key %s found by id", label);
        r2 = requests();
        CHECK(count_found(s, bl, 1) == 2, "key %s found by label again", label);
        CHECK(requests() == r2, "a repeated search sent %lu requests", requests() - r2);
        printf("search by label k%d: %lu requests; by id: %lu\n", k, r1 - r0, r2 - r1);
        if (r1 - r0 > worst)
            worst = r1 - r0;
        if (r2 - r1 > worst)
            worst = r2 - r1;
    }
    /* the first search also lists the keys: a constant either way, never one per key */
    CHECK(worst <= 8, "a search by label or id took %lu requests with %d keys", worst, n);

    {
        CK_OBJECT_CLASS pc = CKO_PUBLIC_KEY;
        CK_ATTRIBUTE all[] = {{CKA_CLASS, &pc, sizeof(pc)}};
        unsigned long r0 = requests();
        CK_ULONG found;
        rss0 = rss_kb();
        found = count_found(s, all, 1);
        rss1 = rss_kb();
        CHECK(found == (CK_ULONG)n, "a search by class found %lu of %d public keys", found, n);
        printf("search by class: %lu objects, %lu requests; RSS %ld -> %ld kB: %.0f bytes per "
               "key\n",
               found, requests() - r0, rss0, rss1, (rss1 - rss0) * 1024.0 / n);
    }
    CHECK_RV(f->C_CloseSession(s), CKR_OK);
    CHECK_RV(f->C_Finalize(NULL), CKR_OK);
    curl_global_cleanup();
    return p11t_summary("test-scale");
}
