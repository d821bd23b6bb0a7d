/*
 * pool.c: persistent worker threads with a generation counter and a sense-reversing barrier.
 *
 * Shared fields:
 * - gen (atomic, release/acquire): bumped by the caller to start a run; workers wait for it to change.
 * - fn, arg: written by the caller before gen is bumped, read by workers after they see the new gen.
 * - n_done (atomic): workers that finished the current run.
 * - bar_count, bar_sense (atomic): the barrier.
 * - mu/cv guard `sleeping` workers; the caller broadcasts after bumping gen.
 */
#include "core/pool.h"
#include "core/core.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>

#define SPIN_ITERS 200000

struct pool {
    int n;
    pthread_t *threads;
    _Atomic unsigned gen;
    _Atomic int n_done;
    _Atomic int stop;
    _Atomic int bar_count;
    _Atomic int bar_sense;
    pool_fn fn;
    void *arg;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

struct worker_arg {
    struct pool *p;
    int ith;
};

static inline void cpu_relax(void)
{
    __builtin_ia32_pause();
}

/* Waiting loops spin briefly (the other threads are usually microseconds away), then yield the core: when the
 * machine is oversubscribed (tests running in parallel, a busy server), a thread we wait for may be descheduled,
 * and spinning would only steal its time. */
static inline void wait_step(int *spins)
{
    if (++*spins < 4096) cpu_relax();
    else sched_yield();
}

static void *worker_main(void *varg)
{
    struct pool *p = ((struct worker_arg *)varg)->p;
    int ith = ((struct worker_arg *)varg)->ith;
    core_free(varg);
    /* gen is 0 when the pool is created and only pool_run changes it, so 0 is the generation this worker has
     * "seen". Reading gen here instead would lose a run started before this thread got going. */
    unsigned seen = 0;
    for (;;) {
        unsigned g;
        int spins = 0;
        while ((g = atomic_load_explicit(&p->gen, memory_order_acquire)) == seen) {
            if (++spins < SPIN_ITERS) {
                cpu_relax();
                continue;
            }
            pthread_mutex_lock(&p->mu);
            while ((g = atomic_load_explicit(&p->gen, memory_order_acquire)) == seen)
                pthread_cond_wait(&p->cv, &p->mu);
            pthread_mutex_unlock(&p->mu);
            break;
        }
        seen = g;
        if (atomic_load_explicit(&p->stop, memory_order_acquire)) return NULL;
        p->fn(p->arg, ith, p->n);
        atomic_fetch_add_explicit(&p->n_done, 1, memory_order_acq_rel);
    }
}

struct pool *pool_open(int n_threads)
{
    if (n_threads <= 0) n_threads = core_n_cpus();
    struct pool *p = core_calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->threads = core_calloc((size_t)n_threads, sizeof *p->threads);
    if (!p->threads) goto fail_threads;
    for (int i = 1; i < n_threads; i++) {
        struct worker_arg *wa = core_malloc(sizeof *wa);
        if (!wa) goto fail_spawn;
        wa->p = p;
        wa->ith = i;
        if (pthread_create(&p->threads[i], NULL, worker_main, wa) != 0) {
            core_free(wa);
            goto fail_spawn;
        }
        continue;
    fail_spawn:
        p->n = i; /* workers 1..i-1 exist; stop them */
        pool_close(p);
        return NULL;
    }
    return p;
fail_threads:
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    core_free(p);
    return NULL;
}

void pool_close(struct pool *p)
{
    if (!p) return;
    atomic_store_explicit(&p->stop, 1, memory_order_release);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_acq_rel);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++) pthread_join(p->threads[i], NULL);
    core_free(p->threads);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    core_free(p);
}

int pool_n_threads(const struct pool *p)
{
    return p->n;
}

void pool_run(struct pool *p, pool_fn fn, void *arg)
{
    if (p->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    atomic_store_explicit(&p->n_done, 0, memory_order_relaxed);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_acq_rel);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    fn(arg, 0, p->n);
    int spins = 0;
    while (atomic_load_explicit(&p->n_done, memory_order_acquire) != p->n - 1) wait_step(&spins);
}

void pool_barrier(struct pool *p)
{
    if (p->n == 1) return;
    int sense = atomic_load_explicit(&p->bar_sense, memory_order_acquire);
    if (atomic_fetch_add_explicit(&p->bar_count, 1, memory_order_acq_rel) == p->n - 1) {
        atomic_store_explicit(&p->bar_count, 0, memory_order_relaxed);
        atomic_store_explicit(&p->bar_sense, !sense, memory_order_release);
    } else {
        int spins = 0;
        while (atomic_load_explicit(&p->bar_sense, memory_order_acquire) == sense) wait_step(&spins);
    }
}
