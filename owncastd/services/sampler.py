"""The sampler child: every `stats.sample_interval` seconds (Owncast: a minute) it stores CPU,
memory and disk-use percentages (disk: the file system holding the data dir) and, while a
stream is live, the viewer count, in the store's `samples` table, keeping the newest
`SAMPLES_KEPT` of each series. `/api/admin/hardwarestats` and `/api/admin/viewersOverTime`
read them, so they survive restarts."""
from __future__ import annotations

import argparse
import logging
import signal
import threading

import psutil

from .. import logs
from ..runtime import child_config, die_with_parent
from ..stats.viewers import viewer_count
from ..store import utcnow

log = logging.getLogger("owncastd.sampler")

SAMPLES_KEPT = 500


def hardware_sample(data_dir: str) -> dict[str, int]:
    """Whole percentages, as Owncast reports them. cpu_percent is the use since the previous
    call (the first call primes it)."""
    return {
        "cpu": round(psutil.cpu_percent(interval=None)),
        "memory": round(psutil.virtual_memory().percent),
        "disk": round(psutil.disk_usage(data_dir).percent),
    }


def take_sample(config, data_dir: str) -> dict[str, int]:
    store = config.store
    values = hardware_sample(data_dir)
    if store.get_state("online"):
        values["viewers"] = viewer_count(store)
    store.add_samples(values, utcnow(), SAMPLES_KEPT)
    return values


def run(config, data_dir: str, stop: threading.Event) -> None:
    psutil.cpu_percent(interval=None)  # prime: the first interval then measures real use
    while not stop.wait(max(1, config.get("stats.sample_interval"))):
        try:
            take_sample(config, data_dir)
        except Exception:  # e.g. a busy database: skip this sample, keep sampling
            log.exception("could not take a sample")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="owncastd-sampler")
    parser.add_argument("--data-dir", required=True)
    args = parser.parse_args(argv)
    die_with_parent()
    config, _ = child_config(args.data_dir)
    logs.setup("owncastd-sampler", config.get("log_level"), args.data_dir)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    run(config, args.data_dir, stop)


if __name__ == "__main__":
    main()
