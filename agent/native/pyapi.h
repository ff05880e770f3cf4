/* The target's Python C API as libfpagent sees it: libfpagent links no libpython (the target
 * may be any CPython 3.8-3.13, shared or static), so every function and object it uses is
 * declared here by hand and looked up at run time, once, by one resolver (pyapi.c), into one
 * table, fp_py. Each symbol belongs to the groups of files that need it; a group is usable
 * when all its required symbols were found (fp_py_usable), so a file whose functions are
 * missing on this Python (monitor.c before 3.12) turns itself off alone. */
#ifndef FP_PYAPI_H
#define FP_PYAPI_H

#include <stddef.h>
#include <sys/types.h>

typedef struct fp_pyobj fp_pyobj; /* PyObject, opaque but for the few fields read by hand */

/* A C function as CPython calls it (PyCFunction); METH_FASTCALL ones are cast to it. */
typedef fp_pyobj *(*fp_py_cfunc)(fp_pyobj *, fp_pyobj *);
typedef fp_pyobj *(*fp_py_fastcall)(fp_pyobj *, fp_pyobj *const *, ssize_t);
/* The profile function's signature (Py_tracefunc). */
typedef int (*fp_py_tracefunc)(fp_pyobj *, fp_pyobj *, int, fp_pyobj *);

/* PyMethodDef, the same in every CPython 3. */
typedef struct fp_py_methoddef {
    const char *ml_name;
    fp_py_cfunc ml_meth;
    int ml_flags;
    const char *ml_doc;
} fp_py_methoddef;

enum {
    FP_METH_VARARGS = 0x1,
    FP_METH_NOARGS = 0x4,
    FP_METH_O = 0x8,
    FP_METH_FASTCALL = 0x80, /* 3.7+: a C array of arguments */
};

#define FP_PY_FILE_INPUT 257 /* Py_file_input, the same in every CPython 3 */

/* Who needs a symbol. */
enum {
    FP_PYG_CORE = 1 << 0,    /* pyapi.c: loading the package, calling it (the agent needs it) */
    FP_PYG_TRACE = 1 << 1,   /* trace*.c: the recorder */
    FP_PYG_MONITOR = 1 << 2, /* monitor.c: instrument.py's sys.monitoring callbacks (3.12+) */
    FP_PYG_EVENTS = 1 << 3,  /* events.c: emit() */
    FP_PYG_COUNT = 1 << 4,   /* counter.c: monitor's calls counted in C (every version) */
};

