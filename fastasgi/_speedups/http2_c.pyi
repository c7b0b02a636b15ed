"""Type stub of http2_c (libnghttp2): its contract is its twin's, http2_py.py."""

from fastasgi._speedups.http2_py import PREFACE as PREFACE
from fastasgi._speedups.http2_py import Http2Protocol as Http2Protocol

NGHTTP2_VERSION: str
DESCRIPTION: str
