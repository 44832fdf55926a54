/* rio: concurrent random direct I/O on a block device, every byte checked.
 *   rio DEV NPROC BASE REGION OPS SEED
 * NPROC children run at once (released together); child i owns the bytes
 * [BASE + i*REGION, BASE + (i+1)*REGION) of DEV, opened with O_DIRECT. It reads its region
 * first (the original content), then does OPS operations chosen by a PRNG seeded from SEED and
 * i: a write of 1..8 blocks of 4 KiB at a random block of its region (content derived from
 * SEED, i, the op number and the block: see block_content), or a read of 1..8 blocks compared
 * with what it last wrote there or the original. Finally it reads its whole region back and
 * compares every block. The final content is a function of SEED (and the original content),
 * so the host recomputes it from the same algorithm (uas-rio.ts) and checks the image.
 * Prints one line per child ("child I ok writes W reads R fnv HEX": FNV-1a 32 of its final
 * region) or "child I MISMATCH ..." for the first difference; then "rio: ok N ops in S s" or
 * "rio: FAIL". Exit status 0 only if every child checked every byte. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BLOCK 4096u
#define MAX_RUN 8u
#define MAGIC 0x214f4952u /* "RIO!" little endian */

static uint32_t hash32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352du;
  x ^= x >> 15;
  x *= 0x846ca68bu;
  x ^= x >> 16;
  return x;
}

static uint32_t xorshift32(uint32_t *s) {
  uint32_t x = *s;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  return *s = x;
}

/* Block `blk` (index in the child's region) as write `op` of child `child` writes it. */
static void block_content(uint8_t *out, uint32_t seed, uint32_t child, uint32_t op, uint32_t blk) {
  uint32_t h = hash32(seed ^ hash32(child * 0x9e3779b9u ^ hash32(op ^ hash32(blk + 0x85ebca6bu))));
  uint32_t w[BLOCK / 4];
  w[0] = MAGIC;
  w[1] = child;
  w[2] = op;
  w[3] = blk;
  for (uint32_t j = 4; j < BLOCK / 4; j++) w[j] = hash32(h + j);
  memcpy(out, w, BLOCK); /* the guest is little endian, as the host replay assumes */
}

static uint32_t fnv1a(uint32_t h, const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    h ^= p[i];
    h *= 16777619u;
  }
  return h;
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...) {
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n >= sizeof line) n = sizeof line - 1;
  /* one write per line: the children's lines never interleave */
  ssize_t r = write(1, line, (size_t)n);
  (void)r;
}

static int full_io(int write_it, int fd, uint8_t *buf, size_t len, off_t at) {
  ssize_t n = write_it ? pwrite(fd, buf, len, at) : pread(fd, buf, len, at);
  if (n == (ssize_t)len) return 0;
  if (n < 0) return -errno;
  return -EIO;
}

struct child {
  uint32_t index, seed, ops, nblocks;
  off_t start;
  const char *dev;
};

/* The first difference between `got` (block blk) and what should be there. */
static int check_block(const struct child *c, const uint8_t *got, const uint8_t *want, uint32_t blk, int32_t last,
                       const char *when, uint32_t op) {
  if (memcmp(got, want, BLOCK) == 0) return 0;
  uint32_t i = 0;
  while (got[i] == want[i]) i++;
  uint32_t hdr[4];
  memcpy(hdr, got, sizeof hdr);
  char found[96] = "not a rio block";
  if (hdr[0] == MAGIC)
    snprintf(found, sizeof found, "a block of child %" PRIu32 " op %" PRIu32 " block %" PRIu32, hdr[1], hdr[2], hdr[3]);
  say("child %" PRIu32 " MISMATCH %s (op %" PRIu32 ") at byte %jd (region block %" PRIu32 " + %" PRIu32
      "): want %s, found %s\n",
      c->index, when, op, (intmax_t)(c->start + (off_t)blk * BLOCK + i), blk, i,
      last < 0 ? "the original" : "its last write", found);
  return 1;
}

