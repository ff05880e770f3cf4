/* Private to the out-of-process reader (server/remote/): the per-version layouts, the handle,
 * memory and object readers, the code-object cache, line tables, threads, frames, stopping.
 * Sections: layouts, the handle, memory, arena, objects and code objects, line tables,
 * threads, frames, stopping, native frames. */
#ifndef FP_REMOTE_INTERNAL_H
#define FP_REMOTE_INTERNAL_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fp_remote.h"

/* ===================================================================== layouts */

/* Offsets (bytes) of the fields the reader uses, for one CPython minor version; -1 where the
 * version has no such field. layouts.c holds one table per version, generated and checked by
 * scripts/py_layouts.py against that version's headers; 3.13+ overlays the _Py_DebugOffsets
 * table the interpreter carries at the start of _PyRuntime. */
typedef struct fp_py_layout {
    long minor;
    /* _PyRuntime */
    long runtime_interpreters_head, runtime_interpreters_main, runtime_main_thread;
    long runtime_gil_locked, runtime_gil_holder; /* 3.8 - 3.11: one GIL in _PyRuntime.ceval */
    long interp_ceval_gil;                       /* 3.12+: PyInterpreterState.ceval.gil */
    long gil_locked, gil_holder;                 /* 3.12+: in struct _gil_runtime_state */
    /* PyInterpreterState */
    long interp_next, interp_threads_head;
    /* PyThreadState */
    long tstate_next, tstate_interp, tstate_thread_id, tstate_native_thread_id;
    long tstate_frame;         /* frame (3.8-3.10), cframe (3.11, 3.12), current_frame (3.13) */
    long cframe_current_frame; /* 3.11, 3.12: _PyCFrame.current_frame */
    /* PyFrameObject (3.8 - 3.10) or _PyInterpreterFrame (3.11+) */
    long frame_previous, frame_code, frame_lasti, frame_instr, frame_owner;
    long frame_is_entry; /* 3.11 only (3.12+ marks entries with a FRAME_OWNED_BY_CSTACK shim) */
    long frame_gen;      /* up to 3.10: PyFrameObject.f_gen, the generator a frame belongs to */
    /* PyCodeObject */
    long code_filename, code_name, code_firstlineno, code_linetable;
    long code_flags; /* co_flags: CO_GENERATOR, CO_COROUTINE... */
    long code_qualname, code_adaptive, code_firsttraceable;
    /* objects, str, bytes */
    long object_type;
    long unicode_length, unicode_state, unicode_ascii_data, unicode_compact_data, unicode_data_any;
    long bytes_size, bytes_data;
    /* what reading threading._active takes: sys.modules, modules, types, dicts, ints */
    long interp_modules, module_dict;
    long type_flags, type_basicsize, type_dictoffset, heaptype_cached_keys;
    long dict_keys, dict_values;
    long keys_size;                                        /* 3.8 - 3.10: dk_size */
    long keys_log2_size, keys_log2_index_bytes, keys_kind; /* 3.11+ */
    long keys_nentries, keys_indices;
    long values_values, values_valid; /* PyDictValues (3.11+; valid: 3.13+) */
    long long_size, long_digits;      /* ob_size (3.8 - 3.11) or lv_tag (3.12+) */
} fp_py_layout;

/* The built-in table for 3.minor, or NULL when fp has none. */
const fp_py_layout *fp_remote_layout_builtin(int minor);
/* 3.13+: reads the _Py_DebugOffsets table at runtime_addr and overlays what it gives onto
 * *l (which starts as the built-in table, if any). Returns 0, or -1 with err when the table
 * is missing (cookie) or for another version. */
int fp_remote_layout_debug(int pid, uint64_t runtime_addr, int minor, fp_py_layout *l,
                           fp_error *err);

/* ===================================================================== the handle */

typedef struct fp_remote_code fp_remote_code;

typedef struct fp_remote_code_cache {
    fp_remote_code *slots; /* open addressing on the code object's address */
    size_t cap, used;
} fp_remote_code_cache;

typedef struct fp_native fp_native; /* fp_native.h */

/* Threads that did not stop in time: still seized, reaped at the next snapshot or close. */
#define FP_REMOTE_MAX_STRAGGLERS 16

struct fp_remote {
    int pid;
    int minor;
    char version[32];
    bool is_static;     /* the interpreter is the executable itself (no libpython) */
    uint64_t runtime;   /* &_PyRuntime */
    uint64_t code_type; /* &PyCode_Type, 0 when unknown (then code objects are not checked) */
    fp_py_layout layout;
    long pthread_tid_off; /* 3.8 - 3.10: offset of the kernel tid in glibc's struct pthread;
                             -1: not found yet, -2: cannot be found */
    fp_remote_code_cache codes;
    fp_native *native; /* opened on the first FP_SNAP_NATIVE snapshot */
    int stragglers[FP_REMOTE_MAX_STRAGGLERS];
    int nstragglers;
    /* Where memory comes from: NULL is the process (process_vm_readv); the fuzz target gives a
     * reader of made-up memory, to prove that no content of the target's memory can crash or
     * hang the reader. Returns 0 when all len bytes were read. */
    int (*read_mem)(void *ud, uint64_t addr, void *buf, size_t len);
    void *read_ud;
    unsigned long read_errors; /* failed reads, for --debug */
    unsigned long torn_reads;  /* frame chains that ended on garbage (fp_remote_read_frames) */
    /* 3.12+: the interpreter trampoline, the code object of every shim frame, learnt from
     * the first one named (frames.c): a shim whose owner byte is not written yet still is one */
    uint64_t trampoline_code;
};

