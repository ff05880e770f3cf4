/* The target's Python C API, reached at run time (pyapi.h): the one table of every function and
 * object libfpagent uses, and its resolver. Also loads the agent's Python package from beside
 * the library and calls into it. */
#include "agent.h"
#include "fp_paths.h"
#include "pyapi.h"

#include <dlfcn.h>
#include <limits.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ===================================== The table ============================================= */

fp_py_api fp_py;
static atomic_int api_resolved;
/* Groups (FP_PYG_*) with a required symbol missing on this Python. */
static unsigned fp_py_missing;
/* The first word of Py_GetVersion() ("3.12.1"), copied once. Py_GetVersion() reformats a static
 * buffer at every call; the text is always the same, so a concurrent call elsewhere is harmless
 * (ThreadSanitizer still reports it), but we call it once, after initialization, not per status. */
static char fp_py_version[32];

/* Every symbol: its name, its slot in fp_py, the groups that cannot work without it (0: those
 * that use it check for NULL). */
typedef struct fp_py_sym {
    const char *name;
    size_t offset;
    unsigned required;
} fp_py_sym;

static const fp_py_sym fp_py_syms[] = {
    {"Py_IsInitialized", offsetof(fp_py_api, Py_IsInitialized), FP_PYG_CORE},
    {"Py_GetVersion", offsetof(fp_py_api, Py_GetVersion), FP_PYG_CORE},
    {"PyGILState_Ensure", offsetof(fp_py_api, PyGILState_Ensure), FP_PYG_CORE},
    {"PyGILState_Release", offsetof(fp_py_api, PyGILState_Release), FP_PYG_CORE},
    {"PyThreadState_Get", offsetof(fp_py_api, PyThreadState_Get), FP_PYG_TRACE},
    {"PyThreadState_SetAsyncExc", offsetof(fp_py_api, PyThreadState_SetAsyncExc), FP_PYG_CORE},
    {"PyThread_get_thread_ident", offsetof(fp_py_api, PyThread_get_thread_ident),
     FP_PYG_MONITOR | FP_PYG_COUNT},
    {"PyRun_StringFlags", offsetof(fp_py_api, PyRun_StringFlags), FP_PYG_CORE},
    {"PyEval_GetBuiltins", offsetof(fp_py_api, PyEval_GetBuiltins), FP_PYG_CORE},
    {"PyEval_GetFrame", offsetof(fp_py_api, PyEval_GetFrame), FP_PYG_TRACE | FP_PYG_MONITOR},
    {"PyEval_SetProfile", offsetof(fp_py_api, PyEval_SetProfile), FP_PYG_TRACE},
    {"_PyEval_SetProfile", offsetof(fp_py_api, PyEval_SetProfileTstate), 0},
    {"PyFrame_GetCode", offsetof(fp_py_api, PyFrame_GetCode), 0},
    {"PyFrame_GetLineNumber", offsetof(fp_py_api, PyFrame_GetLineNumber), 0},
    {"PyFrame_GetVar", offsetof(fp_py_api, PyFrame_GetVar), FP_PYG_MONITOR},
    {"Py_IncRef", offsetof(fp_py_api, Py_IncRef), FP_PYG_TRACE | FP_PYG_MONITOR | FP_PYG_COUNT},
    {"Py_DecRef", offsetof(fp_py_api, Py_DecRef),
     FP_PYG_CORE | FP_PYG_TRACE | FP_PYG_MONITOR | FP_PYG_EVENTS},
    {"PyObject_CallFunctionObjArgs", offsetof(fp_py_api, PyObject_CallFunctionObjArgs),
     FP_PYG_CORE | FP_PYG_MONITOR | FP_PYG_COUNT},
    {"PyObject_CallObject", offsetof(fp_py_api, PyObject_CallObject), FP_PYG_TRACE},
    {"PyObject_GetAttrString", offsetof(fp_py_api, PyObject_GetAttrString), FP_PYG_CORE},
    {"PyObject_SetAttrString", offsetof(fp_py_api, PyObject_SetAttrString),
     FP_PYG_TRACE | FP_PYG_MONITOR | FP_PYG_EVENTS | FP_PYG_COUNT},
    {"PyObject_Str", offsetof(fp_py_api, PyObject_Str), FP_PYG_CORE},
    {"PyObject_IsTrue", offsetof(fp_py_api, PyObject_IsTrue),
     FP_PYG_MONITOR | FP_PYG_EVENTS | FP_PYG_COUNT},
    {"PyCFunction_NewEx", offsetof(fp_py_api, PyCFunction_NewEx),
     FP_PYG_TRACE | FP_PYG_MONITOR | FP_PYG_EVENTS | FP_PYG_COUNT},
    {"PyCapsule_New", offsetof(fp_py_api, PyCapsule_New), FP_PYG_TRACE},
    {"PyCapsule_GetPointer", offsetof(fp_py_api, PyCapsule_GetPointer), FP_PYG_TRACE},
    {"PyType_GetFlags", offsetof(fp_py_api, PyType_GetFlags), FP_PYG_TRACE},
    {"PyType_FromMetaclass", offsetof(fp_py_api, PyType_FromMetaclass), 0},
    {"PyType_FromSpec", offsetof(fp_py_api, PyType_FromSpec), 0},
    {"PyType_GenericAlloc", offsetof(fp_py_api, PyType_GenericAlloc), 0},
    {"PyVectorcall_Call", offsetof(fp_py_api, PyVectorcall_Call), 0},
    {"PyDict_New", offsetof(fp_py_api, PyDict_New),
     FP_PYG_CORE | FP_PYG_TRACE | FP_PYG_MONITOR | FP_PYG_COUNT},
    {"PyDict_SetItem", offsetof(fp_py_api, PyDict_SetItem), FP_PYG_MONITOR},
    {"PyDict_SetItemString", offsetof(fp_py_api, PyDict_SetItemString),
     FP_PYG_CORE | FP_PYG_TRACE | FP_PYG_MONITOR | FP_PYG_COUNT},
    {"PyDict_GetItemString", offsetof(fp_py_api, PyDict_GetItemString), FP_PYG_CORE},
    {"PyDict_Update", offsetof(fp_py_api, PyDict_Update), FP_PYG_MONITOR},
    {"PyDict_Size", offsetof(fp_py_api, PyDict_Size), FP_PYG_MONITOR},
    {"PySet_Size", offsetof(fp_py_api, PySet_Size), FP_PYG_MONITOR | FP_PYG_COUNT},
    {"PySet_Contains", offsetof(fp_py_api, PySet_Contains), FP_PYG_MONITOR | FP_PYG_COUNT},
    {"PyTuple_New", offsetof(fp_py_api, PyTuple_New), FP_PYG_TRACE | FP_PYG_MONITOR | FP_PYG_COUNT},
    {"PyTuple_SetItem", offsetof(fp_py_api, PyTuple_SetItem),
     FP_PYG_TRACE | FP_PYG_MONITOR | FP_PYG_COUNT},
    {"PyTuple_GetItem", offsetof(fp_py_api, PyTuple_GetItem), FP_PYG_TRACE | FP_PYG_MONITOR},
    {"PyTuple_Size", offsetof(fp_py_api, PyTuple_Size), FP_PYG_TRACE | FP_PYG_MONITOR},
    {"PyList_New", offsetof(fp_py_api, PyList_New), FP_PYG_TRACE | FP_PYG_MONITOR | FP_PYG_COUNT},
    {"PyList_SetItem", offsetof(fp_py_api, PyList_SetItem),
     FP_PYG_TRACE | FP_PYG_MONITOR | FP_PYG_COUNT},
    {"PySequence_Concat", offsetof(fp_py_api, PySequence_Concat), FP_PYG_MONITOR},
    {"PyLong_FromLongLong", offsetof(fp_py_api, PyLong_FromLongLong),
     FP_PYG_CORE | FP_PYG_TRACE | FP_PYG_MONITOR | FP_PYG_COUNT},
    {"PyLong_FromUnsignedLong", offsetof(fp_py_api, PyLong_FromUnsignedLong),
     FP_PYG_MONITOR | FP_PYG_COUNT},
    {"PyLong_AsLongLong", offsetof(fp_py_api, PyLong_AsLongLong),
     FP_PYG_TRACE | FP_PYG_EVENTS | FP_PYG_COUNT},
    {"PyBool_FromLong", offsetof(fp_py_api, PyBool_FromLong),
     FP_PYG_TRACE | FP_PYG_MONITOR | FP_PYG_EVENTS},
    {"PyUnicode_FromString", offsetof(fp_py_api, PyUnicode_FromString), FP_PYG_TRACE},
    {"PyUnicode_FromStringAndSize", offsetof(fp_py_api, PyUnicode_FromStringAndSize), FP_PYG_CORE},
    {"PyUnicode_DecodeFSDefault", offsetof(fp_py_api, PyUnicode_DecodeFSDefault), FP_PYG_CORE},
    {"PyUnicode_AsUTF8AndSize", offsetof(fp_py_api, PyUnicode_AsUTF8AndSize),
     FP_PYG_CORE | FP_PYG_EVENTS},
    {"PyErr_Occurred", offsetof(fp_py_api, PyErr_Occurred),
     FP_PYG_CORE | FP_PYG_TRACE | FP_PYG_EVENTS | FP_PYG_COUNT},
    {"PyErr_Fetch", offsetof(fp_py_api, PyErr_Fetch), FP_PYG_CORE | FP_PYG_TRACE},
    {"PyErr_Restore", offsetof(fp_py_api, PyErr_Restore), FP_PYG_TRACE},
    {"PyErr_NormalizeException", offsetof(fp_py_api, PyErr_NormalizeException), FP_PYG_CORE},
    {"PyErr_Clear", offsetof(fp_py_api, PyErr_Clear),
     FP_PYG_CORE | FP_PYG_TRACE | FP_PYG_MONITOR | FP_PYG_EVENTS | FP_PYG_COUNT},
    {"PyErr_SetString", offsetof(fp_py_api, PyErr_SetString), FP_PYG_TRACE | FP_PYG_EVENTS},
    {"PyErr_ExceptionMatches", offsetof(fp_py_api, PyErr_ExceptionMatches), FP_PYG_MONITOR},
    {"PyErr_GetExcInfo", offsetof(fp_py_api, PyErr_GetExcInfo), FP_PYG_TRACE},
    {"PyErr_SetExcInfo", offsetof(fp_py_api, PyErr_SetExcInfo), FP_PYG_TRACE},
    {"_Py_NoneStruct", offsetof(fp_py_api, none),
     FP_PYG_CORE | FP_PYG_TRACE | FP_PYG_MONITOR | FP_PYG_COUNT},
    {"PyModule_Type", offsetof(fp_py_api, module_type), FP_PYG_TRACE},
    {"PyType_Type", offsetof(fp_py_api, type_type), FP_PYG_TRACE},
    {"PyCFunction_Type", offsetof(fp_py_api, cfunction_type), FP_PYG_TRACE},
    {"PyCMethod_Type", offsetof(fp_py_api, cmethod_type), 0},
    {"PyMethodDescr_Type", offsetof(fp_py_api, methoddescr_type), FP_PYG_TRACE},
    {"PyExc_KeyboardInterrupt", offsetof(fp_py_api, keyboard_interrupt),
     FP_PYG_CORE | FP_PYG_MONITOR},
    {"PyExc_RuntimeError", offsetof(fp_py_api, runtime_error), FP_PYG_TRACE},
    {"PyExc_TypeError", offsetof(fp_py_api, type_error), FP_PYG_TRACE | FP_PYG_EVENTS},
};

