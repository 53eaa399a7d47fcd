"""The lossy link: error models, link (airtime/MTU) models, transports and the channel emulator."""

# "lora-phy" registers itself in channel.bit_errors.ERROR_MODELS when its module loads; loading it
# here (not from bit_errors, which it subclasses) makes the entry exist for every user of channel
import channel.lora_phy  # noqa: F401
