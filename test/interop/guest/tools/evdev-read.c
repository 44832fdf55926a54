/*
 * evdev-read: a tiny static evdev client for the interop guest.
 *
 *   evdev-read read DEVICE TOTAL_MS [IDLE_MS]
 *       Print every event as one line "TYPE CODE VALUE" (TYPE: SYN KEY REL MSC LED or a number),
 *       flushed at once. Prints "READY" when the device is open. Stops after TOTAL_MS, or IDLE_MS
 *       without events once at least one event arrived (IDLE_MS 0: no idle stop), or on SIGTERM.
 *   evdev-read led DEVICE CODE VALUE
 *       Write EV_LED CODE VALUE + SYN_REPORT (LED_CAPSL is 1): the kernel sends the keyboard its
 *       LED output report.
 *   evdev-read name DEVICE
 *       Print the device name (EVIOCGNAME).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/input.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig) {
  (void)sig;
  stop = 1;
}

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *type_name(unsigned type) {
  switch (type) {
    case EV_SYN: return "SYN";
    case EV_KEY: return "KEY";
    case EV_REL: return "REL";
    case EV_MSC: return "MSC";
    case EV_LED: return "LED";
    default: return NULL;
  }
}

static int cmd_read(const char *dev, long total_ms, long idle_ms) {
  int fd = open(dev, O_RDONLY | O_NONBLOCK);
  if (fd < 0) {
    fprintf(stderr, "evdev-read: %s: %s\n", dev, strerror(errno));
    return 1;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  printf("READY\n");
  long long start = now_ms(), last = 0;
  while (!stop) {
    long long t = now_ms();
    if (t - start >= total_ms) break;
    if (idle_ms > 0 && last && t - last >= idle_ms) break;
    long wait = total_ms - (t - start);
    if (idle_ms > 0 && last && idle_ms - (t - last) < wait) wait = idle_ms - (t - last);
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int r = poll(&p, 1, (int)wait);
    if (r < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (r == 0) continue;
    struct input_event ev[64];
    ssize_t n = read(fd, ev, sizeof ev);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      fprintf(stderr, "evdev-read: read: %s\n", strerror(errno));
      break;
    }
    for (size_t i = 0; i < (size_t)n / sizeof ev[0]; i++) {
      const char *name = type_name(ev[i].type);
      if (name) printf("%s %u %d\n", name, ev[i].code, ev[i].value);
      else printf("%u %u %d\n", ev[i].type, ev[i].code, ev[i].value);
    }
    last = now_ms();
  }
  printf("END\n");
  close(fd);
  return 0;
}

static int cmd_led(const char *dev, int code, int value) {
  int fd = open(dev, O_WRONLY);
  if (fd < 0) {
    fprintf(stderr, "evdev-read: %s: %s\n", dev, strerror(errno));
    return 1;
  }
  struct input_event ev[2];
  memset(ev, 0, sizeof ev);
  ev[0].type = EV_LED;
  ev[0].code = (unsigned short)code;
  ev[0].value = value;
  ev[1].type = EV_SYN;
  ev[1].code = SYN_REPORT;
  if (write(fd, ev, sizeof ev) != (ssize_t)sizeof ev) {
    fprintf(stderr, "evdev-read: write: %s\n", strerror(errno));
    return 1;
  }
  close(fd);
  return 0;
}

static int cmd_name(const char *dev) {
  int fd = open(dev, O_RDONLY);
  if (fd < 0) return 1;
  char name[256] = "";
  if (ioctl(fd, EVIOCGNAME(sizeof name - 1), name) < 0) return 1;
  printf("%s\n", name);
  close(fd);
  return 0;
}

int main(int argc, char **argv) {
  signal(SIGTERM, on_signal);
  signal(SIGINT, on_signal);
  if (argc >= 4 && strcmp(argv[1], "read") == 0)
    return cmd_read(argv[2], atol(argv[3]), argc > 4 ? atol(argv[4]) : 0);
  if (argc == 5 && strcmp(argv[1], "led") == 0) return cmd_led(argv[2], atoi(argv[3]), atoi(argv[4]));
  if (argc == 3 && strcmp(argv[1], "name") == 0) return cmd_name(argv[2]);
  fprintf(stderr, "usage: evdev-read read DEV TOTAL_MS [IDLE_MS] | led DEV CODE VALUE | name DEV\n");
  return 2;
}