/* ===================================== Resolution ============================================ */

/* A libpython loaded without RTLD_GLOBAL (an embedding application that dlopen()ed it) is not
 * in RTLD_DEFAULT's scope; find it among the loaded objects instead. */
static int fp_py_find_libpython(struct dl_phdr_info *info, size_t size, void *data)
{
    const char *name = info->dlpi_name ? info->dlpi_name : "";
    const char *base = strrchr(name, '/');
    base = base ? base + 1 : name;
    if (strncmp(base, "libpython3", 10) != 0) return 0;
    snprintf(data, PATH_MAX, "%s", name);
    return 1;
}

static void *fp_py_lookup(void *handle, const char *name)
{
    void *p = dlsym(RTLD_DEFAULT, name);
    if (!p && handle) p = dlsym(handle, name);
    return p;
}

static void fp_py_store(size_t offset, void *p)
{
    memcpy((char *)&fp_py + offset, &p, sizeof(p));
}

int fp_py_usable(unsigned group)
{
    return atomic_load(&api_resolved) && !(fp_py_missing & group);
}

int fp_agent_py_resolve(void)
{
    if (atomic_load(&api_resolved)) return 0;
    void *handle = NULL;
    if (!dlsym(RTLD_DEFAULT, "Py_IsInitialized")) {
        char path[PATH_MAX] = "";
        /* dlopen is not called from the callback: dl_iterate_phdr holds a loader lock. */
        if (dl_iterate_phdr(fp_py_find_libpython, path) && path[0])
            handle = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
        if (!handle) {
            fp_agent_set_error("no Python C API in this process (Py_IsInitialized not found)");
            return -1;
        }
    }
    unsigned missing = 0;
    for (size_t i = 0; i < sizeof(fp_py_syms) / sizeof(fp_py_syms[0]); i++) {
        void *p = fp_py_lookup(handle, fp_py_syms[i].name);
        if (!p && (fp_py_syms[i].required & FP_PYG_CORE)) {
            fp_agent_set_error("the Python C API lacks %s", fp_py_syms[i].name);
            if (handle) dlclose(handle);
            return -1;
        }
        if (!p) missing |= fp_py_syms[i].required;
        fp_py_store(fp_py_syms[i].offset, p);
    }
    void *fin = fp_py_lookup(handle, "Py_IsFinalizing");
    if (!fin) fin = fp_py_lookup(handle, "_Py_IsFinalizing");
    if (!fin) {
        fp_agent_set_error("the Python C API lacks Py_IsFinalizing");
        if (handle) dlclose(handle);
        return -1;
    }
    fp_py_store(offsetof(fp_py_api, IsFinalizing), fin);
    fp_py_missing = missing;
    /* The handle (if any) stays open on purpose: libpython must not go while we use it. */
    atomic_store(&api_resolved, 1);
    return 0;
}

