/* Protocol v2 (docs/PROTOCOL.md): a BCH(127,99)-protected header block (device id, frame counter,
 * 32-bit AES-CMAC MIC, version, kind), an AES-128-CTR payload, per-device key, a fresh 32-bit
 * counter for every transmission (the long 32-bit form for the first one after start and for
 * every resend). Replies are authenticated (MIC) and matched to any transmission of the pending
 * inference. A reply block the link damaged is BCH-decoded (up to 4 wrong bits per block,
 * Berlekamp-Massey and a Chien search over GF(2^7)); beyond that it is dropped and the device
 * resends. */
#include "aes.h"
#include "cmac.h"
#include "proto.h"
#include "snn_config.h"
#include "snn_model.h"

#define VERSION 2u
#define KIND_DATA 0u
#define KIND_TRUTH 1u
#define KIND_REPLY 2u
#define KIND_ERROR 3u
#define BCH_G 0x1c9c26b9u   /* generator of BCH(127,99), degree 28 */
#define MAX_PENDING 16u
#define TRUTH_BYTES 3u

static const uint8_t fingerprint[4] = {
    (uint8_t)(SNN_MODEL_FINGERPRINT >> 24), (uint8_t)(SNN_MODEL_FINGERPRINT >> 16),
    (uint8_t)(SNN_MODEL_FINGERPRINT >> 8), (uint8_t)SNN_MODEL_FINGERPRINT};
static const uint8_t device_key[16] = SNN_KEY_BYTES;
static snn_aes128_t aes;
static uint32_t crc28_table[256];
static uint8_t gf_exp[254], gf_log[128];   /* GF(2^7), x^7 + x^3 + 1; exp doubled to skip a mod */
static uint32_t next_counter;
static int sent_since_start;
static uint32_t pending[MAX_PENDING];
static unsigned n_pending;

unsigned snn_proto_version(void) { return 2; }
void snn_proto_set_counter(uint32_t next) { next_counter = next; }
void snn_proto_restart(void) { sent_since_start = 0; }
int snn_proto_long_counter(unsigned attempt) { return !sent_since_start || attempt > 0; }
uint32_t snn_proto_counter(void) { return next_counter; }

void snn_proto_init(void)
{
    snn_aes128_init(&aes, device_key);
    for (uint32_t v = 0; v < 256; v++) {
        uint64_t r = (uint64_t)v << 28;
        for (int bit = 35; bit >= 28; bit--) {
            if (r & ((uint64_t)1 << bit)) {
                r ^= (uint64_t)BCH_G << (bit - 28);
            }
        }
        crc28_table[v] = (uint32_t)r;
    }
    uint8_t x = 1;
    for (int i = 0; i < 127; i++) {
        gf_exp[i] = gf_exp[i + 127] = x;
        gf_log[x] = (uint8_t)i;
        x = (uint8_t)((x << 1) ^ ((x & 0x40) ? 0x89 : 0));
    }
}

static uint8_t gf_mul(uint8_t a, uint8_t b)
{
    return (a && b) ? gf_exp[gf_log[a] + gf_log[b]] : 0;
}

/* Correct up to 4 wrong bits of an n-byte BCH(127,99) codeword in place (bit i counted from the
 * last bit sent). Returns the bits corrected, or -1 when the block is beyond repair. */
static int bch_correct(uint8_t *w, size_t nbytes)
{
    unsigned nbits = (unsigned)(8 * nbytes);
    uint8_t s[9] = {0};
    int any = 0;
    for (unsigned j = 1; j <= 8; j++) {
        for (unsigned i = 0; i < nbits; i++) {
            if ((w[nbytes - 1 - i / 8] >> (i % 8)) & 1u) {
                s[j] ^= gf_exp[(i * j) % 127];
            }
        }
        any |= s[j];
    }
    if (!any) {
        return 0;
    }
    uint8_t c[9] = {1}, b[9] = {1}, t[9];
    unsigned len = 0, m = 1;
    uint8_t bb = 1;
    for (unsigned n = 0; n < 8; n++) {   /* Berlekamp-Massey */
        uint8_t d = s[n + 1];
        for (unsigned i = 1; i <= len; i++) {
            d ^= gf_mul(c[i], s[n + 1 - i]);
        }
        if (d == 0) {
            m++;
            continue;
        }
        uint8_t coef = gf_exp[gf_log[d] + 127 - gf_log[bb]];
        for (unsigned i = 0; i < 9; i++) {
            t[i] = c[i];
        }
        for (unsigned i = 0; i + m < 9; i++) {
            c[i + m] ^= gf_mul(coef, b[i]);
        }
        if (2 * len <= n) {
            len = n + 1 - len;
            for (unsigned i = 0; i < 9; i++) {
                b[i] = t[i];
            }
            bb = d;
            m = 1;
        } else {
            m++;
        }
    }
    if (len > 4) {
        return -1;
    }
    unsigned found = 0, where[4];
    for (unsigned i = 0; i < nbits; i++) {   /* Chien search: bit i wrong when Lambda(alpha^-i) = 0 */
        uint8_t v = 0;
        for (unsigned k = 0; k <= len; k++) {
            if (c[k]) {
                v ^= gf_exp[(gf_log[c[k]] + 127 * 4 - (i * k) % 127) % 127];
            }
        }
        if (v == 0) {
            if (found == 4) {
                return -1;
            }
            where[found++] = i;
        }
    }
    if (found != len) {
        return -1;
    }
    for (unsigned k = 0; k < found; k++) {
        w[nbytes - 1 - where[k] / 8] ^= (uint8_t)(1u << (where[k] % 8));
    }
    return (int)found;
}

