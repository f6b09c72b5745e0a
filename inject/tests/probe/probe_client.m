/* probe_client.m: drives probe_driver through one scenario (argv[1]) and
 * prints key=value lines for the test to check. */
#include "probe.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <pthread.h>
#include <sys/wait.h>

#define GIB (1UL << 30)

static void refuse(void) {
  id<ProbeMethods> dev = MTLCreateSystemDefaultDevice();
  id big = [dev newBufferWithLength:2 * GIB options:0];
  printf("big=%s\n", big ? "ok" : "nil");
  id small = [dev newBufferWithLength:4096 options:0];
  printf("small=%s\n", small ? "ok" : "nil");
  id bytes = [dev newBufferWithBytes:"abc" length:2 * GIB options:0];
  printf("big_bytes=%s\n", bytes ? "ok" : "nil");
  /* A sibling class that inherits the same base method: never hooked. */
  id<ProbeMethods> sibling = probe_sibling_device();
  id sib = [sibling newBufferWithLength:2 * GIB options:0];
  printf("sibling_big=%s\n", sib ? "ok" : "nil");
  if (small) [small release];
  if (sib) [sib release];
  if (big) [big release];
  if (bytes) [bytes release];
  printf("live_buffers=%ld\n", probe_live_buffers());
}

static void once(void) {
  for (int i = 0; i < 3; i++) [MTLCreateSystemDefaultDevice() release];
  for (int i = 0; i < 2; i++) [MTLCopyAllDevices() release];
  id<ProbeMethods> dev = MTLCreateSystemDefaultDevice();
  for (int i = 0; i < 5; i++) [[dev newBufferWithLength:4096 options:0] release];
  printf("base_allocations=%ld\n", probe_base_allocations());
}

static void nested(void) {
  /* PROBE_WRAPPED=1: the wrapper and the inner device are both hooked. */
  [MTLCopyAllDevices() release];
  id<ProbeMethods> dev = MTLCreateSystemDefaultDevice();
  for (int i = 0; i < 10; i++) [[dev newBufferWithLength:4096 options:0] release];
  printf("base_allocations=%ld\n", probe_base_allocations());
}

static void commit(void) {
  id<ProbeMethods> dev = MTLCreateSystemDefaultDevice();
  id<ProbeMethods> queue = [dev newCommandQueue];
  for (int i = 0; i < 3; i++) {
    id<ProbeMethods> cb = [queue commandBufferWithUnretainedReferences];
    printf("retained=%d\n", (int)[cb retainedReferences]);
    [cb commit];
    [cb waitUntilCompleted];
    [cb release];
  }
  while (probe_in_flight() > 0) usleep(1000);
  printf("in_flight=%ld\n", probe_in_flight());
}

static void residency(void) {
  id<ProbeMethods> dev = MTLCreateSystemDefaultDevice();
  id<ProbeMethods> queue = [dev newCommandQueue];
  id<ProbeMethods> set = [dev newResidencySetWithDescriptor:nil error:NULL];
  id buf = [dev newBufferWithLength:4096 options:0];
  [set addAllocation:buf];
  [set commit];
  printf("count_after_add=%lu\n", [set allocationCount]);
  id<ProbeMethods> cb = [queue commandBuffer];
  [cb commit]; /* in flight for PROBE_GPU_MS */
  [set removeAllocation:buf];
  [set commit];
  printf("count_after_remove=%lu\n", [set allocationCount]);
  [cb waitUntilCompleted];
  usleep(300 * 1000);
  printf("count_later=%lu\n", [set allocationCount]);
  [cb release];
  [buf release];
}

