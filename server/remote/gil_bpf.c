/* gilstat's probes: uprobes on the entries and returns of take_gil/drop_gil (two BPF
 * uprobe_multi links on Linux 6.6+, else one perf uprobe event per probe), each hit running a
 * BPF program of about 25 instructions that appends {time, tid, kind} to one BPF ring buffer,
 * which fp drains. BPF rather than perf samples because a perf uprobe event follows one
 * thread only, and inheriting it into new threads breaks them (docs/design-notes.md, "GIL
 * statistics"); the program runs for every thread of the process, started later or not. */
#include "gil_internal.h"

#include <errno.h>
#include <linux/bpf.h>
#include <linux/perf_event.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#define GIL_RING_BYTES (8u << 20) /* ~350k records; drained every few ms to 50 ms */
#define GIL_LICENSE "MIT"         /* no GPL-only helper is used */

/* BPF_LINK_CREATE for a uprobe_multi link (Linux 6.6), laid out by hand: the <linux/bpf.h>
 * fp is built with may predate it. */
#define GIL_TRACE_UPROBE_MULTI 48
#define GIL_F_UPROBE_MULTI_RETURN 1u
typedef struct gil_link_attr {
    uint32_t prog_fd, target_fd, attach_type, flags;
    uint64_t path, offsets, ref_ctr_offsets, cookies;
    uint32_t cnt, multi_flags, pid, pad;
} gil_link_attr;

static const char perm_hint[] =
    "gilstat installs uprobes and a BPF program: it needs root, or CAP_PERFMON and CAP_BPF\n"
    "(CAP_SYS_ADMIN before Linux 5.8). In a container: docker run --cap-add=PERFMON\n"
    "--cap-add=BPF (or --privileged), and a seccomp profile that allows perf_event_open and bpf.";

/* ---------------------------------------------------------------------------------------------
 * System calls and sysfs
 */

static long bpf_call(int cmd, union bpf_attr *attr)
{
    return syscall(SYS_bpf, cmd, attr, sizeof *attr);
}

static int read_sysfs_int(const char *path, const char *prefix, int *out)
{
    FILE *f = fopen(path, "re");
    if (!f) return -1;
    char buf[64] = "";
    bool ok = fgets(buf, sizeof buf, f) != NULL;
    fclose(f);
    size_t n = strlen(prefix);
    if (!ok || strncmp(buf, prefix, n) != 0) return -1;
    return sscanf(buf + n, "%d", out) == 1 ? 0 : -1;
}

