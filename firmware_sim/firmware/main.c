/* The device firmware: images in over the UART, symbols out as protocol frames, replies back in.
 *
 * Everything on the UART is COBS-framed with a 0x00 delimiter (docs/PROTOCOL.md section 3).
 * Protocol frames (DATA out, REPLY/ERROR in) travel as they are; the test harness's own messages
 * start with a 0x00 byte (no protocol frame does) and a tag:
 *   host -> device  00 'I' seq(2) truth timeout_ms(2) retries pixels[H*W*C]   an image to encode
 *   device -> host  00 'R' fingerprint(4) device_id(2) n_symbols(2) levels layers arena(4)   ready
 *   device -> host  00 'S' seq(2) status label confidence ber_e5(2) attempts encode_ticks(4) rtt_ticks(4)
 *                   status: 0 answered, 1 edge error (label = error code), 2 no reply
 *   device -> host  00 'L' count ticks[count](4 each)     SysTick ticks of each layer of the last encode
 * On a board without a host harness the same loop serves a sensor: only 'I' would change. */
#include <stddef.h>
#include <stdint.h>

#include "board.h"
#include "cobs.h"
#include "frame.h"
#include "pack.h"
#include "snn_config.h"
#include "snn_model.h"

#define RX_MAX (SNN_MODEL_INPUT_BYTES + 16u)
#define TX_MAX 320u

static uint8_t rx_buf[RX_MAX + RX_MAX / 254u + 2u];
static size_t rx_len;
static int rx_overflow;
static uint8_t msg[RX_MAX + RX_MAX / 254u + 2u];
static uint8_t tx_cobs[TX_MAX + TX_MAX / 254u + 2u];
static uint32_t layer_ticks[SNN_MODEL_N_LAYERS + 1u];
static uint64_t layer_t0;
static const uint8_t fingerprint[4] = {
    (uint8_t)(SNN_MODEL_FINGERPRINT >> 24), (uint8_t)(SNN_MODEL_FINGERPRINT >> 16),
    (uint8_t)(SNN_MODEL_FINGERPRINT >> 8), (uint8_t)SNN_MODEL_FINGERPRINT};

/* called by snn_model_run() at each layer boundary (SNN_LAYER_MARK, see the Makefile) */
void snn_layer_mark(unsigned k)
{
    uint64_t now = snn_ticks();
    if (k > 0 && k <= SNN_MODEL_N_LAYERS) {
        layer_ticks[k - 1] = (uint32_t)(now - layer_t0);
    }
    layer_t0 = now;
}

