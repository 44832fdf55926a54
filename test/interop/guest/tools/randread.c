/* randread: N concurrent processes doing random aligned direct reads of a block device, for the
 * storage benchmarks (bench/rig-uas.ts).
 *
 *   randread DEV PROCS COUNT BS     PROCS processes, each COUNT reads of BS bytes (O_DIRECT) at
 *                                   random BS-aligned offsets over the whole device
 *   randread -s DEV PROCS COUNT BS  the same, sequential: process i reads from i/PROCS of the
 *                                   device on, one read at a time, wrapping at the end. With
 *                                   PROCS 1 these are the reads of `dd if=DEV of=/dev/null bs=BS
 *                                   count=COUNT iflag=direct`, timed without dd's exec.
 *
 * Prints one line: "bytes B seconds S mbps M check C". Timing: the children open the device,
 * say so and wait on a pipe; the clock (CLOCK_MONOTONIC) starts when the parent releases them all at
 * once and stops when the last one has exited. Offsets come from xorshift64 seeded by the process
 * index only, so every device is read at the same offsets; C folds the first and last 8 bytes of
 * every 512-byte sector read (cheap next to the read itself) with the offset, so equal C on two
 * devices with the same image means they returned the same data. Exit 1 on any short read. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static uint64_t xorshift64(uint64_t *s) {
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *s = x;
}

static uint64_t mix(uint64_t h, uint64_t v) {
  h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
  return h;
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

/* One reader: returns its check value through `out` (a pipe). */
static int seq;

static int reader(const char *dev, int index, long count, size_t bs, uint64_t blocks, int ready, int go, int out,
                  int procs) {
  int fd = open(dev, O_RDONLY | O_DIRECT);
  if (fd < 0) {
    fprintf(stderr, "randread: open %s: %s\n", dev, strerror(errno));
    return 1;
  }
  void *buf;
  if (posix_memalign(&buf, 4096, bs) != 0) return 1;
  char c = 1;
  if (write(ready, &c, 1) != 1) return 1;
  if (read(go, &c, 1) < 0) return 1; /* EOF when the parent releases everyone */
  uint64_t s = 0x2545f4914f6cdd1dull * (uint64_t)(index + 1);
  uint64_t h = 0;
  uint64_t next = blocks / procs * index;
  for (long i = 0; i < count; i++) {
    uint64_t off = (seq ? next++ % blocks : xorshift64(&s) % blocks) * bs;
    ssize_t n = pread(fd, buf, bs, (off_t)off);
    if (n != (ssize_t)bs) {
      fprintf(stderr, "randread: pread %zu at %llu gave %zd: %s\n", bs, (unsigned long long)off, n,
              n < 0 ? strerror(errno) : "short");
      return 1;
    }
    const uint64_t *w = buf;
    h = mix(h, off);
    for (size_t k = 0; k < bs / 8; k += 64) h = mix(mix(h, w[k]), w[k + 63]);
  }
  if (write(out, &h, sizeof h) != sizeof h) return 1;
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 6 && strcmp(argv[1], "-s") == 0) {
    seq = 1;
    argv++;
    argc--;
  }
  if (argc != 5) {
    fprintf(stderr, "usage: randread [-s] DEV PROCS COUNT BS\n");
    return 2;
  }
  const char *dev = argv[1];
  int procs = atoi(argv[2]);
  long count = atol(argv[3]);
  size_t bs = strtoul(argv[4], NULL, 0);
  if (procs < 1 || procs > 256 || count < 1 || bs < 512 || bs % 512) {
    fprintf(stderr, "randread: bad arguments\n");
    return 2;
  }
  int fd = open(dev, O_RDONLY);
  uint64_t bytes = 0;
  struct stat st;
  if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) bytes = st.st_size; /* a file, for tests */
  else if (fd < 0 || ioctl(fd, BLKGETSIZE64, &bytes) < 0) {
    fprintf(stderr, "randread: size of %s: %s\n", dev, strerror(errno));
    return 1;
  }
  close(fd);
  uint64_t blocks = bytes / bs;
  if (blocks == 0) return 1;
  int go[2], out[2], ready[2];
  if (pipe(go) || pipe(out) || pipe(ready)) return 1;
  for (int i = 0; i < procs; i++) {
    pid_t p = fork();
    if (p < 0) return 1;
    if (p == 0) {
      close(go[1]);
      close(out[0]);
      close(ready[0]);
      _exit(reader(dev, i, count, bs, blocks, ready[1], go[0], out[1], procs));
    }
  }
  close(go[0]);
  close(out[1]);
  close(ready[1]);
  /* every child has opened the device and is about to block on `go` (EOF: one died) */
  char c;
  for (int i = 0; i < procs; i++)
    if (read(ready[0], &c, 1) != 1) break;
  double t0 = now();
  close(go[1]);
  int failed = 0, status;
  while (wait(&status) > 0)
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) failed = 1;
  double t1 = now();
  uint64_t check = 0, h;
  int got = 0;
  while (read(out[0], &h, sizeof h) == sizeof h) {
    check ^= h; /* children finish in any order: combine order-independently */
    got++;
  }
  if (failed || got != procs) {
    fprintf(stderr, "randread: %d of %d readers failed\n", procs - got, procs);
    return 1;
  }
  double total = (double)procs * count * bs;
  printf("bytes %.0f seconds %.6f mbps %.2f check %016llx\n", total, t1 - t0, total / (t1 - t0) / 1e6,
         (unsigned long long)check);
  return 0;
}
