/* Semtech SX1276 in LoRa mode over SPI: raw frames, the payload CRC off, the uplink in implicit
 * header mode (the mode in which a frame's bit errors reach the edge instead of the frame being
 * dropped), the downlink (replies) in explicit header mode. Register map and sequences from the
 * SX1276/77/78/79 datasheet rev 7: 4.1.1 (modulation parameters), 4.1.6 (data transmission and
 * single/continuous reception sequences), 6.4 (LoRa register map).
 *
 * THIS DRIVER HAS NEVER RUN ON A CHIP: it is checked against the datasheet's register sequences
 * on the host only (tests/firmware_sim/test_sx1276.py, an SX1276 register model behind the SPI
 * calls). The board supplies snn_spi_select/snn_spi_xfer (board.c, STM32F411 SPI1). */
#ifndef SNN_SX1276_H
#define SNN_SX1276_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t freq_hz;        /* carrier in band 1 (862-1020 MHz: RFO_HF, LowFrequencyModeOn = 0) */
    uint8_t sf;              /* spreading factor 7..12 */
    uint8_t bw_code;         /* RegModemConfig1 Bw: 7 = 125 kHz, 8 = 250 kHz, 9 = 500 kHz */
    uint8_t cr;              /* coding rate 1..4 = 4/5..4/8 */
    uint16_t preamble;       /* preamble symbols (8 as LoRaWAN) */
    int8_t power_dbm;        /* RFO_HF output power, -1..14 dBm */
    uint8_t sync_word;       /* 0x12 private network, 0x34 LoRaWAN public */
    uint8_t implicit_uplink; /* 1: the transmitted frames use implicit header mode */
} snn_lora_config_t;

/* The SPI the radio hangs on (the board's): NSS low while selected; one byte out, one in. */
void snn_spi_select(int on);
uint8_t snn_spi_xfer(uint8_t out);

uint8_t snn_sx1276_read(uint8_t reg);
void snn_sx1276_write(uint8_t reg, uint8_t value);

/* Configure LoRa mode; 0 on success, -1 when RegVersion is not the SX1276's 0x12. Ends in standby. */
int snn_sx1276_init(const snn_lora_config_t *cfg);
/* Transmit n bytes (1..255), CRC off, and wait for TxDone. */
int snn_sx1276_send(const uint8_t *data, size_t n);
/* Listen continuously for the reply (explicit header) after a transmission. */
void snn_sx1276_listen(void);
/* A received frame's length (copied into buf, at most cap bytes), or 0 when none is waiting. */
int snn_sx1276_poll(uint8_t *buf, size_t cap);

#endif
