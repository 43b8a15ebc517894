"""Viewer and hardware statistics: who is watching (shared by every API worker through the
store), the clients list, GeoIP lookups and the sampled time series."""