/* A removal while the GPU never goes idle: overlapping command buffers. */
static void residency_busy(void) {
  id<ProbeMethods> dev = MTLCreateSystemDefaultDevice();
  id<ProbeMethods> queue = [dev newCommandQueue];
  id<ProbeMethods> set = [dev newResidencySetWithDescriptor:nil error:NULL];
  id buf = [dev newBufferWithLength:4096 options:0];
  [set addAllocation:buf];
  [set commit];
  id<ProbeMethods> first = [queue commandBuffer];
  [first commit];
  [set removeAllocation:buf];
  [set commit];
  int removed_at = -1;
  for (int i = 0; i < 150 && removed_at < 0; i++) {
    id<ProbeMethods> cb = [queue commandBuffer];
    [cb commit];
    usleep(10 * 1000);
    if ([set allocationCount] == 0) removed_at = i;
    [cb release];
  }
  printf("removed_while_busy=%d\n", removed_at >= 0);
  printf("in_flight_then=%ld\n", probe_in_flight());
  [first release];
  [buf release];
}

/* A model load (a burst of large buffers), its unload, and a reload. */
static void load(id<ProbeMethods> dev, id *bufs, int n) {
  for (int i = 0; i < n; i++) bufs[i] = [dev newBufferWithLength:(32UL << 20) options:0];
}
static void unload(id *bufs, int n) {
  for (int i = 0; i < n; i++) [bufs[i] release];
}
static void reload(void) {
  id<ProbeMethods> dev = MTLCreateSystemDefaultDevice();
  id bufs[4];
  load(dev, bufs, 4);
  usleep(200 * 1000);
  unload(bufs, 4);
  usleep(200 * 1000);
  load(dev, bufs, 4);
  printf("reloaded=%d\n", bufs[3] != nil);
  unload(bufs, 4);
}

/* Serving: weights stay; KV-cache bursts come and go (a trim is no unload). */
static void trim(void) {
  id<ProbeMethods> dev = MTLCreateSystemDefaultDevice();
  id weights[6], kv[4];
  load(dev, weights, 6);
  usleep(200 * 1000);
  load(dev, kv, 4); /* a prefill after quiet: not a model load */
  usleep(200 * 1000);
  unload(kv, 4); /* cache trim */
  usleep(50 * 1000);
  load(dev, kv, 4); /* the next prefill must not stall */
  printf("served=%d\n", kv[3] != nil);
  unload(kv, 4);
  unload(weights, 6);
}

static void exit_in_flight(void) {
  id<ProbeMethods> dev = MTLCreateSystemDefaultDevice();
  id<ProbeMethods> queue = [dev newCommandQueue];
  id<ProbeMethods> cb = [queue commandBufferWithUnretainedReferences];
  [cb commit];
  printf("exiting_with_in_flight=%ld\n", probe_in_flight());
  fflush(stdout);
  exit(0);
}

/* Work a guarded process keeps doing: buffers, a refusal (a durable
 * breadcrumb), command buffers committed and completed, residency churn. */
static void some_work(id<ProbeMethods> dev, id<ProbeMethods> queue, id<ProbeMethods> set, int rounds) {
  for (int i = 0; i < rounds; i++) {
    id buf = [dev newBufferWithLength:4096 options:0];
    [set addAllocation:buf];
    [set commit];
    id<ProbeMethods> cb = [queue commandBufferWithUnretainedReferences];
    [cb commit];
    [set removeAllocation:buf];
    [set commit];
    [cb waitUntilCompleted];
    [cb release];
    [buf release];
  }
  id big = [dev newBufferWithLength:2 * GIB options:0];
  if (big) [big release];
}

/* Whether the log holds this process's refusal PRE. */
static int log_has_own_refusal(void) {
  const char *path = getenv("METALGUARD_BREADCRUMB_PATH");
  FILE *f = path ? fopen(path, "r") : NULL;
  if (!f) return 0;
  char line[1024], want[64];
  snprintf(want, sizeof want, "pid=%d ", (int)getpid());
  int seen = 0;
  while (fgets(line, sizeof line, f))
    if (strstr(line, "SUBPROC_PRE: allocation_refusal") && strstr(line, want)) seen = 1;
  fclose(f);
  return seen;
}

/* Whether this process's refusal PRE reaches the log while it runs (its own
 * writer wrote it), waiting up to 3 s for a slow disk. */
