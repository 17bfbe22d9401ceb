/* The Avro record decoder of schemas/compiled_reader.py, in C.
 *
 * `Reader(plan)` takes the plan compile_reader makes of a record schema -- nested tuples, one per Avro
 * type: ("null",), ("boolean",), ("long",), ("float",), ("double",), ("bytes",), ("string",),
 * ("enum", symbols), ("fixed", size), ("union", branches), ("array", items), ("map", values),
 * ("record", names, types) at the top -- and turns it into a tree of nodes once. Calling it with
 * (value, start) reads one record from value[start:] and returns (record as a dict, end).
 *
 * It reads what fastavro reads and refuses what fastavro refuses, and the faults fastavro reads past
 * (a negative enum or union index, a boolean byte other than 0 or 1, a varint beyond 64 bits). Errors
 * are ValueError, UnicodeDecodeError (a ValueError) for text that is not UTF-8, and IndexError for a
 * value that ends early or an enum index past the last symbol: what the decoder compiled to Python
 * raised before it (tests/schemas/test_compiled_reader.py compares this one with fastavro).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

enum kind { K_NULL, K_BOOLEAN, K_LONG, K_FLOAT, K_DOUBLE, K_BYTES, K_STRING, K_ENUM, K_FIXED, K_UNION,
            K_ARRAY, K_MAP, K_RECORD };

typedef struct node {
    enum kind kind;
    Py_ssize_t size;          /* fixed: bytes; union, record: children */
    struct node **children;   /* union: branches; array, map: one (items, values); record: fields */
    PyObject *names;          /* enum: symbols; record: field names (interned) -- tuples */
    int items_take_bytes;     /* array: each item takes one byte at least (not null) */
} node;

typedef struct {
    const unsigned char *buf;
    Py_ssize_t end;
    Py_ssize_t p;
} cursor;

static void free_node(node *n) {
    if (n == NULL) {
        return;
    }
    if (n->children != NULL) {
        for (Py_ssize_t i = 0; i < n->size; i++) {
            free_node(n->children[i]);
        }
        PyMem_Free(n->children);
    }
    Py_XDECREF(n->names);
    PyMem_Free(n);
}

static const struct { const char *name; enum kind kind; } SIMPLE[] = {
    {"null", K_NULL}, {"boolean", K_BOOLEAN}, {"long", K_LONG}, {"float", K_FLOAT}, {"double", K_DOUBLE},
    {"bytes", K_BYTES}, {"string", K_STRING},
};

static node *build(PyObject *plan);

static int build_children(node *n, PyObject *plans) {
    if (!PyTuple_Check(plans)) {
        PyErr_SetString(PyExc_TypeError, "a plan's children are a tuple");
        return -1;
    }
    n->size = PyTuple_GET_SIZE(plans);
    n->children = PyMem_Calloc(n->size ? n->size : 1, sizeof(node *));
    if (n->children == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n->size; i++) {
        if ((n->children[i] = build(PyTuple_GET_ITEM(plans, i))) == NULL) {
            return -1;
        }
    }
    return 0;
}

static node *build(PyObject *plan) {
    if (!PyTuple_Check(plan) || PyTuple_GET_SIZE(plan) < 1 || !PyUnicode_Check(PyTuple_GET_ITEM(plan, 0))) {
        PyErr_SetString(PyExc_TypeError, "a plan is a tuple headed by its type's name");
        return NULL;
    }
    const char *name = PyUnicode_AsUTF8(PyTuple_GET_ITEM(plan, 0));
    Py_ssize_t arity = PyTuple_GET_SIZE(plan);
    node *n = PyMem_Calloc(1, sizeof(node));
    if (name == NULL || n == NULL) {
        PyMem_Free(n);
        return name == NULL ? NULL : (node *)PyErr_NoMemory();
    }
    for (size_t i = 0; i < sizeof(SIMPLE) / sizeof(SIMPLE[0]); i++) {
        if (strcmp(name, SIMPLE[i].name) == 0 && arity == 1) {
            n->kind = SIMPLE[i].kind;
            return n;
        }
    }
    int ok = 0;
    if (strcmp(name, "enum") == 0 && arity == 2 && PyTuple_Check(PyTuple_GET_ITEM(plan, 1))) {
        n->kind = K_ENUM;
        n->names = Py_NewRef(PyTuple_GET_ITEM(plan, 1));
        ok = 1;
    } else if (strcmp(name, "fixed") == 0 && arity == 2) {
        n->kind = K_FIXED;
        n->size = PyLong_AsSsize_t(PyTuple_GET_ITEM(plan, 1));
        ok = n->size >= 0;
        if (!ok && !PyErr_Occurred()) {
            PyErr_SetString(PyExc_TypeError, "a fixed size is not negative");
        }
        n->size = ok ? n->size : 0;
    } else if (strcmp(name, "union") == 0 && arity == 2) {
        n->kind = K_UNION;
        ok = build_children(n, PyTuple_GET_ITEM(plan, 1)) == 0;
    } else if ((strcmp(name, "array") == 0 || strcmp(name, "map") == 0) && arity == 2) {
        n->kind = name[0] == 'a' ? K_ARRAY : K_MAP;
        PyObject *one = PyTuple_Pack(1, PyTuple_GET_ITEM(plan, 1));
        ok = one != NULL && build_children(n, one) == 0;
        Py_XDECREF(one);
        n->items_take_bytes = ok && n->children[0]->kind != K_NULL;
    } else if (strcmp(name, "record") == 0 && arity == 3 && PyTuple_Check(PyTuple_GET_ITEM(plan, 1))) {
        n->kind = K_RECORD;
        PyObject *names = PyTuple_GET_ITEM(plan, 1);
        ok = build_children(n, PyTuple_GET_ITEM(plan, 2)) == 0;
        if (ok && PyTuple_GET_SIZE(names) != n->size) {
            PyErr_SetString(PyExc_TypeError, "a record plan names each of its fields");
            ok = 0;
        }
        if (ok && (n->names = PyTuple_New(n->size)) == NULL) {
            ok = 0;
        }
        for (Py_ssize_t i = 0; ok && i < n->size; i++) {
            PyObject *field = PyTuple_GET_ITEM(names, i);
            if (!PyUnicode_Check(field)) {
                PyErr_SetString(PyExc_TypeError, "a field's name is text");
                ok = 0;
                break;
            }
            Py_INCREF(field);
            PyUnicode_InternInPlace(&field);
            PyTuple_SET_ITEM(n->names, i, field);
        }
    } else {
        PyErr_Format(PyExc_TypeError, "no plan for Avro type %R", plan);
    }
    if (!ok) {
        free_node(n);
        return NULL;
    }
    return n;
}

