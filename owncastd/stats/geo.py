"""GeoIP for the clients list: a MaxMind-format (.mmdb) City or Country database the operator
configures (`geoip_database`). Without one, or for an address it does not know, there is no
`geo` at all rather than a wrong one."""
from __future__ import annotations

import logging
import os

log = logging.getLogger("owncastd.stats")


def geo_from_record(record) -> dict | None:
    """`{countryCode, regionName, timeZone}` from a GeoIP2/GeoLite2 record, None if empty."""
    if not isinstance(record, dict):
        return None
    country = (record.get("country") or record.get("registered_country") or {})
    subdivisions = record.get("subdivisions") or [{}]
    geo = {
        "countryCode": country.get("iso_code", ""),
        "regionName": (subdivisions[0].get("names") or {}).get("en", ""),
        "timeZone": (record.get("location") or {}).get("time_zone", ""),
    }
    return geo if any(geo.values()) else None


class GeoLookup:
    """Opens the database lazily and again when the file or the setting changes."""

    def __init__(self, opener=None):
        self._opener = opener
        self._key = None
        self._reader = None

    def _open(self, path: str):
        if self._opener is not None:
            return self._opener(path)
        import maxminddb
        return maxminddb.open_database(path)

    def reader(self, path: str):
        if not path:
            return None
        try:
            key = (path, os.stat(path).st_mtime_ns)
        except OSError:
            key = (path, None)
        if key != self._key:
            self._key, self._reader = key, None
            if key[1] is not None:
                try:
                    self._reader = self._open(path)
                except Exception as exc:  # a bad file must not break the clients list
                    log.warning("cannot open GeoIP database %s: %s", path, exc)
            else:
                log.warning("GeoIP database %s does not exist", path)
        return self._reader

    def lookup(self, path: str, ip: str) -> dict | None:
        reader = self.reader(path)
        if reader is None or not ip:
            return None
        try:
            return geo_from_record(reader.get(ip))
        except (ValueError, TypeError):  # not an IP address
            return None
