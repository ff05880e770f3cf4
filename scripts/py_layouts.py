#!/usr/bin/env python3
"""The CPython struct offsets that fp's out-of-process reader uses, measured with offsetof()
against each interpreter's own headers (internal ones included), so that
server/remote/layouts.c never holds a number nobody checked.

    scripts/py_layouts.py                     print the generated tables for every pyenv CPython
    scripts/py_layouts.py --check FILE        compare them with the tables in FILE (layouts.c);
                                              exit 1 naming each difference
    scripts/py_layouts.py --update FILE       rewrite the tables in FILE from the headers
    scripts/py_layouts.py --include DIR ...   use these include dirs (.../include/python3.X)

To support a new version: add its fields below where they differ, run the script with that
version's headers, paste the printed block into server/remote/layouts.c and list it there;
after adding a field, --update rewrites the existing blocks.
"""

import argparse
import glob
import os
import re
import subprocess
import sys
import tempfile

# (field in fp_py_layout, C expression giving its value, or None when the version lacks it).
# The expressions are evaluated inside #if blocks keyed on PY_VERSION_HEX; -1 marks "absent".
PROBE = r"""
#define Py_BUILD_CORE 1
#include <Python.h>
#include <stddef.h>
#include <stdio.h>
#if PY_VERSION_HEX < 0x03090000
#include "internal/pycore_pystate.h"
#else
#include "internal/pycore_runtime.h"
#include "internal/pycore_interp.h"
#endif
#if PY_VERSION_HEX >= 0x030b0000
#include "internal/pycore_frame.h"
#include "internal/pycore_dict.h"
#else
#include "frameobject.h"
#endif
#if PY_VERSION_HEX >= 0x030a0000
#include "internal/pycore_moduleobject.h"
#endif

#if PY_VERSION_HEX < 0x030b0000
/* Up to 3.10 the dict's keys object is private to Objects/dict-common.h (not installed);
 * this mirrors it (unchanged from 3.6 to 3.10). */
struct mirror_dictkeys {
    Py_ssize_t dk_refcnt;
    Py_ssize_t dk_size;
    void *dk_lookup;
    Py_ssize_t dk_usable;
    Py_ssize_t dk_nentries;
    char dk_indices[];
};
#endif
#if PY_VERSION_HEX < 0x030a0000
/* Up to 3.9 the module object is private to Objects/moduleobject.c; it starts so. */
typedef struct { PyObject_HEAD PyObject *md_dict; } PyModuleObject;
#endif

#define F(name, value) printf("    .%s = %ld,\n", #name, (long)(value))
#define ABSENT(name) printf("    .%s = -1,\n", #name)

int main(void)
{
    printf("static const fp_py_layout layout_3_%d = {\n", PY_MINOR_VERSION);
    F(minor, PY_MINOR_VERSION);
    /* _PyRuntime */
    F(runtime_interpreters_head, offsetof(_PyRuntimeState, interpreters.head));
    F(runtime_interpreters_main, offsetof(_PyRuntimeState, interpreters.main));
    F(runtime_main_thread, offsetof(_PyRuntimeState, main_thread));
#if PY_VERSION_HEX < 0x030c0000
    /* one GIL for the runtime */
    F(runtime_gil_locked, offsetof(_PyRuntimeState, ceval.gil.locked));
    F(runtime_gil_holder, offsetof(_PyRuntimeState, ceval.gil.last_holder));
    ABSENT(interp_ceval_gil);
    ABSENT(gil_locked);
    ABSENT(gil_holder);
#else
    /* one GIL per interpreter, reached through interp->ceval.gil */
    ABSENT(runtime_gil_locked);
    ABSENT(runtime_gil_holder);
    F(interp_ceval_gil, offsetof(PyInterpreterState, ceval.gil));
    F(gil_locked, offsetof(struct _gil_runtime_state, locked));
    F(gil_holder, offsetof(struct _gil_runtime_state, last_holder));
#endif
    /* PyInterpreterState */
    F(interp_next, offsetof(PyInterpreterState, next));
#if PY_VERSION_HEX < 0x030b0000
    F(interp_threads_head, offsetof(PyInterpreterState, tstate_head));
#else
    F(interp_threads_head, offsetof(PyInterpreterState, threads.head));
#endif
    /* PyThreadState */
    F(tstate_next, offsetof(PyThreadState, next));
    F(tstate_interp, offsetof(PyThreadState, interp));
    F(tstate_thread_id, offsetof(PyThreadState, thread_id));
#if PY_VERSION_HEX < 0x030b0000
    ABSENT(tstate_native_thread_id);
    F(tstate_frame, offsetof(PyThreadState, frame));
    ABSENT(cframe_current_frame);
#elif PY_VERSION_HEX < 0x030d0000
    F(tstate_native_thread_id, offsetof(PyThreadState, native_thread_id));
    F(tstate_frame, offsetof(PyThreadState, cframe));
    F(cframe_current_frame, offsetof(_PyCFrame, current_frame));
#else
    F(tstate_native_thread_id, offsetof(PyThreadState, native_thread_id));
    F(tstate_frame, offsetof(PyThreadState, current_frame));
    ABSENT(cframe_current_frame);
#endif
    /* frames: PyFrameObject up to 3.10, _PyInterpreterFrame from 3.11 */
#if PY_VERSION_HEX < 0x030b0000
    F(frame_previous, offsetof(PyFrameObject, f_back));
    F(frame_code, offsetof(PyFrameObject, f_code));
    F(frame_lasti, offsetof(PyFrameObject, f_lasti));
    ABSENT(frame_instr);
    ABSENT(frame_owner);
    F(frame_gen, offsetof(PyFrameObject, f_gen));
#else
    F(frame_previous, offsetof(_PyInterpreterFrame, previous));
#if PY_VERSION_HEX < 0x030d0000
    F(frame_code, offsetof(_PyInterpreterFrame, f_code));
    ABSENT(frame_lasti);
    F(frame_instr, offsetof(_PyInterpreterFrame, prev_instr));
#else
    F(frame_code, offsetof(_PyInterpreterFrame, f_executable));
    ABSENT(frame_lasti);
    F(frame_instr, offsetof(_PyInterpreterFrame, instr_ptr));
#endif
    F(frame_owner, offsetof(_PyInterpreterFrame, owner));
    ABSENT(frame_gen);
#endif
#if PY_VERSION_HEX >= 0x030b0000 && PY_VERSION_HEX < 0x030c0000
    F(frame_is_entry, offsetof(_PyInterpreterFrame, is_entry));
#else
    ABSENT(frame_is_entry);
#endif
    /* PyCodeObject */
    F(code_filename, offsetof(PyCodeObject, co_filename));
    F(code_name, offsetof(PyCodeObject, co_name));
    F(code_firstlineno, offsetof(PyCodeObject, co_firstlineno));
    F(code_flags, offsetof(PyCodeObject, co_flags));
#if PY_VERSION_HEX < 0x030a0000
    F(code_linetable, offsetof(PyCodeObject, co_lnotab));
#else
    F(code_linetable, offsetof(PyCodeObject, co_linetable));
#endif
#if PY_VERSION_HEX < 0x030b0000
    ABSENT(code_qualname);
    ABSENT(code_adaptive);
    ABSENT(code_firsttraceable);
#else
    F(code_qualname, offsetof(PyCodeObject, co_qualname));
    F(code_adaptive, offsetof(PyCodeObject, co_code_adaptive));
    F(code_firsttraceable, offsetof(PyCodeObject, _co_firsttraceable));
#endif
    /* objects, str and bytes */
    F(object_type, offsetof(PyObject, ob_type));
    F(unicode_length, offsetof(PyASCIIObject, length));
    F(unicode_state, offsetof(PyASCIIObject, state));
    F(unicode_ascii_data, sizeof(PyASCIIObject));
    F(unicode_compact_data, sizeof(PyCompactUnicodeObject));
    F(unicode_data_any, offsetof(PyUnicodeObject, data));
    F(bytes_size, offsetof(PyVarObject, ob_size));
    F(bytes_data, offsetof(PyBytesObject, ob_sval));
    /* what reading threading._active needs: modules, types, dicts, ints */
#if PY_VERSION_HEX < 0x030c0000
    F(interp_modules, offsetof(PyInterpreterState, modules));
#else
    F(interp_modules, offsetof(PyInterpreterState, imports.modules));
#endif
    F(module_dict, offsetof(PyModuleObject, md_dict));
    F(type_flags, offsetof(PyTypeObject, tp_flags));
    F(type_basicsize, offsetof(PyTypeObject, tp_basicsize));
    F(type_dictoffset, offsetof(PyTypeObject, tp_dictoffset));
    F(heaptype_cached_keys, offsetof(PyHeapTypeObject, ht_cached_keys));
    F(dict_keys, offsetof(PyDictObject, ma_keys));
    F(dict_values, offsetof(PyDictObject, ma_values));
#if PY_VERSION_HEX < 0x030b0000
    F(keys_size, offsetof(struct mirror_dictkeys, dk_size));
    ABSENT(keys_log2_size);
    ABSENT(keys_log2_index_bytes);
    ABSENT(keys_kind);
    F(keys_nentries, offsetof(struct mirror_dictkeys, dk_nentries));
    F(keys_indices, offsetof(struct mirror_dictkeys, dk_indices));
    F(values_values, 0);
    ABSENT(values_valid);
#else
    ABSENT(keys_size);
    F(keys_log2_size, offsetof(PyDictKeysObject, dk_log2_size));
    F(keys_log2_index_bytes, offsetof(PyDictKeysObject, dk_log2_index_bytes));
    F(keys_kind, offsetof(PyDictKeysObject, dk_kind));
    F(keys_nentries, offsetof(PyDictKeysObject, dk_nentries));
    F(keys_indices, offsetof(PyDictKeysObject, dk_indices));
    F(values_values, offsetof(PyDictValues, values));
#if PY_VERSION_HEX >= 0x030d0000
    F(values_valid, offsetof(PyDictValues, valid));
#else
    ABSENT(values_valid);
#endif
#endif
#if PY_VERSION_HEX < 0x030c0000
    F(long_size, offsetof(PyVarObject, ob_size));
    F(long_digits, offsetof(PyLongObject, ob_digit));
#else
    F(long_size, offsetof(PyLongObject, long_value.lv_tag));
    F(long_digits, offsetof(PyLongObject, long_value.ob_digit));
#endif
    printf("};\n");
    return 0;
}
"""

