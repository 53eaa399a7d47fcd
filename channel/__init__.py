"""The lossy link: error models, link (airtime/MTU) models, transports and the channel emulator."""
