/* SX1276 LoRa driver (see sx1276.h; never run on a chip). Register addresses and bits: SX1276/77/78/79
 * datasheet rev 7, Table 41 "Registers Summary" and 6.4 "LoRa Mode Register Map". */
#include "sx1276.h"

#define REG_FIFO 0x00u
#define REG_OP_MODE 0x01u
#define REG_FRF_MSB 0x06u
#define REG_PA_CONFIG 0x09u
#define REG_OCP 0x0Bu
#define REG_LNA 0x0Cu
#define REG_FIFO_ADDR_PTR 0x0Du
#define REG_FIFO_TX_BASE 0x0Eu
#define REG_FIFO_RX_BASE 0x0Fu
#define REG_FIFO_RX_CURRENT 0x10u
#define REG_IRQ_FLAGS_MASK 0x11u
#define REG_IRQ_FLAGS 0x12u
#define REG_RX_NB_BYTES 0x13u
#define REG_MODEM_CONFIG1 0x1Du
#define REG_MODEM_CONFIG2 0x1Eu
#define REG_PREAMBLE_MSB 0x20u
#define REG_PAYLOAD_LENGTH 0x22u
#define REG_MODEM_CONFIG3 0x26u
#define REG_DETECT_OPTIMIZE 0x31u
#define REG_DETECTION_THRESHOLD 0x37u
#define REG_SYNC_WORD 0x39u
#define REG_VERSION 0x42u

#define LONG_RANGE 0x80u               /* RegOpMode.LongRangeMode: LoRa */
#define MODE_SLEEP 0x00u
#define MODE_STDBY 0x01u
#define MODE_TX 0x03u
#define MODE_RX_CONTINUOUS 0x05u
#define IRQ_RX_DONE 0x40u
#define IRQ_TX_DONE 0x08u
#define TX_WAIT_POLLS 2000000u         /* ~ seconds of SPI polls: the longest SF12 frame is ~ 9 s */

static snn_lora_config_t cfg_now;

uint8_t snn_sx1276_read(uint8_t reg)
{
    snn_spi_select(1);
    snn_spi_xfer(reg & 0x7Fu);         /* bit 7 clear: read */
    uint8_t v = snn_spi_xfer(0);
    snn_spi_select(0);
    return v;
}

void snn_sx1276_write(uint8_t reg, uint8_t value)
{
    snn_spi_select(1);
    snn_spi_xfer(reg | 0x80u);         /* bit 7 set: write */
    snn_spi_xfer(value);
    snn_spi_select(0);
}

static void modem_config1(int implicit)
{
    snn_sx1276_write(REG_MODEM_CONFIG1, (uint8_t)((cfg_now.bw_code << 4) | (cfg_now.cr << 1) | (implicit ? 1u : 0u)));
}

int snn_sx1276_init(const snn_lora_config_t *cfg)
{
    cfg_now = *cfg;
    if (snn_sx1276_read(REG_VERSION) != 0x12u) {
        return -1;
    }
    snn_sx1276_write(REG_OP_MODE, MODE_SLEEP);                 /* LongRangeMode changes only in sleep */
    snn_sx1276_write(REG_OP_MODE, LONG_RANGE | MODE_SLEEP);
    /* Frf = f * 2^19 / 32 MHz = f * 2048 / 125000, in 32-bit steps (no 64-bit division in the image) */
    uint32_t f = cfg->freq_hz;
    uint32_t frf = (f / 125000u) * 2048u + ((f % 125000u) * 2048u) / 125000u;
    snn_sx1276_write(REG_FRF_MSB, (uint8_t)(frf >> 16));
    snn_sx1276_write(REG_FRF_MSB + 1u, (uint8_t)(frf >> 8));
    snn_sx1276_write(REG_FRF_MSB + 2u, (uint8_t)frf);
    /* RFO_HF, MaxPower 7 (Pmax = 10.8 + 0.6 * 7 = 15 dBm), Pout = Pmax - (15 - OutputPower) */
    int p = cfg->power_dbm < 0 ? 0 : (cfg->power_dbm > 15 ? 15 : cfg->power_dbm);
    snn_sx1276_write(REG_PA_CONFIG, (uint8_t)(0x70u | (unsigned)p));
    snn_sx1276_write(REG_OCP, 0x20u | 11u);                     /* OcpOn, trim 11: 45 + 5 * 11 = 100 mA */
    snn_sx1276_write(REG_LNA, 0x20u);                           /* G1 (max gain), LnaBoostHf off */
    modem_config1(cfg->implicit_uplink);
    snn_sx1276_write(REG_MODEM_CONFIG2, (uint8_t)(cfg->sf << 4));   /* RxPayloadCrcOn = 0 */
    /* LowDataRateOptimize is mandated when a symbol lasts more than 16 ms (SF11/12 at 125 kHz, SF12 at 250) */
    int ldro = (cfg->bw_code == 7u && cfg->sf >= 11u) || (cfg->bw_code == 8u && cfg->sf == 12u);
    snn_sx1276_write(REG_MODEM_CONFIG3, (uint8_t)((ldro ? 0x08u : 0u) | 0x04u));   /* AgcAutoOn */
    snn_sx1276_write(REG_PREAMBLE_MSB, (uint8_t)(cfg->preamble >> 8));
    snn_sx1276_write(REG_PREAMBLE_MSB + 1u, (uint8_t)cfg->preamble);
    snn_sx1276_write(REG_DETECT_OPTIMIZE, (uint8_t)((snn_sx1276_read(REG_DETECT_OPTIMIZE) & 0xF8u) | 0x03u));
    snn_sx1276_write(REG_DETECTION_THRESHOLD, 0x0Au);          /* SF7..SF12 */
    snn_sx1276_write(REG_SYNC_WORD, cfg->sync_word);
    snn_sx1276_write(REG_FIFO_TX_BASE, 0x00u);
    snn_sx1276_write(REG_FIFO_RX_BASE, 0x00u);
    snn_sx1276_write(REG_IRQ_FLAGS_MASK, 0x00u);
    snn_sx1276_write(REG_OP_MODE, LONG_RANGE | MODE_STDBY);
    return 0;
}

