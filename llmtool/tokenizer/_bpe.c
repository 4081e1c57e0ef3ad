/* The BPE merge loop: unique chunks with counts in, merges out.
 *
 *   merges = _bpe.train([b"hello", b" world"], [3, 2], 100)   # -> [(a, b, count), ...]
 *
 * Byte-level: a chunk starts as its bytes (ids 0..255); merge k creates id 256 + k.
 * Each step merges the pair with the highest count, ties going to the smallest pair
 * (a, b), left to right and non-overlapping inside each chunk. Pair counts are updated
 * incrementally: only chunks that contain the merged pair are touched (each pair keeps
 * the list of chunks it may occur in), and a max-heap with lazy refresh finds the next
 * pair. The Python wrapper (bpe.py) holds the reference description of the algorithm;
 * a slow pure-Python twin there is checked against this file in the tests.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    uint64_t key;     /* (a << 32) | b; EMPTY when unused */
    int64_t count;
    int32_t *pos;     /* chunks in which the pair may occur (may hold stale entries) */
    int32_t npos, cap;
    int32_t touched;  /* merge step in which it last gained occurrences */
} Entry;

#define EMPTY UINT64_MAX

typedef struct {
    Entry *e;
    size_t cap, used;
} Table;

typedef struct {
    int64_t count;
    uint64_t key;
} HeapItem;

typedef struct {
    HeapItem *a;
    size_t n, cap;
} Heap;

static inline uint64_t mix(uint64_t x) {
    x ^= x >> 33; x *= 0xff51afd7ed558ccdULL; x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ULL; x ^= x >> 33;
    return x;
}

static int table_init(Table *t, size_t cap) {
    t->cap = cap; t->used = 0;
    t->e = (Entry *)malloc(cap * sizeof(Entry));
    if (!t->e) return -1;
    for (size_t i = 0; i < cap; i++) { t->e[i].key = EMPTY; }
    return 0;
}

static int table_grow(Table *t) {
    Table n;
    if (table_init(&n, t->cap * 2) < 0) return -1;
    for (size_t i = 0; i < t->cap; i++) {
        if (t->e[i].key == EMPTY) continue;
        size_t j = mix(t->e[i].key) & (n.cap - 1);
        while (n.e[j].key != EMPTY) j = (j + 1) & (n.cap - 1);
        n.e[j] = t->e[i];
    }
    n.used = t->used;
    free(t->e);
    *t = n;
    return 0;
}

/* The entry of a pair, created (count 0, no positions) when missing; NULL on no memory. */
static Entry *table_get(Table *t, uint64_t key) {
    if ((t->used + 1) * 2 > t->cap && table_grow(t) < 0) return NULL;
    size_t j = mix(key) & (t->cap - 1);
    while (t->e[j].key != EMPTY) {
        if (t->e[j].key == key) return &t->e[j];
        j = (j + 1) & (t->cap - 1);
    }
    Entry *e = &t->e[j];
    e->key = key; e->count = 0; e->pos = NULL; e->npos = 0; e->cap = 0; e->touched = -1;
    t->used++;
    return e;
}

static Entry *table_find(Table *t, uint64_t key) {
    size_t j = mix(key) & (t->cap - 1);
    while (t->e[j].key != EMPTY) {
        if (t->e[j].key == key) return &t->e[j];
        j = (j + 1) & (t->cap - 1);
    }
    return NULL;
}

static void table_free(Table *t) {
    for (size_t i = 0; i < t->cap; i++)
        if (t->e[i].key != EMPTY) free(t->e[i].pos);
    free(t->e);
}

static int pos_add(Entry *e, int32_t w) {
    if (e->npos && e->pos[e->npos - 1] == w) return 0; /* consecutive duplicates are common */
    if (e->npos == e->cap) {
        int32_t nc = e->cap ? e->cap * 2 : 4;
        int32_t *p = (int32_t *)realloc(e->pos, (size_t)nc * sizeof(int32_t));
        if (!p) return -1;
        e->pos = p; e->cap = nc;
    }
    e->pos[e->npos++] = w;
    return 0;
}

/* Heap order: higher count first; on a tie the smaller pair (a, b) first. */
static inline int better(const HeapItem *x, const HeapItem *y) {
    if (x->count != y->count) return x->count > y->count;
    return x->key < y->key;
}

static int heap_push(Heap *h, int64_t count, uint64_t key) {
    if (h->n == h->cap) {
        size_t nc = h->cap ? h->cap * 2 : 1024;
        HeapItem *p = (HeapItem *)realloc(h->a, nc * sizeof(HeapItem));
        if (!p) return -1;
        h->a = p; h->cap = nc;
    }
    size_t i = h->n++;
    HeapItem it = {count, key};
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!better(&it, &h->a[parent])) break;
        h->a[i] = h->a[parent];
        i = parent;
    }
    h->a[i] = it;
    return 0;
}