BEGIN = "/* BEGIN generated by scripts/py_layouts.py: 3.%d */"
END = "/* END generated: 3.%d */"


def include_dirs():
    """Every pyenv CPython 3.8+ include dir, newest patch release per minor."""
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    best = {}
    for d in glob.glob(os.path.join(root, "versions", "3.*", "include", "python3.*")):
        m = re.search(r"/versions/(3)\.(\d+)\.(\d+)/include/python3\.(\d+)$", d)
        if not m or int(m.group(2)) < 8 or m.group(2) != m.group(4):
            continue
        key = (int(m.group(2)), int(m.group(3)))
        if key[0] not in best or key[1] > best[key[0]][0]:
            best[key[0]] = (key[1], d)
    return [best[k][1] for k in sorted(best)]


def measure(include):
    """The generated C block for one include dir (raises on a compile error)."""
    with tempfile.TemporaryDirectory(prefix="fp-layouts-") as tmp:
        src = os.path.join(tmp, "probe.c")
        exe = os.path.join(tmp, "probe")
        with open(src, "w") as f:
            f.write(PROBE)
        cc = os.environ.get("CC", "cc")
        subprocess.run([cc, "-w", "-I", include, "-I", os.path.join(include, "internal"), src, "-o", exe], check=True)
        out = subprocess.run([exe], check=True, stdout=subprocess.PIPE, universal_newlines=True).stdout
    minor = int(re.search(r"layout_3_(\d+)", out).group(1))
    return minor, "%s\n%s%s" % (BEGIN % minor, out, END % minor)