static uint32_t crc28(const uint8_t *data, size_t n)
{
    uint32_t r = 0;
    for (size_t i = 0; i < n; i++) {
        r = ((r << 8) & 0x0FFFFFFFu) ^ crc28_table[((r >> 20) ^ data[i]) & 0xFFu];
    }
    return r;
}

/* A block: m field bytes, then version/kind (4 bits) and the 28 parity bits of those 8m+4 bits. */
static size_t block(uint8_t *out, const uint8_t *fields, size_t m, unsigned kind)
{
    uint8_t padded[16];
    uint8_t vk = (uint8_t)((VERSION << 2) | kind);
    padded[0] = fields[0] >> 4;
    for (size_t i = 1; i < m; i++) {
        padded[i] = (uint8_t)((fields[i - 1] << 4) | (fields[i] >> 4));
    }
    padded[m] = (uint8_t)((fields[m - 1] << 4) | vk);
    uint32_t parity = crc28(padded, m + 1);
    for (size_t i = 0; i < m; i++) {
        out[i] = fields[i];
    }
    out[m] = (uint8_t)((vk << 4) | (parity >> 24));
    out[m + 1] = (uint8_t)(parity >> 16);
    out[m + 2] = (uint8_t)(parity >> 8);
    out[m + 3] = (uint8_t)parity;
    return m + 4;
}

