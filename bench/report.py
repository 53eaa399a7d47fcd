"""Tables (markdown) and plots (PNG) from the benchmark JSON: nothing here measures anything."""
from __future__ import annotations

from pathlib import Path

HEADLINE_BERS = (1e-2, 1e-1)


def _side(cfg: dict) -> str:
    return f" (`*-plain` rows: the first {cfg['side_count']})" if cfg["side_count"] < cfg["count"] else ""



def _fmt_acc(a) -> str:
    return "—" if a is None else f"{100 * a:.1f}"


def _fmt_bytes(b) -> str:
    if b is None:
        return "—"
    return f"{b:.2f}" if b < 10 else f"{b:,.0f}"


def _fmt_ratio(r) -> str:
    return "—" if r is None else (f"{r:.3f}×" if r < 0.1 else f"{r:.1f}×")


def _order(method: str) -> tuple:
    fam = (0 if method.startswith("semanticnn") and "oracle" not in method else 1 if method in ("deepcod", "adjscc") else
           5 if "oracle" in method else
           2 if method.startswith("feat8") else 4 if method == "device-only" else 3)
    return (fam, method != "semanticnn", method)


def headline_rows(rows: list[dict], channel: str = "iid", ber: float = 1e-2) -> list[dict]:
    """Learned codecs, features, device-only, and per image source its best bit-level transport."""
    at = [r for r in rows if r["channel"] == channel and r["ber"] == ber]
    keep = [r for r in at if r["family"] != "bit-level"]
    by_source: dict[str, list[dict]] = {}
    for r in at:
        if r["family"] == "bit-level":
            by_source.setdefault(r["method"].rsplit("-", 1)[0], []).append(r)
    for src, group in by_source.items():
        best = max(group, key=lambda r: (r["accuracy"], -r["bytes_on_air"]))
        keep.append(best)
        arq = next((r for r in group if r["method"].endswith("-arq")), None)
        if arq is not None and arq is not best and src in ("raw", "png"):
            keep.append(arq)
    return sorted(keep, key=lambda r: _order(r["method"]))


def headline_table(result: dict, bers=HEADLINE_BERS, channel: str = "iid") -> str:
    rows = result["rows"]
    lines = ["| method | BER | accuracy % | bytes on air / inference | × SemanticNN's bytes |",
             "|---|---|---|---|---|"]
    for ber in bers:
        for r in headline_rows(rows, channel, ber):
            name = f"*{r['method']}* (diagnostic)" if r["family"] == "diagnostic" else r["method"]
            lines.append(f"| {name} | {ber:g} | {_fmt_acc(r['accuracy'])} | {_fmt_bytes(r['bytes_on_air'])} "
                         f"| {_fmt_ratio(r.get('ratio'))} |")
    return "\n".join(lines)


def _x_key(rows: list[dict]) -> str:
    """Rows of an SNR-driven channel (the LoRa PHY) run along the SNR, the others along the BER."""
    return "snr_db" if rows and "snr_db" in rows[0] else "ber"


def matrix(result: dict, channel: str, key: str) -> str:
    rows = [r for r in result["rows"] if r["channel"] == channel]
    x = _x_key(rows)
    bers = sorted({r[x] for r in rows})
    methods = sorted({r["method"] for r in rows}, key=_order)
    cell = {(r["method"], r[x]): r for r in rows}
    fmt = _fmt_acc if key == "accuracy" else _fmt_bytes
    head = [f"{b:g} dB" for b in bers] if x == "snr_db" else [f"{b:g}" for b in bers]
    lines = ["| method | " + " | ".join(head) + " |", "|---" * (len(bers) + 1) + "|"]
    for m in methods:
        lines.append(f"| {m} | " + " | ".join(fmt(cell[(m, b)][key]) if (m, b) in cell else "—" for b in bers) + " |")
    return "\n".join(lines)


