/*
 * Compiled fast paths of logio's hot loops, each standing in for Python
 * code that gives the same results (tests compare them):
 *
 * goRecords: the seed protocol's records of the Go client's exact shape.
 *
 * goRecords() does what the record-at-a-time loop of
 * logio.ingest.seed.SeedProtocol._fastRecords does for the records it can
 * take whole, {"time":"<RFC 3339>","raw":"<text>"} back to back, and stops
 * at the first record it cannot (another shape, a longer one, an escape
 * other than a final \n): the Python loop takes that one and calls it
 * again.
 *
 * octetFrames: octet-counted syslog frames that share the header of the
 * last one the Python loop of logio.ingest.syslog.SyslogReader.takeOctets
 * read (all but the timestamp), as that loop's shortcut reads them.
 *
 * flatPack: the store's flat packing of a batch (logio.packing.pack) for
 * the usual batch: ASCII timestamps of one length, ASCII texts without a
 * NUL, no levels.
 *
 * Built as the optional module _logio_speedups; without it the Python
 * loops do everything.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* Bumped whenever what a function here does changes, so a stale build is not used. */
#define SPEEDUPS_VERSION 4

typedef struct {
    int kind;
    const void *data;
    Py_ssize_t length;
} Text;

static inline Py_UCS4
at(const Text *t, Py_ssize_t i)
{
    return PyUnicode_READ(t->kind, t->data, i);
}

static inline int
digits(const Text *t, Py_ssize_t i, Py_ssize_t n)
{
    if (i + n > t->length) {
        return 0;
    }
    for (Py_ssize_t j = i; j < i + n; j++) {
        Py_UCS4 c = at(t, j);
        if (c < '0' || c > '9') {
            return 0;
        }
    }
    return 1;
}

static inline int
literal(const Text *t, Py_ssize_t i, const char *s, Py_ssize_t n)
{
    if (i + n > t->length) {
        return 0;
    }
    for (Py_ssize_t j = 0; j < n; j++) {
        if (at(t, i + j) != (Py_UCS4)(unsigned char)s[j]) {
            return 0;
        }
    }
    return 1;
}

static inline int
same(const Text *t, Py_ssize_t a, Py_ssize_t b, Py_ssize_t n)
{
    return memcmp((const char *)t->data + a * t->kind,
                  (const char *)t->data + b * t->kind, (size_t)(n * t->kind)) == 0;
}

/* One record's parts, as offsets into the text. */
typedef struct {
    Py_ssize_t when, whenEnd, zone, zoneEnd, raw, rawEnd, end;
} Parts;

/* Match the Go client's record shape at i, as the _GO_RECORD pattern does. */
static int
parse(const Text *t, Py_ssize_t i, Parts *p)
{
    if (!literal(t, i, "{\"time\":\"", 9)) {
        return 0;
    }
    i += 9;
    p->when = i;
    if (!(digits(t, i, 4) && literal(t, i + 4, "-", 1) && digits(t, i + 5, 2)
          && literal(t, i + 7, "-", 1) && digits(t, i + 8, 2) && literal(t, i + 10, "T", 1)
          && digits(t, i + 11, 2) && literal(t, i + 13, ":", 1) && digits(t, i + 14, 2)
          && literal(t, i + 16, ":", 1) && digits(t, i + 17, 2))) {
        return 0;
    }
    i += 19;
    if (i < t->length && at(t, i) == '.') {
        Py_ssize_t n = 0;
        while (n < 3 && digits(t, i + 1 + n, 1)) {
            n++;
        }
        if (n == 0) {
            return 0;
        }
        i += 1 + n;
        p->whenEnd = i;
        if (n == 3) {
            while (digits(t, i, 1)) {
                i++;
            }
        }
    }
    else {
        p->whenEnd = i;
    }
    p->zone = i;
    if (i < t->length && at(t, i) == 'Z') {
        i += 1;
    }
    else if (i < t->length && (at(t, i) == '+' || at(t, i) == '-') && digits(t, i + 1, 2)
             && literal(t, i + 3, ":", 1) && digits(t, i + 4, 2)) {
        i += 6;
    }
    else {
        return 0;
    }
    p->zoneEnd = i;
    if (!literal(t, i, "\",\"raw\":\"", 9)) {
        return 0;
    }
    i += 9;
    p->raw = i;
    while (i < t->length && at(t, i) != '"') {
        i++;
    }
    if (!literal(t, i, "\"}", 2)) {
        return 0;
    }
    p->rawEnd = i;
    p->end = i + 2;
    return 1;
}

