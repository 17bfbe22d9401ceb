/* Column data in ClickHouse's Native format, for the columns whose encoding in clickhouse-connect is a
 * loop in Python (consumers/native_block.py assembles the block; the fixed-width columns it packs with
 * the array module). Each function returns the bytes clickhouse-connect's writer for that type appends
 * to an insert block for the same values (tests/consumers/test_native_block.py compares the two).
 *
 *   strings(values, nullable)         String / Nullable(String): [null map,] each value as a varint
 *                                     length and its UTF-8 bytes (a null as the empty string)
 *   low_cardinality(values, nullable) LowCardinality([Nullable(]String[)]): the data after the column's
 *                                     prefix -- flags and key width, the dictionary (a null first when
 *                                     nullable), the keys
 *   uuids(values)                     UUID from canonical or hex text: each as two little-endian UInt64,
 *                                     high half first; an empty or null value as zeros
 *   days(values, nullable)            Date32 / Nullable(Date32) from datetime.date: [null map,] Int32
 *                                     days since 1970-01-01
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>
#include <stdint.h>

typedef struct {
    char *data;
    Py_ssize_t size;
    Py_ssize_t capacity;
} out_buffer;

static int reserve(out_buffer *b, Py_ssize_t more) {
    if (b->size + more <= b->capacity) {
        return 0;
    }
    Py_ssize_t capacity = b->capacity ? b->capacity : 4096;
    while (capacity < b->size + more) {
        capacity *= 2;
    }
    char *data = PyMem_Realloc(b->data, capacity);
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->data = data;
    b->capacity = capacity;
    return 0;
}

static int put(out_buffer *b, const void *bytes, Py_ssize_t n) {
    if (reserve(b, n) < 0) {
        return -1;
    }
    memcpy(b->data + b->size, bytes, n);
    b->size += n;
    return 0;
}

static int put_varint(out_buffer *b, uint64_t n) {
    if (reserve(b, 10) < 0) {
        return -1;
    }
    while (n >= 0x80) {
        b->data[b->size++] = (char)((n & 0x7F) | 0x80);
        n >>= 7;
    }
    b->data[b->size++] = (char)n;
    return 0;
}

static int put_le(out_buffer *b, uint64_t n, int width) {
    if (reserve(b, width) < 0) {
        return -1;
    }
    for (int i = 0; i < width; i++) {
        b->data[b->size++] = (char)(n >> (8 * i));
    }
    return 0;
}

static PyObject *finish(out_buffer *b, int ok) {
    PyObject *out = ok ? PyBytes_FromStringAndSize(b->data, b->size) : NULL;
    PyMem_Free(b->data);
    return out;
}

static int put_null_map(out_buffer *b, PyObject *values) {
    Py_ssize_t n = PyList_GET_SIZE(values);
    if (reserve(b, n) < 0) {
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        b->data[b->size++] = PyList_GET_ITEM(values, i) == Py_None;
    }
    return 0;
}

static int put_string(out_buffer *b, PyObject *value) {
    Py_ssize_t length;
    const char *text = PyUnicode_AsUTF8AndSize(value, &length);
    if (text == NULL) {
        return -1;
    }
    return put_varint(b, (uint64_t)length) < 0 ? -1 : put(b, text, length);
}

static int check_list(PyObject *values) {
    if (!PyList_Check(values)) {
        PyErr_SetString(PyExc_TypeError, "a column is a list");
        return -1;
    }
    return 0;
}

static int text_or_null(PyObject *value, int nullable) {
    if (PyUnicode_Check(value) || (nullable && value == Py_None)) {
        return 0;
    }
    PyErr_Format(PyExc_TypeError, "a %s column holds %R", nullable ? "Nullable(String)" : "String", value);
    return -1;
}

/* One value of a column, appended; a null only where the column is Nullable. */
typedef int (*put_value)(out_buffer *b, PyObject *value, int nullable);

/* A column function's (values, nullable) arguments to its data: the null map of a Nullable column, then
 * each value as `put` writes it. */
static PyObject *column(PyObject *args, put_value put) {
    PyObject *values;
    int nullable;
    out_buffer b = {0};
    if (!PyArg_ParseTuple(args, "Op", &values, &nullable) || check_list(values) < 0) {
        return NULL;
    }
    if (nullable && put_null_map(&b, values) < 0) {
        return finish(&b, 0);
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(values); i++) {
        if (put(&b, PyList_GET_ITEM(values, i), nullable) < 0) {
            return finish(&b, 0);
        }
    }
    return finish(&b, 1);
}

static int put_text(out_buffer *b, PyObject *value, int nullable) {
    if (text_or_null(value, nullable) < 0) {
        return -1;
    }
    return value == Py_None ? put_varint(b, 0) : put_string(b, value);
}

static PyObject *strings(PyObject *module, PyObject *args) {
    return column(args, put_text);
}

