"""The sampler child: every `stats.sample_interval` seconds (Owncast: a minute) it stores CPU,
memory and disk-use percentages (disk: the file system holding the data dir) and, while a
stream is live, the viewer count, in the store's `samples` table, keeping the newest
`SAMPLES_KEPT` of each series. `/api/admin/hardwarestats` and `/api/admin/viewersOverTime`
read them, so they survive restarts."""
from __future__ import annotations

import logging
import threading

import psutil

from ..runtime import start_child, stop_on_signals
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
    child = start_child("sampler", argv)
    run(child.config, child.data_dir, stop_on_signals())


if __name__ == "__main__":
    main()
