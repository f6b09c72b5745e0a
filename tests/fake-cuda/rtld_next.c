/*
 * Checks that the guard's dlsym keeps RTLD_NEXT relative to the real caller.
 * Built three times:
 *   -DPART_NEXT   libnext.so:  marker() = 1, lookup_next() = dlsym(RTLD_NEXT, "marker")
 *   -DPART_AFTER  libafter.so: marker() = 2
 *   (neither)     the program, linked against both (libnext first): prints
 *                 what lookup_next() found; glibc's answer is libafter's (2).
 */
#include <dlfcn.h>
#include <stdio.h>

#if defined(PART_NEXT)
int marker(void) { return 1; }
void *lookup_next(void) { return dlsym(RTLD_NEXT, "marker"); }
#elif defined(PART_AFTER)
int marker(void) { return 2; }
#else
int marker(void);
void *lookup_next(void);
int main(void) {
    int (*next)(void) = (int (*)(void))lookup_next();
    printf("rtld_next_marker=%d\n", next ? next() : -1);
    return 0;
}
#endif
