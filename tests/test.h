/*
 * test.h: the assertion macros every test program uses. Each failed check prints file, line, the expression and
 * both values, and counts; a test program exits non-zero if any check failed. Tests that need ../shared data call
 * test_shared_path() and skip (exit code 77, which ctest reports as skipped) when it is absent.
 */
#ifndef BANTER_TEST_H
#define BANTER_TEST_H

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static _Atomic int test_n_checks, test_n_failed; /* atomic: tests may check from several threads */

#define CHECK(cond)                                                                                               \
    do {                                                                                                          \
        test_n_checks++;                                                                                          \
        if (!(cond)) {                                                                                            \
            test_n_failed++;                                                                                      \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);                              \
        }                                                                                                         \
    } while (0)

#define CHECK_INT_EQ(a, b)                                                                                        \
    do {                                                                                                          \
        long long va_ = (long long)(a), vb_ = (long long)(b);                                                     \
        test_n_checks++;                                                                                          \
        if (va_ != vb_) {                                                                                         \
            test_n_failed++;                                                                                      \
            fprintf(stderr, "%s:%d: CHECK failed: %s == %s (%lld vs %lld)\n", __FILE__, __LINE__, #a, #b, va_,    \
                    vb_);                                                                                         \
        }                                                                                                         \
    } while (0)

#define CHECK_STR_EQ(a, b)                                                                                        \
    do {                                                                                                          \
        const char *sa_ = (a), *sb_ = (b);                                                                        \
        test_n_checks++;                                                                                          \
        if (!sa_ || !sb_ || strcmp(sa_, sb_)) {                                                                   \
            test_n_failed++;                                                                                      \
            fprintf(stderr, "%s:%d: CHECK failed: %s == %s (\"%s\" vs \"%s\")\n", __FILE__, __LINE__, #a, #b,    \
                    sa_ ? sa_ : "(null)", sb_ ? sb_ : "(null)");                                                  \
        }                                                                                                         \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                                                     \
    do {                                                                                                          \
        double va_ = (double)(a), vb_ = (double)(b), vt_ = (double)(tol);                                         \
        test_n_checks++;                                                                                          \
        if (!(fabs(va_ - vb_) <= vt_)) {                                                                          \
            test_n_failed++;                                                                                      \
            fprintf(stderr, "%s:%d: CHECK failed: |%s - %s| <= %s (%.9g vs %.9g, diff %.3g)\n", __FILE__,         \
                    __LINE__, #a, #b, #tol, va_, vb_, fabs(va_ - vb_));                                           \
        }                                                                                                         \
    } while (0)

/* Returns "../shared/REL" if it exists, else prints a skip notice and returns NULL. */
static inline const char *test_shared_path(const char *rel, char *buf, size_t len)
{
    snprintf(buf, len, "../shared/%s", rel);
    if (access(buf, R_OK) == 0) return buf;
    fprintf(stderr, "SKIP: %s not found (clone the project beside ../shared to run this test)\n", buf);
    return NULL;
}

#define TEST_SKIP_CODE 77

static inline int test_finish(const char *name)
{
    printf("%s: %d checks, %d failed\n", name, test_n_checks, test_n_failed);
    return test_n_failed ? 1 : 0;
}

#endif
