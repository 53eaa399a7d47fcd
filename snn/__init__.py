"""The `snn` command on top, the project's floor at the bottom: two layers in one package.

- The floor: `snn.errors` (errors a user can act on), `snn.registry` (the one way to choose a
  thing by name: transports, links, error models, data sets, backbones, lowering ops) and
  `snn.options` (a config dataclass's fields as command-line options: one place per default)
  and `snn.process` (process settings made before torch loads). They import nothing of the project, so every component may import them
  (the import contracts in pyproject.toml hold both rules).
- The top: `snn.cli`, the dispatcher, and the command-line modules of the subcommands that
  compose several components and so belong to none of them: `train` (codec training, channel's
  error models, export's ONNX edge half), `eval` (codec evaluation and channel's error models) and
  `keys` (codec.wire's keys file and device's encoder, for a fingerprint). Under the contracts no
  single component may import what they need (codec imports neither channel nor export; codec.wire
  no other component), so they live beside the dispatcher. Nothing of the project imports the top.

Every other subcommand's CLI lives in its component: `<component>/cli.py` (`bench/demo_cli.py`
for `snn demo`, a second command of bench).
"""
