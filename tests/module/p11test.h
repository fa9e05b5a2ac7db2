/* p11test.h - tiny helpers for module tests that drive the module through its function list. */
#ifndef VTP_P11TEST_H
#define VTP_P11TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vtp-pkcs11.h"

extern const char *vtp_rv_name(CK_RV rv);

static int p11t_failures;
static int p11t_checks;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        p11t_checks++;                                                                             \
        if (!(cond)) {                                                                             \
            p11t_failures++;                                                                       \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                        \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
        }                                                                                          \
    } while (0)

#define CHECK_RV(expr, want)                                                                       \
    do {                                                                                           \
        CK_RV got_ = (expr);                                                                       \
        CHECK(got_ == (CK_RV)(want), "%s returned %s, expected %s", #expr, vtp_rv_name(got_),      \
              vtp_rv_name(want));                                                                  \
    } while (0)

/* Stops the test when a step everything after it depends on fails. */
#define REQUIRE_RV(expr, want)                                                                     \
    do {                                                                                           \
        CK_RV got_ = (expr);                                                                       \
        if (got_ != (CK_RV)(want)) {                                                               \
            fprintf(stderr, "FATAL %s:%d: %s returned %s, expected %s\n", __FILE__, __LINE__,      \
                    #expr, vtp_rv_name(got_), vtp_rv_name(want));                                  \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static inline int p11t_summary(const char *name)
{
    printf("%s: %d checks, %d failed\n", name, p11t_checks, p11t_failures);
    return p11t_failures ? 1 : 0;
}

#endif /* VTP_P11TEST_H */