def bars_text(bars: dict) -> str:
    if "semanticnn_accuracy" not in bars:
        return "(no SemanticNN row at the bar's setting)"
    c = bars.get("cheapest_within_2_points")
    b = bars.get("best_bit_level")
    out = [f"At {bars['channel']} BER {bars['ber']:g}: SemanticNN {_fmt_acc(bars['semanticnn_accuracy'])} % with "
           f"{_fmt_bytes(bars['semanticnn_bytes'])} B on air."]
    if b:
        out.append(f"Best bit-level baseline: {b['method']} {_fmt_acc(b['accuracy'])} % with "
                   f"{_fmt_bytes(b['bytes_on_air'])} B — SemanticNN's accuracy is "
                   + ("at least every bit-level baseline's (bar met)." if bars['accuracy_at_least_every_bit_level'] else
                      f"{100 * (b['accuracy'] - bars['semanticnn_accuracy']):.1f} points below the best bit-level "
                      f"baseline's (bar NOT met)."))
    if c:
        out.append(f"Cheapest bit-level baseline within 2 points of SemanticNN: {c['method']} "
                   f"({_fmt_acc(c['accuracy'])} %, {_fmt_bytes(c['bytes_on_air'])} B = {_fmt_ratio(c['ratio'])} "
                   f"SemanticNN's bytes) — the 10× bar is {'met' if bars['ten_x_fewer_bytes'] else 'NOT met'}.")
    else:
        out.append("No bit-level baseline comes within 2 points of SemanticNN (the 10× bar holds vacuously).")
    cb = bars.get("cheapest_within_2_points_of_best_bit_level")
    if cb and not c:
        out.append(f"The cheapest bit-level baseline within 2 points of the best one is {cb['method']} "
                   f"({_fmt_acc(cb['accuracy'])} %, {_fmt_bytes(cb['bytes_on_air'])} B = {_fmt_ratio(cb['ratio'])} "
                   f"SemanticNN's bytes).")
    nf = bars.get("no_fec_at_1e-1", {})
    if nf:
        worst = ", ".join(f"{k} {_fmt_acc(v)} %" for k, v in sorted(nf.items()))
        out.append(f"At BER 0.1 the bit-level baselines without FEC {'all fail' if bars['no_fec_fail_at_1e-1'] else 'do NOT all fail'}: "
                   f"{worst}.")
    return " ".join(out)


def equal_accuracy_table(result: dict) -> str:
    lines = ["| channel | BER | SemanticNN % | SemanticNN bytes | cheapest bit-level within 2 points | its % | its bytes "
             "| ratio |", "|---|---|---|---|---|---|---|---|"]
    for e in result.get("equal_accuracy", []):
        if e["semanticnn_accuracy"] < 0.5:
            e = dict(e, method="— (SemanticNN fails here)", accuracy=None, bytes_on_air=None, ratio=None)
        lines.append(f"| {e['channel']} | {e['ber']:g} | {_fmt_acc(e['semanticnn_accuracy'])} | "
                     f"{_fmt_bytes(e['semanticnn_bytes'])} | {e['method'] or 'none'} | {_fmt_acc(e['accuracy'])} | "
                     f"{_fmt_bytes(e['bytes_on_air'])} | {_fmt_ratio(e['ratio'])} |")
    return "\n".join(lines)


def accuracy_markdown(result: dict, command: str) -> str:
    cfg = result["config"]
    parts = [f"## Accuracy vs BER vs bytes on air\n\n`{command}` — {cfg['count']} {cfg['data']} images "
             f"{_side(cfg)}, link {cfg['link']} (MTU {cfg['mtu']} B), "
             f"ARQ cap {cfg['arq_cap']}, GE burst {cfg['ge_burst_bits']:g} bits, {result['seconds']:.0f} s.\n",
             bars_text(result["bars"]) + "\n",
             "### Headline (i.i.d.)\n", headline_table(result) + "\n",
             "### Bytes at equal accuracy\n", equal_accuracy_table(result) + "\n"]
    for channel in cfg["channels"]:
        parts += [f"### Accuracy % — {channel}\n", matrix(result, channel, "accuracy") + "\n",
                  f"### Mean bytes on air per inference — {channel}\n", matrix(result, channel, "bytes_on_air") + "\n"]
    return "\n".join(parts)