static int run_child(const struct child *c) {
  int fd = open(c->dev, O_RDWR | O_DIRECT);
  if (fd < 0) {
    say("child %" PRIu32 " FAIL open %s: %s\n", c->index, c->dev, strerror(errno));
    return 1;
  }
  size_t region = (size_t)c->nblocks * BLOCK;
  uint8_t *orig, *buf, *want;
  if (posix_memalign((void **)&orig, BLOCK, region) || posix_memalign((void **)&buf, BLOCK, MAX_RUN * BLOCK) ||
      posix_memalign((void **)&want, BLOCK, BLOCK)) {
    say("child %" PRIu32 " FAIL out of memory\n", c->index);
    return 1;
  }
  int32_t *last = malloc(c->nblocks * sizeof *last);
  for (uint32_t b = 0; b < c->nblocks; b++) last[b] = -1;
  int e = full_io(0, fd, orig, region, c->start);
  if (e) {
    say("child %" PRIu32 " FAIL reading its region: %s\n", c->index, strerror(-e));
    return 1;
  }
  uint32_t rng = hash32(c->seed ^ (c->index + 1) * 0x9e3779b9u) | 1u;
  uint32_t writes = 0, reads = 0;
  for (uint32_t op = 0; op < c->ops; op++) {
    uint32_t kind = xorshift32(&rng) & 1u;
    uint32_t run = 1 + xorshift32(&rng) % MAX_RUN;
    if (run > c->nblocks) run = c->nblocks;
    uint32_t at = xorshift32(&rng) % (c->nblocks - run + 1);
    off_t where = c->start + (off_t)at * BLOCK;
    if (kind == 0) {
      for (uint32_t k = 0; k < run; k++) block_content(buf + k * BLOCK, c->seed, c->index, op, at + k);
      e = full_io(1, fd, buf, run * BLOCK, where);
      if (e) {
        say("child %" PRIu32 " FAIL write op %" PRIu32 " (%" PRIu32 " blocks at %jd): %s\n", c->index, op, run,
            (intmax_t)where, strerror(-e));
        return 1;
      }
      for (uint32_t k = 0; k < run; k++) last[at + k] = (int32_t)op;
      writes++;
    } else {
      e = full_io(0, fd, buf, run * BLOCK, where);
      if (e) {
        say("child %" PRIu32 " FAIL read op %" PRIu32 " (%" PRIu32 " blocks at %jd): %s\n", c->index, op, run,
            (intmax_t)where, strerror(-e));
        return 1;
      }
      for (uint32_t k = 0; k < run; k++) {
        uint32_t b = at + k;
        const uint8_t *w = orig + (size_t)b * BLOCK;
        if (last[b] >= 0) {
          block_content(want, c->seed, c->index, (uint32_t)last[b], b);
          w = want;
        }
        if (check_block(c, buf + k * BLOCK, w, b, last[b], "read", op)) return 1;
      }
      reads++;
    }
  }
  /* The whole region, every byte, against what this child wrote last (or the original). */
  uint32_t fnv = 2166136261u;
  for (uint32_t b = 0; b < c->nblocks; b += MAX_RUN) {
    uint32_t run = c->nblocks - b < MAX_RUN ? c->nblocks - b : MAX_RUN;
    e = full_io(0, fd, buf, run * BLOCK, c->start + (off_t)b * BLOCK);
    if (e) {
      say("child %" PRIu32 " FAIL final read at block %" PRIu32 ": %s\n", c->index, b, strerror(-e));
      return 1;
    }
    for (uint32_t k = 0; k < run; k++) {
      const uint8_t *w = orig + (size_t)(b + k) * BLOCK;
      if (last[b + k] >= 0) {
        block_content(want, c->seed, c->index, (uint32_t)last[b + k], b + k);
        w = want;
      }
      if (check_block(c, buf + k * BLOCK, w, b + k, last[b + k], "final read", c->ops)) return 1;
    }
    fnv = fnv1a(fnv, buf, run * BLOCK);
  }
  close(fd);
  say("child %" PRIu32 " ok writes %" PRIu32 " reads %" PRIu32 " fnv %08" PRIx32 "\n", c->index, writes, reads, fnv);
  return 0;
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  if (argc != 7) {
    fprintf(stderr, "usage: rio DEV NPROC BASE REGION OPS SEED\n");
    return 2;
  }
  uint32_t nproc = (uint32_t)strtoul(argv[2], 0, 0);
  unsigned long long base = strtoull(argv[3], 0, 0), region = strtoull(argv[4], 0, 0);
  uint32_t ops = (uint32_t)strtoul(argv[5], 0, 0), seed = (uint32_t)strtoul(argv[6], 0, 0);
  if (nproc == 0 || nproc > 64 || region < BLOCK || region % BLOCK || base % BLOCK) {
    fprintf(stderr, "rio: NPROC 1..64, REGION and BASE multiples of %u\n", BLOCK);
    return 2;
  }
  int gate[2];
  if (pipe(gate)) return 1;
  pid_t pids[64];
  for (uint32_t i = 0; i < nproc; i++) {
    pids[i] = fork();
    if (pids[i] < 0) {
      perror("rio: fork");
      return 1;
    }
    if (pids[i] == 0) {
      close(gate[1]);
      char x;
      while (read(gate[0], &x, 1) > 0) {
      }
      struct child c = {i, seed, ops, (uint32_t)(region / BLOCK), (off_t)(base + i * region), argv[1]};
      _exit(run_child(&c));
    }
  }
  double t0 = now();
  close(gate[0]);
  close(gate[1]); /* every child starts now */
  int failed = 0;
  for (uint32_t i = 0; i < nproc; i++) {
    int st;
    if (waitpid(pids[i], &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) failed++;
  }
  if (failed) {
    say("rio: FAIL (%d of %" PRIu32 " children)\n", failed, nproc);
    return 1;
  }
  say("rio: ok %" PRIu32 " ops in %.2f s\n", nproc * ops, now() - t0);
  return 0;
}