/* The uprobe PMU's type, and which config bit turns an entry probe into a return probe. */
static int uprobe_pmu(int *type, int *ret_bit, fp_error *err)
{
    if (read_sysfs_int("/sys/bus/event_source/devices/uprobe/type", "", type) != 0)
        return fp_error_set(err, FP_E_UNSUPPORTED,
                            "a kernel with CONFIG_UPROBE_EVENTS, Linux 4.17 or newer, is needed",
                            "this kernel offers no uprobe PMU "
                            "(/sys/bus/event_source/devices/uprobe is missing)");
    if (read_sysfs_int("/sys/bus/event_source/devices/uprobe/format/retprobe",
                       "config:", ret_bit) != 0)
        *ret_bit = 0; /* the only layout the kernel has ever had */
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Maps and programs
 */

static int map_create(uint32_t type, uint32_t key, uint32_t value, uint32_t entries)
{
    union bpf_attr a;
    memset(&a, 0, sizeof a);
    a.map_type = type;
    a.key_size = key;
    a.value_size = value;
    a.max_entries = entries;
    int fd = (int)bpf_call(BPF_MAP_CREATE, &a);
    if (fd < 0 && errno == EPERM) {
        /* Before Linux 5.11 BPF memory counts against RLIMIT_MEMLOCK, even for root. */
        struct rlimit r = {RLIM_INFINITY, RLIM_INFINITY};
        if (setrlimit(RLIMIT_MEMLOCK, &r) == 0) fd = (int)bpf_call(BPF_MAP_CREATE, &a);
    }
    return fd;
}

#define INSN(c, d, s, o, i)                                                                        \
    ((struct bpf_insn){.code = (c), .dst_reg = (d), .src_reg = (s), .off = (o), .imm = (i)})
#define MOV64_REG(d, s) INSN(BPF_ALU64 | BPF_MOV | BPF_X, d, s, 0, 0)
#define MOV64_IMM(d, i) INSN(BPF_ALU64 | BPF_MOV | BPF_K, d, 0, 0, i)
#define ADD64_IMM(d, i) INSN(BPF_ALU64 | BPF_ADD | BPF_K, d, 0, 0, i)
#define CALL(f) INSN(BPF_JMP | BPF_CALL, 0, 0, 0, f)
#define EXIT() INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0)
#define JEQ_IMM(d, i, off) INSN(BPF_JMP | BPF_JEQ | BPF_K, d, 0, off, i)
#define STX_DW(d, s, off) INSN(BPF_STX | BPF_MEM | BPF_DW, d, s, off, 0)
#define STX_W(d, s, off) INSN(BPF_STX | BPF_MEM | BPF_W, d, s, off, 0)
#define ST_W(d, off, i) INSN(BPF_ST | BPF_MEM | BPF_W, d, 0, off, i)
#define LD_MAP(d, fd)                                                                              \
    INSN(BPF_LD | BPF_DW | BPF_IMM, d, BPF_PSEUDO_MAP_FD, 0, fd), INSN(0, 0, 0, 0, 0)
#define ATOMIC_ADD_DW(d, s, off) INSN(BPF_STX | BPF_ATOMIC | BPF_DW, d, s, off, BPF_ADD)

/* The program every probe runs: r10-16 = {ktime_get_ns(), tid, kind}, appended to the ring
 * without waking fp (it drains on its own schedule); when the ring is full, lost[0] += 1.
 * It returns 0, so the kernel writes no perf sample of its own. The uprobes are bound to the
 * target's memory, so no other process ever runs it. kind < 0: the kind is the probe's
 * attach cookie (one program for every probe of a uprobe_multi link); else a constant. */
static int prog_load(int ring_fd, int lost_fd, int kind, char *log, size_t log_size)
{
    struct bpf_insn insns[40];
    size_t n = 0;
#define EMIT(...)                                                                                  \
    do {                                                                                           \
        struct bpf_insn emit_[] = {__VA_ARGS__};                                                   \
        memcpy(insns + n, emit_, sizeof emit_);                                                    \
        n += sizeof emit_ / sizeof emit_[0];                                                       \
    } while (0)
    if (kind < 0) {
        EMIT(MOV64_REG(6, 1), CALL(BPF_FUNC_get_current_pid_tgid), MOV64_REG(7, 0), MOV64_REG(1, 6),
             CALL(BPF_FUNC_get_attach_cookie), STX_W(10, 0, -4));
    } else {
        EMIT(CALL(BPF_FUNC_get_current_pid_tgid), MOV64_REG(7, 0), ST_W(10, -4, kind));
    }
    EMIT(CALL(BPF_FUNC_ktime_get_ns), STX_DW(10, 0, -16),
         STX_W(10, 7, -8), /* the low half of pid_tgid: the thread id */
         LD_MAP(1, ring_fd), MOV64_REG(2, 10), ADD64_IMM(2, -16), MOV64_IMM(3, 16),
         MOV64_IMM(4, BPF_RB_NO_WAKEUP), CALL(BPF_FUNC_ringbuf_output),
         JEQ_IMM(0, 0, 9), /* written: done */
         ST_W(10, -20, 0), /* key 0 */
         LD_MAP(1, lost_fd), MOV64_REG(2, 10), ADD64_IMM(2, -20), CALL(BPF_FUNC_map_lookup_elem),
         JEQ_IMM(0, 0, 2), MOV64_IMM(1, 1), ATOMIC_ADD_DW(0, 1, 0), MOV64_IMM(0, 0), EXIT());
#undef EMIT
    union bpf_attr a;
    memset(&a, 0, sizeof a);
    a.prog_type = BPF_PROG_TYPE_KPROBE; /* uprobes run kprobe programs */
    a.expected_attach_type = kind < 0 ? GIL_TRACE_UPROBE_MULTI : 0;
    a.insns = (uint64_t)(uintptr_t)insns;
    a.insn_cnt = (uint32_t)n;
    a.license = (uint64_t)(uintptr_t)GIL_LICENSE;
    a.log_buf = (uint64_t)(uintptr_t)log;
    a.log_size = (uint32_t)log_size;
    a.log_level = 1;
    log[0] = '\0';
    return (int)bpf_call(BPF_PROG_LOAD, &a);
}

static int bpf_error(fp_error *err, const char *what, int e)
{
    if (e == EPERM || e == EACCES)
        return fp_error_set(err, FP_E_PERMISSION, perm_hint, "%s was refused: %s", what,
                            strerror(e));
    return fp_error_set(err, FP_E_UNSUPPORTED,
                        "gilstat needs Linux 5.8 or newer with BPF (CONFIG_BPF_SYSCALL, "
                        "CONFIG_BPF_EVENTS)",
                        "%s failed: %s", what, strerror(e));
}

static int setup_maps(gil_probes *p, fp_error *err)
{
    p->ring_fd = map_create(BPF_MAP_TYPE_RINGBUF, 0, 0, GIL_RING_BYTES);
    if (p->ring_fd < 0) return bpf_error(err, "creating a BPF ring buffer", errno);
    p->lost_fd = map_create(BPF_MAP_TYPE_ARRAY, 4, 8, 1);
    if (p->lost_fd < 0) return bpf_error(err, "creating a BPF map", errno);
    return 0;
}

/* One program per kind, for the one-event-per-probe path. */
static int setup_progs(gil_probes *p, fp_error *err)
{
    for (int k = 0; k < GIL_NKINDS; k++) {
        char log[4096];
        p->prog_fd[k] = prog_load(p->ring_fd, p->lost_fd, k, log, sizeof log);
        if (p->prog_fd[k] < 0) return bpf_error(err, "loading gilstat's BPF program", errno);
    }
    return 0;
}

static int setup_ring(gil_probes *p, fp_error *err)
{
    p->page = (size_t)sysconf(_SC_PAGESIZE);
    p->size = GIL_RING_BYTES;
    p->consumer = mmap(NULL, p->page, PROT_READ | PROT_WRITE, MAP_SHARED, p->ring_fd, 0);
    if (p->consumer == MAP_FAILED) {
        p->consumer = NULL;
        return fp_error_set(err, FP_E_INTERNAL, NULL, "mapping the ring buffer failed: %s",
                            strerror(errno));
    }
    /* The kernel maps the data pages twice in a row, so a record that wraps reads whole. */
    p->producer =
        mmap(NULL, p->page + 2 * p->size, PROT_READ, MAP_SHARED, p->ring_fd, (off_t)p->page);
    if (p->producer == MAP_FAILED) {
        p->producer = NULL;
        return fp_error_set(err, FP_E_INTERNAL, NULL, "mapping the ring buffer failed: %s",
                            strerror(errno));
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Probes
 */

static int probe_error(fp_error *err, const gil_target *t, const gil_site *s, int e)
{
    if (e == ESRCH) return fp_error_set(err, FP_E_NO_PROCESS, NULL, "process %d exited", t->pid);
    if (e == EPERM || e == EACCES)
        return fp_error_set(err, FP_E_PERMISSION, perm_hint,
                            "installing a uprobe in process %d was refused: %s", t->pid,
                            strerror(e));
    return fp_error_set(err, FP_E_UNSUPPORTED, NULL,
                        "the kernel could not put a uprobe on %s (%s+0x%llx): %s", s->what,
                        t->shown, (unsigned long long)s->offset, strerror(e));
}

static int probe_open(gil_probes *p, const gil_target *t, const gil_site *s, int type, int ret_bit,
                      fp_error *err)
{
    bool ret = s->kind == GIL_TAKE_OUT || s->kind == GIL_DROP_OUT;
    struct perf_event_attr a;
    memset(&a, 0, sizeof a);
    a.size = sizeof a;
    a.type = (uint32_t)type;
    a.config = ret ? 1ull << ret_bit : 0;
    a.config1 = (uint64_t)(uintptr_t)t->file; /* read by the kernel during this call only */
    a.config2 = s->offset;
    a.sample_period = 1;
    a.disabled = 1;
    /* pid: the uprobe goes into this process's memory only; the program sees all its threads.
     * No inherit: the kernel would re-read config1 (a pointer into fp) in the target. */
    int fd = (int)syscall(SYS_perf_event_open, &a, t->pid, -1, -1, PERF_FLAG_FD_CLOEXEC);
    if (fd < 0) return probe_error(err, t, s, errno);
    p->event_fd[p->nevents++] = fd;
    if (ioctl(fd, PERF_EVENT_IOC_SET_BPF, p->prog_fd[s->kind]) != 0)
        return bpf_error(err, "attaching gilstat's BPF program to a uprobe", errno);
    return 0;
}

static bool is_return(gil_kind k)
{
    return k == GIL_TAKE_OUT || k == GIL_DROP_OUT;
}

/* The one-event-per-probe path (Linux 4.17+): each perf uprobe event gets its program. The
 * return probes are enabled first: a return probe only fires for calls entered after it
 * exists, so no wait or release is ever seen without its start. */
static int open_events(gil_probes *p, const gil_target *t, fp_error *err)
{
    int type, ret_bit;
    int rc = uprobe_pmu(&type, &ret_bit, err);
    if (rc == 0) rc = setup_progs(p, err);
    for (int i = 0; rc == 0 && i < t->nsites; i++)
        rc = probe_open(p, t, &t->sites[i], type, ret_bit, err);
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; rc == 0 && i < p->nevents; i++)
            if (is_return(t->sites[i].kind) == (pass == 0) &&
                ioctl(p->event_fd[i], PERF_EVENT_IOC_ENABLE, 0) != 0)
                rc = fp_error_set(err, FP_E_INTERNAL, NULL, "enabling a uprobe failed: %s",
                                  strerror(errno));
    return rc;
}

/* One uprobe_multi link for the entries or the returns: the kind of each probe is its
 * cookie. Returns the link fd, or -1 with errno. */
static int link_open(gil_probes *p, const gil_target *t, bool returns)
{
    uint64_t offsets[GIL_MAX_SITES], cookies[GIL_MAX_SITES];
    uint32_t n = 0;
    for (int i = 0; i < t->nsites; i++) {
        if (is_return(t->sites[i].kind) != returns) continue;
        offsets[n] = t->sites[i].offset;
        cookies[n++] = (uint64_t)t->sites[i].kind;
    }
    gil_link_attr a;
    memset(&a, 0, sizeof a);
    a.prog_fd = (uint32_t)p->prog_fd[0];
    a.attach_type = GIL_TRACE_UPROBE_MULTI;
    a.path = (uint64_t)(uintptr_t)t->file;
    a.offsets = (uint64_t)(uintptr_t)offsets;
    a.cookies = (uint64_t)(uintptr_t)cookies;
    a.cnt = n;
    a.multi_flags = returns ? GIL_F_UPROBE_MULTI_RETURN : 0;
    a.pid = (uint32_t)t->pid; /* the probes go into this process's memory only */
    return (int)syscall(SYS_bpf, BPF_LINK_CREATE, &a, sizeof a);
}

/* The uprobe_multi path (Linux 6.6+): one program, two links (returns first, see above).
 * Preferred because removing a uprobe waits for an RCU grace period in the kernel, once per
 * perf event but once per link here. Returns 1 when this kernel lacks it (use the events). */
static int open_links(gil_probes *p, const gil_target *t, fp_error *err)
{
    char log[4096];
    p->prog_fd[0] = prog_load(p->ring_fd, p->lost_fd, -1, log, sizeof log);
    if (p->prog_fd[0] < 0) {
        if (errno == EPERM || errno == EACCES)
            return bpf_error(err, "loading gilstat's BPF program", errno);
        return 1;
    }
    for (int r = 1; r >= 0; r--) {
        int fd = link_open(p, t, r == 1);
        if (fd < 0) {
            int e = errno;
            if (p->nlinks == 0 && e != EPERM && e != EACCES && e != ESRCH) return 1;
            return probe_error(err, t, &t->sites[0], e);
        }
        p->link_fd[p->nlinks++] = fd;
    }
    p->multi = true;
    return 0;
}

int fp_gil_probes_open(gil_probes *p, const gil_target *t, fp_error *err)
{
    memset(p, 0, sizeof *p);
    p->ring_fd = p->lost_fd = -1;
    for (int k = 0; k < GIL_NKINDS; k++)
        p->prog_fd[k] = -1;
    int rc = setup_maps(p, err);
    if (rc == 0) rc = setup_ring(p, err);
    /* FP_GILSTAT_PERF_EVENTS=1 takes the older kernels' path here too (tests cover both). */
    const char *force = getenv("FP_GILSTAT_PERF_EVENTS");
    if (rc == 0) rc = force && strcmp(force, "1") == 0 ? 1 : open_links(p, t, err);
    if (rc == 1) {
        if (p->prog_fd[0] >= 0) close(p->prog_fd[0]);
        p->prog_fd[0] = -1;
        rc = open_events(p, t, err);
    }
    if (rc != 0) fp_gil_probes_close(p);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Draining
 */

long fp_gil_probes_drain(gil_probes *p, gil_record_fn fn, void *ud)
{
    if (!p->producer) return 0;
    uint64_t *cons_pos = p->consumer;
    const uint64_t *prod_pos = p->producer;
    const unsigned char *data = (const unsigned char *)p->producer + p->page;
    uint64_t cons = __atomic_load_n(cons_pos, __ATOMIC_ACQUIRE);
    uint64_t prod = __atomic_load_n(prod_pos, __ATOMIC_ACQUIRE);
    long n = 0;
    while (cons < prod) {
        const unsigned char *rec = data + (cons & (p->size - 1));
        uint32_t hdr = __atomic_load_n((const uint32_t *)rec, __ATOMIC_ACQUIRE);
        if (hdr & BPF_RINGBUF_BUSY_BIT) break; /* still being written: next time */
        uint32_t len = hdr & ~(BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT);
        if (!(hdr & BPF_RINGBUF_DISCARD_BIT) && len == sizeof(gil_record)) {
            gil_record r;
            memcpy(&r, rec + BPF_RINGBUF_HDR_SZ, sizeof r);
            fn(&r, ud);
            n++;
        }
        cons += (BPF_RINGBUF_HDR_SZ + len + 7) & ~7ull;
        __atomic_store_n(cons_pos, cons, __ATOMIC_RELEASE);
    }
    return n;
}

uint64_t fp_gil_probes_lost(const gil_probes *p)
{
    if (p->lost_fd < 0) return 0;
    uint32_t key = 0;
    uint64_t value = 0;
    union bpf_attr a;
    memset(&a, 0, sizeof a);
    a.map_fd = (uint32_t)p->lost_fd;
    a.key = (uint64_t)(uintptr_t)&key;
    a.value = (uint64_t)(uintptr_t)&value;
    return bpf_call(BPF_MAP_LOOKUP_ELEM, &a) == 0 ? value : 0;
}

static void *close_one(void *fd)
{
    close((int)(intptr_t)fd);
    return NULL;
}

/* Removing uprobes waits for an RCU grace period in the kernel (0.05-0.3 s here, seconds on
 * a loaded machine): once per perf event, once per link. The fds are closed on threads of
 * their own so that waits the kernel can overlap do. Once closed, the breakpoints are out of
 * the process (a thread inside take_gil keeps its hijacked return, which the kernel still
 * resolves). */
static void close_parallel(const int *fds, int n)
{
    pthread_t th[GIL_MAX_SITES];
    bool started[GIL_MAX_SITES] = {false};
    for (int i = 0; i < n; i++)
        started[i] = pthread_create(&th[i], NULL, close_one, (void *)(intptr_t)fds[i]) == 0;
    for (int i = 0; i < n; i++) {
        if (started[i])
            pthread_join(th[i], NULL);
        else
            close(fds[i]);
    }
}

void fp_gil_probes_close(gil_probes *p)
{
    close_parallel(p->link_fd, p->nlinks);
    close_parallel(p->event_fd, p->nevents);
    for (int k = 0; k < GIL_NKINDS; k++)
        if (p->prog_fd[k] >= 0) close(p->prog_fd[k]);
    if (p->producer) munmap(p->producer, p->page + 2 * p->size);
    if (p->consumer) munmap(p->consumer, p->page);
    if (p->ring_fd >= 0) close(p->ring_fd);
    if (p->lost_fd >= 0) close(p->lost_fd);
    memset(p, 0, sizeof *p);
    p->ring_fd = p->lost_fd = -1;
    for (int k = 0; k < GIL_NKINDS; k++)
        p->prog_fd[k] = -1;
}
