/* clockshift.c - an LD_PRELOAD shim that steps the wall clock of a running process, the way NTP
 * or a VM migration does, for the tests that prove durations never follow it.
 *
 *     CLOCKSHIFT_FILE=/tmp/shift LD_PRELOAD=build/clockshift.so bepipe-lua ...
 *     echo -120 > /tmp/shift      (the wall clock is now 120 s behind; "0" puts it back)
 *
 * clock_gettime(CLOCK_REALTIME and its _COARSE variant), gettimeofday and time return the real
 * value plus the number of seconds the file holds (a decimal, may be negative; a missing or
 * unreadable file means 0). The file is read again at most every 20 ms of monotonic time, so a
 * test can step the clock mid-run at any moment without costing the process a read per call.
 * The monotonic clocks are never touched. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int64_t offset_ns;       /* the current step, read and written with __atomic */
static int64_t checked_ns;      /* monotonic ns of the last read of the file */

/* The real clock, straight from the kernel: no recursion through our own clock_gettime, and no
 * dlsym (which may allocate) inside a clock read. */
static int
real_clock(clockid_t id, struct timespec *ts)
{
    return (int)syscall(SYS_clock_gettime, id, ts);
}

static int64_t
mono_ns(void)
{
    struct timespec ts;
    real_clock(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The step now in force: re-reads CLOCKSHIFT_FILE when the last read is 20 ms old. open/read
 * only, no stdio: this runs inside any thread's clock read. */
static int64_t
current_offset(void)
{
    int64_t now = mono_ns();
    if (now - __atomic_load_n(&checked_ns, __ATOMIC_RELAXED) < 20000000)
        return __atomic_load_n(&offset_ns, __ATOMIC_RELAXED);
    __atomic_store_n(&checked_ns, now, __ATOMIC_RELAXED);
    const char *path = getenv("CLOCKSHIFT_FILE");
    int64_t off = 0;
    int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
    if (fd >= 0) {
        char buf[64];
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n > 0) {
            buf[n] = '\0';
            off = (int64_t)(strtod(buf, NULL) * 1e9);
        }
    }
    __atomic_store_n(&offset_ns, off, __ATOMIC_RELAXED);
    return off;
}

static void
shift(struct timespec *ts)
{
    int64_t t = (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec + current_offset();
    ts->tv_sec = (time_t)(t / 1000000000);
    ts->tv_nsec = (long)(t % 1000000000);
    if (ts->tv_nsec < 0) {
        ts->tv_nsec += 1000000000;
        ts->tv_sec--;
    }
}

int
clock_gettime(clockid_t id, struct timespec *ts)
{
    int rc = real_clock(id, ts);
    if (rc == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE))
        shift(ts);
    return rc;
}

int
gettimeofday(struct timeval *restrict tv, void *restrict tz)
{
    (void)tz;
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
        return -1;
    tv->tv_sec = ts.tv_sec;        /* glibc declares tv nonnull */
    tv->tv_usec = ts.tv_nsec / 1000;
    return 0;
}

time_t
time(time_t *out)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
        return (time_t)-1;
    if (out)
        *out = ts.tv_sec;
    return ts.tv_sec;
}