int snn_sx1276_send(const uint8_t *data, size_t n)
{
    if (n == 0 || n > 255u) {
        return -1;
    }
    snn_sx1276_write(REG_OP_MODE, LONG_RANGE | MODE_STDBY);
    modem_config1(cfg_now.implicit_uplink);
    snn_sx1276_write(REG_FIFO_ADDR_PTR, 0x00u);                /* = RegFifoTxBaseAddr */
    snn_sx1276_write(REG_PAYLOAD_LENGTH, (uint8_t)n);
    snn_spi_select(1);                                        /* burst write into the FIFO */
    snn_spi_xfer(REG_FIFO | 0x80u);
    for (size_t i = 0; i < n; i++) {
        snn_spi_xfer(data[i]);
    }
    snn_spi_select(0);
    snn_sx1276_write(REG_IRQ_FLAGS, 0xFFu);
    snn_sx1276_write(REG_OP_MODE, LONG_RANGE | MODE_TX);
    for (uint32_t k = 0; k < TX_WAIT_POLLS; k++) {
        if (snn_sx1276_read(REG_IRQ_FLAGS) & IRQ_TX_DONE) {
            snn_sx1276_write(REG_IRQ_FLAGS, IRQ_TX_DONE);      /* the chip is back in standby */
            return 0;
        }
    }
    snn_sx1276_write(REG_OP_MODE, LONG_RANGE | MODE_STDBY);
    return -1;
}

void snn_sx1276_listen(void)
{
    snn_sx1276_write(REG_OP_MODE, LONG_RANGE | MODE_STDBY);
    modem_config1(0);                                          /* replies carry their length */
    snn_sx1276_write(REG_FIFO_ADDR_PTR, 0x00u);                /* = RegFifoRxBaseAddr */
    snn_sx1276_write(REG_IRQ_FLAGS, 0xFFu);
    snn_sx1276_write(REG_OP_MODE, LONG_RANGE | MODE_RX_CONTINUOUS);
}

int snn_sx1276_poll(uint8_t *buf, size_t cap)
{
    if (!(snn_sx1276_read(REG_IRQ_FLAGS) & IRQ_RX_DONE)) {
        return 0;
    }
    size_t n = snn_sx1276_read(REG_RX_NB_BYTES);
    snn_sx1276_write(REG_FIFO_ADDR_PTR, snn_sx1276_read(REG_FIFO_RX_CURRENT));
    size_t take = n < cap ? n : cap;
    snn_spi_select(1);                                        /* burst read from the FIFO */
    snn_spi_xfer(REG_FIFO & 0x7Fu);
    for (size_t i = 0; i < take; i++) {
        buf[i] = snn_spi_xfer(0);
    }
    snn_spi_select(0);
    snn_sx1276_write(REG_IRQ_FLAGS, 0xFFu);                    /* RxDone, ValidHeader, ... cleared */
    return (int)take;
}