def blocks_in(text):
    found = {}
    for m in re.finditer(
        r"/\* BEGIN generated by scripts/py_layouts\.py: 3\.(\d+) \*/.*?/\* END generated: 3\.\1 \*/", text, re.S
    ):
        found[int(m.group(1))] = m.group(0)
    return found


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", metavar="FILE", help="compare with the blocks in FILE")
    ap.add_argument("--update", metavar="FILE", help="replace the blocks in FILE")
    ap.add_argument("--include", nargs="*", help="include dirs (default: every pyenv CPython 3.8+)")
    args = ap.parse_args()
    dirs = args.include or include_dirs()
    if not dirs:
        sys.exit("no CPython include directories found (pyenv versions 3.8+)")
    generated = dict(measure(d) for d in dirs)
    if not args.check and not args.update:
        for minor in sorted(generated):
            print(generated[minor])
            print()
        return 0
    if args.update:
        with open(args.update) as f:
            text = f.read()
        for minor, block in blocks_in(text).items():
            if minor in generated:
                text = text.replace(block, generated[minor])
        with open(args.update, "w") as f:
            f.write(text)
        return 0
    with open(args.check) as f:
        have = blocks_in(f.read())
    bad = 0
    for minor, block in sorted(generated.items()):
        if minor not in have:
            print("3.%d: no generated block in %s" % (minor, args.check))
            bad += 1
        elif have[minor] != block:
            print("3.%d: %s differs from the headers; expected:\n%s" % (minor, args.check, block))
            bad += 1
        else:
            print("3.%d: ok" % minor)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
