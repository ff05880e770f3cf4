/* The Python command itself, built with AddressSanitizer and UndefinedBehaviorSanitizer: a host in
 * which the injected agent library, built with them too, can be checked. ASan must be in a
 * process from its start, so a real target can never run an instrumented agent; this one can,
 * and fp attaches to it exactly as to any python3 (the interpreter is the same libpython). */
#include <Python.h>

int main(int argc, char **argv)
{
    return Py_BytesMain(argc, argv);
}
