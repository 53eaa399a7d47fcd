/* Protocol v1 (withdrawn by v2, kept for edges that still speak it): frame.c's header, pilots. */
#include "frame.h"
#include "proto.h"
#include "snn_config.h"
#include "snn_model.h"

static const uint8_t fingerprint[4] = {
    (uint8_t)(SNN_MODEL_FINGERPRINT >> 24), (uint8_t)(SNN_MODEL_FINGERPRINT >> 16),
    (uint8_t)(SNN_MODEL_FINGERPRINT >> 8), (uint8_t)SNN_MODEL_FINGERPRINT};
static uint16_t pending_seq;

void snn_proto_init(void) {}
void snn_proto_set_counter(uint32_t next) { (void)next; }
uint32_t snn_proto_counter(void) { return pending_seq; }
unsigned snn_proto_version(void) { return 1; }

unsigned snn_proto_transmit(uint16_t seq, unsigned attempt, const uint8_t *payload, size_t nbytes,
                            uint16_t payload_bits, uint8_t truth, uint8_t *scratch, snn_emit_fn emit)
{
    (void)attempt;   /* v1 resends with the same sequence number */
    size_t room = SNN_MTU - SNN_FRAME_HEADER_BYTES - SNN_PILOT_BYTES;
    unsigned count = (unsigned)((nbytes + room - 1) / room);
    size_t chunk = (nbytes + count - 1) / count;
    pending_seq = seq;
    for (unsigned k = 0; k < count; k++) {
        size_t lo = k * chunk, hi = lo + chunk < nbytes ? lo + chunk : nbytes;
        emit(scratch, snn_frame_data(scratch, fingerprint, SNN_DEVICE_ID, seq, k, count, payload_bits,
                                     SNN_PILOT_BYTES, truth, payload + lo, hi - lo));
    }
    return count;
}

int snn_proto_parse(const uint8_t *buf, size_t n, snn_reply_t *out)
{
    snn_reply_v1_t r;
    int res = snn_frame_parse_reply(buf, n, fingerprint, SNN_DEVICE_ID, pending_seq, &r);
    if (res == 1) {
        out->kind = r.kind;
        out->label = r.label;
        out->confidence = r.confidence;
        out->ber = r.ber_e5;
        out->retry_ms = 0;
    }
    return res;
}
