/* The v2 frame's hot loops in C: CRC-28 remainder, copy vote and BCH(127, 99) t = 4 decoding
 * (docs/PROTOCOL.md §3.2-§3.3), and, when built against OpenSSL (SNN_OPENSSL), the AES-CMAC MIC
 * and AES-CTR keystream of crypto.py on one reusable EVP context per key (§4.2, §5). An optional accelerator of codec/wire/bch.py and
 * codec/wire/frame.py: the pure-Python code is the reference, this module must agree with it
 * bit for bit (tests/codec/wire/test_native.py), and the package works without it.
 *
 * Why: a datagram of a plausible length is tried under several readings (copies x block size),
 * each a BCH decode that costs ~30-200 us in Python; garbage from a flood pays all of them.
 * Here a whole datagram's readings cost a few microseconds.
 *
 * Words are at most 15 bytes (120 bits): held in an unsigned __int128, bit i = coefficient of
 * x^i, bit 0 the last bit sent.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

typedef unsigned __int128 u128;

#define M 7
#define FIELD 127
#define T 4
#define PARITY 28
#define PMASK ((1u << PARITY) - 1u)
#define MAX_BLOCK 15

static uint8_t EXP[2 * FIELD];
static uint8_t LOG[FIELD + 1];
static uint32_t CRC[256];
static uint32_t GEN;     /* generator polynomial, degree 28 (bit 28 set) */

static uint8_t gf_mul(uint8_t a, uint8_t b) {
    return (a && b) ? EXP[LOG[a] + LOG[b]] : 0;
}

static uint64_t poly_mul_gf2(uint64_t a, uint64_t b) {
    uint64_t out = 0;
    while (b) {
        if (b & 1) out ^= a;
        a <<= 1;
        b >>= 1;
    }
    return out;
}

/* minimal polynomial over GF(2) of alpha^power */
static uint64_t minimal_poly(int power) {
    int coset[FIELD], n = 0, c = power % FIELD;
    for (;;) {
        int seen = 0;
        for (int i = 0; i < n; i++) if (coset[i] == c) seen = 1;
        if (seen) break;
        coset[n++] = c;
        c = (2 * c) % FIELD;
    }
    uint8_t poly[16] = {1};
    int deg = 0;
    for (int k = 0; k < n; k++) {
        uint8_t root = EXP[coset[k]], next[16] = {0};
        for (int i = 0; i <= deg; i++) {
            next[i + 1] ^= poly[i];
            next[i] ^= gf_mul(poly[i], root);
        }
        deg++;
        memcpy(poly, next, sizeof poly);
    }
    uint64_t out = 0;
    for (int i = 0; i <= deg; i++) out |= (uint64_t)(poly[i] & 1) << i;
    return out;
}

static int init_tables(void) {
    int x = 1;
    for (int i = 0; i < FIELD; i++) {
        EXP[i] = EXP[i + FIELD] = (uint8_t)x;
        LOG[x] = (uint8_t)i;
        x <<= 1;
        if (x & (1 << M)) x ^= 0x89;
    }
    uint64_t g = 1, seen[T];
    int nseen = 0;
    for (int p = 1; p < 2 * T; p += 2) {
        uint64_t mp = minimal_poly(p);
        int dup = 0;
        for (int i = 0; i < nseen; i++) if (seen[i] == mp) dup = 1;
        if (!dup) {
            seen[nseen++] = mp;
            g = poly_mul_gf2(g, mp);
        }
    }
    if (g >> PARITY != 1) return -1;
    GEN = (uint32_t)g;
    uint32_t low = GEN & PMASK;
    for (int b = 0; b < 256; b++) {
        uint32_t r = (uint32_t)b << (PARITY - 8);
        for (int k = 0; k < 8; k++)
            r = (r & (1u << (PARITY - 1))) ? (((r << 1) & PMASK) ^ low) : ((r << 1) & PMASK);
        CRC[b] = r;
    }
    return 0;
}

static uint32_t remainder_bytes(const uint8_t *p, Py_ssize_t n) {
    uint32_t r = 0;
    for (Py_ssize_t i = 0; i < n; i++)
        r = ((r << 8) & PMASK) ^ CRC[(r >> (PARITY - 8)) ^ p[i]];
    return r;
}

