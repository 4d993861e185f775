// See include/helper_thread.h.
#include "helper_thread.h"

#include <sched.h>
#include <stdlib.h>

struct helper_start {
    void *(*fn)(void *);
    void *arg;
    cpu_set_t allowed;
};

static void *helper_main(void *p) {
    struct helper_start start = *(struct helper_start *)p;
    free(p);
    // Placed; now free to move like any other thread.
    (void)sched_setaffinity(0, sizeof start.allowed, &start.allowed);
    return start.fn(start.arg);
}

int pl_start_helper_thread(pthread_t *thread, void *(*fn)(void *), void *arg) {
    struct helper_start *start = malloc(sizeof *start);
    if (start == NULL) return pthread_create(thread, NULL, fn, arg);
    start->fn = fn;
    start->arg = arg;
    pthread_attr_t attr;
    int rc = pthread_attr_init(&attr);
    if (rc != 0) {
        free(start);
        return rc;
    }
    int here = sched_getcpu();
    if (sched_getaffinity(0, sizeof start->allowed, &start->allowed) == 0 && here >= 0) {
        cpu_set_t elsewhere = start->allowed;
        CPU_CLR(here, &elsewhere);
        if (CPU_COUNT(&elsewhere) > 0) (void)pthread_attr_setaffinity_np(&attr, sizeof elsewhere, &elsewhere);
    } else {
        // Nothing known to restore: start it where the scheduler likes.
        CPU_ZERO(&start->allowed);
        for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) CPU_SET(cpu, &start->allowed);
    }
    rc = pthread_create(thread, &attr, helper_main, start);
    pthread_attr_destroy(&attr);
    if (rc != 0) free(start);
    return rc;
}
