// Starting a helper thread that runs at once, on another CPU.
#ifndef PROPELLER_HELPER_THREAD_H
#define PROPELLER_HELPER_THREAD_H

#include <pthread.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Starts a joinable thread running `fn(arg)`, first placed on a CPU other than the caller's
/// (when the process may use another), then free to run anywhere it may.
///
/// The scheduler puts a new thread on its creator's CPU; while the creator stays busy it may
/// wait there for a millisecond or more (measured on a 2-vCPU VM) although another CPU is idle,
/// which is as long as the work it was started to overlap. Returns 0 or an errno value.
int pl_start_helper_thread(pthread_t *thread, void *(*fn)(void *), void *arg);

#ifdef __cplusplus
}
#endif

#endif
