/* The device firmware: images in over the UART, symbols out as protocol frames, replies back in.
 *
 * Everything on the UART is COBS-framed with a 0x00 delimiter (docs/PROTOCOL.md, links). The UART
 * carries two streams, told apart by the first byte of each message: 0x01 then a protocol frame
 * (DATA out, REPLY/ERROR in, relayed unchanged by the harness: the UART link, link_uart.c), or
 * 0x00 then a tag for the harness's own messages. Built with the radio link (link_sx1276.c) the
 * protocol frames go on the air instead and the UART carries the harness messages only:
 *   host -> device  00 'I' seq(2) truth timeout_ms(2) retries pixels[H*W*C]   an image to encode
 *   host -> device  00 'C' counter(4)   the next unused frame counter (v2): on a board it lives in
 *                   flash; QEMU's flash is read-only, so the harness keeps it (the key's state file)
 *   device -> host  00 'R' fingerprint(4) device_id(2) n_symbols(2) levels layers arena(4) version
 *                   counter(4)   ready
 *   device -> host  00 'S' seq(2) status label confidence ber(2) attempts encode_ticks(4) rtt_ticks(4)
 *                   version counter(4)
 *                   status: 0 answered, 1 edge error (label = error code), 2 no reply
 *                   ber: the edge's BER code (docs/PROTOCOL.md, REPLY)
 *   device -> host  00 'L' count ticks[count](4 each)     SysTick ticks of each layer of the last encode
 * On a board without a host harness the same loop serves a sensor: only 'I' would change. */
#include <stddef.h>
#include <stdint.h>

#include "board.h"
#include "cobs.h"
#include "link.h"
#include "pack.h"
#include "proto.h"
#include "snn_config.h"
#include "snn_model.h"

#define RX_MAX (SNN_MODEL_INPUT_BYTES + 16u)

static uint8_t rx_buf[RX_MAX + RX_MAX / 254u + 2u];
static size_t rx_len;
static int rx_overflow;
static uint8_t msg[RX_MAX + RX_MAX / 254u + 2u];
static uint8_t reply_buf[SNN_MTU];
static uint32_t layer_ticks[SNN_MODEL_N_LAYERS + 1u];
static uint64_t layer_t0;
static const uint8_t fingerprint[4] = {
    (uint8_t)(SNN_MODEL_FINGERPRINT >> 24), (uint8_t)(SNN_MODEL_FINGERPRINT >> 16),
    (uint8_t)(SNN_MODEL_FINGERPRINT >> 8), (uint8_t)SNN_MODEL_FINGERPRINT};
/* frames are built in the arena's frame buffer (the activations are dead by then): byte 0 holds
 * the 0x01 stream tag, a frame (at most SNN_MTU bytes) follows */
typedef char snn_frame_fits_arena[(SNN_MODEL_FRAME_BYTES >= 1u + SNN_MTU) ? 1 : -1];

/* called by snn_model_run() at each layer boundary (SNN_LAYER_MARK, see the Makefile) */
void snn_layer_mark(unsigned k)
{
    uint64_t now = snn_ticks();
    if (k > 0 && k <= SNN_MODEL_N_LAYERS) {
        layer_ticks[k - 1] = (uint32_t)(now - layer_t0);
    }
    layer_t0 = now;
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* emit() of the protocol: frames are built at snn_model_frame() + 1, so a link's tag fits in front. */
static void send_protocol_frame(const uint8_t *frame, size_t n)
{
    snn_link_send((uint8_t *)frame, n);
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
    uint8_t m[21] = {0, 'R'};
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
    m[16] = (uint8_t)snn_proto_version();
    put32(m + 17, snn_proto_counter());
    snn_uart_write_message(m, sizeof m);
}

/* A harness message that may arrive at any time: the counter store. */
static int handle_control(int n)
{
    if (n == 6 && msg[0] == 0 && msg[1] == 'C') {
        snn_proto_set_counter(((uint32_t)msg[2] << 24) | ((uint32_t)msg[3] << 16) | ((uint32_t)msg[4] << 8) | msg[5]);
        return 1;
    }
    return 0;
}

static void infer(uint16_t seq, uint8_t truth, uint16_t timeout_ms, uint8_t retries)
{
    static uint8_t payload[(SNN_MODEL_N_SYMBOLS * SNN_MODEL_BITS_PER_SYMBOL + 7u) / 8u];
    uint64_t t0 = snn_ticks();
    layer_t0 = t0;
    snn_model_run();
    uint64_t t1 = snn_ticks();
    uint16_t bits = (uint16_t)(SNN_MODEL_N_SYMBOLS * SNN_MODEL_BITS_PER_SYMBOL);
    size_t nbytes = snn_pack_symbols(snn_model_symbols(), SNN_MODEL_N_SYMBOLS, SNN_MODEL_BITS_PER_SYMBOL,
                                     SNN_MODEL_GRAY, payload);
    snn_reply_t reply = {0, 0, 0, 0, 0};
    uint8_t status = 2, attempts = 0;
    uint64_t t_sent = snn_ticks();
    for (unsigned attempt = 0; attempt <= retries && status == 2; attempt++) {
        attempts++;
        snn_proto_transmit(seq, attempt, payload, nbytes, bits, truth, snn_model_frame() + 1, send_protocol_frame);
        uint64_t deadline = snn_ticks() + (uint64_t)timeout_ms * (SNN_CPU_HZ / 1000u);
        while (snn_ticks() < deadline) {
            int n = poll_message();
            if (n > 1 && !handle_control(n) && msg[0] == 0x01) {
                snn_link_uart_frame(msg + 1, (size_t)n - 1);
            }
            int r = snn_link_recv(reply_buf, sizeof reply_buf);
            if (r > 0 && snn_proto_parse(reply_buf, (size_t)r, &reply) == 1) {
                status = reply.kind == 1 ? 0 : 1;
                break;
            }
        }
        if (status == 1 && reply.label == 3 && attempt < retries) {   /* BUSY: wait, then resend */
            uint64_t until = snn_ticks() + (uint64_t)reply.retry_ms * (SNN_CPU_HZ / 1000u);
            while (snn_ticks() < until) {
            }
            status = 2;
        }
    }
    uint64_t t2 = snn_ticks();
    uint8_t s[23] = {0, 'S', (uint8_t)(seq >> 8), (uint8_t)seq, status, reply.label, reply.confidence,
                     (uint8_t)(reply.ber >> 8), (uint8_t)reply.ber, attempts};
    put32(s + 10, (uint32_t)(t1 - t0));
    put32(s + 14, (uint32_t)(t2 - t_sent));
    s[18] = (uint8_t)snn_proto_version();
    put32(s + 19, snn_proto_counter());
    snn_uart_write_message(s, sizeof s);
    static uint8_t l[3 + 4 * SNN_MODEL_N_LAYERS];
    l[0] = 0;
    l[1] = 'L';
    l[2] = (uint8_t)SNN_MODEL_N_LAYERS;
    for (unsigned k = 0; k < SNN_MODEL_N_LAYERS; k++) {
        put32(l + 3 + 4 * k, layer_ticks[k]);
    }
    snn_uart_write_message(l, sizeof l);
}

int main(void)
{
    snn_board_init();
    snn_link_init();
    snn_proto_init();
    snn_proto_set_counter(SNN_COUNTER_START);
    send_ready();
    for (;;) {
        int n = poll_message();
        if (n > 0 && handle_control(n)) {
            continue;
        }
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
