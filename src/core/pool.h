/*
 * pool.h: the persistent kernel thread pool.
 *
 * pool_run(p, fn, arg) calls fn(arg, ith, nth) on every thread of the pool (the caller is thread 0) and returns
 * when all are done. Work is split by ith/nth inside fn; pool_barrier() synchronizes all nth threads inside one
 * run, so a kernel can do "quantize the input, barrier, multiply" in one call. Workers spin briefly after a run
 * (decode steps arrive back to back) and then sleep on a condition variable, so an idle engine costs no CPU.
 *
 * A pool is driven by one thread at a time (the context that owns it).
 */
#ifndef BANTER_POOL_H
#define BANTER_POOL_H

struct pool;

typedef void (*pool_fn)(void *arg, int ith, int nth);

/* n_threads <= 0 means all cores. Returns NULL on failure. */
struct pool *pool_open(int n_threads);
void pool_close(struct pool *p);
int pool_n_threads(const struct pool *p);
void pool_run(struct pool *p, pool_fn fn, void *arg);
/* Called from inside fn by all nth threads of a run. */
void pool_barrier(struct pool *p);

#endif
