#include "frame.h"

#define MAGIC 0xA7u
#define VERSION 1u
#define KIND_DATA 0u
#define KIND_REPLY 1u
#define KIND_ERROR 2u
#define PARITY 12

uint16_t snn_crc16(const uint8_t *data, size_t n)
{
    uint16_t crc = 0xFFFF;
    for (size_t i = 0; i < n; i++) {
        crc ^= (uint16_t)data[i] << 8;
        for (int b = 0; b < 8; b++) {
            crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
        }
    }
    return crc;
}

static uint8_t gf_mul(uint8_t a, uint8_t b)
{
    uint8_t p = 0;
    while (b) {
        if (b & 1) {
            p ^= a;
        }
        a = (uint8_t)((a << 1) ^ ((a & 0x80) ? 0x1D : 0));
        b >>= 1;
    }
    return p;
}

/* Generator polynomial prod_{i=0}^{11} (x - alpha^i), highest degree first (g[0] = 1). */
static void rs_generator(uint8_t g[PARITY + 1])
{
    uint8_t root = 1;
    g[0] = 1;
    for (int n = 1; n <= PARITY; n++) {
        g[n] = 0;
        for (int j = n; j >= 1; j--) {
            g[j] ^= gf_mul(g[j - 1], root);
        }
        root = gf_mul(root, 2);
    }
}

void snn_rs_parity(const uint8_t *msg, size_t n, uint8_t parity[PARITY])
{
    static uint8_t g[PARITY + 1];
    static int ready;
    if (!ready) {
        rs_generator(g);
        ready = 1;
    }
    for (int j = 0; j < PARITY; j++) {
        parity[j] = 0;
    }
    for (size_t i = 0; i < n; i++) {
        uint8_t fb = msg[i] ^ parity[0];
        for (int j = 0; j < PARITY - 1; j++) {
            parity[j] = parity[j + 1] ^ gf_mul(fb, g[j + 1]);
        }
        parity[PARITY - 1] = gf_mul(fb, g[PARITY]);
    }
}

void snn_pilots(uint8_t *out, size_t n)
{
    uint16_t state = 0x1FF;
    for (size_t i = 0; i < n; i++) {
        uint8_t byte = 0;
        for (int b = 0; b < 8; b++) {
            uint8_t bit = state & 1;
            byte = (uint8_t)((byte << 1) | bit);
            state = (uint16_t)((state >> 1) | (((state ^ (state >> 5)) & 1) << 8));
        }
        out[i] = byte;
    }
}

static size_t protect(uint8_t *block, size_t n)
{
    uint16_t crc = snn_crc16(block, n);
    block[n] = (uint8_t)(crc >> 8);
    block[n + 1] = (uint8_t)crc;
    snn_rs_parity(block, n + 2, block + n + 2);
    return n + 2 + PARITY;
}

size_t snn_frame_data(uint8_t *out, const uint8_t fingerprint[4], uint16_t device_id, uint16_t seq,
                      unsigned frag_index, unsigned frag_count, uint16_t payload_bits, unsigned pilot_len,
                      uint8_t truth, const uint8_t *slice, size_t slice_len)
{
    out[0] = MAGIC;
    out[1] = (uint8_t)((VERSION << 4) | KIND_DATA);
    out[2] = 0;
    for (int i = 0; i < 4; i++) {
        out[3 + i] = fingerprint[i];
    }
    out[7] = (uint8_t)(device_id >> 8);
    out[8] = (uint8_t)device_id;
    out[9] = (uint8_t)(seq >> 8);
    out[10] = (uint8_t)seq;
    out[11] = (uint8_t)((frag_index << 4) | (frag_count - 1));
    out[12] = (uint8_t)(payload_bits >> 8);
    out[13] = (uint8_t)payload_bits;
    out[14] = 0x80;             /* SNR unknown */
    out[15] = (uint8_t)pilot_len;
    out[16] = truth;
    size_t n = protect(out, 17);
    snn_pilots(out + n, pilot_len);
    n += pilot_len;
    for (size_t i = 0; i < slice_len; i++) {
        out[n + i] = slice[i];
    }
    return n + slice_len;
}

int snn_frame_parse_reply(const uint8_t *buf, size_t n, const uint8_t fingerprint[4], uint16_t device_id,
                          uint16_t seq, snn_reply_t *out)
{
    if (n < SNN_FRAME_HEADER_BYTES + 2 + PARITY + 1) {
        return -1;
    }
    if (snn_crc16(buf, 17) != (uint16_t)((buf[17] << 8) | buf[18])) {
        return -1;
    }
    if (buf[0] != MAGIC || (buf[1] >> 4) != VERSION || buf[2] != 0) {
        return -1;
    }
    uint8_t kind = buf[1] & 0x0F;
    if (kind != KIND_REPLY && kind != KIND_ERROR) {
        return -1;
    }
    for (int i = 0; i < 4; i++) {
        if (buf[3 + i] != fingerprint[i]) {
            return 0;
        }
    }
    if (((buf[7] << 8) | buf[8]) != device_id || ((buf[9] << 8) | buf[10]) != seq) {
        return 0;
    }
    size_t body = (size_t)((buf[12] << 8) | buf[13]) / 8;
    const uint8_t *b = buf + SNN_FRAME_HEADER_BYTES;
    if (body == 0 || SNN_FRAME_HEADER_BYTES + body + 2 + PARITY > n) {
        return -1;
    }
    if (snn_crc16(b, body) != (uint16_t)((b[body] << 8) | b[body + 1])) {
        return -1;
    }
    out->kind = kind;
    out->label = b[0];
    out->confidence = kind == KIND_REPLY && body >= 2 ? b[1] : 0;
    out->ber_e5 = kind == KIND_REPLY && body >= 4 ? (uint16_t)((b[2] << 8) | b[3]) : 0;
    return 1;
}