/* The record's time as the cache keys it: to the millisecond, and the zone. */
static PyObject *
timeKey(PyObject *buffer, const Parts *p)
{
    if (p->whenEnd == p->zone) {
        return PyUnicode_Substring(buffer, p->when, p->zoneEnd);
    }
    PyObject *when = PyUnicode_Substring(buffer, p->when, p->whenEnd);
    if (when == NULL) {
        return NULL;
    }
    PyObject *zone = PyUnicode_Substring(buffer, p->zone, p->zoneEnd);
    if (zone == NULL) {
        Py_DECREF(when);
        return NULL;
    }
    PyObject *key = PyUnicode_Concat(when, zone);
    Py_DECREF(when);
    Py_DECREF(zone);
    return key;
}

/*
 * The text of the record's raw value, or 0 if the Python loop must decode
 * it: the value as it is, less a final newline (raw, or the \n escape when
 * that is its only escape) and a carriage return before it.
 */
static int
textEnd(const Text *t, const Parts *p, Py_ssize_t *end)
{
    Py_ssize_t escape = -1;
    for (Py_ssize_t i = p->raw; i < p->rawEnd; i++) {
        if (at(t, i) == '\\') {
            escape = i;
            break;
        }
    }
    Py_ssize_t stop = p->rawEnd;
    if (escape < 0) {
        if (stop > p->raw && at(t, stop - 1) == '\n') {
            stop--;
            if (stop > p->raw && at(t, stop - 1) == '\r') {
                stop--;
            }
        }
    }
    else if (escape == stop - 2 && at(t, stop - 1) == 'n') {
        stop -= 2;
        if (stop > p->raw && at(t, stop - 1) == '\r') {
            stop--;
        }
    }
    else {
        return 0;
    }
    *end = stop;
    return 1;
}

static PyObject *
goRecords(PyObject *module, PyObject *args)
{
    (void)module;
    PyObject *buffer, *cache, *stamp, *records;
    Py_ssize_t position, limit;
    if (!PyArg_ParseTuple(args, "UnnO!OO!:goRecords", &buffer, &position, &limit, &PyDict_Type,
                          &cache, &stamp, &PyList_Type, &records)) {
        return NULL;
    }
    Text t = {PyUnicode_KIND(buffer), PyUnicode_DATA(buffer), PyUnicode_GET_LENGTH(buffer)};
    /* The last record's key and stamp, when the cache held it: the next
     * records of the same millisecond share it without a lookup. */
    Parts last = {0};
    PyObject *lastStamp = NULL;
    while (position >= 0 && position < t.length) {
        Parts p;
        Py_ssize_t stop;
        if (!parse(&t, position, &p) || p.end - position > limit || !textEnd(&t, &p, &stop)) {
            break;
        }
        PyObject *found;
        if (lastStamp != NULL && p.whenEnd - p.when == last.whenEnd - last.when
            && p.zoneEnd - p.zone == last.zoneEnd - last.zone
            && same(&t, p.when, last.when, p.whenEnd - p.when)
            && same(&t, p.zone, last.zone, p.zoneEnd - p.zone)) {
            found = Py_NewRef(lastStamp);
        }
        else {
            PyObject *key = timeKey(buffer, &p);
            if (key == NULL) {
                goto failed;
            }
            found = PyDict_GetItemWithError(cache, key);
            if (found != NULL) {
                Py_INCREF(found);
            }
            else if (PyErr_Occurred()) {
                Py_DECREF(key);
                goto failed;
            }
            else {
                found = PyObject_CallOneArg(stamp, key);
                if (found == NULL) {
                    Py_DECREF(key);
                    goto failed;
                }
            }
            /* Remembered only if the cache holds it now: a time that does
             * not parse goes to the callable (which counts it) each time. */
            Py_CLEAR(lastStamp);
            PyObject *held = PyDict_GetItemWithError(cache, key);
            Py_DECREF(key);
            if (held == NULL && PyErr_Occurred()) {
                Py_DECREF(found);
                goto failed;
            }
            if (held != NULL) {
                lastStamp = Py_NewRef(found);
                last = p;
            }
        }
        PyObject *text = PyUnicode_Substring(buffer, p.raw, stop);
        if (text == NULL) {
            Py_DECREF(found);
            goto failed;
        }
        PyObject *record = PyTuple_New(3);
        if (record == NULL) {
            Py_DECREF(found);
            Py_DECREF(text);
            goto failed;
        }
        PyTuple_SET_ITEM(record, 0, found);
        PyTuple_SET_ITEM(record, 1, text);
        PyTuple_SET_ITEM(record, 2, Py_NewRef(Py_None));
        int appended = PyList_Append(records, record);
        Py_DECREF(record);
        if (appended < 0) {
            goto failed;
        }
        position = p.end;
    }
    Py_XDECREF(lastStamp);
    return PyLong_FromSsize_t(position);
failed:
    Py_XDECREF(lastStamp);
    return NULL;
}

