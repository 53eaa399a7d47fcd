"""`snn channel ...`: the channel emulator, airtime tables, pty pairs.

  snn channel proxy --listen URL --to URL --ber P [--model iid|ge] [--burst L] [--drop P] ...
  snn channel airtime [--link NAME ...] [--sizes 37,51,147,222] [--json PATH]
  snn channel ptys [--link-a PATH --link-b PATH]
"""
from __future__ import annotations

import argparse
import sys
import threading

from snn.errors import SnnError

DEFAULT_AIRTIME_LINKS = ("lora-sf7", "lora-sf10", "lora-sf12", "ble-1m", "802.15.4", "uart-115200")


class _OneLineParser(argparse.ArgumentParser):
    """Bad arguments give one line on stderr and exit 2, not a usage dump."""

    def error(self, message):
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from channel.bit_errors import ERROR_MODELS
    from channel.links import LINK_FAMILIES
    from channel.transports import TRANSPORTS

    sub = parser.add_subparsers(dest="channel_command", metavar="{proxy,airtime,ptys}",
                                parser_class=_OneLineParser)

    p = sub.add_parser("proxy", help="forward frames between two transports, injecting errors",
                       description="Forward frames both ways between --listen (device side) and "
                                   "--to (edge side), flipping bits and dropping frames. Ctrl-C "
                                   "stops it and prints a summary.")
    p.add_argument("--listen", required=True, metavar="URL",
                   help=f"device side: {TRANSPORTS.choices()} (pty:// makes a new pty; its path is printed)")
    p.add_argument("--to", required=True, metavar="URL", help="edge side, same URL forms")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--ber", type=float, default=None, metavar="P", help="uplink bit error rate (0..0.5) (default: "
                                                                        "none; give --ber or --snr-db)")
    g.add_argument("--snr-db", type=float, default=None, metavar="DB",
                   help="uplink SNR instead of a BER (Eb/N0 for --modulation bpsk, packet SNR for lora) (default: "
                        "none; give --ber or --snr-db)")
    p.add_argument("--modulation", choices=("bpsk", "lora"), default="bpsk", help="for --snr-db")
    p.add_argument("--sf", type=int, default=7, help="LoRa spreading factor for --snr-db (default 7)")
    p.add_argument("--model", default="iid", metavar="NAME",
                   help=f"error model: {ERROR_MODELS.choices()} (default iid)")
    p.add_argument("--burst", type=float, default=8.0, metavar="L",
                   help="mean burst length in bits for --model ge (default 8)")
    p.add_argument("--downlink-ber", type=float, default=None, metavar="P",
                   help="also corrupt the downlink (edge -> device) at this BER, same model (default: a clean "
                        "downlink)")
    p.add_argument("--drop", type=float, default=0.0, metavar="P",
                   help="probability that an uplink frame/fragment is lost")
    p.add_argument("--drop-burst", type=float, default=None, metavar="N",
                   help="make losses bursty with this mean run length in frames (default: independent losses)")
    p.add_argument("--downlink-drop", type=float, default=0.0, metavar="P", help="downlink loss probability")
    p.add_argument("--link", default=None, metavar="NAME",
                   help=f"delay each frame by its time on air on this link: {LINK_FAMILIES.choices()}, "
                        "e.g. lora-sf7, ble-1m (default: no delay)")
    p.add_argument("--duty-cycle", action="store_true",
                   help="with --link, also hold each direction silent for the link's duty-cycle wait "
                        "(1%% on EU868 LoRa: 99x the time on air)")
    p.add_argument("--delay-ms", type=float, default=0.0, help="extra fixed one-way delay")
    p.add_argument("--seed", type=int, default=None, help="seed for reproducible errors (default: a fresh seed each "
                                                          "run)")
    p.add_argument("--stats-interval", type=float, default=1.0, metavar="S",
                   help="seconds between live counter lines on stderr (0: none)")
    p.add_argument("--duration", type=float, default=None, metavar="S", help="stop after S seconds (default: until "
                                                                             "stopped)")
    p.add_argument("--json", default=None, metavar="PATH", help="write the summary here at exit (default: not written)")

    a = sub.add_parser("airtime", help="time on air per frame size and link",
                       description="Time on air (ms) of one frame of each size on each link.")
    a.add_argument("--link", action="append", default=None, metavar="NAME",
                   help=f"a link (repeatable; default {', '.join(DEFAULT_AIRTIME_LINKS)})")
    a.add_argument("--sizes", default="37,51,147,222", help="payload sizes in bytes, comma-separated")
    a.add_argument("--json", default=None, metavar="PATH", help="(default: not written)")

    t = sub.add_parser("ptys", help="create a virtual null-modem cable (two linked ttys)",
                       description="Create two pty pairs wired together and print their paths; "
                                   "what one side writes, the other reads. Runs until Ctrl-C.")
    t.add_argument("--link-a", default=None, metavar="PATH", help="also make a symlink to tty A (default: no symlink)")
    t.add_argument("--link-b", default=None, metavar="PATH", help="also make a symlink to tty B (default: no symlink)")
    parser.set_defaults(_channel_parser=parser)