static int ended(void) {
    PyErr_SetString(PyExc_IndexError, "index out of range");
    return -1;
}

/* A zig-zag varint of up to ten bytes; the tenth holds the 64th bit only. */
static int read_long(cursor *c, int64_t *out) {
    uint64_t n = 0;
    for (int shift = 0;; shift += 7) {
        if (c->p >= c->end) {
            return ended();
        }
        unsigned int b = c->buf[c->p++];
        if (shift == 63 && b > 1) {
            PyErr_SetString(PyExc_ValueError, "a varint beyond 64 bits");
            return -1;
        }
        n |= (uint64_t)(b & 0x7F) << shift;
        if (b < 0x80) {
            break;
        }
    }
    *out = (int64_t)(n >> 1) ^ -(int64_t)(n & 1);
    return 0;
}

/* A length and what it measures, checked against the end of the value: the start of it, or -1. */
static Py_ssize_t read_span(cursor *c, const char *what) {
    int64_t length;
    if (read_long(c, &length) < 0) {
        return -1;
    }
    if (length < 0 || length > c->end - c->p) {
        PyErr_Format(PyExc_ValueError, "%s of %lld bytes at %zd runs past the end (%zd)", what,
                     (long long)length, c->p, c->end);
        return -1;
    }
    Py_ssize_t start = c->p;
    c->p += (Py_ssize_t)length;
    return start;
}

static PyObject *read_value(const node *n, cursor *c);

static PyObject *read_blocks(const node *n, cursor *c) {
    int is_map = n->kind == K_MAP;
    PyObject *out = is_map ? PyDict_New() : PyList_New(0);
    if (out == NULL) {
        return NULL;
    }
    for (;;) {
        int64_t count, size;
        if (read_long(c, &count) < 0) {
            goto fail;
        }
        if (count == 0) {
            return out;
        }
        if (count < 0) {
            count = count == INT64_MIN ? INT64_MAX : -count;
            if (read_long(c, &size) < 0) {
                goto fail;
            }
        }
        if ((is_map || n->items_take_bytes) ? count > c->end - c->p : count > PY_SSIZE_T_MAX / 16) {
            PyErr_Format(PyExc_ValueError, "a block of %lld items runs past the end", (long long)count);
            goto fail;
        }
        for (int64_t i = 0; i < count; i++) {
            if (is_map) {
                Py_ssize_t start = read_span(c, "string");
                if (start < 0) {
                    goto fail;
                }
                PyObject *key = PyUnicode_DecodeUTF8((const char *)c->buf + start, c->p - start, NULL);
                if (key == NULL) {
                    goto fail;
                }
                PyObject *value = read_value(n->children[0], c);
                int failed = value == NULL || PyDict_SetItem(out, key, value) < 0;
                Py_DECREF(key);
                Py_XDECREF(value);
                if (failed) {
                    goto fail;
                }
            } else {
                PyObject *item = read_value(n->children[0], c);
                int failed = item == NULL || PyList_Append(out, item) < 0;
                Py_XDECREF(item);
                if (failed) {
                    goto fail;
                }
            }
        }
    }
fail:
    Py_DECREF(out);
    return NULL;
}