static u128 load_word(const uint8_t *p, int size) {
    u128 w = 0;
    for (int i = 0; i < size; i++) w = (w << 8) | p[i];
    return w;
}

static void store_word(u128 w, uint8_t *out, int size) {
    for (int i = size - 1; i >= 0; i--) {
        out[i] = (uint8_t)(w & 0xFF);
        w >>= 8;
    }
}

static int popcount128(u128 w) {
    return __builtin_popcountll((uint64_t)w) + __builtin_popcountll((uint64_t)(w >> 64));
}

/* Berlekamp-Massey, binary simplification (even steps have zero discrepancy), as bch.py.
 * lam: coefficients lowest degree first; returns the degree (trailing zeros removed). */
static int berlekamp_massey(const uint8_t synd[2 * T + 1], uint8_t lam_out[2 * T + 2]) {
    uint8_t lam[2 * T + 2] = {1}, prev[2 * T + 2] = {1};
    int lam_len = 1, prev_len = 1, length = 0, shift = 1;
    uint8_t prev_disc = 1;
    for (int k = 1; k <= 2 * T; k++) {
        if (!(k & 1)) {
            shift++;
            continue;
        }
        uint8_t disc = synd[k];
        for (int i = 1; i <= length; i++)
            if (i < lam_len && lam[i] && synd[k - i]) disc ^= gf_mul(lam[i], synd[k - i]);
        if (!disc) {
            shift++;
            continue;
        }
        uint8_t scale = gf_mul(disc, EXP[(FIELD - LOG[prev_disc]) % FIELD]);
        uint8_t next[2 * T + 2];
        int next_len = lam_len > prev_len + shift ? lam_len : prev_len + shift;
        if (next_len > 2 * T + 1) return 2 * T + 1;   /* cannot happen for 2T syndromes */
        memset(next, 0, sizeof next);
        memcpy(next, lam, (size_t)lam_len);
        for (int i = 0; i < prev_len; i++) next[i + shift] ^= gf_mul(scale, prev[i]);
        if (2 * length <= k - 1) {
            memcpy(prev, lam, sizeof lam);
            prev_len = lam_len;
            length = k - length;
            prev_disc = disc;
            shift = 1;
        } else {
            shift++;
        }
        memcpy(lam, next, sizeof next);
        lam_len = next_len;
    }
    while (lam_len > 1 && lam[lam_len - 1] == 0) lam_len--;
    memcpy(lam_out, lam, sizeof lam);
    return lam_len - 1;
}

/* Decode an n-bit word in place; returns bits corrected, or -1 when uncorrectable. */
static int bch_decode(u128 *word, int nbytes) {
    uint8_t buf[MAX_BLOCK];
    store_word(*word, buf, nbytes);
    uint32_t r = remainder_bytes(buf, nbytes);
    if (!r) return 0;
    /* word(alpha^j) = r(alpha^j) * alpha^(-28 j): bit i of r adds alpha^((i - 28) j) */
    uint8_t synd[2 * T + 1] = {0};
    for (int i = 0; i < PARITY; i++) {
        if (!(r >> i & 1)) continue;
        for (int j = 1; j <= 2 * T; j++) {
            int e = ((i - PARITY) * j) % FIELD;
            if (e < 0) e += FIELD;
            synd[j] ^= EXP[e];
        }
    }
    uint8_t lam[2 * T + 2];
    int degree = berlekamp_massey(synd, lam);
    if (degree == 0 || degree > T) return -1;
    int n = nbytes * 8, found = 0, pos[T];
    int logs[T + 1];
    for (int d = 0; d <= degree; d++) logs[d] = lam[d] ? LOG[lam[d]] : -1;
    for (int i = 0; i < n; i++) {
        uint8_t acc = 0;
        for (int d = 0; d <= degree; d++) {
            if (logs[d] < 0) continue;
            acc ^= EXP[(logs[d] + d * (FIELD - i)) % FIELD];
        }
        if (!acc) {
            if (found == T) return -1;
            pos[found++] = i;
        }
    }
    if (found != degree) return -1;
    for (int k = 0; k < found; k++) *word ^= (u128)1 << pos[k];
    return degree;
}