int fp_agent_py_initialized(void)
{
    return atomic_load(&api_resolved) && fp_py.Py_IsInitialized();
}

int fp_agent_py_ready_to_serve(void)
{
    if (!fp_agent_py_usable()) {
        fp_agent_set_error("the Python interpreter is shutting down");
        return -1;
    }
    const char *v = fp_py.Py_GetVersion();
    size_t n = strcspn(v, " ");
    if (n >= sizeof(fp_py_version)) n = sizeof(fp_py_version) - 1;
    memcpy(fp_py_version, v, n);
    fp_py_version[n] = '\0';
    return 0;
}

int fp_agent_py_usable(void)
{
    return fp_agent_py_initialized() && !fp_py.IsFinalizing();
}

const char *fp_agent_py_version(void)
{
    return fp_py_version;
}

int fp_agent_py_gil_ensure(void)
{
    return fp_py.PyGILState_Ensure();
}

void fp_agent_py_gil_release(int state)
{
    fp_py.PyGILState_Release(state);
}

/* ===================================== The package =========================================== */

/* Where the package is: <dir of libfpagent.so>/python/fp_agent. */
static char fp_py_pkg_dir[PATH_MAX];

/* The package's entry points. Read and written only with the GIL held (which also orders the
 * loads and unloads of instances that overlap after a restart). */