/* The most digits of an octet count (MAX_COUNT_DIGITS). */
#define MAX_COUNT_DIGITS 10

static inline int
startsWith(const char *data, Py_ssize_t length, Py_ssize_t at, PyObject *prefix)
{
    Py_ssize_t n = PyBytes_GET_SIZE(prefix);
    return at >= 0 && at + n <= length && memcmp(data + at, PyBytes_AS_STRING(prefix), n) == 0;
}

static PyObject *
octetFrames(PyObject *module, PyObject *args)
{
    (void)module;
    PyObject *buffer, *before, *after, *millis, *zone, *formatted, *stamps, *stamp, *level,
        *batch;
    Py_ssize_t position, maxLine, stampLength, cut, zoneLength;
    if (!PyArg_ParseTuple(args, "SnnSSnnnSSUO!OOO!:octetFrames", &buffer, &position, &maxLine,
                          &before, &after, &stampLength, &cut, &zoneLength, &millis, &zone,
                          &formatted, &PyDict_Type, &stamps, &stamp, &level, &PyList_Type,
                          &batch)) {
        return NULL;
    }
    const char *data = PyBytes_AS_STRING(buffer);
    Py_ssize_t length = PyBytes_GET_SIZE(buffer);
    Py_INCREF(millis);
    Py_INCREF(zone);
    Py_INCREF(formatted);
    while (position >= 0 && position < length) {
        /* The count: digits, then a space within MAX_COUNT_DIGITS + 1. */
        Py_ssize_t limit = position + MAX_COUNT_DIGITS + 1;
        if (limit > length) {
            limit = length;
        }
        const char *found = memchr(data + position, ' ', (size_t)(limit - position));
        if (found == NULL) {
            break;
        }
        Py_ssize_t space = found - data;
        if (space == position) {
            break;
        }
        long long size = 0;
        int counted = 1;
        for (Py_ssize_t i = position; i < space; i++) {
            if (data[i] < '0' || data[i] > '9') {
                counted = 0;
                break;
            }
            size = size * 10 + (data[i] - '0');
        }
        if (!counted) {
            break;
        }
        Py_ssize_t start = space + 1;
        if (size > maxLine || start + size > length) {
            break;
        }
        Py_ssize_t end = start + (Py_ssize_t)size;
        Py_ssize_t stampStart = start + PyBytes_GET_SIZE(before);
        Py_ssize_t stampEnd = stampStart + stampLength;
        Py_ssize_t head = stampEnd + PyBytes_GET_SIZE(after);
        if (!startsWith(data, length, start, before) || !startsWith(data, length, stampEnd, after)
            || head > end) {
            break;
        }
        /* The digits after the milliseconds, if any, are digits. */
        Py_ssize_t lo = stampStart + cut, hi = stampEnd - zoneLength;
        int digits = 1;
        for (Py_ssize_t i = lo; i < hi && i < length; i++) {
            if (data[i] < '0' || data[i] > '9') {
                digits = 0;
                break;
            }
        }
        if (!digits) {
            break;
        }
        if (!(startsWith(data, length, stampStart, millis)
              && startsWith(data, length, stampEnd - zoneLength, zone))) {
            PyObject *newMillis = PyBytes_FromStringAndSize(data + stampStart, cut);
            PyObject *newZone = PyBytes_FromStringAndSize(data + hi, zoneLength);
            if (newMillis == NULL || newZone == NULL) {
                Py_XDECREF(newMillis);
                Py_XDECREF(newZone);
                goto failed;
            }
            Py_SETREF(millis, newMillis);
            Py_SETREF(zone, newZone);
            PyObject *key = PyBytes_FromStringAndSize(NULL, cut + zoneLength);
            if (key == NULL) {
                goto failed;
            }
            memcpy(PyBytes_AS_STRING(key), data + stampStart, cut);
            memcpy(PyBytes_AS_STRING(key) + cut, data + hi, zoneLength);
            PyObject *known = PyDict_GetItemWithError(stamps, key);
            PyObject *value;
            if (known != NULL && PyObject_IsTrue(known) == 1) {
                value = Py_NewRef(known);
            }
            else if (PyErr_Occurred()) {
                Py_DECREF(key);
                goto failed;
            }
            else {
                value = PyObject_CallOneArg(stamp, key);
            }
            Py_DECREF(key);
            if (value == NULL) {
                goto failed;
            }
            Py_SETREF(formatted, value);
        }
        /* The message: less a byte order mark, and line ends at its end. */
        Py_ssize_t from = head, to = end;
        if (to - from >= 3 && memcmp(data + from, "\xef\xbb\xbf", 3) == 0) {
            from += 3;
        }
        while (to > from && (data[to - 1] == '\r' || data[to - 1] == '\n')) {
            to--;
        }
        PyObject *text = PyUnicode_DecodeUTF8(data + from, to - from, "replace");
        if (text == NULL) {
            goto failed;
        }
        PyObject *record = PyTuple_Pack(3, formatted, text, level);
        Py_DECREF(text);
        if (record == NULL) {
            goto failed;
        }
        int appended = PyList_Append(batch, record);
        Py_DECREF(record);
        if (appended < 0) {
            goto failed;
        }
        position = end;
    }
    PyObject *result = Py_BuildValue("(nNNN)", position, millis, zone, formatted);
    return result;
failed:
    Py_DECREF(millis);
    Py_DECREF(zone);
    Py_DECREF(formatted);
    return NULL;
}