/* bitwise majority of 1, 3 or 5 copies */
static u128 vote(const u128 *w, int copies) {
    if (copies == 1) return w[0];
    if (copies == 3) return (w[0] & w[1]) | (w[0] & w[2]) | (w[1] & w[2]);
    u128 out = 0;
    /* at least 3 of 5: OR over the 10 triples */
    for (int a = 0; a < 5; a++)
        for (int b = a + 1; b < 5; b++)
            for (int c = b + 1; c < 5; c++) out |= w[a] & w[b] & w[c];
    return out;
}

/* decode_block(data, copies, size) -> (word: bytes of `size`, errors: int) | None */
static PyObject *py_decode_block(PyObject *self, PyObject *args) {
    Py_buffer view;
    int copies, size;
    if (!PyArg_ParseTuple(args, "y*ii", &view, &copies, &size)) return NULL;
    if (size < 4 || size > MAX_BLOCK || (copies != 1 && copies != 3 && copies != 5) ||
        view.len < (Py_ssize_t)copies * size) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "a block is 4..15 bytes, 1, 3 or 5 copies, within the data");
        return NULL;
    }
    const uint8_t *p = (const uint8_t *)view.buf;
    u128 words[5];
    for (int c = 0; c < copies; c++) words[c] = load_word(p + c * size, size);
    PyBuffer_Release(&view);
    u128 w = vote(words, copies);
    if (bch_decode(&w, size) < 0) Py_RETURN_NONE;
    int errors = 0;
    for (int c = 0; c < copies; c++) errors += popcount128(words[c] ^ w);
    uint8_t out[MAX_BLOCK];
    store_word(w, out, size);
    return Py_BuildValue("(y#i)", (const char *)out, (Py_ssize_t)size, errors);
}

/* decode_blocks(data, readings) -> [(i, corrected block bytes, errors, first copy clean)]: the
 * readings (copies, block size) of one datagram whose repeated block decodes, in the order
 * given; the others are uncorrectable under that reading. One call per datagram: a garbage
 * datagram with six possible readings costs one call, not six. */
static PyObject *py_decode_blocks(PyObject *self, PyObject *args) {
    Py_buffer view;
    PyObject *readings;
    if (!PyArg_ParseTuple(args, "y*O", &view, &readings)) return NULL;
    PyObject *seq = PySequence_Fast(readings, "readings must be a sequence of (copies, size)");
    if (!seq) {
        PyBuffer_Release(&view);
        return NULL;
    }
    PyObject *out = PyList_New(0);
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    const uint8_t *p = (const uint8_t *)view.buf;
    for (Py_ssize_t k = 0; out && k < n; k++) {
        int copies, size;
        PyObject *item = PySequence_Fast_GET_ITEM(seq, k);
        if (!PyTuple_Check(item)) {
            PyErr_SetString(PyExc_TypeError, "each reading is a tuple (copies, size)");
            Py_CLEAR(out);
            break;
        }
        if (!PyArg_ParseTuple(item, "ii", &copies, &size)) {
            Py_CLEAR(out);
            break;
        }
        if (size < 4 || size > MAX_BLOCK || (copies != 1 && copies != 3 && copies != 5) ||
            view.len < (Py_ssize_t)copies * size) {
            PyErr_SetString(PyExc_ValueError, "a block is 4..15 bytes, 1, 3 or 5 copies, within the data");
            Py_CLEAR(out);
            break;
        }
        u128 words[5];
        for (int c = 0; c < copies; c++) words[c] = load_word(p + c * size, size);
        u128 w = vote(words, copies);
        if (bch_decode(&w, size) < 0) continue;
        int errors = 0;
        for (int c = 0; c < copies; c++) errors += popcount128(words[c] ^ w);
        int clean = remainder_bytes(p, size) == 0;
        uint8_t buf[MAX_BLOCK];
        store_word(w, buf, size);
        PyObject *row = Py_BuildValue("(ny#ii)", k, (const char *)buf, (Py_ssize_t)size, errors, clean);
        if (!row || PyList_Append(out, row) < 0) {
            Py_XDECREF(row);
            Py_CLEAR(out);
            break;
        }
        Py_DECREF(row);
    }
    Py_DECREF(seq);
    PyBuffer_Release(&view);
    return out;
}