static fp_pyobj *fp_py_handle, *fp_py_gone, *fp_py_shutdown;
/* The instance whose shutdown unloads the package: the latest one that used it. */
static _Atomic uint64_t fp_py_owner;
static atomic_int fp_py_loaded;

void fp_agent_py_locate(void)
{
    Dl_info info;
    char lib[PATH_MAX];
    if (!dladdr((void *)&fp_agent_py_locate, &info) || !info.dli_fname) {
        fp_agent_set_error("cannot find where libfpagent.so is (dladdr failed)");
        return;
    }
    /* dli_fname is the name given to dlopen, maybe relative to a directory we may leave. */
    if (!realpath(info.dli_fname, lib)) snprintf(lib, sizeof(lib), "%s", info.dli_fname);
    char *slash = strrchr(lib, '/');
    if (slash)
        *slash = '\0';
    else
        snprintf(lib, sizeof(lib), ".");
    int n =
        snprintf(fp_py_pkg_dir, sizeof(fp_py_pkg_dir), "%s/" FP_AGENT_PY_SUBDIR "/fp_agent", lib);
    if (n < 0 || (size_t)n >= sizeof(fp_py_pkg_dir)) fp_py_pkg_dir[0] = '\0';
}

int fp_agent_py_ready(void)
{
    return atomic_load(&fp_py_loaded);
}