static PyObject *low_cardinality(PyObject *module, PyObject *args) {
    PyObject *values;
    int nullable;
    if (!PyArg_ParseTuple(args, "Op", &values, &nullable) || check_list(values) < 0) {
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(values);
    if (n == 0) {
        return PyBytes_FromStringAndSize(NULL, 0);  /* clickhouse-connect writes nothing for no rows */
    }
    PyObject *positions = PyDict_New();  /* value -> key */
    PyObject *dictionary = PyList_New(0);
    uint64_t *keys = PyMem_Malloc(n * sizeof(uint64_t));
    out_buffer b = {0};
    int ok = positions != NULL && dictionary != NULL && keys != NULL;
    if (keys == NULL) {
        PyErr_NoMemory();
    }
    if (ok && nullable) {
        ok = PyList_Append(dictionary, Py_None) == 0;  /* the null's key is 0 */
    }
    for (Py_ssize_t i = 0; ok && i < n; i++) {
        PyObject *value = PyList_GET_ITEM(values, i);
        if (text_or_null(value, nullable) < 0) {
            ok = 0;
            break;
        }
        if (value == Py_None) {
            keys[i] = 0;
            continue;
        }
        PyObject *known = PyDict_GetItemWithError(positions, value);
        if (known != NULL) {
            keys[i] = PyLong_AsUnsignedLongLong(known);
            continue;
        }
        if (PyErr_Occurred()) {
            ok = 0;
            break;
        }
        PyObject *key = PyLong_FromSsize_t(PyList_GET_SIZE(dictionary));
        ok = key != NULL && PyDict_SetItem(positions, value, key) == 0 && PyList_Append(dictionary, value) == 0;
        keys[i] = (uint64_t)PyList_GET_SIZE(dictionary) - 1;
        Py_XDECREF(key);
    }
    if (ok) {
        Py_ssize_t size = PyList_GET_SIZE(dictionary);
        int bits = 0;
        while (((Py_ssize_t)1 << (bits + 1)) <= size) {
            bits++;  /* floor(log2(size)) */
        }
        int key_type = bits >> 3;  /* 0: UInt8, 1: UInt16, 2: UInt32, 3: UInt64 keys */
        int width = 1 << key_type;
        ok = put_le(&b, (1 << 9) | (1 << 10) | key_type, 8) == 0 && put_le(&b, (uint64_t)size, 8) == 0;
        for (Py_ssize_t i = 0; ok && i < size; i++) {
            PyObject *value = PyList_GET_ITEM(dictionary, i);
            ok = (value == Py_None ? put_varint(&b, 0) : put_string(&b, value)) == 0;
        }
        ok = ok && put_le(&b, (uint64_t)n, 8) == 0;
        for (Py_ssize_t i = 0; ok && i < n; i++) {
            ok = put_le(&b, keys[i], width) == 0;
        }
    }
    Py_XDECREF(positions);
    Py_XDECREF(dictionary);
    PyMem_Free(keys);
    return finish(&b, ok);
}

static int hex_value(int c) {
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static PyObject *uuids(PyObject *module, PyObject *values) {
    if (check_list(values) < 0) {
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(values);
    out_buffer b = {0};
    if (reserve(&b, 16 * n) < 0) {
        return finish(&b, 0);
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *value = PyList_GET_ITEM(values, i);
        unsigned char big_endian[16] = {0};
        if (value != Py_None && !PyUnicode_Check(value)) {
            PyErr_Format(PyExc_TypeError, "a UUID column holds %R", value);
            return finish(&b, 0);
        }
        Py_ssize_t length = 0;
        const char *text = value == Py_None ? "" : PyUnicode_AsUTF8AndSize(value, &length);
        if (text == NULL) {
            return finish(&b, 0);
        }
        int digits = 0;
        for (Py_ssize_t j = 0; j < length; j++) {
            if (text[j] == '-') {
                continue;
            }
            int v = hex_value((unsigned char)text[j]);
            if (v < 0 || digits == 32) {
                PyErr_Format(PyExc_ValueError, "%R is not a UUID", value);
                return finish(&b, 0);
            }
            big_endian[digits / 2] |= (unsigned char)(digits % 2 ? v : v << 4);
            digits++;
        }
        if (digits != 32 && length != 0) {
            PyErr_Format(PyExc_ValueError, "%R is not a UUID", value);
            return finish(&b, 0);
        }
        for (int j = 7; j >= 0; j--) {
            b.data[b.size++] = (char)big_endian[j];
        }
        for (int j = 15; j >= 8; j--) {
            b.data[b.size++] = (char)big_endian[j];
        }
    }
    return finish(&b, 1);
}

/* Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static int put_day(out_buffer *b, PyObject *value, int nullable) {
    int64_t day = 0;  /* a null's place holds day 0 */
    if (PyDate_Check(value)) {
        day = days_from_civil(PyDateTime_GET_YEAR(value), PyDateTime_GET_MONTH(value), PyDateTime_GET_DAY(value));
    } else if (!(nullable && value == Py_None)) {
        PyErr_Format(PyExc_TypeError, "a Date32 column holds %R", value);
        return -1;
    }
    return put_le(b, (uint64_t)day, 4);
}

static PyObject *days(PyObject *module, PyObject *args) {
    return column(args, put_day);
}

static PyMethodDef methods[] = {
    {"strings", strings, METH_VARARGS, "strings(values, nullable) -> String column data"},
    {"low_cardinality", low_cardinality, METH_VARARGS,
     "low_cardinality(values, nullable) -> LowCardinality(String) column data, after its prefix"},
    {"uuids", uuids, METH_O, "uuids(values) -> UUID column data"},
    {"days", days, METH_VARARGS, "days(values, nullable) -> Date32 column data"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_native_columns", "Column data in ClickHouse's Native format.", -1, methods,
};

PyMODINIT_FUNC PyInit__native_columns(void) {
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL) {
        return NULL;
    }
    return PyModule_Create(&module);
}