/* remainder(data) -> int: data(x) * x^28 mod g(x) */
static PyObject *py_remainder(PyObject *self, PyObject *args) {
    Py_buffer view;
    if (!PyArg_ParseTuple(args, "y*", &view)) return NULL;
    uint32_t r = remainder_bytes((const uint8_t *)view.buf, view.len);
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLong(r);
}


#ifdef SNN_OPENSSL
/* --- AES-128 through OpenSSL's EVP (never hand-written AES): CMAC-32 and CTR, as crypto.py --- */
#include <openssl/evp.h>

typedef struct {
    PyObject_HEAD
    EVP_CIPHER_CTX *ctx;     /* AES-128-ECB encryption, no padding, reused for every block */
    uint8_t k1[16], k2[16];  /* CMAC subkeys (RFC 4493) */
} AesKey;

static int ecb(AesKey *k, const uint8_t *in, uint8_t *out, int n) {
    int outl = 0;
    return EVP_EncryptUpdate(k->ctx, out, &outl, in, n) == 1 && outl == n;
}

static void dbl(const uint8_t in[16], uint8_t out[16]) {
    int carry = in[0] >> 7;
    for (int i = 0; i < 15; i++) out[i] = (uint8_t)((in[i] << 1) | (in[i + 1] >> 7));
    out[15] = (uint8_t)(in[15] << 1);
    if (carry) out[15] ^= 0x87;
}