int fp_agent_py_owned_by(uint64_t gen)
{
    return atomic_load(&fp_py_loaded) && atomic_load(&fp_py_owner) == gen;
}

/* Runs in a fresh globals dict, never in __main__, and leaves sys.path alone. A stale fp_agent
 * from another directory is replaced, submodules included; ours (a restart, a fork child's
 * copy) is reused.
 * threading is imported for a program that did not only before code that is not the agent's
 * may run, and its main thread pointed back at the program's (fp_agent/loading.py): from 3.9 on
 * not here. On 3.8 it is, before the package, executed before it is put in sys.modules (under
 * its import lock): 3.8's finalization, should the process exit while a later import of it
 * were half-way, would call _shutdown on a half-imported module and print the AttributeError
 * to stderr.
 * The package is imported here holding the global import lock, and only when no other thread
 * is half-way through an import (its module locks are free; while we hold the global lock no
 * new import can start): a fork() in the target waits for the same lock, so a child never
 * inherits an import of ours cut in half. Each command family is imported the same way by the
 * package when its first request comes (fp_agent/loading.py), so the first answer costs only
 * what its command needs. */
static const char fp_py_bootstrap[] =
    "def _fp_load():\n"
    "    import sys\n"
    "    if sys.version_info < (3, 9) and 'threading' not in sys.modules:\n"
    "        import _frozen_importlib as _fp_b\n"
    "        with _fp_b._ModuleLockManager('threading'):\n"
    "            if 'threading' not in sys.modules:\n"
    "                _fp_spec = _fp_b._find_spec('threading', None)\n"
    "                _fp_mod = _fp_b.module_from_spec(_fp_spec)\n"
    "                _fp_spec.loader.exec_module(_fp_mod)\n"
    "                sys.modules['threading'] = _fp_mod\n"
    /* importlib's own frozen modules, always loaded: importing the importlib package (and
     * importlib.util, which imports threading) costs a fresh process milliseconds. */
    "    import _frozen_importlib as _fp_fb, _frozen_importlib_external as _fp_fe\n"
    "    _fp_init = _fp_dir + '/__init__.py'\n"
    "    _fp_pkg = sys.modules.get('fp_agent')\n"
    "    if _fp_pkg is None or getattr(_fp_pkg, '__file__', None) != _fp_init:\n"
    "        for _fp_name in [n for n in sys.modules if n.split('.')[0] == 'fp_agent']:\n"
    "            del sys.modules[_fp_name]\n"
    "        _fp_spec = _fp_fe.spec_from_file_location(\n"
    "            'fp_agent', _fp_init, submodule_search_locations=[_fp_dir])\n"
    "        if _fp_spec is None or _fp_spec.loader is None:\n"
    "            raise ImportError('no Python package at ' + _fp_init)\n"
    "        _fp_pkg = _fp_fb.module_from_spec(_fp_spec)\n"
    "        sys.modules['fp_agent'] = _fp_pkg\n"
    "        try:\n"
    "            _fp_spec.loader.exec_module(_fp_pkg)\n"
    "        except BaseException:\n"
    "            sys.modules.pop('fp_agent', None)\n"
    "            raise\n"
    "    __import__('fp_agent.dispatch')\n"
    "    sys.modules['fp_agent.loading'].main_thread_kept()\n"
    "    return sys.modules['fp_agent.dispatch']\n"
    "def _fp_locked(load):\n"
    "    import _imp, _thread, time\n"
    "    import _frozen_importlib as _fp_b\n"
    "    me = _thread.get_ident()\n"
    "    for _ in range(200):\n"
    "        _imp.acquire_lock()\n"
    "        locks = [r() for r in list(_fp_b._module_locks.values())]\n"
    "        if not any(l is not None and l.owner not in (None, me) for l in locks):\n"
    "            try:\n"
    "                return load()\n"
    "            finally:\n"
    "                _imp.release_lock()\n"
    "        _imp.release_lock()\n"
    "        time.sleep(0.01)\n"
    "    return load()\n"
    "_fp_dispatch = _fp_locked(_fp_load)\n"
    /* The package, for the C functions handed to it (trace.c, events.c, monitor.c). */
    "_fp_pkg = __import__('sys').modules.get('fp_agent')\n"
    /* The functions refer to this namespace and it to them: without them it goes with the last
     * reference, and the package with it once shut down (not at a full collection). */
    "del _fp_load, _fp_locked\n";