/*
 * records packed flat, as logio.packing.pack packs them: S and the shared
 * timestamp, or F and every timestamp; a - for each record (no level); the
 * texts joined by NULs.  Returns (value, oldest, newest), or None for a
 * batch it does not take (empty, a timestamp not of stampLength ASCII
 * characters, a text that is not ASCII or holds a NUL, a level): Python
 * packs those.
 */
static PyObject *
flatPack(PyObject *module, PyObject *args)
{
    (void)module;
    PyObject *records;
    Py_ssize_t stampLength;
    if (!PyArg_ParseTuple(args, "O!n:flatPack", &PyList_Type, &records, &stampLength)) {
        return NULL;
    }
    Py_ssize_t count = PyList_GET_SIZE(records);
    if (count == 0 || stampLength <= 0) {
        Py_RETURN_NONE;
    }
    PyObject *first = NULL, *oldest = NULL, *newest = NULL;
    int shared = 1;
    Py_ssize_t texts = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *record = PyList_GET_ITEM(records, i);
        if (!PyTuple_CheckExact(record) || PyTuple_GET_SIZE(record) != 3
            || PyTuple_GET_ITEM(record, 2) != Py_None) {
            Py_RETURN_NONE;
        }
        PyObject *stamp = PyTuple_GET_ITEM(record, 0);
        PyObject *text = PyTuple_GET_ITEM(record, 1);
        if (!PyUnicode_CheckExact(stamp) || !PyUnicode_IS_ASCII(stamp)
            || PyUnicode_GET_LENGTH(stamp) != stampLength || !PyUnicode_CheckExact(text)
            || !PyUnicode_IS_ASCII(text)) {
            Py_RETURN_NONE;
        }
        Py_ssize_t length = PyUnicode_GET_LENGTH(text);
        if (memchr(PyUnicode_1BYTE_DATA(text), 0, (size_t)length) != NULL) {
            Py_RETURN_NONE;
        }
        texts += length;
        const char *bytes = (const char *)PyUnicode_1BYTE_DATA(stamp);
        if (first == NULL) {
            first = oldest = newest = stamp;
            continue;
        }
        if (memcmp(bytes, PyUnicode_1BYTE_DATA(first), (size_t)stampLength) != 0) {
            shared = 0;
        }
        if (memcmp(bytes, PyUnicode_1BYTE_DATA(oldest), (size_t)stampLength) < 0) {
            oldest = stamp;
        }
        if (memcmp(bytes, PyUnicode_1BYTE_DATA(newest), (size_t)stampLength) > 0) {
            newest = stamp;
        }
    }
    Py_ssize_t stamps = shared ? stampLength : stampLength * count;
    PyObject *value = PyBytes_FromStringAndSize(NULL, 1 + stamps + count + texts + count - 1);
    if (value == NULL) {
        return NULL;
    }
    char *out = PyBytes_AS_STRING(value);
    *out++ = shared ? 'S' : 'F';
    for (Py_ssize_t i = 0; i < (shared ? 1 : count); i++) {
        PyObject *stamp = PyTuple_GET_ITEM(PyList_GET_ITEM(records, i), 0);
        memcpy(out, PyUnicode_1BYTE_DATA(stamp), (size_t)stampLength);
        out += stampLength;
    }
    memset(out, '-', (size_t)count);
    out += count;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *text = PyTuple_GET_ITEM(PyList_GET_ITEM(records, i), 1);
        Py_ssize_t length = PyUnicode_GET_LENGTH(text);
        if (i) {
            *out++ = '\0';
        }
        memcpy(out, PyUnicode_1BYTE_DATA(text), (size_t)length);
        out += length;
    }
    if (shared) {
        oldest = newest = first;
    }
    PyObject *result = PyTuple_Pack(3, value, oldest, newest);
    Py_DECREF(value);
    return result;
}