typedef struct fp_py_api {
    /* --- the interpreter */
    int (*Py_IsInitialized)(void);
    int (*IsFinalizing)(void); /* Py_IsFinalizing (3.13) or _Py_IsFinalizing (3.8-3.12) */
    const char *(*Py_GetVersion)(void);
    int (*PyGILState_Ensure)(void); /* PyGILState_STATE is an enum */
    void (*PyGILState_Release)(int);
    void *(*PyThreadState_Get)(void);
    int (*PyThreadState_SetAsyncExc)(unsigned long, fp_pyobj *);
    unsigned long (*PyThread_get_thread_ident)(void);
    /* PyRun_String is a macro over this one in several versions. */
    fp_pyobj *(*PyRun_StringFlags)(const char *, int, fp_pyobj *, fp_pyobj *, void *);
    fp_pyobj *(*PyEval_GetBuiltins)(void);
    fp_pyobj *(*PyEval_GetFrame)(void); /* borrowed */
    void (*PyEval_SetProfile)(fp_py_tracefunc, fp_pyobj *);
    int (*PyEval_SetProfileTstate)(void *, fp_py_tracefunc, fp_pyobj *); /* 3.9+ */
    fp_pyobj *(*PyFrame_GetCode)(fp_pyobj *);                            /* 3.9+, new ref */
    int (*PyFrame_GetLineNumber)(fp_pyobj *);            /* the frame's current line */
    fp_pyobj *(*PyFrame_GetVar)(fp_pyobj *, fp_pyobj *); /* 3.12+ */
    /* --- objects */
    void (*Py_IncRef)(fp_pyobj *);
    void (*Py_DecRef)(fp_pyobj *);
    fp_pyobj *(*PyObject_CallFunctionObjArgs)(fp_pyobj *, ...);
    fp_pyobj *(*PyObject_CallObject)(fp_pyobj *, fp_pyobj *);
    fp_pyobj *(*PyObject_GetAttrString)(fp_pyobj *, const char *);
    int (*PyObject_SetAttrString)(fp_pyobj *, const char *, fp_pyobj *);
    fp_pyobj *(*PyObject_Str)(fp_pyobj *);
    int (*PyObject_IsTrue)(fp_pyobj *);
    fp_pyobj *(*PyCFunction_NewEx)(fp_py_methoddef *, fp_pyobj *, fp_pyobj *);
    fp_pyobj *(*PyCapsule_New)(void *, const char *, void (*)(fp_pyobj *));
    void *(*PyCapsule_GetPointer)(fp_pyobj *, const char *);
    unsigned long (*PyType_GetFlags)(fp_pyobj *);
    void *PyType_FromMetaclass; /* 3.12+: only there to tell */
    fp_pyobj *(*PyType_FromSpec)(void *);
    fp_pyobj *(*PyType_GenericAlloc)(fp_pyobj *, ssize_t);
    void *PyVectorcall_Call;
    /* --- containers, numbers, text */
    fp_pyobj *(*PyDict_New)(void);
    int (*PyDict_SetItem)(fp_pyobj *, fp_pyobj *, fp_pyobj *);
    int (*PyDict_SetItemString)(fp_pyobj *, const char *, fp_pyobj *);
    fp_pyobj *(*PyDict_GetItemString)(fp_pyobj *, const char *);
    int (*PyDict_Update)(fp_pyobj *, fp_pyobj *);
    ssize_t (*PyDict_Size)(fp_pyobj *);
    ssize_t (*PySet_Size)(fp_pyobj *);
    int (*PySet_Contains)(fp_pyobj *, fp_pyobj *);
    fp_pyobj *(*PyTuple_New)(ssize_t);
    int (*PyTuple_SetItem)(fp_pyobj *, ssize_t, fp_pyobj *);
    fp_pyobj *(*PyTuple_GetItem)(fp_pyobj *, ssize_t);
    ssize_t (*PyTuple_Size)(fp_pyobj *);
    fp_pyobj *(*PyList_New)(ssize_t);
    int (*PyList_SetItem)(fp_pyobj *, ssize_t, fp_pyobj *);
    fp_pyobj *(*PySequence_Concat)(fp_pyobj *, fp_pyobj *);
    fp_pyobj *(*PyLong_FromLongLong)(long long);
    fp_pyobj *(*PyLong_FromUnsignedLong)(unsigned long);
    long long (*PyLong_AsLongLong)(fp_pyobj *);
    fp_pyobj *(*PyBool_FromLong)(long);
    fp_pyobj *(*PyUnicode_FromString)(const char *);
    fp_pyobj *(*PyUnicode_FromStringAndSize)(const char *, ssize_t);
    fp_pyobj *(*PyUnicode_DecodeFSDefault)(const char *);
    const char *(*PyUnicode_AsUTF8AndSize)(fp_pyobj *, ssize_t *);
    /* --- errors */
    fp_pyobj *(*PyErr_Occurred)(void);
    void (*PyErr_Fetch)(fp_pyobj **, fp_pyobj **, fp_pyobj **);
    void (*PyErr_Restore)(fp_pyobj *, fp_pyobj *, fp_pyobj *);
    void (*PyErr_NormalizeException)(fp_pyobj **, fp_pyobj **, fp_pyobj **);
    void (*PyErr_Clear)(void);
    void (*PyErr_SetString)(fp_pyobj *, const char *);
    int (*PyErr_ExceptionMatches)(fp_pyobj *);
    void (*PyErr_GetExcInfo)(fp_pyobj **, fp_pyobj **, fp_pyobj **);
    void (*PyErr_SetExcInfo)(fp_pyobj *, fp_pyobj *, fp_pyobj *);
    /* --- objects of the interpreter (their addresses) */
    fp_pyobj *none; /* &_Py_NoneStruct */
    fp_pyobj *module_type, *type_type;
    fp_pyobj *cfunction_type, *cmethod_type, *methoddescr_type;   /* cmethod_type: 3.9+ */
    fp_pyobj **keyboard_interrupt, **runtime_error, **type_error; /* &PyExc_... */
} fp_py_api;

/* The table; filled by fp_agent_py_resolve (pyapi.c), read-only afterwards. */
extern fp_py_api fp_py;

/* Whether every symbol the group needs was found (after fp_agent_py_resolve succeeded). */
int fp_py_usable(unsigned group);

/* Sets package.<name> to a dict of the n methods (module-less C functions). Needs the GIL.
 * 0, or -1 (nothing set, no exception left). */
int fp_py_export(fp_pyobj *package, const char *name, fp_py_methoddef *methods, size_t n);
/* A new reference to None. */
fp_pyobj *fp_py_none_ref(void);
/* Whether the calling thread's ident is in the set (NULL or empty: no). */
int fp_py_thread_in(fp_pyobj *set);

#endif