/* str(o) as a malloc'd UTF-8 string, or NULL (any error cleared). */
static char *fp_py_text(fp_pyobj *o)
{
    if (!o) return NULL;
    fp_pyobj *s = fp_py.PyObject_Str(o);
    if (!s) {
        fp_py.PyErr_Clear();
        return NULL;
    }
    ssize_t n = 0;
    const char *u = fp_py.PyUnicode_AsUTF8AndSize(s, &n);
    char *out = u ? strndup(u, (size_t)n) : NULL;
    if (!u) fp_py.PyErr_Clear();
    fp_py.Py_DecRef(s);
    return out;
}

/* The pending exception as "prefix: Type: message", malloc'd; the exception is cleared.
 * (Never PyErr_Print: that writes to the target's stderr.) */
static char *fp_py_error(const char *prefix)
{
    fp_pyobj *type = NULL, *value = NULL, *tb = NULL;
    fp_py.PyErr_Fetch(&type, &value, &tb);
    char *name = NULL, *msg = NULL;
    if (type) {
        fp_py.PyErr_NormalizeException(&type, &value, &tb);
        fp_pyobj *n = fp_py.PyObject_GetAttrString(type, "__name__");
        if (!n) fp_py.PyErr_Clear();
        name = fp_py_text(n);
        fp_py.Py_DecRef(n);
        msg = fp_py_text(value);
    }
    fp_py.Py_DecRef(type);
    fp_py.Py_DecRef(value);
    fp_py.Py_DecRef(tb);
    fp_py.PyErr_Clear();

    char *out = NULL;
    if (asprintf(&out, "%s: %s%s%s", prefix, name ? name : "unknown error",
                 msg && msg[0] ? ": " : "", msg ? msg : "") < 0)
        out = NULL;
    free(name);
    free(msg);
    return out;
}

static char *fp_py_message(const char *text)
{
    return strdup(text);
}

static fp_pyobj *fp_py_attr(fp_pyobj *o, const char *name)
{
    fp_pyobj *a = fp_py.PyObject_GetAttrString(o, name);
    if (!a) fp_py.PyErr_Clear();
    return a;
}

/* "dispatch.handle returned T, not str", malloc'd. */
static char *fp_py_type_error(fp_pyobj *r)
{
    fp_pyobj *cls = fp_py_attr(r, "__class__");
    fp_pyobj *name = cls ? fp_py_attr(cls, "__name__") : NULL;
    char *type = fp_py_text(name);
    fp_py.Py_DecRef(name);
    fp_py.Py_DecRef(cls);
    char *out = NULL;
    if (asprintf(&out, "dispatch.handle returned %s, not str", type ? type : "?") < 0) out = NULL;
    free(type);
    return out;
}

