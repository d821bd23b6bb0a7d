/*
 * core.h: the small things every module uses: an always-on assert, logging through the public callback,
 * clocks, checked size arithmetic, aligned allocation and error-message formatting.
 *
 * Bugs in our own code hit BANTER_ASSERT, which names file and line and aborts even in release builds: a
 * corrupted engine must not go on serving. Bad input never reaches an assert; it returns a banter_status with a
 * message (core_errf) instead.
 */
#ifndef BANTER_CORE_H
#define BANTER_CORE_H

#include "banter.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define BANTER_ASSERT(x)                                                                                          \
    do {                                                                                                          \
        if (!(x)) core_assert_fail(__FILE__, __LINE__, #x);                                                       \
    } while (0)

_Noreturn void core_assert_fail(const char *file, int line, const char *expr);

void core_log(banter_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define core_error(...) core_log(BANTER_LOG_ERROR, __VA_ARGS__)
#define core_warn(...) core_log(BANTER_LOG_WARN, __VA_ARGS__)
#define core_info(...) core_log(BANTER_LOG_INFO, __VA_ARGS__)
#define core_debug(...) core_log(BANTER_LOG_DEBUG, __VA_ARGS__)

/* Writes a formatted message into err (err_len bytes, NUL-terminated); tolerates err == NULL. */
void core_errf(char *err, size_t err_len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Monotonic clock. */
int64_t core_time_ns(void);
double core_time_ms(void);

/* CPU time of the whole process, in ms. */
double core_cpu_ms(void);

/* Number of online CPU cores (at least 1). */
int core_n_cpus(void);

/* Checked arithmetic: return 0 and store the result, or 1 on overflow. */
static inline int core_mul_overflow(size_t a, size_t b, size_t *out)
{
    return __builtin_mul_overflow(a, b, out);
}
static inline int core_add_overflow(size_t a, size_t b, size_t *out)
{
    return __builtin_add_overflow(a, b, out);
}

/* Allocations go through these so that tests can inject failures (core_fail_alloc_after). Aligned memory is
 * aligned to 64 bytes and freed with core_free_aligned. */
void *core_malloc(size_t n);
void *core_calloc(size_t n, size_t size);
void *core_realloc(void *p, size_t n);
void core_free(void *p);
void *core_alloc_aligned(size_t n);
void core_free_aligned(void *p);

/* Test hook: after `n` more successful allocations, every allocation fails (n < 0 disables). Not thread-safe;
 * for single-threaded fault-injection tests only. */
void core_fail_alloc_after(long n);

/* A copy of s (NUL-terminated) or NULL on allocation failure. */
char *core_strdup(const char *s);
char *core_strndup(const char *s, size_t n);

/* CPU feature detection, done once. */
enum core_cpu_level {
    CORE_CPU_SCALAR = 0,
    CORE_CPU_AVX2 = 1,   /* AVX2 + FMA + F16C */
    CORE_CPU_AVX512 = 2, /* AVX-512 F/BW/VL/DQ + VNNI */
};
enum core_cpu_level core_cpu_level(void);

/* Overrides detection (for tests and BANTER_CPU=scalar|avx2|avx512 in the environment); a level above what the
 * machine supports is clamped down. */
void core_cpu_force(enum core_cpu_level level);

#endif
