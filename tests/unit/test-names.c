/* test-names.c - log.c's names of CKR_, CKM_ and CKA_ values: sorted by value (bsearch depends
 * on it), and complete against the pkcs11.h the module is built with (every value there has a
 * name, and a name there that the table holds has that header's value). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common.h"
#include "log.h"

static void check_sorted(char kind)
{
    size_t n = 0;
    const struct vtp_name *t = vtp_name_table(kind, &n);

    assert_non_null(t);
    assert_true(n > 10);
    for (size_t i = 1; i < n; i++) {
        if (t[i - 1].value >= t[i].value)
            fail_msg("table %c: %s (0x%lx) then %s (0x%lx): not strictly increasing", kind,
                     t[i - 1].name, t[i - 1].value, t[i].name, t[i].value);
    }
}

static void test_sorted(void **state)
{
    (void)state;
    check_sorted('r');
    check_sorted('m');
    check_sorted('a');
}

/* "#define CKx_NAME <value>" with value "(123UL)", "(0x1aUL)", "(CKF_ARRAY_ATTRIBUTE | 0x211UL)"
 * or "((unsigned long) (1UL << 31))" */
static int parse_define(const char *line, char *name, size_t name_len, CK_ULONG *value)
{
    const char *p = line + strlen("#define ");
    size_t k = 0;
    unsigned long v, shift;

    while (*p && *p != ' ' && *p != '\t' && k + 1 < name_len)
        name[k++] = *p++;
    name[k] = '\0';
    while (*p == ' ' || *p == '\t')
        p++;
    if (sscanf(p, "((unsigned long) (%luUL << %lu))", &v, &shift) == 2) {
        *value = v << shift;
        return 1;
    }
    if (sscanf(p, "(CKF_ARRAY_ATTRIBUTE | %liUL)", (long *)&v) == 1) {
        *value = CKF_ARRAY_ATTRIBUTE | v;
        return 1;
    }
    if (sscanf(p, "(%liUL)", (long *)&v) == 1 || sscanf(p, "(%li)", (long *)&v) == 1) {
        *value = v;
        return 1;
    }
    return 0;
}

static void test_complete(void **state)
{
    FILE *f = fopen(VTP_P11KIT_HEADER, "r");
    char line[512], name[128];
    size_t checked = 0;

    (void)state;
    if (f == NULL)
        fail_msg("cannot read %s", VTP_P11KIT_HEADER);
    while (fgets(line, sizeof(line), f) != NULL) {
        CK_ULONG value = 0;
        char kind;
        const char *have;
        size_t n = 0;
        const struct vtp_name *t;

        if (strncmp(line, "#define CKR_", 12) == 0)
            kind = 'r';
        else if (strncmp(line, "#define CKM_", 12) == 0)
            kind = 'm';
        else if (strncmp(line, "#define CKA_", 12) == 0)
            kind = 'a';
        else
            continue;
        if (!parse_define(line, name, sizeof(name), &value))
            fail_msg("%s: cannot read the value of: %s", VTP_P11KIT_HEADER, line);
        have = kind == 'r' ? vtp_rv_name(value)
               : kind == 'm' ? vtp_mech_name(value)
                             : vtp_attr_name(value);
        if (strcmp(have, "unknown") == 0 || strncmp(have, "CKR_0x", 6) == 0)
            fail_msg("%s = 0x%lx has no name in log.c", name, value);
        t = vtp_name_table(kind, &n);
        for (size_t i = 0; i < n; i++)
            if (strcmp(t[i].name, name) == 0 && t[i].value != value)
                fail_msg("log.c names 0x%lx %s; the header says 0x%lx", t[i].value, name, value);
        checked++;
    }
    fclose(f);
    assert_true(checked > 400);
    print_message("%zu CKR_/CKM_/CKA_ values of %s have names\n", checked, VTP_P11KIT_HEADER);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sorted),
        cmocka_unit_test(test_complete),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