/* ===================================================================== memory */

/* Reads len bytes at addr; 0 or -1. Addresses below 4096 and absurd ones fail fast. */
int fp_remote_read(fp_remote *r, uint64_t addr, void *buf, size_t len);
int fp_remote_read_ptr(fp_remote *r, uint64_t addr, uint64_t *out);
/* A field of a block read earlier: 8 / 4 bytes at off of buf (size len); 0 when off < 0 or
 * out of the block. */
uint64_t fp_remote_field_ptr(const void *buf, size_t len, long off);
int32_t fp_remote_field_i32(const void *buf, size_t len, long off);

/* ===================================================================== arena */

/* Strings of one snapshot, freed all at once (fp_remote_snapshot.strings). */
/* One arena for every reader (snapshots, native symbols, profiles); see arena.c. */
typedef struct fp_remote_arena fp_remote_arena;
fp_remote_arena *fp_remote_arena_new(void);
/* len bytes aligned to align (a power of two), living until the arena is freed; NULL when
 * memory runs out. */
void *fp_remote_arena_alloc(fp_remote_arena *a, size_t len, size_t align);
/* A copy of s (NULL: "") in the arena; "?" when memory runs out. */
const char *fp_remote_arena_strdup(fp_remote_arena *a, const char *s);
/* The arena's one copy of s: equal strings give the same pointer. NULL when memory runs out. */
const char *fp_remote_arena_intern(fp_remote_arena *a, const char *s);
void fp_remote_arena_free(fp_remote_arena *a);

/* ===================================================================== objects and code objects */

#define FP_REMOTE_MAX_STR 4096 /* longest name or file name read from the target */

/* Reads the str object at addr as UTF-8 into buf (NUL-terminated, cut at size - 1 bytes).
 * Returns the length, or -1 when addr is not a readable str. */
int fp_remote_read_str(fp_remote *r, uint64_t addr, char *buf, size_t size);
/* Reads the bytes object at addr: a malloc'd copy (caller frees) of at most max bytes. */
uint8_t *fp_remote_read_bytes(fp_remote *r, uint64_t addr, size_t max, size_t *len);
/* Reads the int object at addr (at most 90 bits). Returns 0 or -1. */
int fp_remote_read_int(fp_remote *r, uint64_t addr, int64_t *out);
/* Calls fn for each item of the dict at dict until it returns true. Returns 0 or -1. */
typedef bool (*fp_remote_item_fn)(fp_remote *r, uint64_t key, uint64_t value, void *ud);
int fp_remote_dict_each(fp_remote *r, uint64_t dict, fp_remote_item_fn fn, void *ud);
/* The value stored under the str key name in the dict at dict; 0 when absent. */
uint64_t fp_remote_dict_get(fp_remote *r, uint64_t dict, const char *name);
/* The instance attribute name of obj (from its __dict__, managed or inline); 0 when absent. */
uint64_t fp_remote_attr(fp_remote *r, uint64_t obj, const char *name);

/* What the reader keeps about a code object. Owned by the cache: valid until the next
 * fp_remote_code_get (an entry may be evicted and reused then). */
struct fp_remote_code {
    uint64_t addr;                   /* 0: free slot */
    uint64_t filename_ptr, name_ptr; /* the generation check: a freed and reused address
                                        will not have the same str objects */
    int firstlineno;
    int firsttraceable; /* 3.11+: index of the first traceable code unit */
    int flags;          /* co_flags */
    char *name;         /* co_name */
    char *qualname;     /* co_qualname (3.11+), else co_name */
    char *file;
    uint8_t *linetable; /* co_lnotab (3.8, 3.9) or co_linetable (3.10+) */
    size_t linetable_len;
};

/* The code object at addr, read (or taken from the cache after a check that it is still
 * the same object). NULL when addr is not a readable code object. */
const fp_remote_code *fp_remote_code_get(fp_remote *r, uint64_t addr);
void fp_remote_code_cache_free(fp_remote_code_cache *c);

/* ===================================================================== line tables */

/* The line of the instruction at byte offset addrq of a code object, by format. They
 * return firstlineno for addrq < 0 (a frame that has not started) and 0 when the
 * instruction has no line or the table ends before it. Pure: unit-tested. */
int fp_remote_line_lnotab(const uint8_t *tab, size_t len, int firstlineno,
                          long addrq);                                               /* 3.8, 3.9 */