static void put16(uint8_t *p, uint32_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static void put32(uint8_t *p, uint32_t v) { put16(p, v >> 16); put16(p + 2, v); }

/* First 4 bytes of AES-CMAC over direction, device, counter, header byte, fragment, codec [, body]. */
static void mic(uint8_t out[4], unsigned direction, uint32_t counter, unsigned kind, int long_counter,
                unsigned copies, uint8_t frag, const uint8_t *body)
{
    uint8_t m[16], tag[16];
    m[0] = (uint8_t)direction;
    put16(m + 1, SNN_DEVICE_ID);
    put32(m + 3, counter);
    m[7] = (uint8_t)((VERSION << 6) | (kind << 4) | ((unsigned)long_counter << 3) | copies);
    m[8] = frag;
    for (int i = 0; i < 4; i++) {
        m[9 + i] = fingerprint[i];
    }
    size_t n = 13;
    if (body) {
        m[13] = body[0];
        m[14] = body[1];
        m[15] = body[2];
        n = 16;
    }
    snn_aes_cmac(&aes, m, n, tag);
    for (int i = 0; i < 4; i++) {
        out[i] = tag[i];
    }
}

/* XOR n bytes with the keystream of (direction, device, counter) from keystream byte 0. */
static void keystream_xor(unsigned direction, uint32_t counter, uint8_t *buf, size_t n)
{
    uint8_t a0[16] = {0};
    a0[0] = (uint8_t)direction;
    put16(a0 + 1, SNN_DEVICE_ID);
    put32(a0 + 3, counter);
    snn_aes128_ctr(&aes, a0, buf, buf, n);
}

unsigned snn_proto_transmit(uint16_t seq, unsigned attempt, const uint8_t *payload, size_t nbytes,
                            uint16_t payload_bits, uint8_t truth, unsigned copies, unsigned fragments,
                            uint8_t *scratch, snn_emit_fn emit)
{
    (void)seq;
    (void)payload_bits;
    static uint8_t enc[(SNN_MODEL_N_SYMBOLS * SNN_MODEL_BITS_PER_SYMBOL + 7u) / 8u + TRUTH_BYTES];
    int has_truth = truth != 0xFFu;
    unsigned kind = has_truth ? KIND_TRUTH : KIND_DATA;
    int long_counter = snn_proto_long_counter(attempt);
    uint32_t counter = next_counter++;
    if (attempt == 0) {
        n_pending = 0;
    }
    if (n_pending < MAX_PENDING) {
        pending[n_pending++] = counter;
    }
    sent_since_start = 1;
    size_t extra = has_truth ? TRUTH_BYTES : 0;
    for (size_t i = 0; i < nbytes; i++) {
        enc[i] = payload[i];
    }
    for (size_t i = 0; i < extra; i++) {
        enc[nbytes + i] = truth;
    }
    keystream_xor(0, counter, enc, nbytes + extra);
    size_t b1 = 12u + (long_counter ? 2u : 0u);
    unsigned count = fragments ? fragments : 1u;
    if (!fragments && copies * b1 + nbytes + extra > SNN_MTU) {
        size_t room = SNN_MTU - copies * (b1 + 1u) - extra;
        count = (unsigned)((nbytes + room - 1) / room);
        if (count < 2) {
            count = 2;
        }
    }
    size_t chunk = (nbytes + count - 1) / count;
    for (unsigned k = 0; k < count; k++) {
        uint8_t fields[11];
        size_t m = 0;
        uint8_t frag = count > 1 ? (uint8_t)((k << 4) | (count - 1)) : 0;
        put16(fields, SNN_DEVICE_ID);
        m = 2;
        if (long_counter) {
            put32(fields + m, counter);
            m += 4;
        } else {
            put16(fields + m, counter);
            m += 2;
        }
        if (count > 1) {
            fields[m++] = frag;
        }
        mic(fields + m, 0, counter, kind, long_counter, copies, frag, 0);
        m += 4;
        size_t n = block(scratch, fields, m, kind);
        for (unsigned c = 1; c < copies; c++) {
            for (size_t i = 0; i < n; i++) {
                scratch[c * n + i] = scratch[i];
            }
        }
        n *= copies;
        size_t lo = k * chunk, hi = lo + chunk < nbytes ? lo + chunk : nbytes;
        if (k + 1 == count) {
            hi = nbytes + extra;   /* the truth bytes follow the last fragment's slice */
        }
        for (size_t i = lo; i < hi; i++) {
            scratch[n++] = enc[i];
        }
        emit(scratch, n);
    }
    return count;
}

int snn_proto_parse(const uint8_t *buf, size_t n, snn_reply_t *out)
{
    uint8_t b[13];
    unsigned copies = (unsigned)(n / 13u);
    if (n % 13u || (copies != 1 && copies != 3 && copies != 5)) {
        return -1;
    }
    for (int i = 0; i < 13; i++) {   /* bitwise majority of the copies */
        uint8_t v = 0;
        for (int bit = 0; bit < 8; bit++) {
            unsigned ones = 0;
            for (unsigned c = 0; c < copies; c++) {
                ones += (buf[13 * c + i] >> bit) & 1u;
            }
            if (2 * ones > copies) {
                v |= (uint8_t)(1u << bit);
            }
        }
        b[i] = v;
    }
    if (crc28(b, 13) != 0 && (bch_correct(b, 13) < 0 || crc28(b, 13) != 0)) {
        return -1;
    }
    unsigned version = b[9] >> 6, kind = (b[9] >> 4) & 3u;
    if (version != VERSION || (kind != KIND_REPLY && kind != KIND_ERROR)) {
        return -1;
    }
    uint16_t low = (uint16_t)((b[0] << 8) | b[1]);
    for (unsigned p = 0; p < n_pending; p++) {
        if ((uint16_t)pending[p] != low) {
            continue;
        }
        uint8_t tag[4];
        mic(tag, 1, pending[p], kind, 0, copies, 0, b + 2);
        if (tag[0] != b[5] || tag[1] != b[6] || tag[2] != b[7] || tag[3] != b[8]) {
            return -1;
        }
        uint8_t body[3] = {b[2], b[3], b[4]};
        keystream_xor(1, pending[p], body, 3);
        out->counter = pending[p];
        n_pending = 0;   /* one answer per inference: a late second one finds nothing pending */
        out->kind = kind == KIND_REPLY ? 1 : 2;
        out->label = body[0];
        out->confidence = kind == KIND_REPLY ? body[1] : 0;
        out->ber = kind == KIND_REPLY ? body[2] : 0;
        out->retry_ms = kind == KIND_ERROR ? (uint16_t)(body[2] * 10u) : 0;
        return 1;
    }
    return 0;
}

/* --- the resynchronisation exchange (docs/PROTOCOL.md 4.7) ------------------------------------- */
#define CTRL_RESYNC 0u
#define CTRL_CONFIRM 1u
#define CTRL_OFFER 2u
#define CTRL_ACK 3u

/* MIC of a control frame: first 4 bytes of AES-CMAC over direction (02 up, 03 down), device id,
 * hdr, nonce, [start (4)], [status (1)], fingerprint. */
static void control_mic(uint8_t out[4], unsigned direction, unsigned kind, unsigned copies,
                        const uint8_t nonce[SNN_NONCE_BYTES], int with_start, uint32_t start, int with_status,
                        uint8_t status)
{
    uint8_t m[18], tag[16];
    size_t n = 0;
    m[n++] = (uint8_t)direction;
    put16(m + n, SNN_DEVICE_ID);
    n += 2;
    m[n++] = (uint8_t)((VERSION << 6) | (kind << 4) | copies);
    for (unsigned i = 0; i < SNN_NONCE_BYTES; i++) {
        m[n++] = nonce[i];
    }
    if (with_start) {
        put32(m + n, start);
        n += 4;
    }
    if (with_status) {
        m[n++] = status;
    }
    for (int i = 0; i < 4; i++) {
        m[n++] = fingerprint[i];
    }
    snn_aes_cmac(&aes, m, n, tag);
    for (int i = 0; i < 4; i++) {
        out[i] = tag[i];
    }
}

static size_t control_frame(uint8_t *out, const uint8_t fields[11], unsigned kind, unsigned copies)
{
    size_t n = block(out, fields, 11, kind);
    for (unsigned c = 1; c < copies; c++) {
        for (size_t i = 0; i < n; i++) {
            out[c * n + i] = out[i];
        }
    }
    return n * copies;
}

size_t snn_proto_resync_frame(uint8_t *out, const uint8_t nonce[SNN_NONCE_BYTES], unsigned copies)
{
    uint8_t f[11];
    put16(f, SNN_DEVICE_ID);
    for (unsigned i = 0; i < SNN_NONCE_BYTES; i++) {
        f[2 + i] = nonce[i];
    }
    control_mic(f + 7, 2, CTRL_RESYNC, copies, nonce, 0, 0, 0, 0);
    return control_frame(out, f, CTRL_RESYNC, copies);
}

size_t snn_proto_confirm_frame(uint8_t *out, const uint8_t nonce[SNN_NONCE_BYTES], uint32_t start, unsigned copies)
{
    uint8_t f[11];
    put16(f, SNN_DEVICE_ID);
    put32(f + 2, start);
    f[6] = 0;
    control_mic(f + 7, 2, CTRL_CONFIRM, copies, nonce, 1, start, 0, 0);
    return control_frame(out, f, CTRL_CONFIRM, copies);
}

int snn_proto_parse_control(const uint8_t *buf, size_t n, const uint8_t nonce[SNN_NONCE_BYTES], snn_control_t *out)
{
    uint8_t b[SNN_CONTROL_BLOCK_BYTES];
    unsigned copies = (unsigned)(n / SNN_CONTROL_BLOCK_BYTES);
    if (n % SNN_CONTROL_BLOCK_BYTES || (copies != 1 && copies != 3 && copies != 5)) {
        return 0;
    }
    for (unsigned i = 0; i < SNN_CONTROL_BLOCK_BYTES; i++) {   /* bitwise majority of the copies */
        uint8_t v = 0;
        for (int bit = 0; bit < 8; bit++) {
            unsigned ones = 0;
            for (unsigned c = 0; c < copies; c++) {
                ones += (buf[SNN_CONTROL_BLOCK_BYTES * c + i] >> bit) & 1u;
            }
            if (2 * ones > copies) {
                v |= (uint8_t)(1u << bit);
            }
        }
        b[i] = v;
    }
    if (crc28(b, SNN_CONTROL_BLOCK_BYTES) != 0 &&
        (bch_correct(b, SNN_CONTROL_BLOCK_BYTES) < 0 || crc28(b, SNN_CONTROL_BLOCK_BYTES) != 0)) {
        return -1;
    }
    unsigned version = b[11] >> 6, kind = (b[11] >> 4) & 3u;
    if (version != VERSION || (kind != CTRL_OFFER && kind != CTRL_ACK) || b[5] || b[6]) {
        return -1;
    }
    uint32_t start = ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) | ((uint32_t)b[2] << 8) | b[3];
    uint8_t tag[4];
    control_mic(tag, 3, kind, copies, nonce, 1, start, 1, b[4]);
    if (tag[0] != b[7] || tag[1] != b[8] || tag[2] != b[9] || tag[3] != b[10]) {
        return -1;
    }
    out->kind = (uint8_t)kind;
    out->status = b[4];
    out->start = start;
    return 1;
}

uint32_t snn_proto_key_check(void)
{
    static const uint8_t label[16] = {'s', 'n', 'n', '-', 'j', 'o', 'u', 'r', 'n', 'a', 'l', '-', 'k', 'e', 'y', 0};
    uint8_t t[16];
    snn_aes128_encrypt(&aes, label, t);
    return ((uint32_t)t[0] << 24) | ((uint32_t)t[1] << 16) | ((uint32_t)t[2] << 8) | t[3];
}
