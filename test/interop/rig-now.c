/* rig-now: print CLOCK_MONOTONIC as seconds with nanoseconds ("123.456789012").
 * Built into the interop initramfs by setup.sh: busybox `date` has no %N. */
#include <stdio.h>
#include <time.h>
int main(void) {
  struct timespec ts;
  if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) return 1;
  printf("%lld.%09ld\n", (long long)ts.tv_sec, ts.tv_nsec);
  return 0;
}
