"""Type stub of the llhttp binding; the contract is documented in parser_py.py (its twin)."""

from typing import List, Optional, Tuple, Union

Head = Tuple[str, str, bytes, bytes, str, List[Tuple[bytes, bytes]], bool, bool, Optional[bytes]]
Event = Union[Head, bytes, None]

DESCRIPTION: str

class ParseError(Exception):
    status: int
    reason: str
    events: List[Event]
    def __init__(self, status: int, reason: str) -> None: ...

class RequestParser:
    trailing: bytes
    def __init__(self, max_header_size: int = 16384, max_request_line: int = 8190, max_headers: int = 100) -> None: ...
    def feed(self, data: bytes) -> List[Event]: ...