static PyObject *read_record(const node *n, cursor *c) {
    PyObject *out = _PyDict_NewPresized(n->size);
    if (out == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n->size; i++) {
        PyObject *value = read_value(n->children[i], c);
        if (value == NULL || PyDict_SetItem(out, PyTuple_GET_ITEM(n->names, i), value) < 0) {
            Py_XDECREF(value);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(value);
    }
    return out;
}

static PyObject *read_value(const node *n, cursor *c) {
    int64_t number;
    Py_ssize_t start;
    switch (n->kind) {
    case K_NULL:
        Py_RETURN_NONE;
    case K_BOOLEAN:
        if (c->p >= c->end) {
            ended();
            return NULL;
        }
        number = c->buf[c->p++];
        if (number > 1) {
            return PyErr_Format(PyExc_ValueError, "a boolean byte of %lld", (long long)number);
        }
        return PyBool_FromLong((long)number);
    case K_LONG:
        return read_long(c, &number) < 0 ? NULL : PyLong_FromLongLong(number);
    case K_FLOAT:
    case K_DOUBLE: {
        Py_ssize_t width = n->kind == K_FLOAT ? 4 : 8;
        if (width > c->end - c->p) {
            return PyErr_Format(PyExc_ValueError, "a %s runs past the end", n->kind == K_FLOAT ? "float" : "double");
        }
        const char *at = (const char *)c->buf + c->p;
        c->p += width;
        double value = width == 4 ? PyFloat_Unpack4(at, 1) : PyFloat_Unpack8(at, 1);
        return value == -1.0 && PyErr_Occurred() ? NULL : PyFloat_FromDouble(value);
    }
    case K_BYTES:
    case K_STRING:
        if ((start = read_span(c, n->kind == K_STRING ? "string" : "bytes")) < 0) {
            return NULL;
        }
        return n->kind == K_STRING ? PyUnicode_DecodeUTF8((const char *)c->buf + start, c->p - start, NULL)
                                   : PyBytes_FromStringAndSize((const char *)c->buf + start, c->p - start);
    case K_FIXED:
        if (n->size > c->end - c->p) {
            return PyErr_Format(PyExc_ValueError, "fixed of %zd bytes runs past the end", n->size);
        }
        c->p += n->size;
        return PyBytes_FromStringAndSize((const char *)c->buf + c->p - n->size, n->size);
    case K_ENUM:
        if (read_long(c, &number) < 0) {
            return NULL;
        }
        if (number < 0) {
            return PyErr_Format(PyExc_ValueError, "enum index %lld", (long long)number);
        }
        if (number >= PyTuple_GET_SIZE(n->names)) {
            PyErr_SetString(PyExc_IndexError, "tuple index out of range");
            return NULL;
        }
        return Py_NewRef(PyTuple_GET_ITEM(n->names, (Py_ssize_t)number));
    case K_UNION:
        if (read_long(c, &number) < 0) {
            return NULL;
        }
        if (number < 0 || number >= n->size) {
            return PyErr_Format(PyExc_ValueError, "union index %lld of %zd branches", (long long)number, n->size);
        }
        return read_value(n->children[number], c);
    case K_ARRAY:
    case K_MAP:
        return read_blocks(n, c);
    case K_RECORD:
        return read_record(n, c);
    }
    PyErr_SetString(PyExc_SystemError, "a node of no kind");
    return NULL;
}

typedef struct {
    PyObject_HEAD
    node *root;
} Reader;

static int Reader_init(Reader *self, PyObject *args, PyObject *kwargs) {
    PyObject *plan;
    static char *keywords[] = {"plan", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O", keywords, &plan)) {
        return -1;
    }
    node *root = build(plan);
    if (root == NULL) {
        return -1;
    }
    if (root->kind != K_RECORD) {
        free_node(root);
        PyErr_SetString(PyExc_TypeError, "a reader reads a record");
        return -1;
    }
    free_node(self->root);
    self->root = root;
    return 0;
}

static void Reader_dealloc(Reader *self) {
    free_node(self->root);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Reader_call(Reader *self, PyObject *args, PyObject *kwargs) {
    Py_buffer view;
    Py_ssize_t start;
    if (self->root == NULL) {
        PyErr_SetString(PyExc_ValueError, "the reader has no plan");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "y*n", &view, &start)) {
        return NULL;
    }
    if (start < 0 || start > view.len) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_IndexError, "index out of range");
        return NULL;
    }
    cursor c = {(const unsigned char *)view.buf, view.len, start};
    PyObject *record = read_record(self->root, &c);
    PyBuffer_Release(&view);
    if (record == NULL) {
        return NULL;
    }
    PyObject *end = PyLong_FromSsize_t(c.p);
    if (end == NULL) {
        Py_DECREF(record);
        return NULL;
    }
    PyObject *out = PyTuple_Pack(2, record, end);
    Py_DECREF(record);
    Py_DECREF(end);
    return out;
}

static PyTypeObject ReaderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "schemas._avro_reader.Reader",
    .tp_doc = PyDoc_STR("Reader(plan): reader(value, start) -> (record, end)"),
    .tp_basicsize = sizeof(Reader),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Reader_init,
    .tp_dealloc = (destructor)Reader_dealloc,
    .tp_call = (ternaryfunc)Reader_call,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_avro_reader", "Avro records read by a plan made from their schema.", -1, NULL,
};

PyMODINIT_FUNC PyInit__avro_reader(void) {
    if (PyType_Ready(&ReaderType) < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(m, "Reader", (PyObject *)&ReaderType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