/* Imports the package. Returns 0, or -1 with *err. */
static int fp_py_load(char **err)
{
    if (!fp_py_pkg_dir[0]) {
        *err = fp_py_message("cannot load the agent's Python package: the directory of "
                             "libfpagent.so is unknown");
        return -1;
    }
    char prefix[PATH_MAX + 64];
    snprintf(prefix, sizeof(prefix), "cannot load the agent's Python package from %s",
             fp_py_pkg_dir);

    fp_pyobj *globals = fp_py.PyDict_New();
    fp_pyobj *dir = fp_py.PyUnicode_DecodeFSDefault(fp_py_pkg_dir);
    fp_pyobj *builtins = fp_py.PyEval_GetBuiltins(); /* borrowed */
    int ok = globals && dir && builtins &&
             fp_py.PyDict_SetItemString(globals, "__builtins__", builtins) == 0 &&
             fp_py.PyDict_SetItemString(globals, "_fp_dir", dir) == 0;
    fp_pyobj *r = NULL;
    if (ok) r = fp_py.PyRun_StringFlags(fp_py_bootstrap, FP_PY_FILE_INPUT, globals, globals, NULL);
    if (!r) {
        *err = fp_py.PyErr_Occurred() ? fp_py_error(prefix) : fp_py_message(prefix);
        fp_py.Py_DecRef(dir);
        fp_py.Py_DecRef(globals);
        return -1;
    }
    fp_py.Py_DecRef(r);

    fp_pyobj *dispatch = fp_py.PyDict_GetItemString(globals, "_fp_dispatch"); /* borrowed */
    fp_pyobj *handle = dispatch ? fp_py_attr(dispatch, "handle") : NULL;
    if (!handle) {
        snprintf(prefix, sizeof(prefix),
                 "the agent's Python package in %s has no "
                 "dispatch.handle",
                 fp_py_pkg_dir);
        *err = fp_py_message(prefix);
        fp_py.Py_DecRef(dir);
        fp_py.Py_DecRef(globals);
        return -1;
    }
    /* trace's recorder (trace.c) is handed to the package; without it, trace.py records in
     * Python. */
    fp_pyobj *pkg = fp_py.PyDict_GetItemString(globals, "_fp_pkg"); /* borrowed */
    if (pkg) fp_agent_trace_export(pkg);
    /* emit(client, text) for watch/tt/trace events from the observed threads (events.c). */
    if (pkg) fp_agent_events_export(pkg);
    /* instrument.py's sys.monitoring callbacks in C, 3.12+ (monitor.c). */
    if (pkg) fp_agent_monitor_export(pkg);
    /* monitor's calls counted in C by the code-swap engine, 3.8-3.11 (counter.c). */
    if (pkg) fp_agent_counter_export(pkg);
    fp_py_handle = handle;
    fp_py_gone = fp_py_attr(dispatch, "client_gone");
    fp_py_shutdown = fp_py_attr(dispatch, "shutdown");
    fp_py.Py_DecRef(dir);
    fp_py.Py_DecRef(globals);
    atomic_store(&fp_py_loaded, 1);
    return 0;
}