static PyMethodDef methods[] = {
    {"goRecords", goRecords, METH_VARARGS,
     "goRecords(buffer, position, limit, cache, stamp, records) -> position\n\n"
     "Append the records of the Go client's shape from position on to records,\n"
     "as (stamp, text, None), and return where the first one it cannot take\n"
     "starts. cache maps time keys to output stamps; stamp(key) gives one\n"
     "the cache does not hold."},
    {"octetFrames", octetFrames, METH_VARARGS,
     "octetFrames(buffer, position, maxLine, before, after, stampLength, cut,\n"
     "            zoneLength, millis, zone, formatted, stamps, stamp, level, batch)\n"
     "    -> (position, millis, zone, formatted)\n\n"
     "Append the records of the octet-counted frames from position on whose\n"
     "header is before + a timestamp of stampLength bytes + after, as\n"
     "(formatted, text, level), to batch; return where the first other or\n"
     "incomplete frame starts, and the last timestamp's milliseconds, zone and\n"
     "output timestamp (millis, zone, formatted: the last frame's, given)."},
    {"flatPack", flatPack, METH_VARARGS,
     "flatPack(records, stampLength) -> (value, oldest, newest) or None\n\n"
     "Pack records flat, as logio.packing.pack does, if every timestamp is\n"
     "stampLength ASCII characters, every text ASCII without a NUL, and no\n"
     "record has a level; None otherwise."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef speedups = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_logio_speedups",
    .m_doc = "Compiled fast paths of logio; optional, each has a Python equal.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__logio_speedups(void)
{
    PyObject *module = PyModule_Create(&speedups);
    if (module != NULL && PyModule_AddIntConstant(module, "VERSION", SPEEDUPS_VERSION) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