static void send_frame(const uint8_t *data, size_t n)
{
    size_t m = snn_cobs_encode(data, n, tx_cobs);
    for (size_t i = 0; i < m; i++) {
        snn_uart_putc(tx_cobs[i]);
    }
    snn_uart_putc(0);
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Collect UART bytes into one COBS message; returns its decoded length in msg, 0 if none is
 * complete yet, -1 for a damaged piece (dropped). */
static int poll_message(void)
{
    int c;
    while ((c = snn_uart_getc()) >= 0) {
        if (c != 0) {
            if (rx_len < sizeof rx_buf) {
                rx_buf[rx_len++] = (uint8_t)c;
            } else {
                rx_overflow = 1;
            }
            continue;
        }
        size_t n = rx_len;
        int bad = rx_overflow;
        rx_len = 0;
        rx_overflow = 0;
        if (bad || n == 0) {
            return -1;
        }
        for (size_t i = 0; i < n; i++) {
            msg[i] = rx_buf[i];
        }
        return snn_cobs_decode(msg, n);
    }
    return 0;
}

static void send_ready(void)
{
    uint8_t m[16] = {0, 'R'};
    for (int i = 0; i < 4; i++) {
        m[2 + i] = fingerprint[i];
    }
    m[6] = (uint8_t)(SNN_DEVICE_ID >> 8);
    m[7] = (uint8_t)SNN_DEVICE_ID;
    m[8] = (uint8_t)(SNN_MODEL_N_SYMBOLS >> 8);
    m[9] = (uint8_t)SNN_MODEL_N_SYMBOLS;
    m[10] = (uint8_t)SNN_MODEL_LEVELS;
    m[11] = (uint8_t)SNN_MODEL_N_LAYERS;
    put32(m + 12, SNN_MODEL_ARENA_BYTES);
    send_frame(m, sizeof m);
}

static void infer(uint16_t seq, uint8_t truth, uint16_t timeout_ms, uint8_t retries)
{
    static uint8_t payload[(SNN_MODEL_N_SYMBOLS * SNN_MODEL_BITS_PER_SYMBOL + 7u) / 8u];
    uint8_t *frame = snn_model_frame();
    uint64_t t0 = snn_ticks();
    layer_t0 = t0;
    snn_model_run();
    uint64_t t1 = snn_ticks();
    uint16_t bits = (uint16_t)(SNN_MODEL_N_SYMBOLS * SNN_MODEL_BITS_PER_SYMBOL);
    size_t nbytes = snn_pack_symbols(snn_model_symbols(), SNN_MODEL_N_SYMBOLS, SNN_MODEL_BITS_PER_SYMBOL,
                                     SNN_MODEL_GRAY, payload);
    size_t room = SNN_MTU - SNN_FRAME_HEADER_BYTES - SNN_PILOT_BYTES;
    unsigned count = (unsigned)((nbytes + room - 1) / room);
    size_t chunk = (nbytes + count - 1) / count;
    snn_reply_t reply = {0, 0, 0, 0};
    uint8_t status = 2, attempts = 0;
    uint64_t t_sent = snn_ticks();
    for (unsigned attempt = 0; attempt <= retries && status == 2; attempt++) {
        attempts++;
        for (unsigned k = 0; k < count; k++) {
            size_t lo = k * chunk, hi = lo + chunk < nbytes ? lo + chunk : nbytes;
            size_t n = snn_frame_data(frame, fingerprint, SNN_DEVICE_ID, seq, k, count, bits, SNN_PILOT_BYTES,
                                      truth, payload + lo, hi - lo);
            send_frame(frame, n);
        }
        uint64_t deadline = snn_ticks() + (uint64_t)timeout_ms * (SNN_CPU_HZ / 1000u);
        while (snn_ticks() < deadline) {
            int n = poll_message();
            if (n <= 0 || msg[0] == 0) {
                continue;
            }
            if (snn_frame_parse_reply(msg, (size_t)n, fingerprint, SNN_DEVICE_ID, seq, &reply) == 1) {
                status = reply.kind == 1 ? 0 : 1;
                break;
            }
        }
    }
    uint64_t t2 = snn_ticks();
    uint8_t s[20] = {0, 'S', (uint8_t)(seq >> 8), (uint8_t)seq, status, reply.label, reply.confidence,
                     (uint8_t)(reply.ber_e5 >> 8), (uint8_t)reply.ber_e5, attempts};
    put32(s + 10, (uint32_t)(t1 - t0));
    put32(s + 14, (uint32_t)(t2 - t_sent));
    send_frame(s, 18);
    static uint8_t l[3 + 4 * SNN_MODEL_N_LAYERS];
    l[0] = 0;
    l[1] = 'L';
    l[2] = (uint8_t)SNN_MODEL_N_LAYERS;
    for (unsigned k = 0; k < SNN_MODEL_N_LAYERS; k++) {
        put32(l + 3 + 4 * k, layer_ticks[k]);
    }
    send_frame(l, sizeof l);
}

int main(void)
{
    snn_board_init();
    send_ready();
    for (;;) {
        int n = poll_message();
        if (n < 8 || msg[0] != 0 || msg[1] != 'I') {
            continue;
        }
        if ((size_t)n != 8u + SNN_MODEL_INPUT_BYTES) {
            continue;
        }
        uint8_t *in = snn_model_input();
        for (size_t i = 0; i < SNN_MODEL_INPUT_BYTES; i++) {
            in[i] = msg[8 + i];
        }
        infer((uint16_t)((msg[2] << 8) | msg[3]), msg[4], (uint16_t)((msg[5] << 8) | msg[6]), msg[7]);
    }
}
