/* The raw-LoRa link: protocol frames on an SX1276 (sx1276.c; never run on a chip), with the
 * modulation of snn_config.h (SNN_LORA_*). After each transmission the radio listens for the reply. */
#include "link.h"
#include "snn_config.h"
#include "sx1276.h"

#if defined(SNN_LINK_SX1276)
static int radio_ok;

void snn_link_init(void)
{
    snn_lora_config_t cfg = {SNN_LORA_FREQ_HZ, SNN_LORA_SF, SNN_LORA_BW_CODE, SNN_LORA_CR, 8u,
                             SNN_LORA_POWER_DBM, SNN_LORA_SYNC_WORD, 1u};
    radio_ok = snn_sx1276_init(&cfg) == 0;
}

void snn_link_send(uint8_t *frame, size_t n)
{
    if (radio_ok && snn_sx1276_send(frame, n) == 0) {
        snn_sx1276_listen();
    }
}

int snn_link_recv(uint8_t *buf, size_t cap)
{
    return radio_ok ? snn_sx1276_poll(buf, cap) : 0;
}

void snn_link_uart_frame(const uint8_t *frame, size_t n)
{
    (void)frame;                      /* protocol frames do not travel on the UART with a radio */
    (void)n;
}
#endif