def run(args) -> int:
    cmd = getattr(args, "channel_command", None)
    if cmd == "proxy":
        return run_proxy(args)
    if cmd == "airtime":
        return run_airtime(args)
    if cmd == "ptys":
        return run_ptys(args)
    args._channel_parser.print_help(sys.stderr)
    return 2


# --------------------------------------------------------------------------- proxy

def build_proxy(args):
    """A ChannelProxy from parsed arguments (validates them; SnnError on bad input)."""
    from channel.bit_errors import make_error_model
    from channel.links import get_link
    from channel.loss import make_loss_model
    from channel.proxy import ChannelProxy

    if args.ber is None and args.snr_db is None:
        raise SnnError("give the uplink error rate: --ber P (0 for a clean link) or --snr-db DB")
    if args.snr_db is not None:
        uplink = make_error_model(args.model, None, args.burst, snr_db=args.snr_db,
                                  modulation=args.modulation, sf=args.sf)
    else:
        uplink = make_error_model(args.model, args.ber, args.burst)
    downlink = make_error_model(args.model, args.downlink_ber, args.burst) if args.downlink_ber else None
    up_loss = make_loss_model(args.drop, args.drop_burst) if args.drop else None
    down_loss = make_loss_model(args.downlink_drop, args.drop_burst) if args.downlink_drop else None
    link = get_link(args.link) if args.link else None
    if args.duty_cycle and link is None:
        raise SnnError("--duty-cycle needs --link NAME (the duty cycle is the link's)")
    if args.delay_ms < 0:
        raise SnnError("--delay-ms must be >= 0")
    return ChannelProxy(args.listen, args.to, uplink=uplink, downlink=downlink, uplink_loss=up_loss,
                        downlink_loss=down_loss, link=link, delay_s=args.delay_ms / 1e3, seed=args.seed,
                        duty_cycle=args.duty_cycle)


def run_proxy(args) -> int:
    from channel.proxy import format_summary, install_sigterm, write_json

    proxy = build_proxy(args)
    install_sigterm(proxy)
    if args.duration is not None:
        timer = threading.Timer(args.duration, proxy.stop)
        timer.daemon = True
        timer.start()
    try:
        print(f"proxy ready: listen={proxy.listen_address} to={proxy.to_address}", flush=True)
        print(f"snn channel proxy: {proxy.listen_address} -> {proxy.to_address}; uplink "
              f"{proxy.up.model.describe()}, downlink "
              f"{proxy.down.model.describe() if proxy.down.model else 'clean'}; Ctrl-C to stop",
              file=sys.stderr, flush=True)
        summary = proxy.run(stats_interval=args.stats_interval)
    finally:
        proxy.close()
    print(format_summary(summary), flush=True)
    if args.json:
        write_json(args.json, summary)
    return 0


# --------------------------------------------------------------------------- airtime / ptys

def airtime_table(links, sizes) -> list[dict]:
    from channel.links import get_link

    rows = []
    for name in links:
        link = get_link(name)
        for n in sizes:
            try:
                t = link.time_on_air_s(n)
            except ValueError:
                t = None
            rows.append({"link": link.name, "mtu": link.mtu, "bytes": n,
                         "time_on_air_ms": None if t is None else round(1e3 * t, 6),
                         "within_mtu": n <= link.mtu,
                         "duty_cycle_wait_ms": None if t is None else 1e3 * link.wait_after_s(n)})
    return rows


def run_airtime(args) -> int:
    from channel.proxy import write_json

    try:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        raise SnnError(f"--sizes must be comma-separated integers, got {args.sizes!r}") from None
    if not sizes or min(sizes) < 0:
        raise SnnError("--sizes needs at least one size >= 0")
    links = args.link or list(DEFAULT_AIRTIME_LINKS)
    rows = airtime_table(links, sizes)
    names = list(dict.fromkeys(r["link"] for r in rows))
    head = ["link", "MTU"] + [f"{n} B" for n in sizes]
    body = []
    for name in names:
        cells = [name, str(next(r["mtu"] for r in rows if r["link"] == name))]
        for r in (r for r in rows if r["link"] == name):
            if r["time_on_air_ms"] is None:
                cells.append("n/a")
            else:
                cells.append(f"{r['time_on_air_ms']:.3f}" + ("" if r["within_mtu"] else "*"))
        body.append(cells)
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]
    print("time on air per frame (ms); * = beyond the link's MTU (regional limit), n/a = beyond the PHY")
    for row in [head, *body]:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    if args.json:
        write_json(args.json, {"rows": rows})
    return 0


def run_ptys(args) -> int:
    from channel.proxy import install_stop_signals
    from channel.pty import PtyCable

    stop = threading.Event()
    install_stop_signals(stop.set)
    with PtyCable(args.link_a, args.link_b) as cable:
        a, b = cable.paths
        print(f"{a} {b}", flush=True)
        print(f"snn channel ptys: {a} <-> {b}; Ctrl-C to stop", file=sys.stderr, flush=True)
        while not stop.wait(0.5):
            pass
    return 0
