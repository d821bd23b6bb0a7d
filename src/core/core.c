/*
 * core.c: logging, asserts, clocks, allocation with fault injection, CPU feature detection.
 *
 * Logging: one process-wide callback (banter_set_log). Lines are formatted into a stack buffer and handed over
 * whole, so concurrent loggers never interleave inside a line.
 */
#include "core/core.h"

#include <cpuid.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static banter_log_fn g_log_fn;
static banter_log_level g_log_level = BANTER_LOG_INFO;
static void *g_log_user;

BANTER_API void banter_set_log(banter_log_fn fn, banter_log_level max_level, void *user)
{
    g_log_fn = fn;
    g_log_level = max_level;
    g_log_user = user;
}

void core_log(banter_log_level level, const char *fmt, ...)
{
    if (!g_log_fn || level > g_log_level) return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    g_log_fn(level, line, g_log_user);
}

_Noreturn void core_assert_fail(const char *file, int line, const char *expr)
{
    /* The one place the library writes to stderr: it is about to abort on its own bug. */
    fprintf(stderr, "banter: internal error at %s:%d: assertion failed: %s\n", file, line, expr);
    fflush(stderr);
    abort();
}

void core_errf(char *err, size_t err_len, const char *fmt, ...)
{
    if (!err || err_len == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
}

int64_t core_time_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

double core_time_ms(void)
{
    return (double)core_time_ns() / 1e6;
}

double core_cpu_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int core_n_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static long g_fail_after = -1;

static int alloc_should_fail(void)
{
    if (g_fail_after < 0) return 0;
    if (g_fail_after == 0) return 1;
    g_fail_after--;
    return 0;
}

void core_fail_alloc_after(long n)
{
    g_fail_after = n;
}

void *core_malloc(size_t n)
{
    if (alloc_should_fail()) return NULL;
    return malloc(n ? n : 1);
}

void *core_calloc(size_t n, size_t size)
{
    if (alloc_should_fail()) return NULL;
    return calloc(n ? n : 1, size ? size : 1);
}

void *core_realloc(void *p, size_t n)
{
    if (alloc_should_fail()) return NULL;
    return realloc(p, n ? n : 1);
}

void core_free(void *p)
{
    free(p);
}

void *core_alloc_aligned(size_t n)
{
    if (alloc_should_fail()) return NULL;
    void *p = NULL;
    size_t rounded = (n + 63) & ~(size_t)63;
    if (rounded < n) return NULL;
    if (posix_memalign(&p, 64, rounded ? rounded : 64) != 0) return NULL;
    return p;
}

void core_free_aligned(void *p)
{
    free(p);
}

char *core_strndup(const char *s, size_t n)
{
    char *d = core_malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

char *core_strdup(const char *s)
{
    return core_strndup(s, strlen(s));
}

static _Atomic int g_cpu_level = -1;

static enum core_cpu_level detect_cpu(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return CORE_CPU_SCALAR;
    int fma = (c >> 12) & 1, f16c = (c >> 29) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
    if (!osxsave || !avx) return CORE_CPU_SCALAR;
    unsigned xlo, xhi;
    __asm__ volatile("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0));
    int ymm_ok = (xlo & 0x6) == 0x6;
    int zmm_ok = (xlo & 0xe6) == 0xe6;
    if (!ymm_ok) return CORE_CPU_SCALAR;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return CORE_CPU_SCALAR;
    int avx2 = (b >> 5) & 1;
    int avx512f = (b >> 16) & 1, avx512dq = (b >> 17) & 1, avx512bw = (b >> 30) & 1, avx512vl = (b >> 31) & 1;
    int vnni = (c >> 11) & 1;
    if (!(avx2 && fma && f16c)) return CORE_CPU_SCALAR;
    if (zmm_ok && avx512f && avx512dq && avx512bw && avx512vl && vnni) return CORE_CPU_AVX512;
    return CORE_CPU_AVX2;
}

enum core_cpu_level core_cpu_level(void)
{
    int lvl = atomic_load_explicit(&g_cpu_level, memory_order_acquire);
    if (lvl >= 0) return (enum core_cpu_level)lvl;
    lvl = detect_cpu();
    const char *env = getenv("BANTER_CPU");
    if (env) {
        int want = lvl;
        if (!strcmp(env, "scalar")) want = CORE_CPU_SCALAR;
        else if (!strcmp(env, "avx2")) want = CORE_CPU_AVX2;
        else if (!strcmp(env, "avx512")) want = CORE_CPU_AVX512;
        if (want < lvl) lvl = want;
    }
    atomic_store_explicit(&g_cpu_level, lvl, memory_order_release);
    return (enum core_cpu_level)lvl;
}

void core_cpu_force(enum core_cpu_level level)
{
    int hw = detect_cpu();
    atomic_store_explicit(&g_cpu_level, (int)level < hw ? (int)level : hw, memory_order_release);
}

BANTER_API const char *banter_cpu_features(void)
{
    switch (core_cpu_level()) {
    case CORE_CPU_AVX512: return "avx512-vnni";
    case CORE_CPU_AVX2: return "avx2-fma";
    default: return "scalar";
    }
}

BANTER_API const char *banter_status_str(banter_status s)
{
    switch (s) {
    case BANTER_OK: return "ok";
    case BANTER_ERR_INVALID_ARG: return "invalid argument";
    case BANTER_ERR_NOMEM: return "out of memory";
    case BANTER_ERR_IO: return "I/O error";
    case BANTER_ERR_FORMAT: return "bad file format";
    case BANTER_ERR_UNSUPPORTED: return "unsupported";
    case BANTER_ERR_CONTEXT_FULL: return "context full";
    case BANTER_ERR_CANCELLED: return "cancelled";
    case BANTER_ERR_NOT_FOUND: return "not found";
    case BANTER_ERR_INTERNAL: return "internal error";
    case BANTER_ERR_BUSY: return "busy";
    }
    return "unknown status";
}

BANTER_API const char *banter_version(void)
{
    return "0.1.0";
}