static HeapItem heap_pop(Heap *h) {
    HeapItem top = h->a[0];
    HeapItem last = h->a[--h->n];
    size_t i = 0, n = h->n;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const HeapItem *best = &last;
        if (l < n && better(&h->a[l], best)) { m = l; best = &h->a[l]; }
        if (r < n && better(&h->a[r], best)) { m = r; }
        if (m == i) break;
        h->a[i] = h->a[m];
        i = m;
    }
    if (n) h->a[i] = last;
    return top;
}

#define KEY(a, b) (((uint64_t)(uint32_t)(a) << 32) | (uint32_t)(b))

/* Add `delta` to a pair's count; with add_pos, remember chunk w for it (and mark it touched). */
static int bump(Table *t, uint32_t a, uint32_t b, int64_t delta, int add_pos, int32_t w, int32_t step,
                uint64_t **touched, size_t *ntouched, size_t *captouched) {
    Entry *e = table_get(t, KEY(a, b));
    if (!e) return -1;
    e->count += delta;
    if (add_pos) {
        if (pos_add(e, w) < 0) return -1;
        if (e->touched != step) {
            e->touched = step;
            if (*ntouched == *captouched) {
                size_t nc = *captouched ? *captouched * 2 : 256;
                uint64_t *p = (uint64_t *)realloc(*touched, nc * sizeof(uint64_t));
                if (!p) return -1;
                *touched = p; *captouched = nc;
            }
            (*touched)[(*ntouched)++] = e->key;
        }
    }
    return 0;
}