int fp_agent_py_handle(uint64_t gen, int64_t client, const char *body, size_t len, char **reply,
                       char **err)
{
    *reply = NULL;
    *err = NULL;
    if (!fp_py_handle && fp_py_load(err) < 0) return -1;
    /* Only forward: a stopped instance's late worker must not take the package back and then
     * unload it under the clients of the instance that replaced it. */
    if (atomic_load(&fp_py_owner) < gen) atomic_store(&fp_py_owner, gen);

    fp_pyobj *id = fp_py.PyLong_FromLongLong(client);
    fp_pyobj *text = fp_py.PyUnicode_FromStringAndSize(body, (ssize_t)len);
    fp_pyobj *r = NULL;
    if (id && text) r = fp_py.PyObject_CallFunctionObjArgs(fp_py_handle, id, text, NULL);
    fp_py.Py_DecRef(id);
    fp_py.Py_DecRef(text);
    if (!r) {
        *err = fp_py_error("the agent's Python code failed");
        return -1;
    }
    int rc = 0;
    if (r != fp_py.none) {
        ssize_t n = 0;
        const char *u = fp_py.PyUnicode_AsUTF8AndSize(r, &n);
        if (!u) {
            fp_py.PyErr_Clear();
            *err = fp_py_type_error(r);
            rc = -1;
        } else if (n > 0) {
            *reply = malloc((size_t)n + 1);
            if (*reply) {
                memcpy(*reply, u, (size_t)n);
                (*reply)[n] = '\0';
            } else {
                *err = fp_py_message("out of memory for the reply");
                rc = -1;
            }
        }
    }
    fp_py.Py_DecRef(r);
    return rc;
}

void fp_agent_py_client_gone(int64_t client)
{
    if (!fp_py_gone) return;
    fp_pyobj *id = fp_py.PyLong_FromLongLong(client);
    fp_pyobj *r = id ? fp_py.PyObject_CallFunctionObjArgs(fp_py_gone, id, NULL) : NULL;
    if (!r) fp_py.PyErr_Clear(); /* nobody to tell: the client is gone */
    fp_py.Py_DecRef(r);
    fp_py.Py_DecRef(id);
}

void fp_agent_py_unload(uint64_t gen)
{
    if (!fp_py_handle || atomic_load(&fp_py_owner) != gen)
        return; /* a newer instance took the package over, or it was never loaded */
    if (fp_py_shutdown) {
        fp_pyobj *r = fp_py.PyObject_CallFunctionObjArgs(fp_py_shutdown, NULL);
        if (!r) fp_py.PyErr_Clear();
        fp_py.Py_DecRef(r);
    }
    atomic_store(&fp_py_loaded, 0);
    fp_py.Py_DecRef(fp_py_handle);
    fp_py.Py_DecRef(fp_py_gone);
    fp_py.Py_DecRef(fp_py_shutdown);
    fp_py_handle = fp_py_gone = fp_py_shutdown = NULL;
}

void fp_agent_py_interrupt(unsigned long thread)
{
    /* Raised at the thread's next bytecode, as Ctrl-C would be; the thread state (and with it
     * an exception not yet raised) is deleted when that request releases the GIL, so it can
     * never reach the client_gone that follows. */
    fp_py.PyThreadState_SetAsyncExc(thread, *fp_py.keyboard_interrupt);
}

int fp_py_export(fp_pyobj *package, const char *name, fp_py_methoddef *methods, size_t n)
{
    fp_pyobj *dict = fp_py.PyDict_New();
    if (!dict) {
        fp_py.PyErr_Clear();
        return -1;
    }
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        fp_pyobj *f = fp_py.PyCFunction_NewEx(&methods[i], NULL, NULL);
        if (!f || fp_py.PyDict_SetItemString(dict, methods[i].ml_name, f) < 0) rc = -1;
        if (f) fp_py.Py_DecRef(f);
    }
    if (rc == 0 && fp_py.PyObject_SetAttrString(package, name, dict) < 0) rc = -1;
    fp_py.Py_DecRef(dict);
    if (rc < 0) fp_py.PyErr_Clear();
    return rc;
}

fp_pyobj *fp_py_none_ref(void)
{
    fp_py.Py_IncRef(fp_py.none);
    return fp_py.none;
}

int fp_py_thread_in(fp_pyobj *set)
{
    if (!set || fp_py.PySet_Size(set) <= 0) return 0;
    fp_pyobj *ident = fp_py.PyLong_FromUnsignedLong(fp_py.PyThread_get_thread_ident());
    int in = ident ? fp_py.PySet_Contains(set, ident) : 0;
    if (ident) fp_py.Py_DecRef(ident);
    if (in < 0) fp_py.PyErr_Clear();
    return in > 0;
}
