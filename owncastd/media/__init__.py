"""The media ground floor: formats that ingest, the transcoder worker and the native extension
all read. Pure Python; imports nothing of owncastd above it.

- ``flv``: FLV tag constants, tag-header checks, AVC/AAC sequence-header parsing, FLV files;
- ``handoff``: the ingest -> transcoder batch format and drop policy;
- ``playlist``: the HLS media/master playlist model, writer and reader;
- ``scaling``: output frame sizes for a rendition.
"""