static PyObject *train(PyObject *self, PyObject *args) {
    PyObject *words_obj, *counts_obj;
    Py_ssize_t n_merges;
    if (!PyArg_ParseTuple(args, "OOn", &words_obj, &counts_obj, &n_merges)) return NULL;
    PyObject *words = PySequence_Fast(words_obj, "words must be a sequence of bytes");
    if (!words) return NULL;
    PyObject *counts = PySequence_Fast(counts_obj, "counts must be a sequence of ints");
    if (!counts) { Py_DECREF(words); return NULL; }
    Py_ssize_t nw = PySequence_Fast_GET_SIZE(words);
    if (PySequence_Fast_GET_SIZE(counts) != nw) {
        PyErr_SetString(PyExc_ValueError, "words and counts differ in length");
        Py_DECREF(words); Py_DECREF(counts);
        return NULL;
    }
    if (nw >= INT32_MAX || n_merges < 0 || n_merges > (Py_ssize_t)UINT32_MAX - 256) {
        PyErr_SetString(PyExc_ValueError, "too many chunks or merges");
        Py_DECREF(words); Py_DECREF(counts);
        return NULL;
    }

    size_t total = 0;
    for (Py_ssize_t i = 0; i < nw; i++) {
        PyObject *w = PySequence_Fast_GET_ITEM(words, i);
        if (!PyBytes_Check(w)) {
            PyErr_SetString(PyExc_TypeError, "words must be bytes");
            Py_DECREF(words); Py_DECREF(counts);
            return NULL;
        }
        total += (size_t)PyBytes_GET_SIZE(w);
    }
    uint32_t *ids = (uint32_t *)malloc((total + 1) * sizeof(uint32_t));
    size_t *off = (size_t *)malloc((nw + 1) * sizeof(size_t));
    int32_t *len = (int32_t *)malloc((nw + 1) * sizeof(int32_t));
    int64_t *wc = (int64_t *)malloc((nw + 1) * sizeof(int64_t));
    int32_t *stamp = (int32_t *)malloc((nw + 1) * sizeof(int32_t));
    PyObject *result = NULL;
    Table t = {0};
    Heap h = {0};
    uint64_t *touched = NULL;
    size_t ntouched = 0, captouched = 0;
    int failed = 0;
    uint64_t *mk = NULL;
    int64_t *mc = NULL;
    Py_ssize_t done_merges = 0;
    if (!ids || !off || !len || !wc || !stamp || table_init(&t, 1 << 16) < 0) { PyErr_NoMemory(); goto done; }

    size_t at = 0;
    for (Py_ssize_t i = 0; i < nw; i++) {
        PyObject *w = PySequence_Fast_GET_ITEM(words, i);
        const unsigned char *s = (const unsigned char *)PyBytes_AS_STRING(w);
        Py_ssize_t n = PyBytes_GET_SIZE(w);
        if (n >= INT32_MAX) { PyErr_SetString(PyExc_ValueError, "chunk too long"); goto done; }
        off[i] = at; len[i] = (int32_t)n; stamp[i] = -1;
        for (Py_ssize_t k = 0; k < n; k++) ids[at++] = s[k];
        long long c = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(counts, i));
        if (c == -1 && PyErr_Occurred()) goto done;
        if (c < 0) { PyErr_SetString(PyExc_ValueError, "counts must be >= 0"); goto done; }
        wc[i] = c;
    }

    Py_BEGIN_ALLOW_THREADS
    /* Initial pair counts and positions. */
    for (Py_ssize_t w = 0; w < nw && !failed; w++) {
        if (wc[w] == 0) continue;
        uint32_t *p = ids + off[w];
        for (int32_t k = 0; k + 1 < len[w]; k++) {
            Entry *e = table_get(&t, KEY(p[k], p[k + 1]));
            if (!e || pos_add(e, (int32_t)w) < 0) { failed = 1; break; }
            e->count += wc[w];
        }
    }
    for (size_t i = 0; i < t.cap && !failed; i++)
        if (t.e[i].key != EMPTY && t.e[i].count > 0)
            if (heap_push(&h, t.e[i].count, t.e[i].key) < 0) failed = 1;

    /* Merge loop; the merges are written into a C array, converted after the loop. */
    mk = (uint64_t *)malloc(((size_t)n_merges + 1) * sizeof(uint64_t));
    mc = (int64_t *)malloc(((size_t)n_merges + 1) * sizeof(int64_t));
    if (!mk || !mc) failed = 1;
    while (!failed && done_merges < n_merges && h.n) {
        HeapItem top = heap_pop(&h);
        Entry *e = table_find(&t, top.key);
        int64_t cur = e ? e->count : 0;
        if (cur <= 0) continue;
        if (cur != top.count) { /* stale: requeue with the true count */
            if (heap_push(&h, cur, top.key) < 0) failed = 1;
            continue;
        }
        int32_t step = (int32_t)done_merges;
        uint32_t a = (uint32_t)(top.key >> 32), b = (uint32_t)(top.key & 0xffffffffu);
        uint32_t nid = 256 + (uint32_t)done_merges;
        mk[done_merges] = top.key; mc[done_merges] = cur;
        done_merges++;
        /* Detach the position list: bump() may grow the table and move entries. */
        int32_t *pos = e->pos, npos = e->npos;
        e->pos = NULL; e->npos = 0; e->cap = 0;
        ntouched = 0;
        for (int32_t q = 0; q < npos && !failed; q++) {
            int32_t w = pos[q];
            if (stamp[w] == step) continue;
            stamp[w] = step;
            uint32_t *p = ids + off[w];
            int32_t n = len[w], i = 0, j = 0;
            int64_t c = wc[w];
            while (i < n) {
                if (i + 1 < n && p[i] == a && p[i + 1] == b) {
                    if (j > 0) {
                        uint32_t x = p[j - 1];
                        if (bump(&t, x, a, -c, 0, w, step, &touched, &ntouched, &captouched) < 0 ||
                            bump(&t, x, nid, c, 1, w, step, &touched, &ntouched, &captouched) < 0) { failed = 1; break; }
                    }
                    if (bump(&t, a, b, -c, 0, w, step, &touched, &ntouched, &captouched) < 0) { failed = 1; break; }
                    if (i + 2 < n) {
                        uint32_t y = p[i + 2];
                        if (bump(&t, b, y, -c, 0, w, step, &touched, &ntouched, &captouched) < 0 ||
                            bump(&t, nid, y, c, 1, w, step, &touched, &ntouched, &captouched) < 0) { failed = 1; break; }
                    }
                    p[j++] = nid;
                    i += 2;
                } else {
                    p[j++] = p[i++];
                }
            }
            len[w] = j;
        }
        free(pos);
        for (size_t q = 0; q < ntouched && !failed; q++) {
            Entry *te = table_find(&t, touched[q]);
            if (te && te->count > 0 && heap_push(&h, te->count, te->key) < 0) failed = 1;
        }
    }
    Py_END_ALLOW_THREADS

    if (failed) { PyErr_NoMemory(); goto done; }
    result = PyList_New(done_merges);
    if (!result) goto done;
    for (Py_ssize_t i = 0; i < done_merges; i++) {
        PyObject *tup = Py_BuildValue("(kkL)", (unsigned long)(mk[i] >> 32), (unsigned long)(mk[i] & 0xffffffffu),
                                      (long long)mc[i]);
        if (!tup) { Py_CLEAR(result); break; }
        PyList_SET_ITEM(result, i, tup);
    }

done:
    free(ids); free(off); free(len); free(wc); free(stamp); free(touched); free(h.a); free(mk); free(mc);
    if (t.e) table_free(&t);
    Py_DECREF(words); Py_DECREF(counts);
    return result;
}

static PyMethodDef methods[] = {
    {"train", train, METH_VARARGS,
     "train(words: list[bytes], counts: list[int], n_merges: int) -> list[(a, b, count)]\n\n"
     "Byte-level BPE merges, highest count first, ties to the smallest pair; stops early when\n"
     "no pair is left."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_bpe", "The BPE merge loop in C.", -1, methods};

PyMODINIT_FUNC PyInit__bpe(void) { return PyModule_Create(&module); }