def latency_markdown(result: dict, command: str) -> str:
    lines = [f"## Latency per inference (ms)\n\n`{command}` — {result.get('note', '')}\n",
             "| method | link | bytes on air | device encode | on air | edge decode + tail | total |",
             "|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['method']} | {r['link']} | {_fmt_bytes(r['bytes_on_air'])} | {r['device_ms']:.2f} | "
                     f"{r['air_ms']:.1f} | {r['edge_ms']:.2f} | {r['total_ms']:.1f} |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- plots

def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_accuracy_vs_ber(result: dict, path: Path) -> Path:
    plt = _plt()
    channels = result["config"]["channels"]
    fig, axes = plt.subplots(1, len(channels), figsize=(6.5 * len(channels), 4.8), squeeze=False)
    rows = result["rows"]
    for ax, channel in zip(axes[0], channels):
        at = [r for r in rows if r["channel"] == channel]
        keep = {r["method"] for r in at if r["family"] in ("learned", "features", "reference", "diagnostic")}
        keep |= {m for m in ("raw-arq", "raw-plain", "raw-rs127", "png-arq", "jpeg10-arq", "jpeg50-arq",
                             "jpeg10-rs127", "jpeg50-rs191", "jpeg90-rs127", "jpeg50-plain")
                 if any(r["method"] == m for r in at)}
        colors = plt.get_cmap("tab20")
        for i, m in enumerate(sorted(keep, key=_order)):
            x = _x_key(at)
            pts = sorted((r[x], r["accuracy"]) for r in at if r["method"] == m)
            xs = [b if x == "snr_db" else max(b, 1e-5) for b, _ in pts]
            style = dict(lw=2.5, marker="o") if m.startswith("semanticnn") or m in ("deepcod", "adjscc") else dict(lw=1, marker=".")
            style["color"] = colors(i % 20)
            if m == "semanticnn":
                style.update(color="red", lw=3)
            if m == "device-only":
                style = dict(lw=1, ls="--", color="gray")
            if "oracle" in m:
                style = dict(lw=1.5, ls=":", color="red", marker="x")
            ax.plot(xs, [100 * a for _, a in pts], label=m, **style)
        if _x_key(at) == "snr_db":
            ax.set_xlabel("SNR dB (bit-true LoRa PHY)")
        else:
            ax.set_xscale("log")
            ax.set_xlabel("bit error rate (BER 0 drawn at 1e-5)")
        ax.set_ylabel("accuracy %")
        ax.set_title(f"{channel} channel")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="lower left", ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_accuracy_vs_bytes(result: dict, path: Path, channel: str = "iid", bers=(1e-3, 1e-2)) -> Path:
    plt = _plt()
    fig, axes = plt.subplots(1, len(bers), figsize=(6.5 * len(bers), 4.8), squeeze=False)
    for ax, ber in zip(axes[0], bers):
        at = [r for r in result["rows"] if r["channel"] == channel and r["ber"] == ber
              and r["family"] != "diagnostic"]
        fam_color = {"learned": "tab:red", "features": "tab:purple", "bit-level": "tab:blue", "reference": "gray"}
        front, best = set(), -1.0  # label the bit-level Pareto front only (more accuracy for more bytes)
        for r in sorted((r for r in at if r["family"] == "bit-level"), key=lambda r: r["bytes_on_air"]):
            if r["accuracy"] > best + 0.005:
                front.add(r["method"])
                best = r["accuracy"]
        for r in at:
            ax.scatter(r["bytes_on_air"], 100 * r["accuracy"], color=fam_color.get(r["family"], "k"),
                       s=60 if r["family"] == "learned" else 18, zorder=3)
            if r["family"] != "bit-level" or r["method"] in front:
                ax.annotate(r["method"], (r["bytes_on_air"], 100 * r["accuracy"]), fontsize=7,
                            xytext=(3, 2), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel("mean bytes on air per inference (log)")
        ax.set_ylabel("accuracy %")
        ax.set_title(f"{channel} BER {ber:g} (red: learned, purple: features, blue: bit-level)")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_latency(result: dict, path: Path) -> Path:
    """One panel per link (linear ms), a stacked bar per method: device, air, edge."""
    plt = _plt()
    rows = result["rows"]
    links = list(dict.fromkeys(r["link"] for r in rows))
    fig, axes = plt.subplots(1, len(links), figsize=(3.4 * len(links), 4.4), squeeze=False)
    for ax, link in zip(axes[0], links):
        at = [r for r in rows if r["link"] == link]
        bottom = [0.0] * len(at)
        for key, name, color in (("device_ms", "device encode", "tab:green"), ("air_ms", "time on air", "tab:blue"),
                                 ("edge_ms", "edge decode + tail", "tab:orange")):
            vals = [r[key] for r in at]
            ax.bar(range(len(at)), vals, bottom=bottom, label=name, color=color)
            bottom = [b + v for b, v in zip(bottom, vals)]
        for x, (r, top) in enumerate(zip(at, bottom)):
            ax.annotate(f"{top:.0f} ms\n{r['bytes_on_air']} B", (x, top), ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(at)))
        ax.set_xticklabels([r["method"] for r in at], fontsize=7)
        ax.set_title(link, fontsize=9)
        ax.set_ylim(0, max(bottom) * 1.25)
        ax.grid(alpha=0.3, axis="y")
    axes[0][0].set_ylabel("ms per inference (clean link)")
    axes[0][0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------- README section

def readme_section(result: dict, results_dir: str = "results") -> str:
    """The README's "Benchmarks" section, written from a `snn bench all` JSON and nothing else."""
    acc = result["accuracy"]
    cfg = acc["config"]
    m = result["machine"]
    proto = result.get("protocol") or (result.get("latency") or {}).get("protocol") or "2"
    lines = ["## Benchmarks", "",
             f"Every figure below is from `{results_dir}/bench.json`, written by `{result['command']}` on "
             f"{result['date']} on {m['cpu']} ({m['cpus']} CPUs, shared{_load(result)}), "
             f"{result['total_seconds'] / 60:.0f} min in all; `{results_dir}/bench.md` has every row. This "
             f"section is regenerated from that file by "
             f"`python -m bench.report {results_dir}/bench.json --readme README.md`." + _reduced(cfg), "",
             f"Bundle `{cfg.get('bundle_name') or cfg['codecs']['semanticnn']}` (fingerprint {cfg['bundle_fingerprint']}); float backbone "
             f"accuracy {100 * cfg['backbone_accuracy']:.1f} %. {cfg['count']} {cfg['data']} images"
             f"{_side(cfg)}, link {cfg['link']} (MTU {cfg['mtu']} B), "
             f"i.i.d. and Gilbert–Elliott (burst {cfg['ge_burst_bits']:g} bits) bit errors from `channel.bit_errors` "
             f"for every method. Bytes on air count every uplink byte: headers, MICs, counters, CRC, parity and "
             f"every retransmission (SemanticNN's v{proto} header block included: 12 bytes with a 32-bit MIC and BCH "
             f"parity, sent 1, 3 or 5 times as a device with `--header-copies auto` settles on at each BER: 1 up "
             f"to 2e-2, 3 up to 6e-2, else 5; a transmission whose header is lost is resent with a new, long "
             f"counter, up to {cfg['arq_cap']} times).", "",
             f"Methods: `semanticnn` — the shipped bundle, protocol v{proto} frames (docs/PROTOCOL.md: 12-byte BCH-protected "
             "header block with device id, counter and MIC, repeated on bad links, AES-CTR encrypted Gray-coded "
             "symbols), the edge told the BER its header decoding measured; every learned codec uses the same "
             "frames; `semanticnn-layer3` — the accuracy-first "
             "bundle in `codec/zoo`, whose device runs all of ResNet-14 (a 219 KB int8 encoder; the shipped one "
             "stops after layer2 and fits in 64 KB); `semanticnn-no-ber` / `-no-xai` / `-binary` — ablations "
             "of that layer3 bundle (one change each), where they exist in `codec/zoo`; `deepcod` — a "
             "DeepCOD-style codec with the same payload bytes, trained by distillation with no channel, binary "
             "codes, no BER input (`bench/deepcod.py`); `adjscc` — an ADJSCC-style codec (Xu et al. 2021: "
             "attention-feature modules fed the channel quality in the encoder and the decoder) with the same "
             "payload bytes and frames, trained on the same bit flips, its device told the channel's BER "
             "(feedback SemanticNN does not need) and its edge the measured one (`bench/adjscc.py`); "
             "`semanticnn-mobilenetv2` — the MobileNetV2 bundle in `codec/zoo` (its own backbone; its device "
             "runs about 2 M MACs); `feat8-*` — the float split features quantized "
             "uniformly to 8 bits; `raw`/`png`/`jpeg<q>` — the image itself, sent with `-arq` (CRC-32, resend "
             f"until correct, {cfg['arq_cap']} attempts per fragment, else failed), `-rs<k>` (Reed–Solomon "
             "RS(255,k) FEC, no resend; an uncorrectable fragment fails the inference) or `-plain` (no CRC, no "
             "ARQ: what arrives is decoded and classified if it still decodes); `device-only` — the whole "
             "model on the device (bytes: the answer). `semanticnn-header-oracle` is a diagnostic, not a "
             "method: the same codec if its header were never lost.", "",
             "**Bars.** " + bars_text(acc["bars"]) + _high_ber_note(acc), "",
             "### Accuracy and bytes on air (i.i.d. channel)", "", headline_table(acc), "",
             "### Bytes at equal accuracy", "", equal_accuracy_table(acc), "",
             f"![accuracy vs BER]({results_dir}/accuracy_vs_ber.png)", "",
             f"![accuracy vs bytes]({results_dir}/accuracy_vs_bytes.png)", ""]
    lat = result.get("latency")
    if lat:
        lines += ["### Latency per inference (clean link, ms)", "",
                  "| method | link | bytes on air | device encode | on air | edge decode + tail | total |",
                  "|---|---|---|---|---|---|---|"]
        for r in lat["rows"]:
            lines.append(f"| {r['method']} | {r['link']} | {_fmt_bytes(r['bytes_on_air'])} | {r['device_ms']:.2f} | "
                         f"{r['air_ms']:.1f} | {r['edge_ms']:.2f} | {r['total_ms']:.1f} |")
        parts = ", ".join(f"{k[:-3].replace('_', ' ')} {v:.2f} ms" for k, v in lat.get("baseline_parts_ms", {}).items())
        lines += ["", lat["note"] + f"; the baseline is the best bit-level row at i.i.d. BER 1e-2 ({lat['baseline']}). "
                  + (f"Its parts: {parts}. " if parts else "") + lat.get("baseline_note", ""),
                  "", f"![latency]({results_dir}/latency.png)", ""]
    edge = result.get("edge")
    if edge and "skipped" not in edge:
        um, ur, ht = edge.get("udp_max", {}), edge.get("udp_rate", {}), edge.get("http", {})
        lines += ["### Edge throughput", "",
                  f"`snn bench edge` inside the same run ({edge.get('cpus')} CPUs, batch <= {edge.get('max_batch')}, "
                  f"codec {edge.get('codec')}, engine {edge.get('engine', 'torch')}): decoder + task head alone {edge.get('model_fps')} images/s; UDP closed "
                  f"loop ({um.get('window')} in flight) {um.get('throughput_fps')} answered/s, p50 {um.get('p50_ms')} ms; "
                  f"UDP at {ur.get('offered_fps', edge.get('rate_offered_fps'))} frames/s offered: "
                  f"{ur.get('throughput_fps')} answered/s, p50 {ur.get('p50_ms')} ms, p99 {ur.get('p99_ms')} ms; "
                  f"HTTP ({ht.get('clients')} clients) {ht.get('throughput_rps')} requests/s, p50 {ht.get('p50_ms')} ms. "
                  f"All phases: sent {edge.get('sent')} = answered {edge.get('answered')} + rejected "
                  f"{edge.get('rejected')} (lost {edge.get('lost')}).", ""]
    elif edge:
        lines += ["### Edge throughput", "", edge["skipped"], ""]
    return "\n".join(lines)


def _load(result: dict) -> str:
    load = result.get("load_average")
    return f", load average {load['start']:g} at the start, {load['end']:g} at the end" if load else ""


def _reduced(cfg: dict) -> str:
    """Say so when the accuracy figures come from fewer images than the whole test set."""
    if not cfg.get("quick") and not cfg.get("subset"):
        return ""
    return (f" **A reduced run**: the accuracy figures are from the first {cfg['count']} test images "
            f"({'`--quick`: fewer JPEG qualities and RS rates' if cfg.get('quick') else 'every method'}), "
            f"so each accuracy carries about ±{_half_width(cfg['count']):.1f} points (95 %); "
            f"`snn bench all --out results/` gives the whole test set.")


def _half_width(n: int, p: float = 0.92) -> float:
    import math
    return 100 * 1.96 * math.sqrt(p * (1 - p) / max(n, 1))


def _high_ber_note(acc: dict, ber: float = 1e-1) -> str:
    rows = {(r["method"], r["channel"]): r for r in acc["rows"] if r["ber"] == ber}
    sem, orc = rows.get(("semanticnn", "iid")), rows.get(("semanticnn-header-oracle", "iid"))
    if not sem or not orc:
        return ""
    ge = rows.get(("semanticnn", "ge"))
    if sem["accuracy"] >= orc["accuracy"] - 0.02:
        return (f" SemanticNN keeps {_fmt_acc(sem['accuracy'])} % at i.i.d. BER {ber:g} with "
                f"{_fmt_bytes(sem['bytes_on_air'])} B on air (its header sent 5 times; a header never lost "
                f"would give {_fmt_acc(orc['accuracy'])} % with {_fmt_bytes(orc['bytes_on_air'])} B), and "
                f"{_fmt_acc(ge['accuracy']) if ge else '—'} % on the bursty channel at the same mean BER.")
    return (f" SemanticNN fails at i.i.d. BER {ber:g} too ({_fmt_acc(sem['accuracy'])} %): its symbols survive "
            f"(the same codec with a header that is never lost keeps {_fmt_acc(orc['accuracy'])} %), but its "
            f"frame header does not. On the bursty channel at the same mean BER it "
            f"answers {_fmt_acc(ge['accuracy']) if ge else '—'} %.")


def update_readme(json_path: Path, readme: Path) -> None:
    import json
    result = json.loads(Path(json_path).read_text())
    text = Path(readme).read_text()
    marker = "\n## Benchmarks\n"
    head = text.split(marker)[0].rstrip("\n") if marker in text else text.rstrip("\n")
    Path(readme).write_text(head + "\n\n" + readme_section(result, str(Path(json_path).parent)) + "\n")


def edge_markdown(r: dict, command: str) -> str:
    """The edge throughput section of a run's markdown (`bench.md`), from its JSON."""
    if "skipped" in r:
        return f"## Edge throughput\n\n{r['skipped']}\n"
    try:
        from bench.edge_load import format_edge
        body = format_edge(r)
    except Exception:  # noqa: BLE001 - the table is a convenience; the JSON has the figures
        body = "\n".join(f"{k}: {v}" for k, v in r.items() if not isinstance(v, (dict, list)))
    keys = ("sent", "answered", "rejected", "throughput_fps", "model_fps", "p50_ms", "p99_ms")
    line = ", ".join(f"{k} {r[k]}" for k in keys if k in r)
    return f"## Edge throughput (`snn bench edge`, run inside `{command}`)\n\n{line}\n\n```\n{body}\n```\n"


def full_markdown(result: dict) -> str:
    """The markdown file of a run (`bench.md`), from its JSON."""
    command, m = result["command"], result["machine"]
    parts = [f"# SemanticNN benchmarks\n\n{result['date']} on {m['cpu']} ({m['cpus']} CPUs), `{command}`, "
             f"{result['total_seconds']:.0f} s in all.\n"]
    acc = result.get("accuracy") or (result if result.get("benchmark") == "accuracy" else None)
    if acc:
        parts.append(accuracy_markdown(acc, command))
    lat = result.get("latency") or (result if result.get("benchmark") == "latency" else None)
    if lat:
        parts.append(latency_markdown(lat, command))
    if result.get("edge"):
        parts.append(edge_markdown(result["edge"], command))
    return "\n".join(parts)


if __name__ == "__main__":
    import argparse
    import json
    p = argparse.ArgumentParser(prog="python -m bench.report",
                                description="regenerate the README's Benchmarks section (and the .md) from a JSON")
    p.add_argument("json", type=Path, help="the JSON of `snn bench all`")
    p.add_argument("--readme", type=Path)
    p.add_argument("--markdown", type=Path, help="also rewrite this markdown file (tables only)")
    a = p.parse_args()
    if a.readme:
        update_readme(a.json, a.readme)
    if a.markdown:
        a.markdown.write_text(full_markdown(json.loads(a.json.read_text())))