static void AesKey_dealloc(AesKey *self) {
    if (self->ctx) EVP_CIPHER_CTX_free(self->ctx);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int AesKey_init(AesKey *self, PyObject *args, PyObject *kwds) {
    Py_buffer key;
    if (!PyArg_ParseTuple(args, "y*", &key)) return -1;
    if (key.len != 16) {
        PyBuffer_Release(&key);
        PyErr_SetString(PyExc_ValueError, "an AES-128 key is 16 bytes");
        return -1;
    }
    if (!self->ctx) self->ctx = EVP_CIPHER_CTX_new();
    int ok = self->ctx && EVP_EncryptInit_ex(self->ctx, EVP_aes_128_ecb(), NULL, key.buf, NULL) == 1 &&
             EVP_CIPHER_CTX_set_padding(self->ctx, 0) == 1;
    PyBuffer_Release(&key);
    uint8_t zero[16] = {0}, l[16];
    if (!ok || !ecb(self, zero, l, 16)) {
        PyErr_SetString(PyExc_RuntimeError, "OpenSSL could not set up AES-128-ECB");
        return -1;
    }
    dbl(l, self->k1);
    dbl(self->k1, self->k2);
    return 0;
}

/* cmac(message) -> 16 bytes: AES-CMAC (RFC 4493) */
static PyObject *AesKey_cmac(AesKey *self, PyObject *args) {
    Py_buffer m;
    if (!PyArg_ParseTuple(args, "y*", &m)) return NULL;
    const uint8_t *p = m.buf;
    Py_ssize_t n = m.len, blocks = n ? (n + 15) / 16 : 1;
    uint8_t state[16] = {0}, block[16];
    int ok = 1;
    for (Py_ssize_t b = 0; ok && b < blocks - 1; b++) {
        for (int i = 0; i < 16; i++) block[i] = state[i] ^ p[16 * b + i];
        ok = ecb(self, block, state, 16);
    }
    Py_ssize_t rest = n - 16 * (blocks - 1);
    for (int i = 0; i < 16; i++) {
        uint8_t v = i < rest ? p[16 * (blocks - 1) + i] : (i == rest ? 0x80 : 0);
        block[i] = state[i] ^ v ^ (rest == 16 ? self->k1[i] : self->k2[i]);
    }
    PyBuffer_Release(&m);
    if (!ok || !ecb(self, block, state, 16)) {
        PyErr_SetString(PyExc_RuntimeError, "AES failed");
        return NULL;
    }
    return PyBytes_FromStringAndSize((const char *)state, 16);
}

/* xor_keystream(direction, device_id, counter, offset, data) -> data XOR keystream[offset:] */
static PyObject *AesKey_xor_keystream(AesKey *self, PyObject *args) {
    int direction, device;
    unsigned long counter;
    Py_ssize_t offset;
    Py_buffer d;
    if (!PyArg_ParseTuple(args, "iikny*", &direction, &device, &counter, &offset, &d)) return NULL;
    if (offset < 0 || counter > 0xFFFFFFFFul || offset / 16 + (d.len + 15) / 16 + 1 > 65536) {
        PyBuffer_Release(&d);
        PyErr_SetString(PyExc_ValueError, "a keystream covers at most 2^16 blocks of a 32-bit counter");
        return NULL;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, d.len);
    if (!out) {
        PyBuffer_Release(&d);
        return NULL;
    }
    uint8_t *o = (uint8_t *)PyBytes_AS_STRING(out);
    const uint8_t *in = d.buf;
    uint8_t ctr[16] = {0}, ks[16];
    ctr[0] = (uint8_t)direction;
    ctr[1] = (uint8_t)(device >> 8);
    ctr[2] = (uint8_t)device;
    ctr[3] = (uint8_t)(counter >> 24);
    ctr[4] = (uint8_t)(counter >> 16);
    ctr[5] = (uint8_t)(counter >> 8);
    ctr[6] = (uint8_t)counter;
    Py_ssize_t pos = 0, index = offset / 16, skip = offset % 16;
    while (pos < d.len) {
        ctr[14] = (uint8_t)(index >> 8);
        ctr[15] = (uint8_t)index;
        if (!ecb(self, ctr, ks, 16)) {
            Py_DECREF(out);
            PyBuffer_Release(&d);
            PyErr_SetString(PyExc_RuntimeError, "AES failed");
            return NULL;
        }
        for (Py_ssize_t i = skip; i < 16 && pos < d.len; i++, pos++) o[pos] = in[pos] ^ ks[i];
        skip = 0;
        index++;
    }
    PyBuffer_Release(&d);
    return out;
}

static PyMethodDef AesKey_methods[] = {
    {"cmac", (PyCFunction)AesKey_cmac, METH_VARARGS, "cmac(message) -> AES-CMAC(key, message), 16 bytes"},
    {"xor_keystream", (PyCFunction)AesKey_xor_keystream, METH_VARARGS,
     "xor_keystream(direction, device_id, counter, offset, data) -> data XOR the CTR keystream at offset"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject AesKeyType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "codec.wire._native.AesKey",
    .tp_basicsize = sizeof(AesKey),
    .tp_dealloc = (destructor)AesKey_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "AesKey(key): one AES-128 key's ECB context (OpenSSL) and CMAC subkeys",
    .tp_methods = AesKey_methods,
    .tp_init = (initproc)AesKey_init,
    .tp_new = PyType_GenericNew,
};
#endif

static PyMethodDef methods[] = {
    {"decode_block", py_decode_block, METH_VARARGS,
     "decode_block(data, copies, size) -> (corrected block bytes, bits wrong over all copies) or None"},
    {"decode_blocks", py_decode_blocks, METH_VARARGS,
     "decode_blocks(data, [(copies, size), ...]) -> [(index, block bytes, errors, first copy clean)]"},
    {"remainder", py_remainder, METH_VARARGS, "remainder(data) -> data(x) * x^28 mod g(x)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_native",
    "C fast path of the v2 header block (codec.wire.bch / frame): must agree with the Python reference.",
    -1, methods};

PyMODINIT_FUNC PyInit__native(void) {
    if (init_tables() < 0) {
        PyErr_SetString(PyExc_RuntimeError, "BCH generator has the wrong degree");
        return NULL;
    }
    PyObject *m = PyModule_Create(&module);
    if (m && PyModule_AddIntConstant(m, "GENERATOR", (long)GEN) < 0) {
        Py_DECREF(m);
        return NULL;
    }
#ifdef SNN_OPENSSL
    if (m && (PyType_Ready(&AesKeyType) < 0 ||
              PyModule_AddObjectRef(m, "AesKey", (PyObject *)&AesKeyType) < 0)) {
        Py_DECREF(m);
        return NULL;
    }
#endif
    return m;
}