int fp_remote_line_310(const uint8_t *tab, size_t len, int firstlineno, long addrq); /* 3.10 */
int fp_remote_line_locations(const uint8_t *tab, size_t len, int firstlineno,
                             long addrq); /* 3.11+ */
/* Dispatches on the version. */
int fp_remote_code_line(const fp_remote *r, const fp_remote_code *c, long addrq);

/* ===================================================================== threads */

/* Kernel thread ids of the process (/proc/PID/task), malloc'd; returns the count or -1. */
int fp_remote_tasks(int pid, int **tids);
/* The state letter (R, S, D...) and the name (comm) of one thread; state '?' when gone. */
void fp_remote_task_info(int pid, int tid, char *state, char *name, size_t name_size);

/* Every PyThreadState of every interpreter, oldest first (the main thread's first): tstate,
 * ident, native_id (3.11+; else 0), holds_gil, is_main filled; frames NULL. *out is
 * malloc'd (caller frees). Returns the count or -1 with err. */
int fp_remote_read_threads(fp_remote *r, fp_thread **out, fp_error *err);
/* threading's names and daemon flags for the threads it knows (threading._active); strings
 * in a. Threads it does not know keep thread_name NULL and daemon -1. */
void fp_remote_thread_names(fp_remote *r, fp_thread *threads, int n, fp_remote_arena *a);
/* 3.8 - 3.10: native ids from the idents (pthread_t: glibc's struct pthread holds the tid),
 * given the process's tids. */
void fp_remote_map_native_ids(fp_remote *r, fp_thread *threads, int n, const int *tids, int ntids);

/* ===================================================================== frames */

#define FP_REMOTE_MAX_FRAMES 1024 /* deeper stacks are cut (the innermost frames are kept) */

/* The Python frames of tstate, innermost first, raw: kind, addr (the code object) and, in
 * offset, the instruction's byte offset; function and file NULL until
 * fp_remote_resolve_frames. This is the part to do while the thread is stopped. Fills
 * frames[0..max) and, when entry is not NULL, entry[i]: frame i is the first one a C call of
 * the eval loop pushed (what the native merge needs). Returns the count: 0 for an idle
 * thread or an unreadable one. A garbage chain ends early (bounded; cycles end it). */
int fp_remote_read_frames(fp_remote *r, uint64_t tstate, fp_frame *frames, bool *entry, int max);
/* The same for n thread states at once, one read per level of the chains for all of them
 * (a pause with fifty threads costs a few system calls, not hundreds). out[i] gets the
 * frames and entry flags of tstates[i], malloc'd (caller frees both), and torn. Returns 0,
 * or -1 when out of memory. */
typedef struct fp_remote_chain {
    fp_frame *frames;
    bool *entry;
    int count;
    bool torn;
} fp_remote_chain;
int fp_remote_read_chains(fp_remote *r, const uint64_t *tstates, int n, int max,
                          fp_remote_chain *out);
/* Names the raw Python frames among frames[0..n) (function, file, line, first_line; strings
 * in a), dropping those whose code object cannot be read and those still being set up.
 * Other frames are kept as they are. Returns the new count; *torn set when the chain cannot
 * be whole (up to 3.10: its outermost frame runs a generator's code). */
int fp_remote_resolve_frames(fp_remote *r, fp_frame *frames, int n, fp_remote_arena *a, bool *torn);

/* ===================================================================== stopping */

/* Stops every thread of the process (PTRACE_SEIZE + PTRACE_INTERRUPT; registers untouched),
 * threads that appear meanwhile included, except those in uninterruptible sleep (they are
 * in the kernel and do not run). Returns an opaque set (NULL with err: permission, gone). */
typedef struct fp_remote_stopped fp_remote_stopped;
fp_remote_stopped *fp_remote_stop(fp_remote *r, int timeout_ms, fp_error *err);
/* Whether tid is stopped in the set. */
bool fp_remote_is_stopped(const fp_remote_stopped *s, int tid);
/* Lets every thread go; frees s. Returns how long the first one was held, in ms. */
double fp_remote_release(fp_remote *r, fp_remote_stopped *s);
/* Threads left seized by an earlier stop that timed out: detach those that stopped since.
 * wait_ms > 0 waits that long for the others (at close). */
void fp_remote_reap_stragglers(fp_remote *r, int wait_ms);

/* ===================================================================== native frames */

/* Replaces t->frames (Python frames, innermost first, with py_entry flags as
 * fp_remote_read_frames gives them) by the thread's native frames merged with them; t must
 * be ptrace-stopped. Strings go to a. A weak default in snapshot.c does this with
 * fp_native.h; a strong definition elsewhere replaces it. Returns 0 or -1 with err
 * (FP_E_UNSUPPORTED: native frames are not available in this build). */
int fp_remote_native_unwind(fp_remote *r, fp_thread *t, const bool *py_entry, fp_remote_arena *a,
                            fp_error *err);

#endif