static int saw_own_refusal(void) {
  for (int i = 0; i < 300; i++) {
    if (log_has_own_refusal()) return 1;
    usleep(10 * 1000);
  }
  return 0;
}

static volatile int g_busy_stop;

/* A second thread that keeps the guard busy (posts, commits, the reaper's
 * gates, the writer's file) while the main thread forks. */
static void *busy_thread(void *arg) {
  id<ProbeMethods> dev = (id<ProbeMethods>)arg;
  id<ProbeMethods> queue = [dev newCommandQueue];
  id<ProbeMethods> set = [dev newResidencySetWithDescriptor:nil error:NULL];
  while (!g_busy_stop) some_work(dev, queue, set, 4);
  return NULL;
}

/* fork (without exec: the child keeps working, then exits normally; with
 * exec: the child becomes a fresh guarded probe_client), several times while
 * another thread keeps the guard busy. */
static void forks(int with_exec, const char *self_path) {
  id<ProbeMethods> dev = MTLCreateSystemDefaultDevice();
  id<ProbeMethods> queue = [dev newCommandQueue];
  id<ProbeMethods> set = [dev newResidencySetWithDescriptor:nil error:NULL];
  some_work(dev, queue, set, 2);
  pthread_t busy;
  pthread_create(&busy, NULL, busy_thread, dev);
  int ok = 0, n = 6;
  for (int k = 0; k < n; k++) {
    usleep(15 * 1000);
    /* Work in flight at the fork: its completion stays in the parent. */
    id<ProbeMethods> running = [queue commandBuffer];
    [running commit];
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
      if (with_exec) {
        char *args[] = {(char *)self_path, "fork_exec_child", NULL};
        execv(self_path, args);
        _exit(99);
      }
      /* A fresh set: the busy thread may have held the driver's own lock
       * of its set at the fork. */
      id<ProbeMethods> own = [dev newResidencySetWithDescriptor:nil error:NULL];
      some_work(dev, queue, own, 5);
      printf("child_saw_own_pre=%d\n", saw_own_refusal());
      printf("child_worked=%d\n", (int)getpid());
      fflush(stdout);
      exit(0); /* a normal exit: atexit handlers, the guard's drain */
    }
    printf("child_pid=%d\n", (int)pid);
    int status = 0;
    waitpid(pid, &status, 0);
    [running waitUntilCompleted];
    [running release];
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) ok++;
    else printf("child_status=%d\n", status);
  }
  g_busy_stop = 1;
  pthread_join(busy, NULL);
  some_work(dev, queue, set, 2);
  printf("children_ok=%d\n", ok);
  printf("parent_pid=%d\n", (int)getpid());
}

static void fork_exec_child(void) {
  id<ProbeMethods> dev = MTLCreateSystemDefaultDevice();
  id<ProbeMethods> queue = [dev newCommandQueue];
  id<ProbeMethods> set = [dev newResidencySetWithDescriptor:nil error:NULL];
  some_work(dev, queue, set, 5);
  printf("exec_child_worked=%d\n", (int)getpid());
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  const char *s = argc > 1 ? argv[1] : "";
  if (!strcmp(s, "refuse")) refuse();
  else if (!strcmp(s, "once")) once();
  else if (!strcmp(s, "nested")) nested();
  else if (!strcmp(s, "commit")) commit();
  else if (!strcmp(s, "residency")) residency();
  else if (!strcmp(s, "exit_in_flight")) exit_in_flight();
  else if (!strcmp(s, "reload")) reload();
  else if (!strcmp(s, "trim")) trim();
  else if (!strcmp(s, "residency_busy")) residency_busy();
  else if (!strcmp(s, "fork")) forks(0, argv[0]);
  else if (!strcmp(s, "fork_exec")) forks(1, argv[0]);
  else if (!strcmp(s, "fork_exec_child")) fork_exec_child();
  else {
    fprintf(stderr, "usage: probe_client refuse|once|nested|commit|residency|exit_in_flight|reload|trim|residency_busy|fork|fork_exec|fork_exec_child\n");
    return 64;
  }
  printf("done=1\n");
  return 0;
}
